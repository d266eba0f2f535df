-- Spend next to what it produced, by ${dimension} (team or user_id), over [${from}, ${to}): lines of
-- code changed (added and removed), commits and pull requests from Claude Code's usage metrics,
-- and the cost of each. A cost is NULL where nothing was produced.
WITH spend AS (
    SELECT coalesce(${dimension}, '(unknown)') AS name, coalesce(sum(cost_usd), 0) AS cost_usd
    FROM api_requests
    WHERE time >= ${from} AND time < ${to}
    GROUP BY 1
),
produced AS (
    SELECT
        coalesce(${dimension}, '(unknown)') AS name,
        coalesce(sum(value) FILTER (WHERE metric = 'claude_code.lines_of_code.count'), 0)
            AS lines_changed,
        coalesce(sum(value) FILTER (WHERE metric = 'claude_code.commit.count'), 0) AS commits,
        coalesce(sum(value) FILTER (WHERE metric = 'claude_code.pull_request.count'), 0)
            AS pull_requests
    FROM usage_metrics
    WHERE time >= ${from} AND time < ${to}
    GROUP BY 1
)
SELECT
    coalesce(spend.name, produced.name) AS name,
    coalesce(spend.cost_usd, 0) AS cost_usd,
    coalesce(produced.lines_changed, 0) AS lines_changed,
    coalesce(produced.commits, 0) AS commits,
    coalesce(produced.pull_requests, 0) AS pull_requests,
    coalesce(spend.cost_usd, 0) * 1000 / NULLIF(produced.lines_changed, 0) AS cost_per_1k_lines_usd,
    coalesce(spend.cost_usd, 0) / NULLIF(produced.commits, 0) AS cost_per_commit_usd,
    coalesce(spend.cost_usd, 0) / NULLIF(produced.pull_requests, 0) AS cost_per_pull_request_usd
FROM spend FULL OUTER JOIN produced ON spend.name = produced.name
ORDER BY cost_usd DESC, name
