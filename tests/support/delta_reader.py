"""An independent reader of burnrate's tables: delta-rs's Python package (PyPI `deltalake`),
its own build of delta-rs and DataFusion, reading each table through its Delta log.

Usage: delta_reader.py DATA_DIR TABLE SQL
Prints one JSON object: the table's version and file count, and the rows of SQL (run over the
table registered under its own name), each row as an object of plain values.
"""

import json
import sys

from deltalake import DeltaTable, QueryBuilder


def main() -> None:
    data, table, sql = sys.argv[1], sys.argv[2], sys.argv[3]
    delta = DeltaTable(f"{data}/{table}")
    result = QueryBuilder().register(table, delta).execute(sql).read_all()
    names = result.column_names
    columns = [result.column(name) for name in names]
    rows = [
        {name: column[i].as_py() for name, column in zip(names, columns)}
        for i in range(result.num_rows)
    ]
    print(json.dumps({"version": delta.version(), "files": len(delta.file_uris()), "rows": rows}))


if __name__ == "__main__":
    main()
