-- Spend per hour of the report's clock over [${from}, ${to}): ${offset} is the time zone's
-- offset from UTC. Hours with no calls are absent (the renderer fills them).
SELECT
    CAST(date_part('hour', time + ${offset}) AS BIGINT) AS hour,
    coalesce(sum(cost_usd), 0) AS cost_usd
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY 1
