-- Where the time went in [${from}, ${to}), by operation: every span by its name (a tool span
-- also by its tool), and Claude Code's timed events (model calls, tool results) by event name.
-- With the tracing beta on, a model call is both a `claude_code.llm_request` span and an
-- `api_request (event)` row: they are labelled apart, never merged.
WITH operations AS (
    SELECT
        CASE
            WHEN attributes['tool_name'] IS NOT NULL THEN name || ' (' || attributes['tool_name'] || ')'
            ELSE name
        END AS operation,
        duration_ms
    FROM spans
    WHERE start_time >= ${from} AND start_time < ${to}
    UNION ALL
    SELECT 'api_request (event)' AS operation, duration_ms
    FROM api_requests
    WHERE source = 'claude_code.event' AND time >= ${from} AND time < ${to}
    UNION ALL
    SELECT 'tool_result (event)' AS operation, duration_ms
    FROM tool_calls
    WHERE source = 'claude_code.event' AND success IS NOT NULL AND time >= ${from} AND time < ${to}
)
SELECT
    operation,
    count(*) AS count,
    avg(duration_ms) AS avg_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
    coalesce(sum(duration_ms), 0) AS total_ms
FROM operations
GROUP BY operation
ORDER BY total_ms DESC, operation
