"""`backfill_progress` on the target side: one row per (table, direction).

The stores run their statements on a connection they are given and never commit: the
direction calls `advance` inside its open target transaction (with the chunk's rows), the CLI
commits its own registrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg import sql

from bridge.backfill.model import (
    PROGRESS_COLUMNS,
    Request,
    Status,
    dumps_key,
    request_from_row,
)
from bridge.backfill.names import PROGRESS
from connectors.mysql.sqltext import column_list, placeholders, quote

_UPDATE_COLUMNS = ("status", "last_key", "rows_copied", "rows_skipped", "chunks", "dead_letters",
                   "conflicts", "error")


class ProgressStore(Protocol):
    def list(self, direction: str | None = None) -> list[Request]: ...
    def get(self, table: str, direction: str) -> Request | None: ...
    def put(self, req: Request) -> None: ...
    def advance(self, req: Request) -> None: ...
    def set_status(self, req: Request, status: Status, error: str | None = None) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _row(req: Request) -> dict[str, Any]:
    return {
        "table_name": req.table, "direction": req.direction, "request_id": req.request_id,
        "status": req.status.value, "key_min": dumps_key(req.key_min),
        "key_max": dumps_key(req.key_max), "last_key": dumps_key(req.last_key),
        "chunk_rows": req.chunk_rows, "rows_estimate": req.rows_estimate,
        "rows_copied": req.rows_copied, "rows_skipped": req.rows_skipped, "chunks": req.chunks,
        "dead_letters": req.dead_letters, "conflicts": req.conflicts, "error": req.error,
        "requested_at": req.requested_at or _now(), "started_at": req.started_at,
        "updated_at": _now(), "finished_at": req.finished_at,
    }


def _update_values(req: Request) -> dict[str, Any]:
    row = _row(req)
    values = {c: row[c] for c in _UPDATE_COLUMNS}
    values["updated_at"] = _now()
    if req.status is Status.DONE:
        values["finished_at"] = _now()
    return values


class PgProgressStore:
    """The CRM's `<state_schema>.backfill_progress` (psycopg connection)."""

    def __init__(self, conn: Any, schema: str):
        self.conn = conn
        self.table = sql.Identifier(schema, PROGRESS)

    def list(self, direction: str | None = None) -> list[Request]:
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, PROGRESS_COLUMNS)), self.table)
        params: list[Any] = []
        if direction is not None:
            query += sql.SQL(" WHERE direction = %s")
            params.append(direction)
        query += sql.SQL(" ORDER BY requested_at, table_name")
        return [request_from_row(r) for r in self.conn.execute(query, params).fetchall()]

    def get(self, table: str, direction: str) -> Request | None:
        query = sql.SQL("SELECT {} FROM {} WHERE table_name = %s AND direction = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, PROGRESS_COLUMNS)), self.table)
        row = self.conn.execute(query, (table, direction)).fetchone()
        return request_from_row(row) if row else None

    def put(self, req: Request) -> None:
        row = _row(req)
        cols = list(row)
        query = sql.SQL(
            "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (table_name, direction) "
            "DO UPDATE SET {sets}"
        ).format(
            t=self.table,
            cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
            vals=sql.SQL(", ").join([sql.Placeholder()] * len(cols)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols[2:]),
        )
        self.conn.execute(query, list(row.values()))

    def advance(self, req: Request) -> None:
        self._update(req, _update_values(req))

    def set_status(self, req: Request, status: Status, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": _now()}
        if status is Status.RUNNING and req.started_at is None:
            values["started_at"] = _now()
        if status.finished:
            values["finished_at"] = _now()
        self._update(req, values)

    def _update(self, req: Request, values: dict[str, Any]) -> None:
        query = sql.SQL("UPDATE {} SET {} WHERE table_name = %s AND direction = %s "
                        "AND request_id = %s").format(
            self.table,
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values))
        self.conn.execute(query, [*values.values(), req.table, req.direction, req.request_id])


def _mysql_value(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


def _utc(v: Any) -> Any:
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v


class MysqlProgressStore:
    """The MES's `<prefix>backfill_progress` (PyMySQL connection, session time zone UTC)."""

    def __init__(self, conn: Any, prefix: str):
        self.conn = conn
        self.table = quote(f"{prefix}{PROGRESS}")

    def _rows(self, query: str, params: Any) -> list[Request]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        out = []
        for r in rows:
            r = list(r)
            for i, c in enumerate(PROGRESS_COLUMNS):
                if c.endswith("_at"):
                    r[i] = _utc(r[i])
            out.append(request_from_row(r))
        return out

    def list(self, direction: str | None = None) -> list[Request]:
        query = f"SELECT {column_list(PROGRESS_COLUMNS)} FROM {self.table}"
        params: list[Any] = []
        if direction is not None:
            query += " WHERE direction = %s"
            params.append(direction)
        return self._rows(query + " ORDER BY requested_at, table_name", params)

    def get(self, table: str, direction: str) -> Request | None:
        rows = self._rows(f"SELECT {column_list(PROGRESS_COLUMNS)} FROM {self.table} "
                          "WHERE table_name = %s AND direction = %s", (table, direction))
        return rows[0] if rows else None

    def put(self, req: Request) -> None:
        row = _row(req)
        cols = list(row)
        sets = ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in cols[2:])
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self.table} ({column_list(cols)}) VALUES {placeholders(len(cols))} "
                f"ON DUPLICATE KEY UPDATE {sets}",
                [_mysql_value(v) for v in row.values()])

    def advance(self, req: Request) -> None:
        self._update(req, _update_values(req))

    def set_status(self, req: Request, status: Status, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": _now()}
        if status is Status.RUNNING and req.started_at is None:
            values["started_at"] = _now()
        if status.finished:
            values["finished_at"] = _now()
        self._update(req, values)

    def _update(self, req: Request, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{quote(c)} = %s" for c in values)
        with self.conn.cursor() as cur:
            cur.execute(
                f"UPDATE {self.table} SET {sets} WHERE table_name = %s AND direction = %s "
                "AND request_id = %s",
                [*(_mysql_value(v) for v in values.values()), req.table, req.direction,
                 req.request_id])
