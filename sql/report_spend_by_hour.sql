-- Spend per hour over [${from}, ${to}); hours with no calls are absent (the renderer fills them).
SELECT
    CAST(date_part('hour', time) AS BIGINT) AS hour,
    coalesce(sum(cost_usd), 0) AS cost_usd
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY 1
