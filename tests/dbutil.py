"""Reading a queue file in tests, the way a curator's DuckDB client would."""

from __future__ import annotations

import duckdb


def q(db, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on a queue file, opened read-only and closed again."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
