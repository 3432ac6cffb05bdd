"""The conflict log on both sides: read, filter and mark conflict records.

A record lives in the state tables of the side whose apply detected it: `crm_to_mes`
conflicts on the MES (`<name>_bridge_conflicts`), `mes_to_crm` conflicts on the CRM
(`<name>_bridge.conflicts`). Ids are unique per side only, so people see `crm-<id>` and
`mes-<id>` (`ConflictRef`). `ConflictLog` merges both sides in time order.

Each side is a small `ConflictStore` over a connection it is given (it never connects):
`list`/`show`/`report` use plain autocommit connections (`open_log`), `resolve` hands in the
connections of its two write transactions so the status changes commit with the row writes.
Identifiers are composed with psycopg.sql / connectors.mysql.sqltext.quote; values are always
bound parameters.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import pymysql
import structlog
from psycopg import sql
from psycopg.types.string import TextLoader

from bridge.config import Config
from bridge.errors import Unrepresentable
from bridge.mapping import Mapping, TableMapping
from bridge.model import Row, Side
from bridge.rowjson import from_jsonable, to_jsonable
from bridge.schema import TableInfo
from bridge.types import to_target, values_equal
from conflict.ops import Delete, Insert, Update, WriteOp
from connectors.mysql.sqltext import column_list, quote
from connectors.mysql.state import state_table

_log = structlog.get_logger("bridge.conflict")

STATUSES = ("resolved", "parked", "queued", "overridden", "superseded")
OPEN_STATUSES = ("parked", "queued")
TYPES = ("insert_exists", "update_differs", "update_missing", "delete_differs",
         "delete_missing", "ownership_violation")

COLUMNS: tuple[str, ...] = (
    "id", "created_at", "direction", "target_table", "row_key", "conflict_type", "rule",
    "winner", "columns", "incoming_before", "incoming_after", "target_found", "result",
    "source_position", "source_commit_ts", "target_commit_ts", "status", "resolved_by",
    "resolved_at", "resolution",
)
JSON_COLUMNS = frozenset({"row_key", "columns", "incoming_before", "incoming_after",
                          "target_found", "result", "resolution"})
TIME_COLUMNS = frozenset({"created_at", "source_commit_ts", "target_commit_ts", "resolved_at"})
_MYSQL_NO_TABLE = 1146


class UnknownConflict(LookupError):
    """No record matches the id the user gave (or a bare number matches on both sides)."""


class ConflictLogMissing(RuntimeError):
    """A side has no conflicts table: `bridge setup` has not run against it."""


# --- ids ---------------------------------------------------------------------------------

_REF_RE = re.compile(r"^\s*(?:(crm|mes)-)?(\d{1,19})\s*$", re.IGNORECASE)


@dataclass(frozen=True, order=True, slots=True)
class ConflictRef:
    """A conflict record's id as people see it: the side that stores it plus its number."""

    side: Side
    number: int

    def __str__(self) -> str:
        return f"{self.side.value}-{self.number}"


