-- Where the time and the money went in [${from}, ${to}), by one attribute of the model calls:
-- ${dimension} is model, query_source (main, subagent, auxiliary, sdk), speed or effort. Every call
-- in `api_requests` counts, failed ones included (a 529 that took 30 s still took 30 s).
SELECT
    coalesce(${dimension}, '(unknown)') AS operation,
    count(*) AS count,
    avg(duration_ms) AS avg_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
    coalesce(sum(duration_ms), 0) AS total_ms,
    coalesce(sum(cost_usd), 0) AS cost_usd
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY total_ms DESC, operation
