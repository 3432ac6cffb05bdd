"""The source side of a backfill: watermark writes and lock-free chunk reads.

Each source opens its own plain SQL connections (never the replication connection, never the
origin-tagged writer): the watermark rows must appear in the change stream. Chunks are read
by primary key with keyset pagination (`WHERE key > last ORDER BY key LIMIT n`): bounded
memory, an index range scan per chunk, no LOCK TABLE, no FLUSH TABLES WITH READ LOCK.

Values come out as the change stream's readers produce them, so chunks and streamed changes
go through the same conversion: PostgreSQL json/jsonb as text and types the pgoutput decoder
does not load (intervals, arrays, domains...) as text; on MySQL zero/invalid dates become
`InvalidValue` (dead-lettered like the binlog reader's), BIT(n) a string of binary digits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, date, datetime
from typing import Any, Protocol

import psycopg
import pymysql
import pymysql.converters
import pymysql.cursors
import structlog
from psycopg import pq, sql
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.postgres import adapters as _pg_adapters
from psycopg.types.string import TextLoader
from pymysql.constants import FIELD_TYPE

from bridge.backfill import mysqlrows
from bridge.backfill.model import BackfillError
from bridge.backfill.names import MARKS
from bridge.config import Config
from bridge.connect import mysql_connect, pg_connect
from bridge.model import BinlogPosition, InvalidValue, PgPosition, Position, Side
from bridge.schema import ColumnInfo, Family, TableInfo
from connectors.mysql import introspect as mysql_introspect
from connectors.mysql.sqltext import column_list, quote
from connectors.postgres import introspect as pg_introspect


@dataclass(frozen=True)
class ReadPlan:
    """How to read one table's chunks: mapped source columns (key columns included) in order."""

    table: str  # "schema.table" (PG) / "database.table" (MySQL)
    columns: tuple[str, ...]
    key: tuple[str, ...]
    infos: tuple[ColumnInfo, ...] = field(repr=False)

    @cached_property
    def key_index(self) -> list[int]:
        return [self.columns.index(k) for k in self.key]

    @cached_property
    def key_infos(self) -> tuple[ColumnInfo, ...]:
        return tuple(self.infos[i] for i in self.key_index)


@dataclass
class ChunkRead:
    rows: list[tuple]  # the key range's rows (ordered by key), then the re-read keys' rows
    range_rows: int  # how many of `rows` came from the key range
    read_at: datetime  # when the SELECT ran (UTC): the chunk rows' "commit time"
    in_progress: frozenset[int] = frozenset()  # PG: xids (mod 2^32) the snapshot did not see


class ChunkSource(Protocol):
    side: Side

    def check(self) -> None: ...
    def table_info(self, table: str) -> TableInfo | None: ...
    def write_mark(self, direction: str, mark: str, table: str) -> Position: ...
    def read_chunk(self, plan: ReadPlan, after: Sequence[Any] | None, inclusive: bool,
                   upto: Sequence[Any] | None, limit: int,
                   keys: Sequence[Sequence[Any]] = ()) -> ChunkRead: ...
    def estimate(self, plan: ReadPlan, low: Sequence[Any] | None,
                 high: Sequence[Any] | None) -> int: ...
    def close(self) -> None: ...


def open_source(config: Config, side: Side) -> ChunkSource:
    return PgChunkSource(config) if side is Side.CRM else MysqlChunkSource(config)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- PostgreSQL ----------------------------------------------------------------------------

_TEMPORAL_OIDS = {Family.TIMESTAMP: 1114, Family.TIMESTAMPTZ: 1184, Family.DATE: 1082, Family.TIME: 1083}
_PG_LOAD_ERRORS = (psycopg.DataError, ValueError, ArithmeticError)