def parse_ref(text: str) -> ConflictRef | int:
    """`crm-12` / `mes-7` (any case) -> ConflictRef; a bare `12` -> 12 (side unknown yet).

    Raises ValueError for anything else."""
    m = _REF_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a conflict id: use crm-<number>, mes-<number> or <number>")
    number = int(m.group(2))
    return ConflictRef(Side(m.group(1).lower()), number) if m.group(1) else number


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredConflict:
    """One row of a side's conflicts table, JSON columns parsed, times aware UTC."""

    ref: ConflictRef
    created_at: datetime
    direction: str
    target_table: str
    row_key: dict[str, Any]
    conflict_type: str
    rule: str
    winner: str
    columns: list[str]
    incoming_before: dict[str, Any] | None
    incoming_after: dict[str, Any] | None
    target_found: dict[str, Any] | None
    result: dict[str, Any] | None
    source_position: str | None
    source_commit_ts: datetime | None
    target_commit_ts: datetime | None
    status: str
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: dict[str, Any] | None

    @property
    def side(self) -> Side:
        """The side storing the record (= the target of its direction)."""
        return self.ref.side

    @property
    def is_open(self) -> bool:
        """Waiting for a DBA (parked) or behind a parked change (queued)."""
        return self.status in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form: id as `crm-12`, times ISO 8601, JSON columns as objects."""
        out: dict[str, Any] = {"id": str(self.ref), "side": self.side.value, "number": self.ref.number}
        for name in COLUMNS[1:]:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # MySQL DATETIME(6), written by UTC sessions
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    return json.loads(value) if isinstance(value, str) else value


def record_from_row(side: Side, row: Sequence[Any]) -> StoredConflict:
    """Build a record from a row of COLUMNS as either driver returns it."""
    values = dict(zip(COLUMNS, row))
    for name in JSON_COLUMNS:
        values[name] = _json(values[name])
    for name in TIME_COLUMNS:
        values[name] = _utc(values[name])
    values["columns"] = values["columns"] or []
    values["row_key"] = values["row_key"] or {}
    number = int(values.pop("id"))
    return StoredConflict(ref=ConflictRef(side, number), **values)


# --- filters -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConflictFilter:
    """Which records to list. Empty fields do not filter; `until` is exclusive."""

    tables: tuple[str, ...] = ()  # target_table values (see `table_names`)
    conflict_type: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unresolved: bool = False


@dataclass(frozen=True, slots=True)
class Condition:
    """`column <op> value`; op is one of `=`, `>=`, `<`, `in`, `rule` (never user text).

    `rule` matches a rule name exactly or as the start of a labelled rule the engine
    records, e.g. `last_writer_wins` matches `last_writer_wins (delete wins)`."""

    column: str
    op: str
    value: Any


def conditions(flt: ConflictFilter) -> list[Condition]:
    """The filter as column conditions, rendered in each side's SQL dialect."""
    out: list[Condition] = []
    if flt.tables:
        out.append(Condition("target_table", "in", list(flt.tables)))
    if flt.conflict_type:
        out.append(Condition("conflict_type", "=", flt.conflict_type))
    if flt.rule:
        out.append(Condition("rule", "rule", flt.rule))
    if flt.since:
        out.append(Condition("created_at", ">=", flt.since))
    if flt.until:
        out.append(Condition("created_at", "<", flt.until))
    if flt.unresolved:
        out.append(Condition("status", "in", list(OPEN_STATUSES)))
    return out


def table_names(mapping: Mapping, name: str) -> tuple[str, ...]:
    """The target_table values a `--table` argument stands for.

    Any name of a bridged table (CRM `schema.table` or bare `table`, MES `table` or
    `database.table`) selects both directions' records of that table; another name is taken
    literally."""
    for tm in mapping.tables:
        aliases = {tm.crm_table, tm.crm_table.split(".", 1)[1], tm.mes_table, tm.spec.mes}
        if name in aliases:
            return (tm.crm_table, tm.mes_table)
    return (name,)


# --- one side ----------------------------------------------------------------------------


class ConflictStore(Protocol):
    """The conflicts table of one side, over a connection owned by the caller."""

    side: Side

    def select(self, flt: ConflictFilter) -> list[StoredConflict]:
        """Records matching `flt`, oldest first."""
        ...

    def get(self, number: int, lock: bool = False) -> StoredConflict | None:
        """One record by its number (locked FOR UPDATE when `lock`)."""
        ...

    def open_records(self, table: str) -> list[StoredConflict]:
        """Parked and queued records of a target table, locked FOR UPDATE."""
        ...

    def mark(self, numbers: Sequence[int], status: str, by: str, at: datetime,
             resolution: dict[str, Any]) -> int:
        """Set status, resolved_by, resolved_at and resolution; returns rows changed."""
        ...


