-- Where the time went in [${from}, ${to}), by tool: one row per tool name over `tool_calls`
-- (each tool use once, from events or spans as `call_source` says). Rejected uses, which never
-- ran, are left out.
SELECT
    coalesce(tool_name, '(unknown)') AS operation,
    count(*) AS count,
    avg(duration_ms) AS avg_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
    coalesce(sum(duration_ms), 0) AS total_ms
FROM tool_calls
WHERE success IS NOT NULL AND time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY total_ms DESC, operation
