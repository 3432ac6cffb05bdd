"""Apply changes to the CRM (PostgreSQL).

One dedicated connection, attached to the bridge's replication origin, so every transaction it
commits is tagged and the CRM reader drops it (no echo). The MES source position is stored in
`<schema>.state` in the same transaction as the rows (exactly once).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from bridge.model import Side
from bridge.schema import Family, TableInfo
from connectors.postgres import introspect

_TZ_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO"
_COPY_MIN_ROWS = 16  # from this many rows an insert goes through COPY (below: one pipelined INSERT)
_QUERY_CACHE_SIZE = 1024


def _ident(qualified: str) -> sql.Composable:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def _cols(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class PgTarget:
    side = Side.CRM

    def __init__(self, conninfo: str, password: str | None, state_schema: str, origin: str,
                 connect_timeout: float = 10.0):
        self._conninfo = conninfo
        self._password = password
        self._schema = state_schema
        self._origin = origin
        self._timeout = connect_timeout
        self.conn: psycopg.Connection | None = None
        self._tables: dict[str, TableInfo] = {}
        self._sp = 0
        self._queries: dict[tuple, bytes] = {}  # composed statements by shape
        self._copyable: dict[str, bool] = {}

    # --- connection -----------------------------------------------------------------------
    def connect(self) -> None:
        kwargs: dict[str, Any] = {"options": _TZ_OPTIONS, "connect_timeout": int(self._timeout)}
        if self._password is not None:
            kwargs["password"] = self._password
        self.conn = psycopg.connect(self._conninfo, autocommit=False, **kwargs)
        # json/jsonb read back as raw text; bridge.types parses it (numbers as Decimal)
        self.conn.adapters.register_loader("json", TextLoader)
        self.conn.adapters.register_loader("jsonb", TextLoader)
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_replication_origin_session_setup(%s)", (self._origin,))
        self.conn.commit()

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.rollback()
            except psycopg.Error:
                pass
            self.conn.close()
        self.conn = None

    def table_info(self, table: str) -> TableInfo | None:
        if table not in self._tables:
            assert self.conn is not None
            info = introspect.load_table(self.conn, table)
            self.conn.rollback()
            if info is None:
                return None
            self._tables[table] = info
        return self._tables[table]

    # --- transaction ----------------------------------------------------------------------
    def begin(self) -> None:
        self._sp = 0  # psycopg opens the transaction at the first statement

    def commit(self) -> None:
        assert self.conn is not None
        self.conn.commit()

    def rollback(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.rollback()

    def savepoint(self) -> None:
        self._sp += 1
        self._exec(sql.SQL("SAVEPOINT {}").format(sql.Identifier(f"sp{self._sp}")))

    def rollback_savepoint(self) -> None:
        self._exec(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(f"sp{self._sp}")))
        self.release_savepoint()

    def release_savepoint(self) -> None:
        self._exec(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(f"sp{self._sp}")))
        self._sp -= 1

    def _exec(self, query: sql.Composable, params: Any = None) -> psycopg.Cursor:
        assert self.conn is not None
        cur = self.conn.cursor()
        cur.execute(query, params)
        return cur

    # --- state ----------------------------------------------------------------------------
    def _state(self, name: str) -> sql.Composable:
        return sql.Identifier(self._schema, name)

    def read_state(self, direction: str) -> str | None:
        cur = self._exec(
            sql.SQL("SELECT position FROM {} WHERE direction = %s").format(self._state("state")),
            (direction,),
        )
        row = cur.fetchone()
        self.conn.commit()  # type: ignore[union-attr]
        return row[0] if row else None

    def write_state(self, direction: str, position: str) -> None:
        self._exec(
            sql.SQL(
                "INSERT INTO {} (direction, position, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (direction) DO UPDATE SET position = EXCLUDED.position, "
                "updated_at = EXCLUDED.updated_at"
            ).format(self._state("state")),
            (direction, position),
        )

    # --- rows -----------------------------------------------------------------------------
    def fetch_for_update(self, table: str, columns: list[str], key: list[str],
                         keys: list[tuple]) -> dict[tuple, dict]:
        if not keys:
            return {}
        out: dict[tuple, dict] = {}
        nkey = len(key)
        idx = [columns.index(k) for k in key]
        by_array = self._int_key(table, key)
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            if by_array:  # one short statement whatever the batch size: parsed and planned once
                query = self._fetch_any_query(table, columns, key[0])
                params: list = [[k[0] for k in chunk]]
            else:
                query = self._fetch_query(table, columns, key, len(chunk))
                params = [v for k in chunk for v in k] if nkey > 1 else [k[0] for k in chunk]
            cur = self._exec(query, params)
            for row in cur.fetchall():
                out[tuple(row[i] for i in idx)] = dict(zip(columns, row))
        return out

    def _int_key(self, table: str, key: list[str]) -> bool:
        """A single integer key column: its keys can be sent as one array parameter (an
        integer array compares with any integer column through the index)."""
        if len(key) != 1:
            return False
        info = self._tables.get(table)
        ci = info.columns.get(key[0]) if info is not None else None
        return ci is not None and ci.family is Family.INT and not ci.bool_like

    def _fetch_any_query(self, table: str, columns: list[str], key: str) -> bytes:
        shape = ("fetch_any", table, tuple(columns), key)
        query = self._queries.get(shape)
        if query is None:
            composed = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s) FOR UPDATE").format(
                _cols(columns), _ident(table), sql.Identifier(key))
            query = self._remember(shape, composed)
        return query

    def _fetch_query(self, table: str, columns: list[str], key: list[str], n: int) -> bytes:
        """The SELECT ... FOR UPDATE of `n` keys, composed once per shape (the same text
        also lets psycopg prepare it on the server after a few runs)."""
        shape = ("fetch", table, tuple(columns), tuple(key), n)
        query = self._queries.get(shape)
        if query is None:
            one = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(key)))
            composed = sql.SQL("SELECT {} FROM {} WHERE ({}) IN ({}) FOR UPDATE").format(
                _cols(columns), _ident(table), _cols(key), sql.SQL(", ").join([one] * n))
            query = self._remember(shape, composed)
        return query

    def _remember(self, shape: tuple, composed: sql.Composable) -> bytes:
        if len(self._queries) >= _QUERY_CACHE_SIZE:
            self._queries.clear()
        query = self._queries[shape] = composed.as_bytes(self.conn)
        return query

    def _copy_ok(self, table: str) -> bool:
        """COPY writes exactly what INSERT would only into a plain or partitioned table
        without rewrite rules (COPY fires triggers and checks constraints, but ignores rules)."""
        ok = self._copyable.get(table)
        if ok is None:
            cur = self._exec(sql.SQL(
                "SELECT c.relkind IN ('r', 'p') AND NOT EXISTS (SELECT 1 FROM pg_rewrite r "
                "WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') "
                "FROM pg_class c WHERE c.oid = %s::regclass"), (_ident(table).as_string(self.conn),))
            row = cur.fetchone()
            ok = self._copyable[table] = bool(row and row[0])
        return ok

    def insert_rows(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if len(rows) >= _COPY_MIN_ROWS and self._copy_ok(table):
            shape = ("copy", table, tuple(columns))
            query = self._queries.get(shape) or self._remember(shape, sql.SQL(
                "COPY {} ({}) FROM STDIN").format(_ident(table), _cols(columns)))
            with self.conn.cursor() as cur, cur.copy(query) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
            return
        shape = ("insert", table, tuple(columns))
        query = self._queries.get(shape) or self._remember(shape, sql.SQL(
            "INSERT INTO {} ({}) VALUES ({})").format(
            _ident(table), _cols(columns), sql.SQL(", ").join([sql.Placeholder()] * len(columns))))
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, rows)

    def update_rows(self, table: str, set_columns: list[str], key: list[str],
                    rows: list[tuple]) -> int:
        query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            _ident(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in set_columns),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key),
        )
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, rows)
            return cur.rowcount

    def delete_rows(self, table: str, key: list[str], keys: list[tuple]) -> int:
        query = sql.SQL("DELETE FROM {} WHERE {}").format(
            _ident(table),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key),
        )
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, keys)
            return cur.rowcount

    def delete_all(self, table: str) -> int:
        return self._exec(sql.SQL("DELETE FROM {}").format(_ident(table))).rowcount

    # --- conflicts ------------------------------------------------------------------------
    def supports_commit_times(self) -> bool:
        """True when row commit times are available (track_commit_timestamp = on)."""
        cur = self._exec(sql.SQL("SELECT current_setting('track_commit_timestamp')"))
        on = cur.fetchone()[0] == "on"  # type: ignore[index]
        self.conn.commit()  # type: ignore[union-attr]
        return on

    def commit_times(self, table: str, key: list[str], keys: list[tuple]) -> dict[tuple, Any]:
        """Commit time of the transaction that last wrote each row (bridge writes carry the
        source's commit time, see set_commit_time)."""
        if not keys:
            return {}
        one = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(key)))
        query = sql.SQL("SELECT {}, pg_xact_commit_timestamp(xmin) FROM {} WHERE ({}) IN ({})").format(
            _cols(key), _ident(table), _cols(key), sql.SQL(", ").join([one] * len(keys)))
        cur = self._exec(query, [v for k in keys for v in k])
        return {tuple(r[:-1]): r[-1] for r in cur.fetchall()}

    def set_commit_time(self, ts: Any) -> None:
        """Make this transaction's commit time the source's (replication-origin session)."""
        self._exec(sql.SQL("SELECT pg_replication_origin_xact_setup('0/0', %s)"), (ts,))

    def parked_keys(self, tables: list[str]) -> list[tuple[str, dict]]:
        cur = self._exec(
            sql.SQL("SELECT target_table, row_key FROM {} WHERE status IN ('parked', 'queued') "
                    "AND target_table = ANY(%s)").format(self._state("conflicts")), (tables,))
        return [(t, k if isinstance(k, dict) else json.loads(k)) for t, k in cur.fetchall()]

    def update_if(self, table: str, values: dict[str, Any], key: dict[str, Any],
                  expect: dict[str, Any]) -> int:
        """UPDATE only if each `expect` column still holds the given value (compare-and-set)."""
        where = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key] + [
            sql.SQL("{} IS NOT DISTINCT FROM %s").format(sql.Identifier(c)) for c in expect]
        query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            _ident(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values),
            sql.SQL(" AND ").join(where))
        return self._exec(query, [*values.values(), *key.values(), *expect.values()]).rowcount

    # --- bookkeeping ----------------------------------------------------------------------
    def _insert(self, name: str, record: dict, returning: bool = False) -> int | None:
        cols = list(record)
        values = [
            json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, (dict, list)) else v
            for v in record.values()
        ]
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._state(name), _cols(cols), sql.SQL(", ").join([sql.Placeholder()] * len(cols))
        )
        if returning:
            query = query + sql.SQL(" RETURNING id")
        cur = self._exec(query, values)
        return cur.fetchone()[0] if returning else None  # type: ignore[index]

    def insert_dead_letter(self, record: dict) -> None:
        self._insert("dead_letters", record)

    def insert_audit(self, record: dict) -> None:
        self._insert("audit", record)

    def insert_audits(self, records: list[dict]) -> None:
        """Several audit rows (same keys) with one executemany (pipelined: one round trip)."""
        if not records:
            return
        cols = list(records[0])
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._state("audit"), _cols(cols), sql.SQL(", ").join([sql.Placeholder()] * len(cols)))
        rows = [[json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                 for v in r.values()] for r in records]
        with self.conn.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(query, rows)

    def insert_conflict(self, record: dict) -> int:
        return int(self._insert("conflicts", record, returning=True) or 0)