class PgConflictStore:
    """`<schema>.conflicts` on the CRM."""

    side = Side.CRM

    def __init__(self, conn: psycopg.Connection[Any], schema: str):
        self._conn = conn
        self._table = sql.Identifier(schema, "conflicts")
        self._where_name = f"{schema}.conflicts"

    def _query(self, where: list[sql.Composable], params: list[Any], tail: str = "") -> list[StoredConflict]:
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS), self._table)
        if where:
            query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query = query + sql.SQL(" ORDER BY created_at, id") + sql.SQL(tail)
        try:
            with self._conn.cursor() as cur:
                cur.adapters.register_loader("jsonb", TextLoader)
                cur.execute(query, params)
                rows = cur.fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise ConflictLogMissing(
                f"CRM has no conflict log {self._where_name} ({exc.diag.message_primary}); "
                "run `bridge setup --config ...` first") from None
        return [record_from_row(self.side, r) for r in rows]

    @staticmethod
    def _condition(c: Condition) -> tuple[sql.Composable, list[Any]]:
        col = sql.Identifier(c.column)
        if c.op == "in":
            return sql.SQL("{} = ANY(%s)").format(col), [list(c.value)]
        if c.op == "rule":
            return sql.SQL("({} = %s OR {} LIKE %s)").format(col, col), [c.value, rule_label_pattern(c.value)]
        return sql.SQL("{} {} %s").format(col, sql.SQL(_OPS[c.op])), [c.value]

    def select(self, flt: ConflictFilter) -> list[StoredConflict]:
        where: list[sql.Composable] = []
        params: list[Any] = []
        for c in conditions(flt):
            text, values = self._condition(c)
            where.append(text)
            params.extend(values)
        return self._query(where, params)

    def get(self, number: int, lock: bool = False) -> StoredConflict | None:
        found = self._query([sql.SQL("id = %s")], [number], " FOR UPDATE" if lock else "")
        return found[0] if found else None

    def open_records(self, table: str) -> list[StoredConflict]:
        where = [sql.SQL("target_table = %s"), sql.SQL("status = ANY(%s)")]
        return self._query(where, [table, list(OPEN_STATUSES)], " FOR UPDATE")

    def mark(self, numbers: Sequence[int], status: str, by: str, at: datetime,
             resolution: dict[str, Any]) -> int:
        if not numbers:
            return 0
        query = sql.SQL(
            "UPDATE {} SET status = %s, resolved_by = %s, resolved_at = %s, "
            "resolution = %s::jsonb WHERE id = ANY(%s)").format(self._table)
        with self._conn.cursor() as cur:
            cur.execute(query, (status, by, at, _dumps(resolution), list(numbers)))
            return cur.rowcount


class MysqlConflictStore:
    """`<prefix>conflicts` in the MES database."""

    side = Side.MES

    def __init__(self, conn: pymysql.connections.Connection, prefix: str):
        self._conn = conn
        self._name = state_table(prefix, "conflicts")
        self._table = quote(self._name)

    def _query(self, where: list[str], params: list[Any], tail: str = "") -> list[StoredConflict]:
        query = f"SELECT {column_list(COLUMNS)} FROM {self._table}"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += f" ORDER BY {quote('created_at')}, {quote('id')}{tail}"
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                rows = cur.fetchall()
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == _MYSQL_NO_TABLE:
                raise ConflictLogMissing(
                    f"MES has no conflict log {self._name} ({exc.args[1]}); "
                    "run `bridge setup --config ...` first") from None
            raise
        return [record_from_row(self.side, r) for r in rows]

    @staticmethod
    def _condition(c: Condition) -> tuple[str, list[Any]]:
        if c.op == "in":
            values = list(c.value)
            return f"{quote(c.column)} IN ({', '.join(['%s'] * len(values))})", values
        if c.op == "rule":
            col = quote(c.column)
            return f"({col} = %s OR {col} LIKE %s)", [c.value, rule_label_pattern(c.value)]
        return f"{quote(c.column)} {_OPS[c.op]} %s", [_mysql_value(c.value)]

    def select(self, flt: ConflictFilter) -> list[StoredConflict]:
        where: list[str] = []
        params: list[Any] = []
        for c in conditions(flt):
            text, values = self._condition(c)
            where.append(text)
            params.extend(values)
        return self._query(where, params)

    def get(self, number: int, lock: bool = False) -> StoredConflict | None:
        found = self._query([f"{quote('id')} = %s"], [number], " FOR UPDATE" if lock else "")
        return found[0] if found else None

    def open_records(self, table: str) -> list[StoredConflict]:
        text, values = self._condition(Condition("status", "in", list(OPEN_STATUSES)))
        return self._query([f"{quote('target_table')} = %s", text], [table, *values], " FOR UPDATE")

    def mark(self, numbers: Sequence[int], status: str, by: str, at: datetime,
             resolution: dict[str, Any]) -> int:
        if not numbers:
            return 0
        ids = ", ".join(["%s"] * len(numbers))
        query = (f"UPDATE {self._table} SET {quote('status')} = %s, {quote('resolved_by')} = %s, "
                 f"{quote('resolved_at')} = %s, {quote('resolution')} = %s "
                 f"WHERE {quote('id')} IN ({ids})")
        with self._conn.cursor() as cur:
            return cur.execute(query, [status, by, _mysql_value(at), _dumps(resolution), *numbers])


