-- Where the period's cost came from, by model, over [${from}, ${to}): calls the price table could
-- not price (booked at the cost the client reported, or at no cost where it reported none), and
-- calls where the table's price and the reported cost disagree (a stale price table shows itself
-- here). Only models with any of these are listed.
SELECT
    coalesce(model, '(unknown)') AS model,
    count(*) FILTER (WHERE cost_source = 'reported') AS reported_calls,
    coalesce(sum(cost_usd) FILTER (WHERE cost_source = 'reported'), 0) AS reported_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS uncosted_calls,
    count(*) FILTER (WHERE cost_mismatch) AS mismatched_calls,
    coalesce(sum(cost_usd) FILTER (WHERE cost_mismatch), 0) AS mismatch_table_usd,
    coalesce(sum(cost_usd_reported) FILTER (WHERE cost_mismatch), 0) AS mismatch_reported_usd
FROM api_requests
WHERE time >= ${from} AND time < ${to}
GROUP BY 1
HAVING count(*) FILTER (
    WHERE cost_source = 'reported' OR cost_usd IS NULL OR cost_mismatch
) > 0
ORDER BY reported_usd DESC, uncosted_calls DESC, model
