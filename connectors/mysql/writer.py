"""Apply changes to the MES (MySQL/MariaDB).

Every applied transaction first updates `<prefix>state` (the echo marker, holding the CRM
position), then writes the rows, then commits: the binlog reader recognises the transaction
by that first row event and the position commits atomically with the rows (exactly once).
Sessions run with time_zone '+00:00' and a strict sql_mode so the server refuses instead of
silently truncating.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pymysql

from bridge.model import Side
from bridge.schema import TableInfo
from connectors.mysql import introspect
from connectors.mysql.sqltext import column_list, placeholders, quote
from connectors.mysql.state import state_table

SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
)


def connect(host: str, port: int, user: str, password: str | None, database: str,
            timeout: float = 10.0, autocommit: bool = False) -> pymysql.connections.Connection:
    """A PyMySQL connection with the bridge's session settings."""
    return pymysql.connect(
        host=host,
        port=port,
        user=user,
        password=password or "",
        database=database,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=int(timeout),
        read_timeout=300,
        write_timeout=300,
        init_command=f"SET time_zone = '+00:00', sql_mode = '{SQL_MODE}'",
    )


def _table(qualified: str) -> tuple[str, str]:
    db, _, name = qualified.partition(".")
    return db, name


class MysqlTarget:
    side = Side.MES

    def __init__(self, host: str, port: int, user: str, password: str | None, database: str,
                 prefix: str, connect_timeout: float = 10.0):
        self._args = (host, port, user, password, database)
        self._timeout = connect_timeout
        self.database = database
        self._prefix = prefix
        self.conn: pymysql.connections.Connection | None = None
        self._tables: dict[str, TableInfo] = {}
        self._sp = 0

    def connect(self) -> None:
        self.conn = connect(*self._args, timeout=self._timeout)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except pymysql.Error:
                pass
            try:
                self.conn.close()
            except pymysql.Error:
                pass
        self.conn = None

    def table_info(self, table: str) -> TableInfo | None:
        if table not in self._tables:
            db, name = _table(table)
            info = introspect.load_table(self.conn, db, name)
            self.conn.rollback()  # type: ignore[union-attr]
            if info is None:
                return None
            self._tables[table] = info
        return self._tables[table]

    def _q(self, table: str) -> str:
        db, name = _table(table)
        return f"{quote(db)}.{quote(name)}"

    def _exec(self, query: str, params: Any = None) -> pymysql.cursors.Cursor:
        cur = self.conn.cursor()  # type: ignore[union-attr]
        cur.execute(query, params)
        return cur

    # --- transaction ----------------------------------------------------------------------
    def begin(self) -> None:
        self._sp = 0
        self.conn.begin()  # type: ignore[union-attr]

    def commit(self) -> None:
        self.conn.commit()  # type: ignore[union-attr]

    def rollback(self) -> None:
        if self.conn is not None:
            self.conn.rollback()

    def savepoint(self) -> None:
        self._sp += 1
        self._exec(f"SAVEPOINT {quote(f'sp{self._sp}')}")

    def rollback_savepoint(self) -> None:
        self._exec(f"ROLLBACK TO SAVEPOINT {quote(f'sp{self._sp}')}")
        self.release_savepoint()

    def release_savepoint(self) -> None:
        self._exec(f"RELEASE SAVEPOINT {quote(f'sp{self._sp}')}")
        self._sp -= 1

    # --- state ----------------------------------------------------------------------------
    def _state(self, name: str) -> str:
        return quote(state_table(self._prefix, name))

    def read_state(self, direction: str) -> str | None:
        cur = self._exec(f"SELECT position FROM {self._state('state')} WHERE direction = %s",
                         (direction,))
        row = cur.fetchone()
        self.conn.commit()  # type: ignore[union-attr]
        return row[0] if row else None

    def write_state(self, direction: str, position: str) -> None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        self._exec(
            f"INSERT INTO {self._state('state')} (direction, position, updated_at) "
            "VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE position = VALUES(position), "
            "updated_at = VALUES(updated_at)",
            (direction, position, now),
        )

    # --- rows -----------------------------------------------------------------------------
    def fetch_for_update(self, table: str, columns: list[str], key: list[str],
                         keys: list[tuple]) -> dict[tuple, dict]:
        if not keys:
            return {}
        out: dict[tuple, dict] = {}
        idx = [columns.index(k) for k in key]
        one = placeholders(len(key))
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            query = (
                f"SELECT {column_list(columns)} FROM {self._q(table)} "
                f"WHERE ({column_list(key)}) IN ({', '.join([one] * len(chunk))}) FOR UPDATE"
            )
            cur = self._exec(query, [v for k in chunk for v in k])
            for row in cur.fetchall():
                out[tuple(row[i] for i in idx)] = dict(zip(columns, row))
        return out

    def insert_rows(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        query = f"INSERT INTO {self._q(table)} ({column_list(columns)}) VALUES {placeholders(len(columns))}"
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, rows)  # PyMySQL batches INSERT ... VALUES into multi-row

    def update_rows(self, table: str, set_columns: list[str], key: list[str],
                    rows: list[tuple]) -> int:
        query = (
            f"UPDATE {self._q(table)} SET "
            + ", ".join(f"{quote(c)} = %s" for c in set_columns)
            + " WHERE "
            + " AND ".join(f"{quote(k)} = %s" for k in key)
        )
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            return cur.executemany(query, rows) or 0

    def delete_rows(self, table: str, key: list[str], keys: list[tuple]) -> int:
        query = f"DELETE FROM {self._q(table)} WHERE " + " AND ".join(f"{quote(k)} = %s" for k in key)
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            return cur.executemany(query, keys) or 0

    def delete_all(self, table: str) -> int:
        # DELETE, not TRUNCATE: TRUNCATE is DDL in MySQL and would commit implicitly.
        return self._exec(f"DELETE FROM {self._q(table)}").rowcount

    # --- conflicts ------------------------------------------------------------------------
    def supports_commit_times(self) -> bool:
        """MySQL keeps no per-row commit time; the daemon supplies them from the binlog."""
        return False

    def commit_times(self, table: str, key: list[str], keys: list[tuple]) -> dict[tuple, Any]:
        return {}

    def set_commit_time(self, ts: Any) -> None:
        """Nothing to do: the binlog reader learns source times from the state row."""

    def parked_keys(self, tables: list[str]) -> list[tuple[str, dict]]:
        if not tables:
            return []
        cur = self._exec(
            f"SELECT target_table, row_key FROM {self._state('conflicts')} "
            f"WHERE status IN ('parked', 'queued') AND target_table IN {placeholders(len(tables))}",
            tables)
        return [(t, json.loads(k)) for t, k in cur.fetchall()]

    def update_if(self, table: str, values: dict[str, Any], key: dict[str, Any],
                  expect: dict[str, Any]) -> int:
        """UPDATE only if each `expect` column still holds the given value (compare-and-set)."""
        query = (
            f"UPDATE {self._q(table)} SET " + ", ".join(f"{quote(c)} = %s" for c in values)
            + " WHERE " + " AND ".join([f"{quote(k)} = %s" for k in key]
                                       + [f"{quote(c)} <=> %s" for c in expect])
        )
        return self._exec(query, [*values.values(), *key.values(), *expect.values()]).rowcount

    def current_position_text(self) -> str:
        """The server's binlog position now, for waiting on the binlog reader."""
        from bridge.model import position_to_text

        return position_to_text(introspect.current_position(self.conn))

    # --- bookkeeping ----------------------------------------------------------------------
    def _insert(self, name: str, record: dict) -> int:
        values = []
        for v in record.values():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str, ensure_ascii=False)
            elif isinstance(v, datetime) and v.tzinfo is not None:
                v = v.astimezone(timezone.utc).replace(tzinfo=None)
            values.append(v)
        cur = self._exec(
            f"INSERT INTO {self._state(name)} ({column_list(list(record))}) VALUES {placeholders(len(values))}",
            values,
        )
        return int(cur.lastrowid or 0)

    def insert_dead_letter(self, record: dict) -> None:
        self._insert("dead_letters", record)

    def insert_audit(self, record: dict) -> None:
        self._insert("audit", record)

    def insert_conflict(self, record: dict) -> int:
        return self._insert("conflicts", record)