_OPS = {"=": "=", ">=": ">=", "<": "<"}


def rule_label_pattern(rule: str) -> str:
    """LIKE pattern for `<rule> (...)` labels, wildcards in the name escaped (backslash is
    the default LIKE escape on both servers)."""
    escaped = rule.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped} (%"


def _mysql_value(value: Any) -> Any:
    """Aware datetimes as naive UTC (the MES columns are DATETIME(6) in UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# --- both sides --------------------------------------------------------------------------


@dataclass
class ConflictLog:
    """Both sides' conflict records, addressed by `ConflictRef`."""

    stores: dict[Side, ConflictStore] = field(default_factory=dict)

    def list(self, flt: ConflictFilter) -> list[StoredConflict]:
        """Both sides' matching records merged in time order (ties: CRM first, then id)."""
        merged = [r for store in self.stores.values() for r in store.select(flt)]
        return sorted(merged, key=lambda r: (r.created_at, r.ref))

    def find(self, ref: ConflictRef | int, lock: bool = False) -> StoredConflict:
        """The record `ref` names. A bare number must exist on exactly one side.

        Raises UnknownConflict with what was looked for and where."""
        if isinstance(ref, ConflictRef):
            found = self.stores[ref.side].get(ref.number, lock)
            if found is None:
                raise UnknownConflict(f"no conflict {ref}: the {ref.side.value.upper()} has no "
                                      f"conflict record with id {ref.number}")
            return found
        hits = [r for store in self.stores.values() if (r := store.get(ref, lock)) is not None]
        if not hits:
            raise UnknownConflict(f"no conflict {ref}: neither the CRM nor the MES has a "
                                  f"conflict record with id {ref}")
        if len(hits) > 1:
            raise UnknownConflict(f"conflict id {ref} exists on both sides: say "
                                  f"{' or '.join(str(h.ref) for h in hits)}")
        return hits[0]


def pg_store(config: Config, conn: psycopg.Connection[Any]) -> PgConflictStore:
    return PgConflictStore(conn, config.state_schema)


def mysql_store(config: Config, conn: pymysql.connections.Connection) -> MysqlConflictStore:
    return MysqlConflictStore(conn, config.state_prefix)


@contextmanager
def open_log(config: Config) -> Iterator[ConflictLog]:
    """A read-mostly ConflictLog over fresh autocommit connections to both sides."""
    from bridge.connect import mysql_connect, pg_connect

    pg = pg_connect(config, autocommit=True)
    try:
        my = mysql_connect(config, autocommit=True)
        try:
            yield ConflictLog({Side.CRM: pg_store(config, pg), Side.MES: mysql_store(config, my)})
        finally:
            my.close()
    finally:
        pg.close()


# --- DBA decisions -----------------------------------------------------------------------
#
# `override` applies a decision to BOTH sides so they converge, then marks the records:
#   1. look the record up and load both tables' schemas (introspection ends transactions,
#      so it happens before anything is written);
#   2. MES: BEGIN; write `<prefix>state` row "admin" FIRST (the binlog reader drops a
#      transaction whose first row event is on the marker table: no echo);
#      CRM: a connection attached to the replication origin `<name>_bridge_admin` (the
#      daemon holds `<name>_bridge`; the CRM reader drops origin-tagged transactions);
#   3. re-read the record FOR UPDATE, lock the row on the MES then on the CRM, compute the
#      row each side must hold, write only what differs (mapped, non-generated columns);
#   4. mark parked/queued records of that row on both sides `superseded` and the chosen one
#      `overridden` (resolved_by, resolved_at, resolution JSON), each in its side's transaction;
#   5. commit the MES, then the CRM. If the CRM commit fails after the MES one succeeded,
#      `PartialOverride` says so; running the same command again finishes the job (the
#      decision is recomputed from the current rows and re-marking is harmless).
#
# `--set` starts from the current row on the side that STORES the record (its target side):
# the column names and value types of `--set` are that side's, and that row is what the
# target held once the conflict was decided (for a parked change: the row the DBA is asked
# about). If that side has no row, the other side's row carried over is used; if neither has
# one, the record's incoming after-image (values that were not sent are left out).

ADMIN_DIRECTION = "admin"  # `direction` of the MES state row written as the echo marker


class BadDecision(ValueError):
    """The decision cannot be applied as given (unknown column, bad value, unmapped table)."""


class OverrideBusy(RuntimeError):
    """Another session holds the admin replication origin (another resolve is running)."""


class PartialOverride(RuntimeError):
    """The MES committed but the CRM did not; re-running the command completes it."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What the DBA decided: take one side's current row, or set columns of the row (names
    of the record's target table; values as text, `NULL` for SQL NULL)."""

    take: Side | None = None
    sets: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (self.take is None) == (not self.sets):
            raise BadDecision("give exactly one of --take crm|mes or --set col=value")

    def describe(self) -> dict[str, Any]:
        if self.take is not None:
            return {"take": self.take.value}
        return {"set": dict(self.sets)}


@dataclass(frozen=True, slots=True)
class RowSite:
    """One side's copy of the disputed row: its table, schema, mapped columns and key."""

    side: Side
    table: str
    info: TableInfo
    columns: tuple[str, ...]  # mapped columns that exist on this side
    key: dict[str, Any]  # key values in this side's names and types

    @property
    def key_columns(self) -> list[str]:
        return list(self.key)

    def writable(self, row: Row) -> list[str]:
        """Columns of `row` this side may write (mapped, not generated)."""
        return [c for c in self.columns if c in row and not self.info.columns[c].generated]

    def key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.key)

    def matches(self, row_key: dict[str, Any]) -> bool:
        """Whether a record's stored JSON key names this row."""
        if set(row_key) != set(self.key):
            return False
        try:
            return all(
                values_equal(from_jsonable(row_key[k], self.info.columns[k]), v, self.info.columns[k])
                for k, v in self.key.items())
        except (ValueError, TypeError):
            return False


