"""Change source for the MES: committed row changes read from the MySQL/MariaDB binlog.

`BinlogChangeSource` wraps python-mysql-replication's `BinLogStreamReader` (the only place
that knows it) and yields `bridge.model` events. Layers, top to bottom:

* `BinlogChangeSource` - I/O: settings check, start position, the library stream, error
  classification, idle timing.
* `Framer` - pure: turns the binlog's event groups into TxBegin / RowChange / TxCommit,
  drops the bridge's own (echo) transactions, tracks the resume position and GTID state.
* `classify_statement`, `GtidState`, `_TablePlan` - pure helpers: statement parsing, the
  MariaDB GTID state, per-table value repair.
* `connectors.mysql.rowdecode` - pure: decodes the row images of rows events itself (the
  library parses event headers and table maps only), several times faster than the
  library, with the same values as the library path plus `_TablePlan`'s repairs. Tables
  with a column it does not handle (MySQL binary JSON, pre-5.6 temporal types, ...) and
  MySQL partial-JSON update events are decoded by the library (`fast_rows=False`: always).

How the binlog maps onto events
-------------------------------
* MariaDB: a GTID event opens every group. InnoDB groups end with an XID event, Aria/MyISAM
  groups with a QueryEvent ``COMMIT``; DDL is a "standalone" GTID plus one QueryEvent.
  MySQL: GTID (or anonymous GTID), QueryEvent ``BEGIN``, rows, XID; DDL has no BEGIN.
* `TxBegin` is yielded lazily, at the first row event on a bridged table, so transactions
  that touch no bridged table yield nothing (their end moves the position reported by the
  next `Idle`). ``xid`` is the MariaDB GTID (e.g. ``0-1-42``), the MySQL GTID, or
  ``file:pos``; ``commit_ts`` is the binlog event time (UTC, one-second resolution: the GTID
  event's for TxBegin, the XID/COMMIT event's for TxCommit).
* `TxCommit.position` is (binlog file, end of the XID/COMMIT event) plus, on MariaDB, the
  full multi-domain GTID state after the transaction. A new reader started from it yields
  exactly the later transactions (file/pos resume: no GTID-mode reconnect duplicates).
* Echo suppression: a transaction whose first row event is on ``marker_table`` was written
  by the bridge itself; it is dropped unread and followed by ``Idle(position=<its end>)``.
  Rows of the marker table and of every table with the bridge's prefix (the marker name up to
  and including ``_bridge_``) are never yielded, except those of ``<prefix>backfill_marks``:
  the backfill's DBLog watermarks, which the consumer must see in stream order (bridge/backfill).
* ``TRUNCATE TABLE`` of a bridged table becomes a TRUNCATE `RowChange` in its own
  transaction. Other DDL naming a bridged table yields nothing and logs a warning.
  Statement-based DML (a session with binlog_format=STATEMENT) on a bridged table stops the
  reader (`Fatal`): its rows are not in the binlog.
* `Idle` comes right after a TxCommit when nothing more has arrived (PyMySQL's read buffer
  and the socket are empty), so the consumer commits without waiting; and when nothing was
  yielded for ``idle_seconds`` (at most 1.5 x that: the library read blocks until the next
  event, and heartbeats are asked for twice per idle period). Between transactions it
  carries the current position (which also moves over unbridged and other databases'
  transactions); inside a long transaction that yields nothing it carries None.
* An UPDATE that changes the primary key stays one UPDATE: ``before`` holds the old row,
  ``after`` the new one, ``key`` the old key (the row to find on the target).

Errors (by class and server error code, never by message)
---------------------------------------------------------
* `SetupError`: settings unfit at start (log_bin, binlog_format, binlog_row_image,
  binlog_row_metadata, compression), missing privileges, row events without column names.
* `Fatal`: the resume position is purged/invalid (1236), undecodable events, unknown event
  types (stop rather than drop rows), statement-based DML on bridged tables, two-phase XA.
* `SourceUnavailable`: connection lost, server down or restarting (after the library's one
  immediate retry), EOF, truncated packets, server_id already connected (4052), a group
  that never completed. The caller builds a new reader from its stored position.

Values (binlog_row_metadata=FULL, binlog_row_image=FULL)
-------------------------------------------------------
| column type              | Python value                                               |
|--------------------------|------------------------------------------------------------|
| integer types, YEAR      | int (BIGINT UNSIGNED exact; YEAR 0000 -> 0)                 |
| DECIMAL                  | Decimal                                                    |
| FLOAT / DOUBLE           | float (FLOAT widened from single precision)                |
| CHAR/VARCHAR/TEXT, ENUM  | str (CHAR without trailing spaces, as SELECT returns it)   |
| SET                      | str, members comma-separated in definition order ('' empty)|
| BINARY/VARBINARY/BLOB    | bytes (BINARY(n) re-padded to n bytes with 0x00)            |
| DATETIME                 | naive datetime                                             |
| TIMESTAMP                | aware datetime in UTC                                      |
| DATE / TIME              | date / timedelta (negative TIME with fractions corrected)  |
| JSON                     | MariaDB: str (JSON is LONGTEXT); MySQL: dict/list/scalars   |
| BIT(n)                   | str of '0'/'1' digits, most significant first              |
| MariaDB UUID             | 16 bytes (binlog metadata cannot tell it from BINARY(16))  |
| NULL                     | None                                                       |
| column not in the image  | UNCHANGED (only if a session used a non-FULL row image)    |

Zero and invalid dates
----------------------
The library decodes ``0000-00-00``, dates with a zero month or day and impossible dates
(``2020-02-30`` under ALLOW_INVALID_DATES) as None - the same value as NULL. Its per-row
``none_sources`` bookkeeping tells the two apart, and this reader turns such a None into
``InvalidValue("0000-00-00[ 00:00:00[.000000]]", reason)`` whether the column is nullable
or not. What remains ambiguous: the exact text is lost (a ``2020-00-10`` is reported with
the zero form), and if a future library version dropped ``none_sources`` a zero date in a
*nullable* column would be indistinguishable from NULL (in a NOT NULL column it could still
be inferred). A zero TIMESTAMP arrives as the epoch (1970-01-01 00:00:00 UTC, outside
TIMESTAMP's range) and is reported as InvalidValue as well.

Library quirks corrected here (each covered by a test): zero dates as None; YEAR 0000 as
1900; negative TIME values with a fractional part off by up to two seconds; BINARY(n)
trailing 0x00 bytes stripped; empty binary strings as str ''; TIMESTAMP as naive UTC; SET
as a Python set. Library-level reconnects that re-read from the middle of a transaction
are tolerated (the reconnect RotateEvent names the same file).
"""

