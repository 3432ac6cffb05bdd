"""Apply changes to the MES (MySQL/MariaDB).

Every applied transaction first updates `<prefix>state` (the echo marker, holding the CRM
position), then writes the rows, then commits: the binlog reader recognises the transaction
by that first row event and the position commits atomically with the rows (exactly once).
Sessions run with time_zone '+00:00' and a strict sql_mode so the server refuses instead of
silently truncating.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import pymysql
from pymysql.constants import SERVER_STATUS

from bridge.model import Side
from bridge.schema import Family, TableInfo
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


_MAX_IN_VALUES = 500  # values per IN list of a locking read (see fetch_for_update)


_MAX_STATEMENT_CHARS = 250_000  # <= 1,000,000 bytes in UTF-8 (PyMySQL's own statement limit)


def _escape_text(v: str) -> str:
    """PyMySQL's escape_string (the characters mysql_real_escape_string escapes), by
    str.replace scans: several times faster than its str.translate over a 128-entry list."""
    return (v.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\0", "\\0")
            .replace("\n", "\\n").replace("\r", "\\r").replace("\x1a", "\\Z"))


def _fast_literal(v: Any) -> str | None:
    """The literal PyMySQL's `conn.escape` renders for the common row value types (with
    backslash escapes), or None for any other type. Pure: safe in any thread."""
    t = type(v)
    if t is str:
        return "'" + _escape_text(v) + "'"
    if v is None:
        return "NULL"
    if t is int:
        return int.__repr__(v)
    if t is datetime and v.tzinfo is None:  # same text as PyMySQL's escape_datetime
        return "'" + v.isoformat(" ") + "'"
    if t is date:
        return "'" + v.isoformat() + "'"
    if t is Decimal and v.is_finite():  # as PyMySQL's Decimal2Literal
        return format(v, "f")
    if t is float and v - v == 0.0:  # finite: as PyMySQL's escape_float
        s = float.__repr__(v)
        return s if "e" in s else s + "e0"
    if t is bool:
        return "1" if v else "0"
    return None


def render_row(values: tuple) -> str | None:
    """`(v1,v2,...)` as `insert_rows` writes a row, or None when a value is not of a common
    type (the writer then renders it with the connection). Pure: safe in any thread."""
    parts = []
    for v in values:
        text = _fast_literal(v)
        if text is None:
            return None
        parts.append(text)
    return "(" + ",".join(parts) + ")"


def sql_literal(conn: pymysql.connections.Connection) -> Callable[[Any], str]:
    """A function rendering one value as PyMySQL would (`conn.escape`), with fast paths for
    the common types of row values: text, int, NULL, naive datetime, date, finite Decimal and
    float, bool."""
    escape = conn.escape
    if conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return escape  # quotes are doubled then, not backslash-escaped: PyMySQL's own path

    def literal(v: Any) -> str:
        text = _fast_literal(v)
        return escape(v) if text is None else text

    return literal


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
        # READ COMMITTED: the locking reads of keys about to be inserted take no gap locks,
        # which under REPEATABLE READ block (and deadlock) application inserts of other keys
        # in the same gap. Rows are still locked; a concurrent insert of the same key makes
        # our INSERT fail with a duplicate key, and the group is retried.
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

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
        """No round trip: the session runs with autocommit off, so the first statement opens
        the transaction (and `commit`/`rollback` end it)."""
        self._sp = 0

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
        """No round trip: InnoDB replaces a savepoint of the same name when the next one is
        set, and drops them all at COMMIT/ROLLBACK; only the name counter goes back."""
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
        # A locking read must probe the key, never scan the table: a scan locks (or, under
        # READ COMMITTED, waits for) every row it passes, unrelated application rows too, and
        # deadlocks with their writers. The optimizer picks a scan when the list is long for
        # the table's size (force the primary key) and MariaDB turns IN lists of 1000 values
        # or more into a subquery joined by a scan (in_predicate_conversion_threshold): keep
        # each list well below that.
        info = self._tables.get(table)
        hint = " FORCE INDEX (PRIMARY)" if info is not None and set(info.primary_key) == set(key) else ""
        step = max(1, _MAX_IN_VALUES // len(key))
        literal = sql_literal(self.conn)  # type: ignore[arg-type]
        head = f"SELECT {column_list(columns)} FROM {self._q(table)}{hint} WHERE ({column_list(key)}) IN ("
        for start in range(0, len(keys), step):
            chunk = keys[start:start + step]
            # the key values rendered as insert_rows renders values (PyMySQL's literals)
            values = ",".join(["(" + ",".join(map(literal, k)) + ")" for k in chunk])
            cur = self._exec(head + values + ") FOR UPDATE")
            for row in cur.fetchall():
                out[tuple(row[i] for i in idx)] = dict(zip(columns, row))
        return out

    def row_renderer(self) -> Callable[[tuple], str | None] | None:
        """A pure function rendering a row as `insert_rows` would (None for a row it cannot
        render alone), for rendering ahead of time in another thread; None when this
        connection escapes differently (NO_BACKSLASH_ESCAPES)."""
        assert self.conn is not None
        if self.conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            return None
        return render_row

    def insert_rows(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """One multi-row INSERT (more than one only past ~1 MB of text), rendered here rather
        than by executemany: same literals, a third of the CPU time."""
        literal = sql_literal(self.conn)  # type: ignore[arg-type]
        self.insert_rendered(table, columns,
                             ["(" + ",".join(map(literal, row)) + ")" for row in rows])

    def insert_rendered(self, table: str, columns: list[str], texts: list[str]) -> None:
        """`insert_rows` for rows rendered already (`row_renderer`, `(v1,v2,...)` each)."""
        prefix = f"INSERT INTO {self._q(table)} ({column_list(columns)}) VALUES "
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            parts: list[str] = []
            size = 0
            for text in texts:
                if parts and size + len(text) > _MAX_STATEMENT_CHARS:
                    cur.execute(prefix + ",".join(parts))
                    parts, size = [], 0
                parts.append(text)
                size += len(text) + 1
            if parts:
                cur.execute(prefix + ",".join(parts))

    def update_rows(self, table: str, set_columns: list[str], key: list[str],
                    rows: list[tuple]) -> int:
        if len(rows) > 1 and self._joinable(table, set_columns, key, rows):
            return self._update_joined(table, set_columns, key, rows)
        query = (
            f"UPDATE {self._q(table)} SET "
            + ", ".join(f"{quote(c)} = %s" for c in set_columns)
            + " WHERE "
            + " AND ".join(f"{quote(k)} = %s" for k in key)
        )
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            return cur.executemany(query, rows) or 0  # one round trip per row

    def _joinable(self, table: str, set_columns: list[str], key: list[str],
                  rows: list[tuple]) -> bool:
        """One UPDATE ... JOIN over the rows does what the single UPDATEs do in order when no
        two rows share a key, no key column is set, and the keys are integers (text keys from
        a derived table would be compared under the connection's collation, not the column's)."""
        info = self._tables.get(table)
        if info is None or set(set_columns) & set(key):
            return False
        for k in key:
            col = info.columns.get(k)
            if col is None or col.family is not Family.INT:
                return False
        n = len(key)
        return len({r[-n:] for r in rows}) == len(rows)

    def _update_joined(self, table: str, set_columns: list[str], key: list[str],
                       rows: list[tuple]) -> int:
        literal = sql_literal(self.conn)  # type: ignore[arg-type]
        names = [f"c{i}" for i in range(len(set_columns))] + [f"k{i}" for i in range(len(key))]
        on = " AND ".join(f"t.{quote(k)} = v.k{i}" for i, k in enumerate(key))
        sets = ", ".join(f"t.{quote(c)} = v.c{i}" for i, c in enumerate(set_columns))
        head = f"UPDATE {self._q(table)} AS t JOIN ("
        tail = f") AS v ON {on} SET {sets}"
        done = 0
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            for part in self._by_size(["SELECT " + ", ".join(map(literal, r)) for r in rows]):
                first = "SELECT " + ", ".join(f"{literal(v)} AS {n}" for v, n in zip(
                    rows[done], names))
                cur.execute(head + " UNION ALL ".join([first, *part[1:]]) + tail)
                done += len(part)
        return len(rows)

    @staticmethod
    def _by_size(items: list[str]) -> list[list[str]]:
        """Consecutive items in groups of at most ~_MAX_STATEMENT_CHARS characters."""
        groups: list[list[str]] = [[]]
        size = 0
        for item in items:
            if groups[-1] and size + len(item) > _MAX_STATEMENT_CHARS:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += len(item) + 11
        return groups

    def delete_rows(self, table: str, key: list[str], keys: list[tuple]) -> int:
        if len(keys) > 1:  # one statement: the set of keys, order does not matter
            literal = sql_literal(self.conn)  # type: ignore[arg-type]
            if len(key) == 1:
                items = [literal(k[0]) for k in keys]
                clause, sep = f"{quote(key[0])} IN (", ","
            else:
                items = ["(" + " AND ".join(f"{quote(c)} = {literal(v)}" for c, v in zip(key, k))
                         + ")" for k in keys]
                clause, sep = "(", " OR "
            deleted = 0
            for part in self._by_size(items):
                deleted += self._exec(
                    f"DELETE FROM {self._q(table)} WHERE {clause}{sep.join(part)})").rowcount
            return deleted
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
    @staticmethod
    def _record_values(record: dict) -> list[Any]:
        values = []
        for v in record.values():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str, ensure_ascii=False)
            elif isinstance(v, datetime) and v.tzinfo is not None:
                v = v.astimezone(timezone.utc).replace(tzinfo=None)
            values.append(v)
        return values

    def _insert(self, name: str, record: dict) -> int:
        values = self._record_values(record)
        cur = self._exec(
            f"INSERT INTO {self._state(name)} ({column_list(list(record))}) VALUES {placeholders(len(values))}",
            values,
        )
        return int(cur.lastrowid or 0)

    def insert_audits(self, records: list[dict]) -> None:
        """Several audit rows (same keys) in one multi-row INSERT: one round trip."""
        if not records:
            return
        query = (f"INSERT INTO {self._state('audit')} ({column_list(list(records[0]))}) "
                 f"VALUES {placeholders(len(records[0]))}")
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, [self._record_values(r) for r in records])

    def insert_dead_letter(self, record: dict) -> None:
        self._insert("dead_letters", record)

    def insert_audit(self, record: dict) -> None:
        self._insert("audit", record)

    def insert_conflict(self, record: dict) -> int:
        return self._insert("conflicts", record)