@dataclass(frozen=True, slots=True)
class SideWrite:
    """What a decision wrote on one side: none, insert, update or delete (and columns)."""

    op: str
    columns: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.op + (f" ({', '.join(self.columns)})" if self.op == "update" else "")


@dataclass(frozen=True, slots=True)
class Override:
    """The outcome of `override`, as recorded in the chosen record's resolution."""

    record: StoredConflict
    choice: Choice
    by: str
    at: datetime
    base: str  # which row the decision started from
    rows: dict[Side, Row | None]  # what each side holds now (JSON-ready)
    writes: dict[Side, SideWrite]
    superseded: tuple[ConflictRef, ...]

    def resolution(self) -> dict[str, Any]:
        return {
            "decision": self.choice.describe(),
            "base": self.base,
            "previous_status": self.record.status,
            "writes": {s.value: w.describe() for s, w in self.writes.items()},
            "rows": {s.value: r for s, r in self.rows.items()},
            "superseded": [str(r) for r in self.superseded],
        }


def admin_origin_name(config: Config) -> str:
    """Replication origin of `conflicts resolve` sessions (the daemon's applier holds
    origin_name; the daemon's ownership write-backs briefly use this one too)."""
    return config.admin_origin_name


# pure planning -------------------------------------------------------------------------