from __future__ import annotations

import re
import ssl
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import pymysql
import structlog
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import event as bl_event
from pymysqlreplication import row_event as bl_rows
from pymysqlreplication.constants import FIELD_TYPE, NONE_SOURCE
from pymysqlreplication.exceptions import (
    BinLogNotEnabled,
    MalformedBinLogEvent,
    StatusVariableMismatch,
)
from pymysqlreplication.json_binary import JsonDiff

from bridge.errors import BridgeError, Fatal, SetupError, SourceUnavailable
from bridge.model import (
    UNCHANGED,
    BinlogPosition,
    Event,
    Idle,
    InvalidValue,
    Op,
    Position,
    Row,
    RowChange,
    Side,
    TxBegin,
    TxCommit,
)
from connectors.mysql import introspect, tablemap
from connectors.mysql.rowdecode import (
    ZERO_REASON,
    TableDecoder,
    Unsupported,
    binary_value,
    compile_table,
    fix_negative_time,
    zero_datetime_text,
)

__all__ = [
    "BinlogChangeSource",
    "Framer",
    "GtidState",
    "ReaderStats",
    "Statement",
    "bridge_prefix",
    "classify_statement",
    "plan_table",
]

log = structlog.get_logger(__name__)

BRIDGE_INFIX = "_bridge_"
CONNECT_TIMEOUT = 10  # seconds


# =========================================================================================
# MariaDB GTID state (pure)
# =========================================================================================


class GtidState:
    """The full multi-domain MariaDB GTID state: the last GTID of each replication domain.

    Text form as the server prints it: ``0-1-26,7-1-1`` (``""`` = nothing logged yet).
    """

    def __init__(self, text: str = "") -> None:
        self._last: dict[int, tuple[int, int]] = {}
        for part in text.replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                domain, server, seq = (int(x) for x in part.split("-"))
            except ValueError:
                raise ValueError(f"not a MariaDB GTID state: {text!r}") from None
            self._last[domain] = (server, seq)

    def advance(self, domain: int, server: int, seq: int) -> None:
        self._last[domain] = (server, seq)

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self._last.items()))


# =========================================================================================
# Statements from QueryEvents (pure)
# =========================================================================================

DDL_VERBS = frozenset({"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"})
DML_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"})

_TOKEN_RE = re.compile(
    r"""
      (?P<vopen>/\*M?!\d*)                       # executable comment: its body is SQL
    | (?P<comment>/\*.*?\*/|(?:--[ \t\r]|\#)[^\n]*)
    | (?P<vclose>\*/)
    | (?P<quoted>`(?:[^`]|``)*`)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<word>[\w$]+)
    | (?P<punct>\S)
    """,
    re.VERBOSE | re.DOTALL,
)


