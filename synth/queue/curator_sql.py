"""A curator's own SQL (`synth sql`): one read-only statement, nothing else.

The file is opened read-only, DuckDB's external access is switched off for the connection
and the setting locked (no COPY TO, no reading other files, no ATTACH, no extensions), and
the text must hold exactly one statement of a reading kind. Results go to the terminal, or
with ``out`` to a file synth writes itself (csv, json lines, parquet).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ExportError, SQLError

if TYPE_CHECKING:
    from .store import Queue

READING = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
OUT_FORMATS = ("csv", "json", "parquet")


def check_statement(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Exactly one statement, of a reading kind; SQLError otherwise."""
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise SQLError(f"SQL error: {exc}") from None
    if not statements:
        raise SQLError("no SQL statement given")
    if len(statements) > 1:
        raise SQLError(f"synth sql runs one statement at a time; this text holds "
                       f"{len(statements)} (separated by ';')")
    kind = statements[0].type.name
    if kind not in READING:
        raise SQLError(f"synth sql is read-only: a {kind} statement is refused (review actions "
                       "are `synth review ...`; exports are `synth export` or --out FILE)")


def run_one(queue: "Queue", text: str, wait: float = 0.0, out: str | None = None,
            fmt: str | None = None) -> tuple[list[str], list[tuple]] | int:
    """(columns, rows) of one read-only statement; with ``out``, the number of rows written
    to that file instead."""
    if out is not None:
        fmt = fmt or Path(out).suffix.lstrip(".").lower()
        if fmt == "jsonl":
            fmt = "json"
        if fmt not in OUT_FORMATS:
            raise SQLError(f"--out {out}: say which format with --format csv|json|parquet "
                           "(or name the file .csv, .json or .parquet)")
    with queue.connect(read_only=True, wait=wait) as con:
        try:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            raise SQLError(f"cannot make the connection read-only: {exc}") from None
        check_statement(con, text)
        try:
            if out is None:
                cur = con.execute(text)
                if cur.description is None:
                    return [], []
                return [d[0] for d in cur.description], cur.fetchall()
            rel = con.sql(text)
            table = rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.Error as exc:
            raise SQLError(f"SQL error: {_first_line(exc)}") from None
    return _write(table, Path(out), fmt)


def _write(table: "pa.Table", path: Path, fmt: str) -> int:
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            pq.write_table(table, path, compression="zstd")
        elif fmt == "csv":
            pacsv.write_csv(_plain(table), path)
        else:
            with open(path, "w", encoding="utf-8") as fh:
                for row in table.to_pylist():
                    fh.write(json.dumps(row, default=_jsonable, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror}") from None
    return table.num_rows


def _plain(table: "pa.Table") -> "pa.Table":
    """Nested columns (lists, structs, maps) as JSON text: CSV has no other way to hold
    them."""
    cols = {}
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_nested(col.type):
            cols[name] = pa.array([None if v is None else json.dumps(v, default=_jsonable)
                                   for v in col.to_pylist()], pa.string())
        else:
            cols[name] = col
    return pa.table(cols)


def _jsonable(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
