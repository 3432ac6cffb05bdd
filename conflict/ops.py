"""Write operations a decision produces, and the incoming change as the resolver sees it.
Pure: no driver imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


from bridge.model import Op, Row, Side


@dataclass(slots=True)
class Incoming:
    """A source change already mapped to target names and converted to target values.

    before/after may hold UNCHANGED for values the source did not send."""

    op: Op
    source: Side
    table: str  # target table
    before: Row | None
    after: Row | None
    old_key: tuple
    new_key: tuple
    commit_ts: datetime | None = None
    position: str | None = None
    rendered: str | None = None  # `after` as the target writer renders an inserted row, if known


@dataclass(slots=True)
class Insert:
    row: Row


@dataclass(slots=True)
class Update:
    key: tuple  # key of the row as it is now on the target
    values: Row  # columns to set (may include new key values)


@dataclass(slots=True)
class Delete:
    key: tuple


WriteOp = Insert | Update | Delete


@dataclass(slots=True)
class ConflictRecord:
    type: str  # insert_exists, update_differs, update_missing, delete_differs, delete_missing, ownership_violation
    rule: str
    winner: str  # "crm" | "mes" | "merged" | "parked" | "none"
    columns: list[str] = field(default_factory=list)  # columns in dispute
    result: Row | None = None  # the row the target holds after the decision (None = absent)
    parked: bool = False


@dataclass(slots=True)
class Decision:
    ops: list[WriteOp]
    result: Row | None  # target row after the ops (None = no row)
    conflicts: list[ConflictRecord] = field(default_factory=list)
    parked: bool = False  # the change waits for a DBA; nothing was written
    # ownership violations: column -> (value the source holds, owner's value to write back)
    writeback: dict[str, tuple] = field(default_factory=dict)


