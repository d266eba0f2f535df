-- Where the time went in [${from}, ${to}), by model: every model call in `api_requests`,
-- failed ones included (a 529 that took 30 s still took 30 s).
SELECT
    coalesce(model, '(unknown)') AS operation,
    count(*) AS count,
    avg(duration_ms) AS avg_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
    coalesce(sum(duration_ms), 0) AS total_ms
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY total_ms DESC, operation
