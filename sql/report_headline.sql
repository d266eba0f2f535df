-- The report's headline over [${from}, ${to}): spend, volume, errors, latency, cache.
-- Latency and TTFT percentiles merge the usage_windows sketches (1% relative error) when the
-- windows hold every call of the period (`windowed_requests` = `requests`); otherwise the report
-- takes them from the calls (sql/report_latency.sql). The rest reads api_requests directly.
SELECT
    coalesce(sum(cost_usd), 0) AS spend_usd,
    count(*) AS requests,
    coalesce(sum(CASE WHEN success THEN 0 ELSE 1 END), 0) AS errors,
    count(DISTINCT user_id) AS active_users,
    count(DISTINCT session_id) AS sessions,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
    coalesce(sum(cache_creation_tokens), 0) AS cache_creation_tokens,
    (SELECT sketch_quantile(sketch_merge(latency_sketch), 0.5) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS latency_p50_ms,
    (SELECT sketch_quantile(sketch_merge(latency_sketch), 0.95) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS latency_p95_ms,
    (SELECT sketch_quantile(sketch_merge(latency_sketch), 0.99) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS latency_p99_ms,
    (SELECT sketch_quantile(sketch_merge(ttft_sketch), 0.5) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS ttft_p50_ms,
    (SELECT sketch_quantile(sketch_merge(ttft_sketch), 0.95) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS ttft_p95_ms,
    (SELECT coalesce(sum(requests), 0) FROM usage_windows
      WHERE window_start >= ${from} AND window_start < ${to}) AS windowed_requests
FROM api_requests
WHERE time >= ${from} AND time < ${to}
