"""Bulk writes of chunk rows, on the connection of the direction's target writer (inside its
open transaction, so the rows commit with the stream's position and `backfill_progress`).

The fast path (`bridge.backfill.target.ChunkWriter._insert_fresh`): `holds_any` probes the
chunk's key range with a plain read; when the target holds nothing there, `insert_all`
writes every row in one COPY / multi-row plain INSERT, with no lock read, in a savepoint.
A duplicate key (`is_duplicate`: a row inserted meanwhile, or another unique value) makes
it fail whole and roll back; the chunk then takes the general path below.

General path, per chunk: `lock_keys` finds (and locks) the chunk's keys the target already holds, reading
keys only; those rows go through the conflict rules (`bridge.backfill.driver`). The others go
to `insert_new`:

* PostgreSQL: COPY straight into the table (in a savepoint). PostgreSQL does not lock absent
  keys, so another session may have inserted one meanwhile: then the COPY fails with a unique
  violation, is rolled back to the savepoint, and the rows go through a temporary staging
  table and `INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING <key>`; the keys that were
  not inserted come back as "already present".
* MySQL/MariaDB: multi-row `INSERT ... ON DUPLICATE KEY UPDATE <key> = <key>` (statements up
  to ~1 MB each, literals rendered by the MES writer's `sql_literal`). The no-op update makes a duplicate cost nothing and
  count 0 affected rows; if fewer rows were inserted than sent, the target rows are compared
  with the chunk's to find those that were already there. (In REPEATABLE READ the key lock
  also locks the gaps, so this is a safety net.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
import pymysql
from psycopg import sql

from bridge.backfill.window import NormKey, norm_key
from bridge.schema import ColumnInfo, Family
from bridge.backfill.source import _mysql_keyset, _mysql_keyset_params
from connectors.mysql.sqltext import column_list, placeholders, quote
from connectors.mysql.writer import sql_literal

# key families whose Python values psycopg sends as an array PostgreSQL compares with `= ANY`
_ANY_FAMILIES = frozenset({Family.INT, Family.TEXT, Family.DECIMAL, Family.DATE,
                           Family.TIMESTAMP, Family.TIMESTAMPTZ})
_UNIQUE_VIOLATION = "23505"
_MYSQL_DUPLICATE = frozenset({1062, 1586})  # ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME
# One multi-row INSERT stays below ~1 MB of UTF-8 (PyMySQL's own statement limit for
# executemany; far below the server's max_allowed_packet default).
_MAX_STATEMENT_CHARS = 250_000


def _mysql_table(table: str) -> str:
    db, _, name = table.partition(".")
    return f"{quote(db)}.{quote(name)}"


class ChunkSink(Protocol):
    def lock_keys(self, table: str, key: Sequence[str], keys: Sequence[tuple],
                  key_infos: Sequence[ColumnInfo]) -> set[NormKey] | None:
        """Lock the target rows of `keys`; return the normal forms of the keys present, or
        None when this sink cannot check keys alone (the caller fetches whole rows)."""
        ...

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str],
                   rows: Sequence[tuple], infos: Sequence[ColumnInfo]) -> list[int]:
        """Insert `rows` (`infos`: the target ColumnInfo of each of `columns`); return the
        indexes of rows NOT inserted because the target already holds their key (or, rarely,
        another unique value of theirs)."""
        ...

    def holds_any(self, table: str, key: Sequence[str], low: tuple, high: tuple) -> bool:
        """Does the target hold a row whose key lies in low..high (inclusive)? A plain read,
        no lock: it only decides whether `insert_all` is worth trying."""
        ...

    def insert_all(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Insert every row, or raise: a duplicate key raises an error `is_duplicate` knows
        (the caller rolls back to its savepoint)."""
        ...

    def is_duplicate(self, exc: BaseException) -> bool:
        """Is `exc` a unique violation raised by `insert_all`?"""
        ...


