"""Decide what to write for an incoming change given the current target row.

Pure decisions (`decide`) plus the recording of conflicts through the target. Detection
compares the incoming before-image with the locked current target row, on mapped columns only,
after type conversion (JSON semantically, decimals numerically, timestamps exactly).
"""

from __future__ import annotations

from typing import Any

import structlog

from bridge.mapping import Mapping
from bridge.model import UNCHANGED, Op, Row, Side
from bridge.rowjson import to_jsonable
from bridge.types import values_equal
from conflict.ops import ConflictRecord, Decision, Delete, Incoming, Insert, Update

log = structlog.get_logger("bridge.conflict")


def sent(row: Row | None) -> dict[str, Any]:
    """The columns of a row whose value was actually sent (not UNCHANGED)."""
    return {c: v for c, v in (row or {}).items() if v is not UNCHANGED}


def differing(a: Row, b: Row, columns, colinfo) -> list[str]:
    """Columns (present in both rows) whose values differ semantically."""
    out = []
    for c in columns:
        if c in a and c in b and a[c] is not UNCHANGED and b[c] is not UNCHANGED:
            if not values_equal(a[c], b[c], colinfo.get(c)):
                out.append(c)
    return out


class Resolver:
    """Conflict decisions for one target side."""

    def __init__(self, mapping: Mapping, target_side: Side):
        self.mapping = mapping
        self.target_side = target_side
        self.colinfo: dict[str, dict] = {}

    @classmethod
    def from_mapping(cls, mapping: Mapping, target_side: Side) -> "Resolver":
        return cls(mapping, target_side)

    # --- decisions ------------------------------------------------------------------------
    def decide(self, inc: Incoming, current: Row | None, rows: dict | None = None,
               colinfo: dict | None = None) -> Decision:
        colinfo = colinfo or {}
        after = sent(inc.after)
        if inc.op is Op.INSERT:
            if current is None:
                return Decision([Insert(after)], dict(after))
            diff = differing(after, current, after.keys(), colinfo)
            if not diff:
                return Decision([], current)
            result = {**current, **after}
            rec = ConflictRecord("insert_exists", "apply_source", inc.source.value, diff, result)
            return Decision([Update(inc.old_key, after)], result, [rec])
        if inc.op is Op.UPDATE:
            if current is None:
                if any(v is UNCHANGED for v in (inc.after or {}).values()):
                    rec = ConflictRecord("update_missing", "apply_source", "none", [], None)
                    return Decision([], None, [rec])
                rec = ConflictRecord("update_missing", "apply_source", inc.source.value, [], dict(after))
                return Decision([Insert(after)], dict(after), [rec])
            before = sent(inc.before)
            diff = differing(before, current, before.keys(), colinfo)
            changes = {c: v for c, v in after.items()
                       if c not in current or not values_equal(v, current[c], colinfo.get(c))}
            result = {**current, **after}
            conflicts = []
            if diff:
                conflicts.append(ConflictRecord("update_differs", "apply_source", inc.source.value, diff, result))
            ops = [Update(inc.old_key, changes)] if changes else []
            return Decision(ops, result, conflicts)
        if inc.op is Op.DELETE:
            if current is None:
                return Decision([], None, [ConflictRecord("delete_missing", "apply_source", "none", [], None)])
            before = sent(inc.before)
            diff = differing(before, current, before.keys(), colinfo)
            conflicts = [ConflictRecord("delete_differs", "apply_source", inc.source.value, diff, None)] if diff else []
            return Decision([Delete(inc.old_key)], None, conflicts)
        return Decision([], current)

    # --- recording ------------------------------------------------------------------------
    def record(self, target, direction: str, tt, inc: Incoming, rec: ConflictRecord, tx) -> int:
        record = {
            "direction": direction,
            "target_table": tt.name,
            "row_key": to_jsonable(dict(zip(tt.key, inc.new_key))),
            "conflict_type": rec.type,
            "rule": rec.rule,
            "winner": rec.winner,
            "columns": rec.columns,
            "incoming_before": to_jsonable(inc.before),
            "incoming_after": to_jsonable(inc.after),
            "target_found": None,
            "result": to_jsonable(rec.result),
            "source_position": inc.position,
            "source_commit_ts": inc.commit_ts,
            "status": "parked" if rec.parked else "resolved",
        }
        cid = target.insert_conflict(record)
        log.info("conflict", id=cid, direction=direction, table=tt.name, key=record["row_key"],
                 type=rec.type, rule=rec.rule, winner=rec.winner, columns=rec.columns)
        return cid
