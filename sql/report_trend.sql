-- Spend per day over [${from}, ${to}): the report's trend line.
SELECT
    date_trunc('day', time) AS day,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    count(*) AS requests
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY 1
