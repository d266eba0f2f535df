"""An independent reader of burnrate's tables: delta-rs's Python package (PyPI `deltalake`),
its own build of delta-rs and DataFusion, reading each table through its Delta log.

Usage: delta_reader.py DATA_DIR|s3://BUCKET/PREFIX TABLE SQL [APP_ID,...]
Prints one JSON object: the table's version and file count, the type its log declares for each
column (a JSON string for a primitive type, an object for a nested one), the version its log
holds for each APP_ID (a transaction id; null if none), and the rows of SQL (run over the table registered under its own name), each
row as an object of plain values. An s3:// dataset is reached with the AWS_* environment.
"""

import json
import os
import sys

from deltalake import DeltaTable, QueryBuilder


def main() -> None:
    data, table, sql = sys.argv[1], sys.argv[2], sys.argv[3]
    app_ids = [a for a in sys.argv[4].split(",") if a] if len(sys.argv) > 4 else []
    options = None
    if data.startswith("s3://"):
        keys = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                "AWS_ALLOW_HTTP"]
        options = {key: os.environ[key] for key in keys if key in os.environ}
    delta = DeltaTable(f"{data}/{table}", storage_options=options)
    result = QueryBuilder().register(table, delta).execute(sql).read_all()
    names = result.column_names
    columns = [result.column(name) for name in names]
    rows = [
        {name: column[i].as_py() for name, column in zip(names, columns)}
        for i in range(result.num_rows)
    ]
    txn = {app_id: delta.transaction_version(app_id) for app_id in app_ids}
    declared = {field["name"]: field["type"] for field in json.loads(delta.schema().to_json())["fields"]}
    print(json.dumps({"version": delta.version(), "files": len(delta.file_uris()), "txn": txn,
                      "declared": declared, "rows": rows}))


if __name__ == "__main__":
    main()
