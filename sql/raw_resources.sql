-- A raw table (log_records, metric_points, spans) as `burnrate query` shows it: every row with its
-- resource's attributes in `resource`. Rows written before the `resources` table carry them
-- themselves; newer rows name them by `resource_id` and leave `resource` NULL, and the
-- attributes are written once a file in `resources` instead of once a row. ${columns}
-- is the stored table's columns in order, `resource` replaced by the expression below.
SELECT ${columns}
FROM stored
LEFT JOIN (
    SELECT DISTINCT ON (resource_id) resource_id, resource
    FROM resources
    ORDER BY resource_id
) AS named ON stored.resource_id = named.resource_id