def open_sink(target: Any) -> ChunkSink:
    from bridge.model import Side

    return PgChunkSink(target.conn) if target.side is Side.CRM else MysqlChunkSink(target.conn)


def _key_idx(columns: Sequence[str], key: Sequence[str]) -> list[int]:
    return [list(columns).index(k) for k in key]


def _pg_table(table: str) -> sql.Identifier:
    schema, _, name = table.partition(".")
    return sql.Identifier(schema, name)


def _pg_range(key: Sequence[str], op: str) -> sql.Composable:
    """`(k1, k2) >= (%s, %s)`: a row comparison the key's btree index answers."""
    cols = sql.SQL(", ").join(map(sql.Identifier, key))
    ph = sql.SQL(", ").join([sql.Placeholder()] * len(key))
    return sql.SQL("({}) {} ({})").format(cols, sql.SQL(op), ph)


class PgChunkSink:
    def __init__(self, conn: Any):
        self.conn = conn
        self._sp = 0

    def lock_keys(self, table: str, key: Sequence[str], keys: Sequence[tuple],
                  key_infos: Sequence[ColumnInfo]) -> set[NormKey] | None:
        if len(key) != 1 or key_infos[0].family not in _ANY_FAMILIES:
            return None
        if not keys:
            return set()
        k = sql.Identifier(key[0])
        query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s) FOR UPDATE").format(
            k, _pg_table(table), k)
        with self.conn.cursor() as cur:
            cur.execute(query, ([v[0] for v in keys],))
            return {norm_key(r, key_infos) for r in cur.fetchall()}

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str],
                   rows: Sequence[tuple], infos: Sequence[ColumnInfo]) -> list[int]:
        if not rows:
            return []
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        name = sql.Identifier(f"bridge_backfill_copy_{self._next()}")
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SAVEPOINT {}").format(name))
            try:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_pg_table(table), cols)) as cp:
                    for row in rows:
                        cp.write_row(row)
            except psycopg.errors.UniqueViolation:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
                cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
                return self._merge(cur, table, columns, key, rows, infos)
            except BaseException:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
                cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
                raise
            cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
        return []

    def _next(self) -> int:
        self._sp += 1
        return self._sp

    def holds_any(self, table: str, key: Sequence[str], low: tuple, high: tuple) -> bool:
        query = sql.SQL("SELECT 1 FROM {} WHERE {} AND {} LIMIT 1").format(
            _pg_table(table), _pg_range(key, ">="), _pg_range(key, "<="))
        with self.conn.cursor() as cur:
            return cur.execute(query, [*low, *high]).fetchone() is not None

    def insert_all(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        with self.conn.cursor() as cur, \
                cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_pg_table(table), cols)) as cp:
            write = cp.write_row
            for row in rows:
                write(row)

    def is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    @staticmethod
    def _merge(cur: Any, table: str, columns: Sequence[str], key: Sequence[str],
               rows: Sequence[tuple], infos: Sequence[ColumnInfo]) -> list[int]:
        """COPY into a staging table, then insert what is still absent."""
        digest = hashlib.sha1(f"{table}|{','.join(columns)}".encode()).hexdigest()[:12]
        stage = sql.Identifier(f"bridge_backfill_{digest}")
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, key))
        # typed like the target's columns, without its constraints; dropped at commit
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
        ).format(stage, cols, _pg_table(table)))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as cp:
            for row in rows:
                cp.write_row(row)
        cur.execute(sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING RETURNING {}"
        ).format(_pg_table(table), cols, cols, stage, keys))
        idx = _key_idx(columns, key)
        key_infos = [infos[j] for j in idx]
        inserted = {norm_key(r, key_infos) for r in cur.fetchall()}
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        return [i for i, r in enumerate(rows)
                if norm_key([r[j] for j in idx], key_infos) not in inserted]


