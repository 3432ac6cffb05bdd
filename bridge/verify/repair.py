"""`verify --repair`: make both sides equal, without echo, audited.

Who wins, per column (CRM names):
* the column's owner (`[tables.conflict] owners` / `owner`);
* else a fixed-winner rule of the column or table (`crm_wins` / `mes_wins`);
* else, for a one-way table, its source; for a `both` table, the `priority` side.
Rows: missing on one side -> inserted from the other; a row only on the target of a one-way
table ("extra") -> deleted there (its source says it does not exist).

Writes go through the bridge's writers, so the other direction's reader drops them: on the
MES a transaction whose first write is the state marker (direction "repair"), on the CRM a
session attached to the admin replication origin (`<name>_bridge_admin`; the daemon holds the
main one). Each row is re-read at repair time (the written side under lock): a row that is
equal by then is skipped. Every change is one audit record (outcome "repair") in the written
side's audit table, in the same transaction, and one `bridge.audit` log line.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from bridge.config import Config
from bridge.connect import make_target
from bridge.errors import Unrepresentable
from bridge.model import Side
from bridge.rowjson import from_jsonable, to_jsonable
from bridge.types import to_target
from bridge.verify.compare import row_diffs
from bridge.verify.model import Difference, Repair
from bridge.verify.plan import TablePlan
from bridge.verify.sides import SideReader

log = structlog.get_logger("bridge.verify")
audit_log = structlog.get_logger("bridge.audit")

_FIXED = {"crm_wins": Side.CRM, "mes_wins": Side.MES}


def winner(plan: TablePlan, column: str) -> Side:
    """The side whose value of `column` (CRM name) is right."""
    spec = plan.tm.spec
    c = spec.conflict
    owner = c.owners.get(column) or c.owner
    if owner:
        return Side(owner)
    rule = c.columns.get(column, c.rule)
    if rule in _FIXED:
        return _FIXED[rule]
    if spec.direction == "crm_to_mes":
        return Side.CRM
    if spec.direction == "mes_to_crm":
        return Side.MES
    return Side(c.priority)


class Repairer:
    """Repairs the differences of one table."""

    def __init__(self, config: Config, plan: TablePlan, readers: dict[Side, SideReader]):
        self.config = config
        self.plan = plan
        self.readers = readers
        self.run_id = uuid.uuid4().hex[:12]

    def repair(self, diffs: Sequence[Difference]) -> list[Repair]:
        out: list[Repair] = []
        targets: dict[Side, Any] = {}
        try:
            for d in diffs:
                out += self._one(d, targets)
        finally:
            for t in targets.values():
                t.close()
        return out

    def _target(self, side: Side, targets: dict[Side, Any]) -> Any:
        if side not in targets:
            t = make_target(self.config, side, admin=True)
            t.connect()
            targets[side] = t
        return targets[side]

    def _key(self, d: Difference) -> tuple:
        return tuple(from_jsonable(d.key[p.crm], p.crm_info) for p in self.plan.key)

    def _one(self, d: Difference, targets: dict[Side, Any]) -> list[Repair]:
        crm_key = self._key(d)
        plan = self.plan
        if d.kind == "extra":
            assert d.only_on is not None
            return [self._write(d.only_on, crm_key, targets, delete=True)]
        if d.kind == "missing":
            assert d.only_on is not None
            return [self._write(d.only_on.other, crm_key, targets)]
        by_side: dict[Side, list[str]] = {}
        for col in d.columns:
            w = winner(plan, col)
            by_side.setdefault(w.other, []).append(col)
        return [self._write(side, crm_key, targets, columns=cols)
                for side, cols in sorted(by_side.items())]

    def _write(self, side: Side, crm_key: tuple, targets: dict[Side, Any], *,
               delete: bool = False, columns: list[str] | None = None) -> Repair:
        """Bring the row of `crm_key` on `side` in line with the other side."""
        plan = self.plan
        key_jsonable = {p.crm: to_jsonable(v) for p, v in zip(plan.key, crm_key)}
        try:
            target = self._target(side, targets)
        except Exception as exc:  # noqa: BLE001 - reported per row, the run goes on
            return Repair(plan.tm.crm_table, key_jsonable, side, "failed",
                          reason=f"cannot open the {side.value} writer: {exc}")
        table = plan.table(side)
        names = plan.names(side)
        side_key = [p.name(side) for p in plan.key]
        key_here = self._on(crm_key, side)
        target.begin()
        try:
            if side is Side.MES:
                target.write_state("repair", f"verify:{self.run_id}")  # echo marker: first write
            found = target.fetch_for_update(table, names, side_key, [key_here])
            current = next(iter(found.values()), None)
            other = self.readers[side.other].rows_by_keys(
                plan, [self._on(crm_key, side.other)], plan.columns)
            source_row = other[0] if other else None
            mine = tuple(current[n] for n in names) if current is not None else None
            rows = {side: [mine] if mine else [], side.other: [source_row] if source_row else []}
            still = row_diffs(plan, rows[Side.CRM], rows[Side.MES])
            if not still:
                target.rollback()
                return Repair(plan.tm.crm_table, key_jsonable, side, "skipped",
                              reason="equal when re-read (a change was in flight)")
            action, cols = self._apply(target, side, table, side_key, key_here, current,
                                       source_row, delete, columns, still[0])
            if action == "skipped":
                target.rollback()
                return Repair(plan.tm.crm_table, key_jsonable, side, "skipped",
                              reason="this side wins the differing columns now")
            record = {
                "direction": f"repair_to_{side.value}",
                "source_position": f"verify:{self.run_id}",
                "source_xid": action,
                "source_commit_ts": None,
                "tables": {table: 1},
                "sample_keys": [[table, list(key_jsonable.values())]],
                "rows_applied": 1,
                "rows_dead_lettered": 0,
                "conflicts": 0,
                "outcome": "repair",
            }
            target.insert_audit(record)
            target.commit()
        except Unrepresentable as exc:
            target.rollback()
            return Repair(plan.tm.crm_table, key_jsonable, side, "failed", reason=str(exc))
        except Exception as exc:
            target.rollback()
            log.warning("repair_failed", table=plan.tm.crm_table, key=key_jsonable, side=side.value,
                        error=f"{type(exc).__name__}: {exc}")
            return Repair(plan.tm.crm_table, key_jsonable, side, "failed",
                          reason=f"{type(exc).__name__}: {exc}")
        audit_log.info("repair", table=plan.tm.crm_table, side=side.value, action=action,
                       key=key_jsonable, columns=cols, run=self.run_id,
                       before=to_jsonable(current), source=to_jsonable(source_row))
        return Repair(plan.tm.crm_table, key_jsonable, side, action, cols)

    def _apply(self, target: Any, side: Side, table: str, side_key: list[str], key_here: tuple,
               current: dict | None, source_row: tuple | None, delete: bool,
               columns: list[str] | None, diff: Difference) -> tuple[str, list[str]]:
        plan = self.plan
        if source_row is None:
            if current is not None and (delete or diff.kind == "extra"):
                target.delete_rows(table, side_key, [key_here])
                return "delete", []
            return "skipped", []  # for a `both` table a row only here is copied the other way
        values = self._values(side, source_row)
        if current is None:
            cols = list(values)
            target.insert_rows(table, cols, [tuple(values[c] for c in cols)])
            return "insert", [p.crm for p in plan.columns]
        wanted = [c for c in (columns or list(diff.columns)) if c in diff.columns
                  and winner(plan, c) is side.other]
        if not wanted:
            return "skipped", []
        by_crm = {p.crm: p for p in plan.columns}
        sets = {by_crm[c].name(side): values[by_crm[c].name(side)] for c in wanted}
        target.update_rows(table, list(sets), side_key, [tuple(sets.values()) + tuple(key_here)])
        return "update", wanted

    def _values(self, side: Side, source_row: tuple) -> dict[str, Any]:
        """The other side's row in `side`'s names and types (mapping + value maps + convert)."""
        plan = self.plan
        src = side.other
        mapped = plan.tm.map_row(src, {p.name(src): v for p, v in zip(plan.columns, source_row)})
        assert mapped is not None
        out: dict[str, Any] = {}
        for p in plan.columns:
            name = p.name(side)
            v = mapped.get(name)
            out[name] = None if v is None else to_target(v, p.info(side), side)
        return out

    def _on(self, crm_key: tuple, side: Side) -> tuple:
        if side is Side.CRM:
            return crm_key
        return tuple(to_target(v, p.mes_info, Side.MES) for p, v in zip(self.plan.key, crm_key))

