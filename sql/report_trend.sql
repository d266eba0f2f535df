-- Spend per day of the report's clock over [${from}, ${to}) (${offset}: the time zone's offset
-- from UTC at the start): the report's trend line.
SELECT
    date_trunc('day', time + ${offset}) AS day,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    count(*) AS requests
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY 1