class _Tok(NamedTuple):
    kind: str  # "word" (bare; may be a keyword), "ident" (backquoted), "string", "punct"
    text: str

    def is_kw(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokens(sql: str) -> list[_Tok]:
    out: list[_Tok] = []
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup
        if kind in ("vopen", "comment", "vclose"):
            continue
        text = m.group()
        if kind == "quoted":
            out.append(_Tok("ident", text[1:-1].replace("``", "`")))
        else:
            out.append(_Tok(str(kind), text))
    return out


@dataclass(frozen=True, slots=True)
class Statement:
    """What a QueryEvent statement is and which tables it names ("db.table")."""

    verb: str  # first keyword, upper case ("" if none)
    tables: tuple[str, ...] = ()
    detail: str = ""  # second keyword for XA / ROLLBACK ("TO" for ROLLBACK TO SAVEPOINT)


class _Cursor:
    """A read cursor over tokens with the few moves the statement parsers need."""

    def __init__(self, toks: list[_Tok], default_schema: str) -> None:
        self.toks = toks
        self.i = 0
        self.default = default_schema

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def skip(self, *words: str) -> None:
        """Skip any run of the given keywords (optional modifiers, in any order)."""
        while (t := self.peek()) is not None and t.is_kw(*words):
            self.i += 1

    def take(self, *words: str) -> bool:
        t = self.peek()
        if t is not None and t.is_kw(*words):
            self.i += 1
            return True
        return False

    def qname(self) -> str | None:
        """Read ``name`` or ``db.name``; returns "db.name" (default schema filled in)."""
        t = self.peek()
        if t is None or t.kind not in ("word", "ident"):
            return None
        self.i += 1
        dot = self.peek()
        nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if dot is not None and dot.text == "." and nxt is not None and nxt.kind in ("word", "ident"):
            self.i += 2
            return f"{t.text}.{nxt.text}"
        return f"{self.default}.{t.text}"

    def qname_list(self, separator: str = ",") -> list[str]:
        names = []
        while (name := self.qname()) is not None:
            names.append(name)
            t = self.peek()
            if t is None or t.text != separator:
                break
            self.i += 1
        return names


def classify_statement(sql: str, default_schema: str) -> Statement:
    """Verb and table names of one statement from a QueryEvent.

    Table names are parsed for TRUNCATE / ALTER / DROP / RENAME / CREATE (TABLE or INDEX)
    and for the target of INSERT / REPLACE / UPDATE / DELETE. Unqualified names get
    `default_schema` (the session's database, which the QueryEvent carries).
    """
    toks = _tokens(sql)
    if not toks or toks[0].kind != "word":
        return Statement("")
    verb = toks[0].text.upper()
    cur = _Cursor(toks, default_schema)
    cur.i = 1
    parser = _PARSERS.get(verb)
    tables = tuple(parser(cur)) if parser else ()
    second = toks[1].text.upper() if len(toks) > 1 and toks[1].kind == "word" else ""
    return Statement(verb, tables, second)


def _parse_truncate(cur: _Cursor) -> list[str]:
    cur.skip("TABLE")
    name = cur.qname()
    return [name] if name else []


def _parse_alter(cur: _Cursor) -> list[str]:
    cur.skip("ONLINE", "IGNORE")
    if not cur.take("TABLE"):
        return []
    cur.skip("IF", "EXISTS")
    name = cur.qname()
    if name is None:
        return []
    names = [name]
    depth = 0
    while (t := cur.peek()) is not None:  # ALTER TABLE t ... RENAME [TO|AS] t2
        cur.i += 1
        depth += t.text == "("
        depth -= t.text == ")"
        if depth == 0 and t.is_kw("RENAME"):
            nxt = cur.peek()
            if nxt is not None and nxt.is_kw("COLUMN", "INDEX", "KEY", "CONSTRAINT"):
                continue
            cur.skip("TO", "AS")
            new = cur.qname()
            if new:
                names.append(new)
    return names


def _parse_drop(cur: _Cursor) -> list[str]:
    cur.skip("TEMPORARY")
    if cur.take("TABLE", "TABLES"):
        cur.skip("IF", "EXISTS")
        return cur.qname_list()
    return _parse_index_on(cur)


def _parse_create(cur: _Cursor) -> list[str]:
    cur.skip("OR", "REPLACE", "TEMPORARY")
    if cur.take("TABLE"):
        cur.skip("IF", "NOT", "EXISTS")
        name = cur.qname()
        return [name] if name else []
    cur.skip("UNIQUE", "FULLTEXT", "SPATIAL", "ONLINE")
    return _parse_index_on(cur)


def _parse_index_on(cur: _Cursor) -> list[str]:
    """``INDEX name ... ON tbl`` (CREATE INDEX / DROP INDEX)."""
    if not cur.take("INDEX"):
        return []
    while (t := cur.peek()) is not None:
        cur.i += 1
        if t.is_kw("ON"):
            name = cur.qname()
            return [name] if name else []
    return []


def _parse_rename(cur: _Cursor) -> list[str]:
    if not cur.take("TABLE", "TABLES"):
        return []
    names: list[str] = []
    while True:
        old = cur.qname()
        if old is None:
            break
        names.append(old)
        cur.skip("WAIT", "NOWAIT")
        if cur.take("TO") and (new := cur.qname()):
            names.append(new)
        t = cur.peek()
        if t is None or t.text != ",":
            break
        cur.i += 1
    return names


def _parse_insert(cur: _Cursor) -> list[str]:
    cur.skip("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO")
    name = cur.qname()
    return [name] if name else []


def _parse_update(cur: _Cursor) -> list[str]:
    cur.skip("LOW_PRIORITY", "IGNORE")
    name = cur.qname()
    return [name] if name else []


def _parse_delete(cur: _Cursor) -> list[str]:
    cur.skip("LOW_PRIORITY", "QUICK", "IGNORE")
    if not cur.take("FROM"):
        return []  # multi-table DELETE t1, t2 FROM ...: unknown targets
    name = cur.qname()
    return [name] if name else []


_PARSERS: dict[str, Callable[[_Cursor], list[str]]] = {
    "TRUNCATE": _parse_truncate,
    "ALTER": _parse_alter,
    "DROP": _parse_drop,
    "CREATE": _parse_create,
    "RENAME": _parse_rename,
    "INSERT": _parse_insert,
    "REPLACE": _parse_insert,
    "UPDATE": _parse_update,
    "DELETE": _parse_delete,
}


# =========================================================================================
# Framing: binlog groups -> bridge transactions (pure)
# =========================================================================================

RowImages = Iterable[tuple[Row | None, Row | None]]


@dataclass(slots=True)
class _OpenTx:
    xid: str
    begin_ts: datetime | None
    ends_with_statement: bool  # DDL group (MariaDB standalone GTID / MySQL GTID without BEGIN)
    gtid: tuple[int, int, int] | None = None  # (domain, server, seq) applied at the end
    echo: bool | None = None  # decided by the first row event
    begun: bool = False  # TxBegin yielded


@dataclass(slots=True)
class ReaderStats:
    """Counters for metrics."""

    transactions: int = 0  # transactions yielded (TxCommit)
    echo_transactions: int = 0  # bridge-written transactions dropped
    rows: int = 0  # RowChanges yielded
    ddl_warnings: int = 0
    fast_row_events: int = 0  # rows events decoded by connectors.mysql.rowdecode
    library_row_events: int = 0  # rows events decoded by the library (unsupported columns)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class Framer:
    """Turns binlog event groups into TxBegin / RowChange... / TxCommit. Pure.

    The reader feeds it plain values (no library objects); row images are decoded only
    when the framer asks (`decode`), so dropped transactions cost no decoding.
    """

    def __init__(
        self,
        database: str,
        marker_table: str,
        tables: frozenset[str] | None,
        position: BinlogPosition,
        gtid: GtidState | None,
    ) -> None:
        self.database = database
        self.marker_table = marker_table
        self.bridge_prefix = bridge_prefix(marker_table)
        # backfill hook (issue 4): watermark rows are yielded like a bridged table's rows
        self.marks_table = f"{database}.{self.bridge_prefix}backfill_marks"
        self.tables = tables  # bare names; None = every non-bridge table of the database
        self.gtid = gtid  # None: state unknown, positions carry no GTID
        self._file = position.file
        self._position = position
        self._tx: _OpenTx | None = None
        self.stats = ReaderStats()

    # -- state -------------------------------------------------------------------------
    @property
    def position(self) -> BinlogPosition:
        """End of the last complete group: where a new reader resumes."""
        return self._position

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def idle_position(self) -> BinlogPosition | None:
        """The position an Idle may carry: only between transactions."""
        return None if self._tx is not None else self._position

    def wanted(self, table: str) -> bool:
        """True for a "db.table" whose rows the bridge captures."""
        db, _, name = table.partition(".")
        if db != self.database or self.is_bridge_table(name):
            return False
        return self.tables is None or name in self.tables

    def is_bridge_table(self, name: str) -> bool:
        return name == self.marker_table or name.startswith(self.bridge_prefix)

    # -- inputs ------------------------------------------------------------------------
    def open(
        self,
        xid: str | None,
        ts: int,
        end_pos: int,
        *,
        ends_with_statement: bool,
        gtid: tuple[int, int, int] | None = None,
    ) -> list[Event]:
        """A GTID event (or BEGIN without one) opens a group."""
        if self._tx is not None:
            raise SourceUnavailable(
                f"binlog group {self._tx.xid} has no end before the next group at "
                f"{self._file}:{end_pos}; reconnecting from {self._position}"
            )
        self._tx = _OpenTx(
            xid=xid or f"{self._file}:{end_pos}",
            begin_ts=_utc(ts),
            ends_with_statement=ends_with_statement,
            gtid=gtid,
        )
        return []

    def begin_statement(self, ts: int, end_pos: int) -> list[Event]:
        """QueryEvent BEGIN: the group now ends with XID/COMMIT, not with a statement."""
        if self._tx is None:
            self.open(None, ts, end_pos, ends_with_statement=False)
        assert self._tx is not None
        self._tx.ends_with_statement = False
        return []

    def rows(
        self,
        table: str,
        op: Op,
        key_columns: tuple[str, ...],
        decode: Callable[[], RowImages],
        ts: int,
        end_pos: int,
    ) -> list[Event]:
        """One rows event. `decode` yields (before, after) images, called only if wanted."""
        if self._tx is None:  # rows without a GTID/BEGIN: treat as an implicit group
            self.open(None, ts, end_pos, ends_with_statement=False)
        tx = self._tx
        assert tx is not None
        if tx.echo is None:
            tx.echo = table == f"{self.database}.{self.marker_table}"
        if tx.echo or not (self.wanted(table) or table == self.marks_table):
            return []
        out = self._ensure_begun()
        for before, after in decode():
            image = before if before is not None else after
            key = {c: image[c] for c in key_columns} if image is not None else {}
            out.append(RowChange(op, table, before, after, key))
            self.stats.rows += 1
        return out

    def commit(self, end_pos: int, ts: int) -> list[Event]:
        """XID event or QueryEvent COMMIT: the group ends at `end_pos`."""
        return self._close(end_pos, ts)

    def statement(self, sql: str, schema: str, end_pos: int, ts: int) -> list[Event]:
        """A QueryEvent other than BEGIN: COMMIT/ROLLBACK, XA, DDL, or statement DML."""
        stmt = classify_statement(sql, schema)
        if stmt.verb == "BEGIN":
            return self.begin_statement(ts, end_pos)
        if stmt.verb == "COMMIT" or (stmt.verb == "XA" and stmt.detail in ("COMMIT", "ROLLBACK")):
            return self._close(end_pos, ts)
        if stmt.verb == "ROLLBACK" and stmt.detail != "TO":
            if self._tx is not None and self._tx.begun:
                log.warning("binlog_group_ends_with_rollback", xid=self._tx.xid,
                            note="rows of non-transactional tables stay changed; they were yielded")
            return self._close(end_pos, ts)
        if stmt.verb in DML_VERBS:
            self._refuse_statement_dml(stmt, sql, schema, end_pos)
        if self._tx is None:  # a statement outside any group is a group of its own
            self.open(None, ts, end_pos, ends_with_statement=True)
        out: list[Event] = []
        if stmt.verb in DDL_VERBS:
            out += self._ddl(stmt, sql, end_pos)
        assert self._tx is not None
        if self._tx.ends_with_statement:
            out += self._close(end_pos, ts)
        return out

    def xa_prepare(self, one_phase: bool, end_pos: int, ts: int) -> list[Event]:
        """XA_PREPARE_LOG_EVENT ends a group whose rows are not committed yet."""
        if one_phase:
            return self._close(end_pos, ts)
        if self._tx is not None and self._tx.begun:
            raise Fatal(
                f"XA PREPARE of transaction {self._tx.xid} at {self._file}:{end_pos} changes "
                "bridged tables: two-phase XA transactions are not supported by the bridge - "
                "fix: commit bridged tables outside XA"
            )
        return self._close(end_pos, ts)

    def rotate(self, file: str, pos: int) -> None:
        """RotateEvent: the stream continues in `file` at `pos` (also sent on (re)connect)."""
        if file == self._file:
            return  # (re)connect marker inside the current file: position unchanged
        if self._tx is not None:
            raise SourceUnavailable(
                f"binlog moved to {file} inside group {self._tx.xid}: the group never "
                f"completed; reconnecting from {self._position}"
            )
        self._file = file
        self._position = BinlogPosition(file, pos, self._gtid_text())

    def gtid_list(self, state: str) -> None:
        """MariaDB Gtid_list event (start of each binlog file): the state at that point."""
        if self.gtid is None and self._tx is None:
            self.gtid = GtidState(state)
            self._position = BinlogPosition(self._position.file, self._position.pos, self._gtid_text())

    # -- internals ---------------------------------------------------------------------
    def _ensure_begun(self) -> list[Event]:
        tx = self._tx
        assert tx is not None
        if tx.begun:
            return []
        tx.begun = True
        return [TxBegin(Side.MES, tx.xid, tx.begin_ts, None)]

    def _close(self, end_pos: int, ts: int) -> list[Event]:
        tx, self._tx = self._tx, None
        if tx is not None and tx.gtid is not None and self.gtid is not None:
            self.gtid.advance(*tx.gtid)
        self._position = BinlogPosition(self._file, end_pos, self._gtid_text())
        if tx is None:
            return []
        if tx.begun:
            self.stats.transactions += 1
            return [TxCommit(Side.MES, tx.xid, self._position, _utc(ts))]
        if tx.echo:
            self.stats.echo_transactions += 1
            return [Idle(position=self._position)]
        return []

    def _gtid_text(self) -> str | None:
        return (str(self.gtid) or None) if self.gtid is not None else None

    def _ddl(self, stmt: Statement, sql: str, end_pos: int) -> list[Event]:
        bridged = [t for t in stmt.tables if self.wanted(t)]
        if not bridged:
            return []
        if stmt.verb == "TRUNCATE":
            out = self._ensure_begun()
            out.append(RowChange(Op.TRUNCATE, bridged[0], None, None, {}))
            self.stats.rows += 1
            return out
        self.stats.ddl_warnings += 1
        log.warning("ddl_on_bridged_table", tables=bridged, statement=_clip(sql),
                    position=f"{self._file}:{end_pos}", note="schemas must be re-checked")
        return []

    def _refuse_statement_dml(self, stmt: Statement, sql: str, schema: str, end_pos: int) -> None:
        """Statement-format DML: its rows are not in the binlog. Stop if it may hit us."""
        targets = list(stmt.tables)
        if targets and not any(self.wanted(t) for t in targets):
            return
        if not targets and schema != self.database:
            return
        raise Fatal(
            f"statement-based change at {self._file}:{end_pos} ({_clip(sql, 200)!r}) may touch "
            f"bridged tables of {self.database}: its rows are not in the binlog - fix: make every "
            "session use binlog_format=ROW (SET GLOBAL binlog_format=ROW, reconnect clients, "
            "forbid SET SESSION binlog_format), then reload the affected tables"
        )


def bridge_prefix(marker_table: str) -> str:
    """``plant1_bridge_state`` -> ``plant1_bridge_`` (the marker itself if it has no infix)."""
    at = marker_table.rfind(BRIDGE_INFIX)
    return marker_table[: at + len(BRIDGE_INFIX)] if at >= 0 else marker_table


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# =========================================================================================
# Value repair: library quirks out, bridge values in (pure, per table)
# =========================================================================================

_ZERO_SOURCES = frozenset(
    {NONE_SOURCE.OUT_OF_DATE_RANGE, NONE_SOURCE.OUT_OF_DATETIME_RANGE, NONE_SOURCE.OUT_OF_DATETIME2_RANGE}
)
_EPOCH = datetime(1970, 1, 1)
_DATE_TYPES = {FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE}
_DATETIME_TYPES = {FIELD_TYPE.DATETIME, FIELD_TYPE.DATETIME2}
_TIMESTAMP_TYPES = {FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2}


@dataclass(frozen=True, slots=True)
class _TablePlan:
    """How to turn one table's decoded images into bridge rows."""

    table: str  # "db.table"
    key: tuple[str, ...]
    fixes: tuple[tuple[str, Callable[[Any], Any]], ...]  # applied to non-None values
    zero_text: dict[str, str]  # column -> zero form, for date columns

    def repair(self, values: Row, none_sources: dict[str, str]) -> Row:
        for name, fix in self.fixes:
            value = values[name]
            if value is not None:
                values[name] = fix(value)
        for name, source in none_sources.items():
            if source == NONE_SOURCE.NULL:
                continue
            if source in _ZERO_SOURCES:
                values[name] = InvalidValue(self.zero_text.get(name, "0000-00-00"), ZERO_REASON)
            elif source == NONE_SOURCE.COLS_BITMAP:
                values[name] = UNCHANGED
            elif source == NONE_SOURCE.EMPTY_SET:
                values[name] = ""
            elif source == NONE_SOURCE.JSON_PARTIAL_UPDATE:
                raise Fatal(f"{self.table}.{name}: partial JSON update in the binlog - fix: "
                            "SET GLOBAL binlog_row_value_options=''")
        return values


def plan_table(schema: str, table: str, columns: list[Any], primary_key: Any) -> _TablePlan:
    """Build the repair plan from the library's table map (column objects).

    Raises SetupError when the events carry no column names (binlog_row_metadata was not
    FULL when they were written): decoding them would silently mislabel values.
    """
    qualified = f"{schema}.{table}"
    missing = [i for i, c in enumerate(columns) if not c.name]
    if missing:
        raise SetupError(
            f"binlog row events of {qualified} carry no column names (written while "
            "binlog_row_metadata was not FULL) - fix: SET GLOBAL binlog_row_metadata=FULL and "
            "add it to the server config; events already written that way cannot be decoded, "
            "start the bridge from a position after the change"
        )
    fixes: list[tuple[str, Callable[[Any], Any]]] = []
    zero_text: dict[str, str] = {}
    for col in columns:
        fix = _column_fix(col)
        if fix is not None:
            fixes.append((col.name, fix))
        if col.type in _DATE_TYPES:
            zero_text[col.name] = "0000-00-00"
        elif col.type in _DATETIME_TYPES:
            zero_text[col.name] = zero_datetime_text(getattr(col, "fsp", 0))
    if isinstance(primary_key, str):
        key = (primary_key,) if primary_key else ()
    else:
        key = tuple(primary_key or ())
    return _TablePlan(qualified, key, tuple(fixes), zero_text)


def _column_fix(col: Any) -> Callable[[Any], Any] | None:
    """The value repair one column type needs, or None."""
    t = col.type
    if t in _TIMESTAMP_TYPES:
        zero = InvalidValue(zero_datetime_text(getattr(col, "fsp", 0)), "zero TIMESTAMP")
        return lambda v: zero if v == _EPOCH else v.replace(tzinfo=timezone.utc)
    if t == FIELD_TYPE.TIME2:
        return fix_negative_time
    if t == FIELD_TYPE.YEAR:
        return lambda v: 0 if v == 1900 else v  # YEAR 0000 is stored as 0; 1900 is not a YEAR
    if col.character_set_name == "binary":  # BINARY, VARBINARY, BLOB, MariaDB UUID
        width = getattr(col, "max_length", 0) if t == FIELD_TYPE.STRING else 0
        return lambda v: binary_value(v, width)
    if t == FIELD_TYPE.SET:
        order = tuple(col.set_values or ())
        return lambda v: ",".join(m for m in order if m in v) if isinstance(v, set) else v
    if t == FIELD_TYPE.JSON:
        return _mysql_json
    return None


def _mysql_json(value: Any) -> Any:
    """MySQL binary JSON as plain Python: str keys and strings (the library leaves bytes)."""
    if isinstance(value, JsonDiff):
        raise Fatal("partial JSON update in the binlog - fix: SET GLOBAL binlog_row_value_options=''")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_mysql_json(k): _mysql_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mysql_json(v) for v in value]
    return value