def _pg_ident(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def _pg_keyset(key: Sequence[str], op: str) -> sql.Composable:
    """`(k1, k2) > (%s, %s)` (row comparison uses the primary key index)."""
    cols = sql.SQL(", ").join(map(sql.Identifier, key))
    ph = sql.SQL(", ").join([sql.Placeholder()] * len(key))
    return sql.SQL("({}) {} ({})").format(cols, sql.SQL(op), ph)


class PgChunkSource:
    side = Side.CRM

    def __init__(self, config: Config):
        self.config = config
        self.marks_table = sql.Identifier(config.state_schema, MARKS)
        self.marks = pg_connect(config, autocommit=True)
        self.reader = pg_connect(config, autocommit=False)
        self.reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.reader.read_only = True
        # as the pgoutput decoder: json/jsonb stay JSON text (bridge.types parses it)
        self.reader.adapters.register_loader("json", TextLoader)
        self.reader.adapters.register_loader("jsonb", TextLoader)
        self._text = Transformer(AdaptersMap(_pg_adapters))

    def check(self) -> None:
        """The watermark table must be in the publication, or the marks never arrive."""
        row = self.marks.execute(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s "
            "AND tablename = %s",
            (self.config.publication_name, self.config.state_schema, MARKS)).fetchone()
        if row is None:
            raise BackfillError(
                f"{self.config.state_schema}.{MARKS} is not in publication "
                f"{self.config.publication_name}: run `bridge setup` (or restart `bridge run`, "
                "which runs it) so the backfill's watermarks reach the change stream")

    def table_info(self, table: str) -> TableInfo | None:
        try:
            return pg_introspect.load_table(self.reader, table)
        finally:
            self.reader.rollback()

    def write_mark(self, direction: str, mark: str, table: str) -> Position:
        """Write a watermark (committed at once); returns a WAL position after its commit."""
        self.marks.execute(
            sql.SQL("INSERT INTO {} (direction, mark, table_name, updated_at) "
                    "VALUES (%s, %s, %s, now()) ON CONFLICT (direction) DO UPDATE SET "
                    "mark = EXCLUDED.mark, table_name = EXCLUDED.table_name, "
                    "updated_at = EXCLUDED.updated_at").format(self.marks_table),
            (direction, mark, table))
        lsn = self.marks.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        return PgPosition.parse(lsn)

    def _select(self, plan: ReadPlan, as_text: frozenset[str]) -> sql.Composable:
        exprs = []
        for col, ci in zip(plan.columns, plan.infos):
            ident = sql.Identifier(col)
            exprs.append(sql.SQL("{}::text").format(ident) if col in as_text else ident)
        return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), _pg_ident(plan.table))

    def read_chunk(self, plan: ReadPlan, after: Sequence[Any] | None, inclusive: bool,
                   upto: Sequence[Any] | None, limit: int,
                   keys: Sequence[Sequence[Any]] = ()) -> ChunkRead:
        other = frozenset(c for c, ci in zip(plan.columns, plan.infos) if ci.family is Family.OTHER)
        try:
            return self._read(plan, other, after, inclusive, upto, limit, keys)
        except _PG_LOAD_ERRORS:
            # a value psycopg cannot load (timestamp 'infinity', year 10000...): read the
            # temporal columns as text and turn what does not load into InvalidValue
            self.reader.rollback()
            temporal = frozenset(c for c, ci in zip(plan.columns, plan.infos)
                                 if ci.family in _TEMPORAL_OIDS)
            read = self._read(plan, other | temporal, after, inclusive, upto, limit, keys)
            read.rows = [self._load_temporal(plan, r, temporal) for r in read.rows]
            return read

    def _read(self, plan: ReadPlan, as_text: frozenset[str], after: Sequence[Any] | None,
              inclusive: bool, upto: Sequence[Any] | None, limit: int,
              keys: Sequence[Sequence[Any]]) -> ChunkRead:
        base = self._select(plan, as_text)
        order = sql.SQL(", ").join(map(sql.Identifier, plan.key))
        where: list[sql.Composable] = []
        params: list[Any] = []
        if after is not None:
            where.append(_pg_keyset(plan.key, ">=" if inclusive else ">"))
            params += list(after)
        if upto is not None:
            where.append(_pg_keyset(plan.key, "<="))
            params += list(upto)
        query = base
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query += sql.SQL(" ORDER BY {} LIMIT {}").format(order, sql.Literal(int(limit)))
        try:
            cur = self.reader.cursor()
            # one snapshot for the check and the rows (REPEATABLE READ, READ ONLY)
            snap, read_at = cur.execute(
                "SELECT pg_current_snapshot()::text, statement_timestamp()").fetchone()
            rows = cur.execute(query, params).fetchall() if limit > 0 else []
            range_rows = len(rows)
            if keys:
                rows += self._by_keys(cur, base, plan.key, keys)
            self.reader.commit()
        except BaseException:
            self.reader.rollback()
            raise
        return ChunkRead(rows, range_rows, read_at, _in_progress(snap))

    @staticmethod
    def _by_keys(cur: psycopg.Cursor, base: sql.Composable, key: Sequence[str],
                 keys: Sequence[Sequence[Any]]) -> list[tuple]:
        one = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(key)))
        out: list[tuple] = []
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            query = base + sql.SQL(" WHERE ({}) IN ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, key)), sql.SQL(", ").join([one] * len(part)))
            out += cur.execute(query, [v for k in part for v in k]).fetchall()
        return out

    def _load_temporal(self, plan: ReadPlan, row: tuple, temporal: frozenset[str]) -> tuple:
        out = list(row)
        for i, (col, ci) in enumerate(zip(plan.columns, plan.infos)):
            if col in temporal and out[i] is not None:
                raw = out[i].encode()
                try:
                    out[i] = self._text.get_loader(_TEMPORAL_OIDS[ci.family], pq.Format.TEXT).load(raw)
                except _PG_LOAD_ERRORS as exc:
                    out[i] = InvalidValue(out[i], f"{type(exc).__name__}: {exc}")
        return tuple(out)

    def estimate(self, plan: ReadPlan, low: Sequence[Any] | None,
                 high: Sequence[Any] | None) -> int:
        schema, _, name = plan.table.partition(".")
        try:
            if low is None and high is None:
                row = self.reader.execute(
                    "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                    (schema, name)).fetchone()
                if row and row[0] > 0:
                    return int(row[0])
            query = sql.SQL("SELECT count(*) FROM {}").format(_pg_ident(plan.table))
            where, params = [], []
            if low is not None:
                where.append(_pg_keyset(plan.key, ">="))
                params += list(low)
            if high is not None:
                where.append(_pg_keyset(plan.key, "<="))
                params += list(high)
            if where:
                query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
            return int(self.reader.execute(query, params).fetchone()[0])
        finally:
            self.reader.rollback()

    def close(self) -> None:
        for conn in (self.marks, self.reader):
            try:
                conn.close()
            except psycopg.Error:
                pass


def _in_progress(snapshot: str) -> frozenset[int]:
    """xids in progress for a `pg_current_snapshot()` text 'xmin:xmax:xip,...', as the 32-bit
    xids pgoutput reports."""
    parts = snapshot.split(":")
    if len(parts) < 3 or not parts[2]:
        return frozenset()
    return frozenset(int(x) & 0xFFFFFFFF for x in parts[2].split(","))


# --- MySQL / MariaDB ---------------------------------------------------------------------------

_BIT_RE = re.compile(r"^bit\((\d+)\)", re.IGNORECASE)
_DATE_FAMILIES = (Family.DATE, Family.TIMESTAMP, Family.TIMESTAMPTZ)
_ZERO_DATE = "zero or invalid date (read by the backfill's SELECT)"
_ER_PARSE = 1064
log = structlog.get_logger("bridge.backfill")


def _mysql_keyset(key: Sequence[str], op: str) -> str:
    """`k1 > %s OR (k1 = %s AND k2 > %s)`: the expanded form MariaDB's range optimizer uses
    (it does not range-scan row comparisons). `op` is '>', '>=' or '<='; parameters follow
    the order of `_mysql_keyset_params`."""
    strict = op[0]
    parts = []
    for i in range(len(key)):
        eqs = [f"{quote(k)} = %s" for k in key[:i]]
        last = f"{quote(key[i])} {strict} %s"
        parts.append("(" + " AND ".join([*eqs, last]) + ")")
    if op.endswith("="):
        parts.append("(" + " AND ".join(f"{quote(k)} = %s" for k in key) + ")")
    return "(" + " OR ".join(parts) + ")"


def _mysql_keyset_params(values: Sequence[Any], op: str) -> list[Any]:
    out: list[Any] = []
    for i in range(len(values)):
        out += list(values[: i + 1])
    if op.endswith("="):
        out += list(values)
    return out


class MysqlChunkSource:
    side = Side.MES

    def __init__(self, config: Config):
        self.config = config
        self.database = str(config.mes.parts()["database"])
        self.marks_table = quote(f"{config.state_prefix}{MARKS}")
        self.conn = mysql_connect(config, autocommit=True)
        self._decoders, self._dates_decoded = _fast_decoders(self.conn.decoders)
        self._fixes: dict[tuple[str, bool], list[tuple[int, Any]]] = {}

    def _query(self, query: str, params: Any = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def _read_rows(self, query: str, params: Any) -> list[tuple]:
        """A chunk SELECT, read as PyMySQL would, at about a third of its cost: its date/time
        decoders swapped for C-speed ones that give the same values (`_FAST_DECODERS`), and
        the row packets framed and split by `bridge.backfill.mysqlrows`. Unbuffered: rows
        are decoded as they arrive."""
        conn = self.conn
        saved = conn.decoders
        conn.decoders = self._decoders
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(query, params)
                result = cur._result
                if mysqlrows.FITS and result is not None and result.converters is not None \
                        and result.unbuffered_active:
                    return mysqlrows.read_rows(conn, result, mysqlrows.row_parser(result.converters))
                return list(cur.fetchall())
        finally:
            conn.decoders = saved

    def check(self) -> None:
        """A SELECT after the LOW mark's commit must see every transaction logged before it:
        the engine must commit in binlog order (MariaDB always does; MySQL needs
        binlog_order_commits=ON, its default)."""
        if mysql_introspect.is_mariadb(self.conn):
            return
        row = self._query("SELECT @@GLOBAL.binlog_order_commits")
        if row and not int(row[0][0]):
            raise BackfillError(
                "binlog_order_commits is OFF on the MES server: transactions may become visible "
                "in another order than the binlog's, so a chunk could miss a streamed change - "
                "fix: SET GLOBAL binlog_order_commits = ON")

    def table_info(self, table: str) -> TableInfo | None:
        db, _, name = table.partition(".")
        return mysql_introspect.load_table(self.conn, db, name)

    def write_mark(self, direction: str, mark: str, table: str) -> Position:
        now = _utcnow().replace(tzinfo=None)
        self._query(
            f"INSERT INTO {self.marks_table} (direction, mark, table_name, updated_at) "
            "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE mark = VALUES(mark), "
            "table_name = VALUES(table_name), updated_at = VALUES(updated_at)",
            (direction, mark, table, now))
        return self._binlog_end()

    def _binlog_end(self) -> BinlogPosition:
        """The binlog end (no GTID: computing it scans the binlog file)."""
        try:
            rows = self._query("SHOW BINARY LOG STATUS")  # MariaDB >= 10.5.2, MySQL >= 8.2
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != _ER_PARSE:
                raise
            rows = self._query("SHOW MASTER STATUS")
        if not rows:
            raise BackfillError("binary logging is off on the MES server")
        return BinlogPosition(str(rows[0][0]), int(rows[0][1]))

    def _table(self, plan: ReadPlan) -> str:
        db, _, name = plan.table.partition(".")
        return f"{quote(db)}.{quote(name)}"

    def read_chunk(self, plan: ReadPlan, after: Sequence[Any] | None, inclusive: bool,
                   upto: Sequence[Any] | None, limit: int,
                   keys: Sequence[Sequence[Any]] = ()) -> ChunkRead:
        base = f"SELECT {column_list(plan.columns)} FROM {self._table(plan)}"
        where, params = [], []
        if after is not None:
            op = ">=" if inclusive else ">"
            where.append(_mysql_keyset(plan.key, op))
            params += _mysql_keyset_params(after, op)
        if upto is not None:
            where.append(_mysql_keyset(plan.key, "<="))
            params += _mysql_keyset_params(upto, "<=")
        query = base + (" WHERE " + " AND ".join(where) if where else "")
        query += f" ORDER BY {column_list(plan.key)} LIMIT {int(limit)}"
        read_at = _utcnow()
        rows = self._read_rows(query, params) if limit > 0 else []
        range_rows = len(rows)
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            one = "(" + ", ".join(["%s"] * len(plan.key)) + ")"
            rows += self._read_rows(
                f"{base} WHERE ({column_list(plan.key)}) IN ({', '.join([one] * len(part))})",
                [v for k in part for v in k])
        return ChunkRead(self._fix(plan, rows, dates_decoded=True), range_rows, read_at)

    def _fix(self, plan: ReadPlan, rows: list[tuple], dates_decoded: bool = False) -> list[tuple]:
        """Values as the binlog reader yields them (zero dates, BIT). `dates_decoded`: the
        rows come from `_read_rows`, whose date decoders already did the zero dates."""
        skip_dates = dates_decoded and self._dates_decoded
        fixes = self._fixes.get((plan.table, skip_dates))
        if fixes is None:
            fixes = []
            for i, ci in enumerate(plan.infos):
                if ci.family in _DATE_FAMILIES:
                    if not skip_dates:
                        fixes.append((i, _invalid_date))
                elif (m := _BIT_RE.match(ci.db_type)) is not None:
                    width = int(m.group(1))
                    fixes.append((i, lambda v, w=width: _bits(v, w)))
            self._fixes[(plan.table, skip_dates)] = fixes
        if not fixes:
            return rows
        out = []
        for row in rows:
            r = list(row)
            for i, fix in fixes:
                if r[i] is not None:
                    r[i] = fix(r[i])
            out.append(tuple(r))
        return out

    def estimate(self, plan: ReadPlan, low: Sequence[Any] | None,
                 high: Sequence[Any] | None) -> int:
        db, _, name = plan.table.partition(".")
        if low is None and high is None:
            rows = self._query("SELECT TABLE_ROWS FROM information_schema.TABLES "
                               "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, name))
            if rows and rows[0][0]:
                return int(rows[0][0])
        where, params = [], []
        if low is not None:
            where.append(_mysql_keyset(plan.key, ">="))
            params += _mysql_keyset_params(low, ">=")
        if high is not None:
            where.append(_mysql_keyset(plan.key, "<="))
            params += _mysql_keyset_params(high, "<=")
        query = f"SELECT COUNT(*) FROM {self._table(plan)}"
        if where:
            query += " WHERE " + " AND ".join(where)
        return int(self._query(query, params)[0][0])

    def close(self) -> None:
        try:
            self.conn.close()
        except (pymysql.err.Error, OSError) as exc:  # the socket may already be gone
            log.debug("backfill_source_close_failed", error=repr(exc))


def _datetime_text(text: str) -> Any:
    """DATETIME/TIMESTAMP text -> datetime, as PyMySQL's `convert_datetime` (which it falls
    back to for anything `fromisoformat` refuses); a zero or invalid date, which PyMySQL
    leaves as text, becomes the InvalidValue `_fix` would make of it."""
    if len(text) >= 19:  # a date and a time: anything shorter is PyMySQL's to decode
        try:
            return _fromisoformat_datetime(text)
        except ValueError:
            pass
    return _invalid_date(_convert_datetime(text))


def _date_text(text: str) -> Any:
    """DATE text -> date, as PyMySQL's `convert_date`; zero dates as in `_datetime_text`."""
    try:
        return _fromisoformat_date(text)
    except ValueError:
        return _invalid_date(_convert_date(text))


_fromisoformat_datetime = datetime.fromisoformat
_fromisoformat_date = date.fromisoformat
_convert_datetime = pymysql.converters.convert_datetime
_convert_date = pymysql.converters.convert_date
# MySQL sends DATETIME/TIMESTAMP as 'YYYY-MM-DD hh:mm:ss[.f{1,6}]' and DATE as 'YYYY-MM-DD'
# (never an offset): for those `fromisoformat` gives PyMySQL's values at C speed.
_FAST_DECODERS = {
    FIELD_TYPE.DATETIME: _datetime_text,
    FIELD_TYPE.TIMESTAMP: _datetime_text,
    FIELD_TYPE.DATE: _date_text,
    FIELD_TYPE.NEWDATE: _date_text,
}


def _fast_decoders(decoders: dict) -> tuple[dict, bool]:
    """`decoders` with `_FAST_DECODERS` where it has PyMySQL's own date/time decoders; and
    whether every date/time type got one (then no zero date reaches `_fix` as text)."""
    own = {FIELD_TYPE.DATETIME: _convert_datetime, FIELD_TYPE.TIMESTAMP: _convert_datetime,
           FIELD_TYPE.DATE: _convert_date, FIELD_TYPE.NEWDATE: _convert_date}
    fast = dict(decoders)
    for ftype, fn in _FAST_DECODERS.items():
        if fast.get(ftype) is own[ftype]:
            fast[ftype] = fn
    # the types MySQL sends in result sets (NEWDATE is internal; PyMySQL has no decoder for it)
    sent = (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.DATE)
    return fast, all(fast.get(t) is _FAST_DECODERS[t] for t in sent)


def _invalid_date(value: Any) -> Any:
    """PyMySQL returns zero/invalid dates as their text; the binlog reader as InvalidValue."""
    return InvalidValue(value, _ZERO_DATE) if isinstance(value, str) else value


def _bits(value: Any, width: int) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return format(int.from_bytes(value, "big"), f"0{width}b")
    return value