def row_sites(tm: TableMapping, record: StoredConflict, infos: dict[Side, TableInfo]) -> dict[Side, RowSite]:
    """Where the record's row lives on each side, with its key typed for that side."""
    own, other = record.side, record.side.other
    try:
        key = {k: from_jsonable(record.row_key[k], infos[own].columns[k]) for k in tm.keys[own]}
        mapped = tm.map_row(own, key) or {}
        other_key = {k: to_target(mapped[k], infos[other].columns[k], other) for k in tm.keys[other]}
    except (KeyError, ValueError, TypeError, Unrepresentable) as exc:
        raise BadDecision(f"record {record.ref} has an unusable key {record.row_key}: {exc}") from None
    return {own: _site(tm, own, infos[own], key), other: _site(tm, other, infos[other], other_key)}


def _site(tm: TableMapping, side: Side, info: TableInfo, key: dict[str, Any]) -> RowSite:
    cols = tuple(c for c in tm.columns(side) if c in info.columns)
    return RowSite(side, tm.table(side), info, cols, key)


def carry(tm: TableMapping, source: RowSite, row: Row | None, target: RowSite) -> Row | None:
    """`row` from `source` renamed, value-mapped and converted for `target`."""
    if row is None:
        return None
    mapped = tm.map_row(source.side, row) or {}
    out: Row = {}
    for col in target.writable(mapped):
        try:
            out[col] = to_target(mapped[col], target.info.columns[col], target.side)
        except Unrepresentable as exc:
            raise BadDecision(f"{target.side.value.upper()} column {col} cannot hold "
                              f"{mapped[col]!r}: {exc.reason}") from None
    return out


def parse_sets(site: RowSite, sets: Sequence[tuple[str, str]]) -> Row:
    """`--set` values read by the column's type (bridge.rowjson) and converted for `site`."""
    out: Row = {}
    for col, text in sets:
        info = site.info.columns.get(col)
        if col not in site.columns or info is None:
            raise BadDecision(f"--set {col}: not a mapped column of {site.table}; "
                              f"choose from {', '.join(site.columns)}")
        if col in site.key or info.generated:
            raise BadDecision(f"--set {col}: key and generated columns cannot be set")
        try:
            value = None if text == "NULL" else from_jsonable(text, info)
            out[col] = None if value is None else to_target(value, info, site.side)
        except Unrepresentable as exc:
            raise BadDecision(f"--set {col}={text}: {exc.reason}") from None
        except (ValueError, TypeError) as exc:
            raise BadDecision(f"--set {col}={text}: not a {info.db_type} value ({exc})") from None
    return out


def _after_image(record: StoredConflict, site: RowSite) -> Row | None:
    """The record's incoming after-image typed for its own side (unsent values left out)."""
    if not record.incoming_after:
        return None
    out: Row = {}
    for col in site.writable(record.incoming_after):
        raw = record.incoming_after[col]
        if isinstance(raw, dict) and ("$unchanged" in raw or "$invalid" in raw):
            continue  # not sent, or a value the target could not hold
        info = site.info.columns[col]
        try:
            value = from_jsonable(raw, info)
            out[col] = None if value is None else to_target(value, info, site.side)
        except (ValueError, TypeError, Unrepresentable):
            continue  # the server's default (or NOT NULL error) is clearer than a guess
    return out


def desired_rows(tm: TableMapping, record: StoredConflict, sites: dict[Side, RowSite],
                 choice: Choice, current: dict[Side, Row | None]) -> tuple[str, dict[Side, Row | None]]:
    """The row each side must hold after the decision, and a word on where it came from."""
    if choice.take is not None:
        src, dst = sites[choice.take], sites[choice.take.other]
        return (f"{src.side.value} row",
                {src.side: current[src.side], dst.side: carry(tm, src, current[src.side], dst)})
    own, other = sites[record.side], sites[record.side.other]
    base, word = current[own.side], f"{own.side.value} row"
    if base is None and current[other.side] is not None:
        base, word = carry(tm, other, current[other.side], own), f"{other.side.value} row"
    if base is None:
        base, word = _after_image(record, own), "incoming after-image"
    row = {**own.key, **(base or {}), **parse_sets(own, choice.sets)}
    return word, {own.side: row, other.side: carry(tm, own, row, other)}