# =========================================================================================
# The reader (I/O)
# =========================================================================================

_FL_STANDALONE = 0x01  # MariaDB GTID flag: the group is one statement (DDL), no COMMIT
# Event types the library does not implement that carry no row data.
_HARMLESS_UNKNOWN_TYPES = frozenset({
    0x1C,  # IGNORABLE_LOG_EVENT
    0x22,  # ANONYMOUS_GTID_LOG_EVENT (MySQL without GTIDs: BEGIN follows)
    0x24,  # TRANSACTION_CONTEXT_EVENT (group replication)
    0x25,  # VIEW_CHANGE_EVENT
    0x29,  # HEARTBEAT_LOG_EVENT_V2 (MySQL >= 8.0.26)
})
_STREAM_EVENTS = [
    bl_event.MariadbGtidEvent,
    bl_event.GtidEvent,
    bl_event.QueryEvent,
    bl_event.XidEvent,
    bl_event.XAPrepareEvent,
    bl_event.RotateEvent,
    bl_event.HeartbeatLogEvent,
    bl_event.MariadbGtidListEvent,
    bl_event.NotImplementedEvent,
    bl_rows.WriteRowsEvent,
    bl_rows.UpdateRowsEvent,
    bl_rows.DeleteRowsEvent,
    bl_rows.PartialUpdateRowsEvent,
    # consumed by the library itself (its table map, the checksum setting) and yielded
    # nothing here: asked for only so that `_unlink` sees them too
    bl_rows.TableMapEvent,
    bl_event.FormatDescriptionEvent,
]
tablemap.install()  # table-map events parsed once per layout (connectors/mysql/tablemap.py)
_ROW_OPS: list[tuple[type, Op]] = [
    (bl_rows.WriteRowsEvent, Op.INSERT),
    (bl_rows.UpdateRowsEvent, Op.UPDATE),  # PartialUpdateRowsEvent is a subclass
    (bl_rows.DeleteRowsEvent, Op.DELETE),
]
_ROW_OP_BY_TYPE: dict[type, Op] = dict(_ROW_OPS)
_PRIVILEGE_ERRORS = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 1698})
_ER_BINLOG_POSITION = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG
_ER_SAME_SERVER_ID = 4052  # MariaDB: a replica with this server_id is already connected
# Failures that mean "the connection or server went away": reconnect and resume.
_TRANSIENT = (pymysql.err.OperationalError, pymysql.err.InterfaceError, pymysql.err.InternalError,
              struct.error, EOFError, OSError)
