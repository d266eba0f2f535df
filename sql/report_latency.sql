-- Latency and time to first token (TTFT) by ${dimension} over [${from}, ${to}), from the calls
-- themselves (exact percentiles): a period whose windows have not closed yet (today, on a live
-- system) has them too. ${dimension} is `model`, or a constant for the whole period.
SELECT
    coalesce(${dimension}, '(unknown)') AS name,
    count(*) AS requests,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_p50_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS duration_p95_ms,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS duration_p99_ms,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p50_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p95_ms
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY requests DESC, name
