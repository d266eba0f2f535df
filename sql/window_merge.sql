-- Usage windows merged into windows of ${window}: the open minute windows with a new micro-batch's
-- partials, minute windows into hours or days, or every revision of a window into one row.
-- Counts and sums add, latency and TTFT sketches merge (so percentiles keep their 1% relative error),
-- session id lists union into exact distinct-session counts.
--
-- Reads the table `windows` (the columns of `usage_windows`). The engine fills in ${window}.
-- `revision` and `replica` come out as 0 and NULL: the caller says what the merged rows are.
WITH merged AS (
    SELECT
        date_bin(${window}, window_start) AS window_start,
        user_id, user_email, organization_id, team, project, env, service_name, model,
        query_source, speed, effort, session_id,
        CAST(sum(requests) AS BIGINT) AS requests,
        CAST(sum(errors) AS BIGINT) AS errors,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cache_read_tokens) AS cache_read_tokens,
        sum(cache_creation_tokens) AS cache_creation_tokens,
        sum(cost_usd) AS cost_usd,
        sum(cost_usd_reported) AS cost_usd_reported,
        sum(latency_sum_ms) AS latency_sum_ms,
        sketch_merge(latency_sketch) AS latency_sketch,
        sum(ttft_sum_ms) AS ttft_sum_ms,
        sketch_merge(ttft_sketch) AS ttft_sketch,
        CAST(sum(tool_calls) AS BIGINT) AS tool_calls,
        CAST(sum(tool_successes) AS BIGINT) AS tool_successes,
        array_sort(array_distinct(flatten(
            array_agg(session_ids) FILTER (WHERE session_ids IS NOT NULL)
        ))) AS session_ids
    FROM windows
    GROUP BY 1, user_id, user_email, organization_id, team, project, env, service_name, model,
        query_source, speed, effort, session_id
)
SELECT
    window_start,
    window_start + ${window} AS window_end,
    user_id, user_email, organization_id, team, project, env, service_name, model,
    query_source, speed, effort, session_id,
    CAST(0 AS INT UNSIGNED) AS revision,
    CAST(NULL AS VARCHAR) AS replica,
    requests,
    errors,
    CAST(errors AS DOUBLE) / CAST(NULLIF(requests, 0) AS DOUBLE) AS error_rate,
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_creation_tokens,
    cost_usd,
    cost_usd_reported,
    CASE WHEN requests > 0 THEN sketch_quantile(latency_sketch, 0.5) END AS latency_p50_ms,
    CASE WHEN requests > 0 THEN sketch_quantile(latency_sketch, 0.95) END AS latency_p95_ms,
    CASE WHEN requests > 0 THEN sketch_quantile(latency_sketch, 0.99) END AS latency_p99_ms,
    latency_sum_ms,
    latency_sketch,
    sketch_quantile(ttft_sketch, 0.5) AS ttft_p50_ms,
    sketch_quantile(ttft_sketch, 0.95) AS ttft_p95_ms,
    ttft_sum_ms,
    ttft_sketch,
    tool_calls,
    tool_successes,
    CAST(tool_successes AS DOUBLE) / CAST(NULLIF(tool_calls, 0) AS DOUBLE) AS tool_success_rate,
    CAST(coalesce(cardinality(session_ids), 0) AS BIGINT) AS sessions,
    session_ids
FROM merged
ORDER BY window_start, user_id, user_email, organization_id, team, project, env, service_name,
    model, query_source, speed, effort, session_id
