-- Spend of one budget's dimension value over [${from}, ${to}). ${dimension} is a column of
-- api_requests (user_id, team, project, model, ...), ${value} a quoted literal.
SELECT coalesce(sum(cost_usd), 0) AS spend_usd
FROM api_requests
WHERE ${dimension} = ${value} AND time >= ${from} AND time < ${to}