# Failures that mean "these bytes cannot be decoded": retrying reads the same bytes.
_UNDECODABLE = (MalformedBinLogEvent, StatusVariableMismatch, NotImplementedError,
                UnicodeDecodeError, ValueError)
_CAUGHT = (pymysql.err.MySQLError, BinLogNotEnabled, *_TRANSIENT, *_UNDECODABLE)


class BinlogChangeSource:
    """`connectors.base.ChangeSource` over the MES binlog (see the module docstring).

    Nothing connects before `events()` is first iterated. One reader streams once: after
    `SourceUnavailable` the caller closes it and builds a new one from its stored position.
    """

    side = Side.MES

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str | None,
        database: str,
        server_id: int,
        resume: BinlogPosition | None,
        marker_table: str,
        heartbeat_seconds: float = 1.0,
        idle_seconds: float = 0.5,
        tables: set[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        fast_rows: bool = True,
    ) -> None:
        """`fast_rows`: decode row images with `connectors.mysql.rowdecode` (False: with the
        library, several times slower; the values are the same)."""
        if not 1 <= server_id <= 0xFFFFFFFF:
            raise ValueError(f"server_id must be 1..4294967295, got {server_id}")
        if heartbeat_seconds <= 0 or idle_seconds <= 0:
            raise ValueError("heartbeat_seconds and idle_seconds must be > 0")
        if not marker_table:
            raise ValueError("marker_table is required (the bridge's state table)")
        self._conn_args: dict[str, Any] = {
            "host": host, "port": int(port), "user": user, "password": password or "",
        }
        self.database = database
        self.server_id = server_id
        self.resume = resume
        self.marker_table = marker_table
        self.tables = _bare_names(tables, database)
        self.idle_seconds = idle_seconds
        # Heartbeats also pace Idle events: with two per idle period, an Idle follows at most
        # 1.5 x idle_seconds after the last event (the library read blocks until one arrives).
        self.heartbeat_period = min(heartbeat_seconds, idle_seconds / 2)
        # No heartbeat within twice the configured period: the connection is dead.
        self.read_timeout = 2 * heartbeat_seconds + 1.0
        self._clock = clock
        self._stream: BinLogStreamReader | None = None
        self._framer: Framer | None = None
        self.fast_rows = fast_rows
        # table_id -> (the library's table object, repair plan, fast decoder or None)
        self._plans: dict[int, tuple[Any, _TablePlan, TableDecoder | None]] = {}
        self._started = False
        self.last_acknowledged: Position | None = None

    # -- ChangeSource --------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """TxBegin/RowChange/TxCommit per committed transaction, Idle when quiet.

        Raises SetupError (server settings), Fatal (position purged, undecodable data) or
        SourceUnavailable (connection lost: build a new reader from the last position).
        """
        if self._started:
            raise RuntimeError("a BinlogChangeSource streams once; build a new one to resume")
        self._started = True
        framer = self._start()
        last_output = self._clock()
        while True:
            out = self._guarded(self._step)
            if out:
                if type(out[0]) is Idle and len(out) == 1 and self._input_pending():
                    # a dropped (echo) transaction ended and more is already arriving: a
                    # position update, not a pause (a consumer commits on a pause)
                    out[0].pending = True
                yield from out
                last_output = self._clock()
                if type(out[-1]) is TxCommit and not self._input_pending():
                    # caught up at a transaction's end: say so now, not idle_seconds later
                    # (the consumer commits its work on Idle)
                    yield Idle(position=framer.idle_position())
            elif self._clock() - last_output >= self.idle_seconds:
                yield Idle(position=framer.idle_position())
                last_output = self._clock()

    def acknowledge(self, position: Position) -> None:
        """No-op for the binlog (the resume position lives on the target); kept for metrics."""
        if isinstance(position, BinlogPosition) and (
            not isinstance(self.last_acknowledged, BinlogPosition) or position > self.last_acknowledged
        ):
            self.last_acknowledged = position

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.close()
        except (pymysql.err.Error, OSError) as exc:  # the socket may already be gone
            log.debug("binlog_stream_close_failed", error=repr(exc))

    # -- introspection for metrics/tests -------------------------------------------------
    @property
    def position(self) -> BinlogPosition | None:
        """End of the last complete binlog group read (None before start)."""
        return self._framer.position if self._framer else None

    @property
    def stats(self) -> ReaderStats:
        return self._framer.stats if self._framer else ReaderStats()

    # -- start -----------------------------------------------------------------------------
    def _start(self) -> Framer:
        """Check settings, pick the start position and GTID state, open the stream."""
        conn = self._guarded(self._connect_control)
        try:
            start, gtid = self._guarded(lambda: self._start_point(conn))
        finally:
            conn.close()
        gtid_text = str(gtid) if gtid is not None else None
        self._framer = Framer(self.database, self.marker_table, self.tables,
                              BinlogPosition(start.file, start.pos, gtid_text or None), gtid)
        self._stream = self._open_stream(start)
        log.info("binlog_reader_started", position=str(self._framer.position),
                 server_id=self.server_id, database=self.database, gtid_tracked=gtid is not None)
        return self._framer

    def _connect_control(self) -> pymysql.connections.Connection:
        return pymysql.connect(**self._conn_args, charset="utf8mb4", autocommit=True,
                               connect_timeout=CONNECT_TIMEOUT, read_timeout=30)

    def _start_point(self, conn: pymysql.connections.Connection) -> tuple[BinlogPosition, GtidState | None]:
        problems = introspect.check_binlog_settings(conn)
        if problems:
            raise SetupError("the MES server is not set up for binlog capture:\n  - "
                             + "\n  - ".join(problems))
        start = self.resume or introspect.current_position(conn)
        if not introspect.is_mariadb(conn):
            return BinlogPosition(start.file, start.pos), None  # MySQL GTID sets: not tracked
        state = introspect.gtid_state_at(conn, start.file, start.pos)
        if state is None and start.gtid is not None:
            state = start.gtid
        if state is None:
            log.warning("gtid_state_unknown", position=str(start),
                        note="positions will carry no GTID until the next binlog file starts")
            return start, None
        return start, GtidState(state)

    def _open_stream(self, start: BinlogPosition) -> BinLogStreamReader:
        """The library stream, resuming by file/pos (see docs/notes: is_mariadb=False)."""
        settings = {**self._conn_args, "charset": "utf8mb4", "connect_timeout": CONNECT_TIMEOUT,
                    "read_timeout": self.read_timeout}
        return BinLogStreamReader(
            connection_settings=settings,
            server_id=self.server_id,
            resume_stream=True,
            blocking=True,
            log_file=start.file,
            log_pos=start.pos,
            is_mariadb=False,
            only_schemas=[self.database],
            only_events=_STREAM_EVENTS,
            filter_non_implemented_events=False,
            slave_heartbeat=self.heartbeat_period,
            enable_logging=False,
        )

    # -- streaming ---------------------------------------------------------------------------
    def _guarded(self, fn: Callable[[], Any]) -> Any:
        """Run `fn`, turning driver/library failures into the bridge's error classes."""
        try:
            return fn()
        except BridgeError:
            self.close()
            raise
        except _CAUGHT as exc:
            self.close()
            raise self._classify(exc) from exc

    def _input_pending(self) -> bool:
        """True when the next binlog packet has (partly) arrived: in PyMySQL's read buffer or
        in the socket (for TLS: decrypted in the SSL object). Peeks with the socket made
        non-blocking for the call: BufferedReader.peek returns buffered bytes without a
        read, else makes one non-blocking read, which finds nothing (b'', or TLS's "want
        read") or the next bytes, which stay buffered for PyMySQL. When the connection's
        internals are not what this expects, says True (Idle then comes from the
        idle_seconds timer, as without this check)."""
        conn = getattr(self._stream, "_stream_connection", None)
        sock, rfile = getattr(conn, "_sock", None), getattr(conn, "_rfile", None)
        if sock is None or rfile is None or not hasattr(rfile, "peek"):
            return True
        try:
            timeout = sock.gettimeout()
            sock.settimeout(0.0)
            try:
                return bool(rfile.peek(1))
            except ssl.SSLWantReadError:  # TLS: no complete record has arrived
                return False
            finally:
                sock.settimeout(timeout)
        except (OSError, ValueError):  # closed, TLS renegotiation...: let the next read decide
            return True

    def _step(self) -> list[Event]:
        """Read one binlog event and return what it yields (often nothing)."""
        assert self._stream is not None and self._framer is not None
        event = self._stream.fetchone()
        if event is None:
            raise SourceUnavailable(f"the MES server ended the binlog stream at {self._framer.position}")
        _unlink(event)
        return self._dispatch(event, self._framer)

    def _dispatch(self, ev: Any, framer: Framer) -> list[Event]:
        end = ev.packet.log_pos
        if isinstance(ev, bl_rows.RowsEvent):
            return self._rows(ev, framer)
        if isinstance(ev, bl_event.MariadbGtidEvent):
            return framer.open(ev.gtid, ev.timestamp, end,
                               ends_with_statement=bool(ev.flags & _FL_STANDALONE),
                               gtid=(ev.domain_id, ev.server_id, ev.gtid_seq_no))
        if isinstance(ev, bl_event.GtidEvent):
            return framer.open(ev.gtid, ev.timestamp, end, ends_with_statement=True)
        if isinstance(ev, bl_event.XidEvent):
            return framer.commit(end, ev.timestamp)
        if isinstance(ev, bl_event.QueryEvent):
            schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema)
            return framer.statement(ev.query, schema, end, ev.timestamp)
        if isinstance(ev, bl_event.XAPrepareEvent):
            return framer.xa_prepare(ev.one_phase, end, ev.timestamp)
        if isinstance(ev, bl_event.RotateEvent):
            if ev.next_binlog != framer.position.file:
                self._plans.clear()  # table ids are per binlog file (the library's map too)
            framer.rotate(ev.next_binlog, ev.position)
        elif isinstance(ev, bl_event.MariadbGtidListEvent):
            framer.gtid_list(",".join(g.gtid for g in ev.gtid_list))
        elif isinstance(ev, bl_event.NotImplementedEvent):
            self._unknown_event(ev, framer)
        return []  # heartbeats: liveness only

    def _rows(self, ev: Any, framer: Framer) -> list[Event]:
        op = _ROW_OP_BY_TYPE.get(type(ev)) or next(op for cls, op in _ROW_OPS if isinstance(ev, cls))
        plan, fast = self._plan(ev)

        def decode() -> RowImages:
            body = _rows_body(ev) if fast is not None else None
            if body is None:
                framer.stats.library_row_events += 1
                return _images(ev, op, plan)
            framer.stats.fast_row_events += 1
            data, start, end = body
            return fast.rows(op, data, start, end, ev.columns_present_bitmap,
                             ev.columns_present_bitmap2 if op is Op.UPDATE else None)

        return framer.rows(plan.table, op, plan.key, decode, ev.timestamp, ev.packet.log_pos)

    def _plan(self, ev: Any) -> tuple[_TablePlan, TableDecoder | None]:
        """The table's repair plan and fast decoder (None: decode with the library), rebuilt
        whenever the library maps the table anew."""
        table_obj = ev.table_map[ev.table_id]
        cached = self._plans.get(ev.table_id)
        if cached is not None and cached[0] is table_obj:
            return cached[1], cached[2]
        plan = plan_table(ev.schema, ev.table, ev.columns, ev.primary_key)
        fast = None
        if self.fast_rows:
            try:
                fast = compile_table(ev.columns)
            except Unsupported as exc:
                log.info("binlog_rows_decoded_by_library", table=plan.table, reason=str(exc))
        self._plans[ev.table_id] = (table_obj, plan, fast)
        return plan, fast

    def _unknown_event(self, ev: Any, framer: Framer) -> None:
        if ev.event_type in _HARMLESS_UNKNOWN_TYPES:
            return
        raise Fatal(
            f"binlog event type {ev.event_type} at {framer.position.file}:{ev.packet.log_pos} is "
            "not understood by the reader; stopping rather than risk dropping rows - fix: "
            "turn off binlog compression (log_bin_compress / binlog_transaction_compression) "
            "or upgrade the bridge"
        )

    def _classify(self, exc: BaseException) -> BridgeError:
        """The bridge error class for a driver/library failure (by class and error code)."""
        where = str(self._framer.position) if self._framer else str(self.resume or "the current position")
        code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
        if code == _ER_BINLOG_POSITION:
            return Fatal(
                f"the MES server cannot send the binlog from {where}: {exc.args[1]} - the "
                "position was purged or is invalid; the bridge needs a new initial load. Keep "
                "binlogs longer than the bridge may be down (binlog_expire_logs_seconds)"
            )
        if code in _PRIVILEGE_ERRORS:
            return SetupError(f"MES binlog reader: {exc.args[1]} - fix: GRANT REPLICATION SLAVE, "
                              f"BINLOG MONITOR ON *.* TO the bridge user")
        if code == _ER_SAME_SERVER_ID:
            return SourceUnavailable(
                f"another binlog reader is connected with server_id {self.server_id} (our own "
                "previous connection, which the server drops soon, or a server_id collision: "
                "mes.server_id must be unique among the server's replicas)"
            )
        if isinstance(exc, BinLogNotEnabled):
            return SetupError("binary logging is off on the MES server - fix: start it with log_bin")
        if isinstance(exc, _TRANSIENT):
            return SourceUnavailable(f"MES binlog connection lost near {where}: {exc!r}")
        if isinstance(exc, _UNDECODABLE):
            return Fatal(f"cannot decode the MES binlog near {where}: {exc!r}")
        return Fatal(f"MES binlog reader failed near {where}: {exc!r}")


