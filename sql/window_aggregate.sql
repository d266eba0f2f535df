-- Partial usage windows from one micro-batch: the rows of `api_requests` and `tool_calls` that
-- the engine just made durable, grouped into event-time windows.
--
-- The engine fills in before running it:
--   ${window}               the window width, e.g. INTERVAL '60 seconds'
--   ${request_dimensions}   every window dimension, the unconfigured ones as NULL
--   ${tool_dimensions}      the same for tool_calls (which have no model)
-- Latency and time to first token (TTFT) each get a sketch, so that hour and day rollups have exact
-- merges of them.
-- The output has the columns of `usage_windows`; the percentiles, rates and counts derived from
-- the sums are left NULL here and computed by window_merge.sql, which every partial goes through.
WITH calls AS (
    SELECT
        date_bin(${window}, time) AS window_start,
        ${request_dimensions},
        session_id AS session,
        1 AS requests,
        CASE WHEN success THEN 0 ELSE 1 END AS errors,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_creation_tokens,
        cost_usd,
        cost_usd_reported,
        duration_ms AS request_ms,
        ttft_ms AS request_ttft_ms,
        0 AS tool_calls,
        0 AS tool_successes
    FROM api_requests
    WHERE time IS NOT NULL
    UNION ALL
    SELECT
        date_bin(${window}, time) AS window_start,
        ${tool_dimensions},
        session_id AS session,
        0 AS requests,
        0 AS errors,
        CAST(NULL AS BIGINT) AS input_tokens,
        CAST(NULL AS BIGINT) AS output_tokens,
        CAST(NULL AS BIGINT) AS cache_read_tokens,
        CAST(NULL AS BIGINT) AS cache_creation_tokens,
        CAST(NULL AS DOUBLE) AS cost_usd,
        CAST(NULL AS DOUBLE) AS cost_usd_reported,
        CAST(NULL AS DOUBLE) AS request_ms,
        CAST(NULL AS DOUBLE) AS request_ttft_ms,
        1 AS tool_calls,
        CASE WHEN success THEN 1 ELSE 0 END AS tool_successes
    FROM tool_calls
    WHERE time IS NOT NULL
)
SELECT
    window_start,
    window_start + ${window} AS window_end,
    user_id, user_email, organization_id, team, project, env, service_name, model,
    query_source, speed, effort, session_id,
    CAST(0 AS INT UNSIGNED) AS revision,
    CAST(NULL AS VARCHAR) AS replica,
    CAST(sum(requests) AS BIGINT) AS requests,
    CAST(sum(errors) AS BIGINT) AS errors,
    CAST(NULL AS DOUBLE) AS error_rate,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_usd_reported) AS cost_usd_reported,
    CAST(NULL AS DOUBLE) AS latency_p50_ms,
    CAST(NULL AS DOUBLE) AS latency_p95_ms,
    CAST(NULL AS DOUBLE) AS latency_p99_ms,
    sum(request_ms) AS latency_sum_ms,
    latency_sketch(request_ms) FILTER (WHERE requests = 1) AS latency_sketch,
    CAST(NULL AS DOUBLE) AS ttft_p50_ms,
    CAST(NULL AS DOUBLE) AS ttft_p95_ms,
    sum(request_ttft_ms) AS ttft_sum_ms,
    latency_sketch(request_ttft_ms) FILTER (WHERE requests = 1 AND request_ttft_ms IS NOT NULL)
        AS ttft_sketch,
    CAST(sum(tool_calls) AS BIGINT) AS tool_calls,
    CAST(sum(tool_successes) AS BIGINT) AS tool_successes,
    CAST(NULL AS DOUBLE) AS tool_success_rate,
    CAST(NULL AS BIGINT) AS sessions,
    array_agg(DISTINCT session) FILTER (WHERE session IS NOT NULL) AS session_ids
FROM calls
GROUP BY window_start, user_id, user_email, organization_id, team, project, env, service_name,
    model, query_source, speed, effort, session_id