class MysqlChunkSink:
    def __init__(self, conn: Any):
        self.conn = conn

    def lock_keys(self, table: str, key: Sequence[str], keys: Sequence[tuple],
                  key_infos: Sequence[ColumnInfo]) -> set[NormKey] | None:
        if not keys:
            return set()
        target = _mysql_table(table)
        one = placeholders(len(key))
        found: set[NormKey] = set()
        with self.conn.cursor() as cur:
            for start in range(0, len(keys), 5000):
                part = keys[start:start + 5000]
                cur.execute(
                    f"SELECT {column_list(list(key))} FROM {target} "
                    f"WHERE ({column_list(list(key))}) IN ({', '.join([one] * len(part))}) FOR UPDATE",
                    [v for k in part for v in k])
                found |= {norm_key(r, key_infos) for r in cur.fetchall()}
        return found

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str],
                   rows: Sequence[tuple], infos: Sequence[ColumnInfo]) -> list[int]:
        if not rows:
            return []
        target = _mysql_table(table)
        k0 = quote(key[0])
        affected = self._insert(target, columns, rows, f" ON DUPLICATE KEY UPDATE {k0} = {k0}")
        if affected >= len(rows):
            return []
        return self._present(target, columns, key, rows, infos)

    def holds_any(self, table: str, key: Sequence[str], low: tuple, high: tuple) -> bool:
        query = (f"SELECT 1 FROM {_mysql_table(table)} WHERE {_mysql_keyset(key, '>=')} "
                 f"AND {_mysql_keyset(key, '<=')} LIMIT 1")
        with self.conn.cursor() as cur:
            cur.execute(query, _mysql_keyset_params(low, ">=") + _mysql_keyset_params(high, "<="))
            return cur.fetchone() is not None

    def insert_all(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        self._insert(_mysql_table(table), columns, rows, "")

    def is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.IntegrityError) and bool(exc.args) \
            and exc.args[0] in _MYSQL_DUPLICATE

    def _insert(self, target: str, columns: Sequence[str], rows: Sequence[tuple],
                suffix: str) -> int:
        """Multi-row INSERTs of at most ~`_MAX_STATEMENT_CHARS` each, literals rendered as the
        MES writer renders them (`sql_literal`: PyMySQL's text, without its per-value
        dispatch); the affected-row count summed."""
        prefix = f"INSERT INTO {target} ({column_list(list(columns))}) VALUES "
        literal = sql_literal(self.conn)
        affected = 0
        with self.conn.cursor() as cur:
            parts: list[str] = []
            size = 0
            for row in rows:
                text = "(" + ",".join(map(literal, row)) + ")"
                if parts and size + len(text) > _MAX_STATEMENT_CHARS:
                    affected += cur.execute(prefix + ",".join(parts) + suffix) or 0
                    parts, size = [], 0
                parts.append(text)
                size += len(text) + 1
            if parts:
                affected += cur.execute(prefix + ",".join(parts) + suffix) or 0
        return affected

    def _present(self, target: str, columns: Sequence[str], key: Sequence[str],
                 rows: Sequence[tuple], infos: Sequence[ColumnInfo]) -> list[int]:
        """Indexes of rows whose target row differs from them (they were already there)."""
        idx = _key_idx(columns, key)
        all_infos = list(infos)
        key_infos = [all_infos[j] for j in idx]
        found: dict[tuple, tuple] = {}
        one = placeholders(len(key))
        with self.conn.cursor() as cur:
            for start in range(0, len(rows), 1000):
                part = rows[start:start + 1000]
                cur.execute(
                    f"SELECT {column_list(list(columns))} FROM {target} "
                    f"WHERE ({column_list(list(key))}) IN ({', '.join([one] * len(part))})",
                    [r[j] for r in part for j in idx])
                for r in cur.fetchall():
                    found[norm_key([r[j] for j in idx], key_infos)] = r
        out = []
        for i, r in enumerate(rows):
            current = found.get(norm_key([r[j] for j in idx], key_infos))
            if current is None or norm_key(current, all_infos) != norm_key(r, all_infos):
                out.append(i)
        return out