def _unlink(ev: Any) -> None:
    """The library's packet wrapper and the event it returns refer to each other (`event.packet`,
    `wrapper.event`): a reference cycle per binlog event, which only the cyclic collector frees,
    holding the event's bytes (megabytes under load) until it runs. The wrapper is done with
    its event once `fetchone` has returned it: its link back goes, and reference counting frees
    both as soon as the reader lets go of the event."""
    wrapper = getattr(ev, "packet", None)
    if wrapper is not None and getattr(wrapper, "event", None) is ev:
        wrapper.event = None


def _rows_body(ev: Any) -> tuple[bytes, int, int] | None:
    """(packet bytes, start, end) of a rows event's row images, read from the library's
    packet without decoding them: the library has parsed the header and the columns-present
    bitmap(s), so the packet's read position is at the first image, and the event's bytes
    end `event_size - read_bytes` later (the CRC32 after that is excluded from event_size).
    None when the event is not in the expected state (the library then decodes it)."""
    if type(ev) is bl_rows.PartialUpdateRowsEvent:  # MySQL partial JSON: extra fields
        return None
    wrapper = ev.packet
    # bytes the library pushed back (`unread`) would precede the packet position
    if getattr(wrapper, "_BinLogPacketWrapper__data_buffer", None) != b"":
        return None
    if ev.number_of_columns != len(ev.columns):
        return None
    packet = wrapper.packet
    data, start = packet._data, packet._position
    end = start + ev.event_size - wrapper.read_bytes
    if not isinstance(data, bytes) or not isinstance(start, int) or not start <= end <= len(data):
        return None
    return data, start, end


def _images(ev: Any, op: Op, plan: _TablePlan) -> Iterator[tuple[Row | None, Row | None]]:
    """(before, after) per row of one rows event, repaired into bridge values."""
    for row in ev.rows:
        if op is Op.UPDATE:
            yield (plan.repair(row["before_values"], row["before_none_sources"]),
                   plan.repair(row["after_values"], row["after_none_sources"]))
        elif op is Op.INSERT:
            yield None, plan.repair(row["values"], row["none_sources"])
        else:
            yield plan.repair(row["values"], row["none_sources"]), None


def _bare_names(tables: set[str] | None, database: str) -> frozenset[str] | None:
    """Table names without the database: accepts "t" and "db.t" (db must be `database`)."""
    if tables is None:
        return None
    out = set()
    for name in tables:
        db, dot, bare = name.partition(".")
        if not dot:
            out.add(name)
        elif db == database:
            out.add(bare)
        else:
            raise ValueError(f"table {name!r} is not in the MES database {database!r}")
    return frozenset(out)