def plan_write(site: RowSite, current: Row | None, desired: Row | None) -> WriteOp | None:
    """The one statement that turns `current` into `desired` on `site` (None: nothing)."""
    if desired is None:
        return Delete(site.key_of(current)) if current is not None else None
    cols = site.writable(desired)
    if current is None:
        return Insert({c: desired[c] for c in cols})
    changed = {c: desired[c] for c in cols
               if c not in current or not values_equal(desired[c], current[c], site.info.columns[c])}
    return Update(site.key_of(current), changed) if changed else None


def describe_write(op: WriteOp | None) -> SideWrite:
    if op is None:
        return SideWrite("none")
    if isinstance(op, Insert):
        return SideWrite("insert", tuple(op.row))
    if isinstance(op, Update):
        return SideWrite("update", tuple(op.values))
    return SideWrite("delete")


# I/O -------------------------------------------------------------------------------------


def lock_row(target: Any, site: RowSite) -> Row | None:
    """The current row on `site`, locked FOR UPDATE (None: no such row)."""
    rows = target.fetch_for_update(site.table, list(site.columns), site.key_columns,
                                   [tuple(site.key.values())])
    return next(iter(rows.values()), None)


def execute_write(target: Any, site: RowSite, op: WriteOp | None) -> None:
    if isinstance(op, Insert):
        target.insert_rows(site.table, list(op.row), [tuple(op.row.values())])
    elif isinstance(op, Update):
        target.update_rows(site.table, list(op.values), site.key_columns,
                           [tuple(op.values.values()) + tuple(op.key)])
    elif isinstance(op, Delete):
        target.delete_rows(site.table, site.key_columns, [tuple(op.key)])


