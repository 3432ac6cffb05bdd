"""The conflict layer as the applier uses it: policies per table, parked rows, recording.

Decisions are pure (conflict.rules); recording writes one row per conflict into the target's
`conflicts` state table (in the apply transaction) and one structlog line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from bridge.mapping import Mapping
from bridge.model import Row, Side
from bridge.rowjson import to_jsonable
from conflict.ops import ConflictRecord, Decision, Incoming
from conflict.policy import Policy, compile_policy
from conflict.rules import decide, sent

log = structlog.get_logger("bridge.conflict")

__all__ = ["Resolver", "sent"]


def key_id(values: tuple) -> str:
    """A stable text id for a key (as stored in conflict records)."""
    import json

    return json.dumps(to_jsonable(list(values)), sort_keys=True)


class Resolver:
    """Conflict decisions for one target side."""

    def __init__(self, mapping: Mapping, target_side: Side):
        self.mapping = mapping
        self.target_side = target_side
        self._policies: dict[str, Policy] = {}
        self.parked: set[tuple[str, str]] = set()  # (target table, key_id)

    @classmethod
    def from_mapping(cls, mapping: Mapping, target_side: Side) -> "Resolver":
        return cls(mapping, target_side)

    def policy(self, tt) -> Policy:
        p = self._policies.get(tt.name)
        if p is None:
            p = compile_policy(tt.mapping, self.target_side, tt.colinfo)
            self._policies[tt.name] = p
        return p

    def is_parked(self, table: str, key: tuple) -> bool:
        return bool(self.parked) and (table, key_id(key)) in self.parked

    def decide(self, inc: Incoming, current: Row | None, tt, target_ts: datetime | None = None) -> Decision:
        parked = self.is_parked(tt.name, inc.old_key) or self.is_parked(tt.name, inc.new_key)
        d = decide(inc, current, self.policy(tt), target_ts=target_ts, parked=parked)
        if d.parked:
            self.parked.add((tt.name, key_id(inc.old_key)))
        return d

    # --- recording ------------------------------------------------------------------------
    def record(self, target, direction: str, tt, inc: Incoming, rec: ConflictRecord, tx: Any,
               current: Row | None = None, target_ts: datetime | None = None) -> int:
        status = "queued" if rec.type == "queued" else "parked" if rec.parked else "resolved"
        record = {
            "direction": direction,
            "target_table": tt.name,
            "row_key": to_jsonable(dict(zip(tt.key, inc.old_key))),
            "conflict_type": rec.type,
            "rule": rec.rule,
            "winner": rec.winner,
            "columns": rec.columns,
            "incoming_before": to_jsonable(inc.before),
            "incoming_after": to_jsonable(inc.after),
            "target_found": to_jsonable(current),
            "result": to_jsonable(rec.result) if not rec.parked else None,
            "source_position": inc.position,
            "source_commit_ts": inc.commit_ts,
            "target_commit_ts": target_ts,
            "status": status,
        }
        cid = target.insert_conflict(record)
        log.info("conflict", id=f"{self.target_side.value}-{cid}", direction=direction, table=tt.name,
                 key=record["row_key"], type=rec.type, rule=rec.rule, winner=rec.winner,
                 columns=rec.columns, status=status)
        return cid

    def load_parked(self, target, tables: list[str]) -> None:
        """Reload the parked rows from the target's conflict table (in the current transaction)."""
        rows = target.parked_keys(tables) if hasattr(target, "parked_keys") else []
        self.parked = {(table, key_id(tuple(key.values()))) for table, key in rows}
