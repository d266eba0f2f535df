-- Spend by one dimension over [${from}, ${to}), largest first. ${dimension} is user_id, team,
-- project or model; rows where it is unknown count as "(unknown)".
SELECT
    coalesce(${dimension}, '(unknown)') AS name,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    count(*) AS requests,
    count(DISTINCT session_id) AS sessions,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
    coalesce(sum(cache_creation_tokens), 0) AS cache_creation_tokens
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
ORDER BY cost_usd DESC, name