def ensure_admin_origin(config: Config) -> None:
    """Create the admin replication origin if missing (idempotent, race-safe)."""
    from bridge.connect import pg_connect

    name = admin_origin_name(config)
    with pg_connect(config, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_replication_origin WHERE roname = %s", (name,)).fetchone():
            return
        try:
            conn.execute("SELECT pg_replication_origin_create(%s)", (name,))
        except psycopg.errors.UniqueViolation:
            pass  # created concurrently


def connect_admin(crm: Any, name: str, wait_seconds: float = 5.0) -> None:
    """Connect the CRM admin writer, waiting briefly while another admin session (a daemon
    write-back, another resolve) holds the origin; then OverrideBusy."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            crm.connect()
            return
        except psycopg.errors.ObjectInUse:
            crm.close()
            if time.monotonic() >= deadline:
                raise OverrideBusy(
                    f"replication origin {name} is in use: another `conflicts resolve` (or a "
                    "daemon write-back) is running; try again when it is done") from None
            time.sleep(0.2)


LOCK_WAIT_SECONDS = 30


def limit_lock_waits(crm: Any, mes: Any, seconds: int | None = None) -> None:
    """Give up (instead of hanging) when a row stays locked, e.g. by a long apply batch."""
    seconds = seconds or LOCK_WAIT_SECONDS
    crm.conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{seconds}s",))
    crm.conn.commit()
    with mes.conn.cursor() as cur:
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (seconds,))


@contextmanager
def admin_targets(config: Config) -> Iterator[dict[Side, Any]]:
    """The admin writers of both sides (CRM on the admin origin), connected; closed on exit."""
    from bridge.connect import make_target

    crm = make_target(config, Side.CRM, admin=True)
    mes = make_target(config, Side.MES, admin=True)
    try:
        connect_admin(crm, admin_origin_name(config))
        mes.connect()
        limit_lock_waits(crm, mes)
        yield {Side.CRM: crm, Side.MES: mes}
    finally:
        mes.close()
        crm.close()


def _stores(config: Config, targets: dict[Side, Any]) -> ConflictLog:
    return ConflictLog({Side.CRM: pg_store(config, targets[Side.CRM].conn),
                        Side.MES: mysql_store(config, targets[Side.MES].conn)})


def _table_mapping(mapping: Mapping, record: StoredConflict) -> TableMapping:
    tm = mapping.for_source(record.side, record.target_table)
    if tm is None:
        raise BadDecision(f"{record.ref}: table {record.target_table} is not bridged by this config")
    return tm


def _load_schemas(targets: dict[Side, Any], tm: TableMapping) -> dict[Side, TableInfo]:
    infos: dict[Side, TableInfo] = {}
    for side, target in targets.items():
        info = target.table_info(tm.table(side))  # ends the connection's transaction
        if info is None:
            raise BadDecision(f"table {tm.table(side)} does not exist on the {side.value.upper()}")
        infos[side] = info
    return infos


def _open_records(log: ConflictLog, sites: dict[Side, RowSite]) -> list[StoredConflict]:
    """Parked/queued records of the row on both sides (locked)."""
    return [r for side, site in sites.items()
            for r in log.stores[side].open_records(site.table) if site.matches(r.row_key)]


def _mark(log: ConflictLog, outcome: Override, others: list[StoredConflict]) -> None:
    rec = outcome.record
    for other in others:
        log.stores[other.side].mark([other.ref.number], "superseded", outcome.by, outcome.at, {
            "superseded_by": str(rec.ref), "decision": outcome.choice.describe(),
            "previous_status": other.status})
    log.stores[rec.side].mark([rec.ref.number], "overridden", outcome.by, outcome.at,
                              outcome.resolution())


def _apply(config: Config, mapping: Mapping, targets: dict[Side, Any], ref: ConflictRef | int,
           choice: Choice, by: str, at: datetime) -> Override:
    log = _stores(config, targets)
    tm = _table_mapping(mapping, log.find(ref))
    infos = _load_schemas(targets, tm)
    targets[Side.MES].begin()
    targets[Side.MES].write_state(ADMIN_DIRECTION, f"resolve {ref} at {at.isoformat()}")
    targets[Side.CRM].begin()
    record = log.find(ref, lock=True)
    sites = row_sites(tm, record, infos)
    current = {side: lock_row(targets[side], sites[side]) for side in (Side.MES, Side.CRM)}
    base, desired = desired_rows(tm, record, sites, choice, current)
    writes: dict[Side, SideWrite] = {}
    for side in (Side.MES, Side.CRM):
        op = plan_write(sites[side], current[side], desired[side])
        execute_write(targets[side], sites[side], op)
        writes[side] = describe_write(op)
    others = [r for r in _open_records(log, sites) if r.ref != record.ref]
    outcome = Override(record, choice, by, at, base,
                       {s: to_jsonable(r) for s, r in desired.items()}, writes,
                       tuple(r.ref for r in others))
    _mark(log, outcome, others)
    return outcome


def override(config: Config, ref: ConflictRef | int, choice: Choice, by: str,
             now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Override:
    """Apply a DBA decision to both sides and record it (see the section comment above)."""
    mapping = Mapping.from_config(config)
    ensure_admin_origin(config)
    with admin_targets(config) as targets:
        try:
            outcome = _apply(config, mapping, targets, ref, choice, by, now())
        except BaseException:
            for target in targets.values():
                target.rollback()
            raise
        targets[Side.MES].commit()
        try:
            targets[Side.CRM].commit()
        except psycopg.Error as exc:
            raise PartialOverride(
                f"the MES side of {outcome.record.ref} was committed but the CRM commit failed "
                f"({exc}); run the same command again to finish") from exc
    _log.info("conflict_override", id=str(outcome.record.ref), by=by, **outcome.choice.describe(),
              writes={s.value: w.describe() for s, w in outcome.writes.items()},
              superseded=[str(r) for r in outcome.superseded])
    return outcome
