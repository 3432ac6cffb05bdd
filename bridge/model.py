"""The one change model both readers produce and both writers consume.

Pure: imports no database driver. A reader yields a stream of `TxBegin`, `RowChange`,
`TxCommit` (and `Idle` while nothing happens); a writer applies each source transaction
atomically and stores the source position in the same target transaction.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union


class Side(enum.StrEnum):
    CRM = "crm"  # PostgreSQL
    MES = "mes"  # MySQL / MariaDB

    @property
    def other(self) -> "Side":
        return Side.MES if self is Side.CRM else Side.CRM


class Op(enum.StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


class _Unchanged:
    """'Value not sent' (a TOASTed column an UPDATE left alone). Never NULL, never written."""

    _instance: "_Unchanged | None" = None

    def __new__(cls) -> "_Unchanged":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __bool__(self) -> bool:
        raise TypeError("UNCHANGED has no truth value; compare with `is UNCHANGED`")

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


class JsonText(str):
    """JSON text the source database itself validated (a PostgreSQL json/jsonb value): a
    converter need not parse it again to know it is JSON. Otherwise a plain str."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class InvalidValue:
    """A source value the reader could decode only as text (e.g. timestamp 'infinity').

    It travels to the writer, whose converter sends the row to the dead-letter table.
    """

    text: str
    reason: str


# --- positions -------------------------------------------------------------------------

_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


@dataclass(frozen=True, order=True, slots=True)
class PgPosition:
    """A PostgreSQL WAL position: the commit LSN of a source transaction."""

    lsn: int

    @classmethod
    def parse(cls, text: str) -> "PgPosition":
        m = _LSN_RE.match(text.strip())
        if not m:
            raise ValueError(f"not an LSN: {text!r}")
        return cls((int(m.group(1), 16) << 32) | int(m.group(2), 16))

    def __str__(self) -> str:
        return f"{self.lsn >> 32:X}/{self.lsn & 0xFFFFFFFF:X}"


_BINLOG_INDEX_RE = re.compile(r"\.(\d+)$")


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    """A binlog position: end of a transaction as (file, pos), plus the GTID state if known."""

    file: str
    pos: int
    gtid: str | None = None

    @property
    def _order(self) -> tuple[int, str, int]:
        m = _BINLOG_INDEX_RE.search(self.file)
        return (int(m.group(1)) if m else -1, self.file, self.pos)

    def __lt__(self, other: "BinlogPosition") -> bool:
        return self._order < other._order

    def __le__(self, other: "BinlogPosition") -> bool:
        return self._order <= other._order

    def __gt__(self, other: "BinlogPosition") -> bool:
        return self._order > other._order

    def __ge__(self, other: "BinlogPosition") -> bool:
        return self._order >= other._order

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}" + (f" gtid={self.gtid}" if self.gtid else "")


Position = Union[PgPosition, BinlogPosition]


def position_to_text(pos: Position) -> str:
    """Serialise a position for a state table (see `position_from_text`)."""
    if isinstance(pos, PgPosition):
        return f"pg:{pos}"
    return f"binlog:{pos.file}:{pos.pos}" + (f":{pos.gtid}" if pos.gtid else "")


def position_from_text(text: str) -> Position:
    kind, _, rest = text.partition(":")
    if kind == "pg":
        return PgPosition.parse(rest)
    if kind == "binlog":
        file, _, rest = rest.partition(":")
        pos, _, gtid = rest.partition(":")
        return BinlogPosition(file, int(pos), gtid or None)
    raise ValueError(f"unknown position kind in {text!r}")


# --- events ------------------------------------------------------------------------------

Row = dict[str, Any]


@dataclass(slots=True)
class TxBegin:
    """Start of a source transaction.

    `position` is the transaction's own position when the source knows it up front
    (PostgreSQL's Begin carries the commit LSN); binlog readers leave it None.
    """

    side: Side
    xid: str
    commit_ts: datetime | None
    position: Position | None = None


@dataclass(slots=True)
class RowChange:
    """One row change, in source column names and decoded Python values.

    `before` is the full old row (REPLICA IDENTITY FULL / binlog FULL image), or only the key
    columns, or None for inserts. `after` is None for deletes. Either may hold UNCHANGED.
    `table` is the source table as "schema.table" (PostgreSQL) or "database.table" (MySQL).
    `prepared` is the applier's own cache: the row already mapped and converted for the
    target, filled ahead of time by the read-ahead thread (`Applier.precompute`).
    """

    op: Op
    table: str
    before: Row | None
    after: Row | None
    key: Row = field(default_factory=dict)
    prepared: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class TxCommit:
    """End of a source transaction. `position` is where a reader resumes after it."""

    side: Side
    xid: str
    position: Position
    commit_ts: datetime | None


@dataclass(slots=True)
class Idle:
    """Nothing arrived for a while; lets the consumer check for shutdown and flush state.

    `position`, when set, is a source position with nothing pending before it (all
    transactions up to it were delivered), so it may be acknowledged once earlier work is
    committed.

    `pending` is True when the reader already holds more events (the Idle ends a dropped
    echo transaction in the middle of a busy stream): a position update, not a pause, so a
    consumer need not commit its open work for it.
    """

    position: Position | None = None
    pending: bool = False


Event = Union[TxBegin, RowChange, TxCommit, Idle]
