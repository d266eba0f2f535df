-- Anomalies that started in [${from}, ${to}), each with its latest state.
SELECT rule, severity, dimension, value, first_seen, resolved_at, observed, baseline, score
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY rule, dimension, value, first_seen ORDER BY time DESC, status DESC
    ) AS latest
    FROM anomalies
    WHERE first_seen >= ${from} AND first_seen < ${to}
)
WHERE latest = 1
ORDER BY first_seen, rule, dimension, value
