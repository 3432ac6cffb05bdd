"""Conflict policy of one table as seen from one target side, in that side's column names.
Compiled once from `[tables.conflict]`; pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.mapping import TableMapping
from bridge.model import Side

ROW_RULES = {"last_writer_wins", "crm_wins", "mes_wins", "keep_target", "apply_source", "manual"}


@dataclass(frozen=True)
class Policy:
    table: str  # target table
    target: Side
    key: tuple[str, ...]
    rule: str  # table rule
    column_rules: dict[str, str] = field(default_factory=dict)
    owners: dict[str, Side] = field(default_factory=dict)  # column -> owning side
    version_column: str | None = None
    priority: Side = Side.CRM
    colinfo: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Side:
        return self.target.other

    def rule_for(self, column: str) -> str:
        return self.column_rules.get(column, self.rule)

    def owner_of(self, column: str) -> Side | None:
        return self.owners.get(column)


def compile_policy(tm: TableMapping, target: Side, colinfo: dict[str, Any] | None = None) -> Policy:
    """Translate a table's conflict settings (CRM column names) into target-side names."""
    spec = tm.spec.conflict

    def to_target(crm_col: str) -> str:
        return crm_col if target is Side.CRM else tm.names[Side.CRM][crm_col]

    owners: dict[str, Side] = {}
    if spec.owner:
        for crm_col in tm.names[Side.CRM]:
            owners[to_target(crm_col)] = Side(spec.owner)
    for crm_col, side in spec.owners.items():
        owners[to_target(crm_col)] = Side(side)
    for k in tm.keys[target]:
        owners.pop(k, None)  # keys are matched, never owned

    version = None
    if spec.crm_version_column:
        version = to_target(spec.crm_version_column)
    elif spec.mes_version_column:
        mes_col = spec.mes_version_column
        version = mes_col if target is Side.MES else tm.names[Side.MES][mes_col]
    if version is not None and spec.crm_version_column not in spec.owners:
        owners.pop(version, None)  # both sides stamp the version column: never owned

    return Policy(
        table=tm.table(target),
        target=target,
        key=tm.keys[target],
        rule=spec.rule,
        column_rules={to_target(c): r for c, r in spec.columns.items()},
        owners=owners,
        version_column=version,
        priority=Side(spec.priority),
        colinfo=dict(colinfo or {}),
    )
