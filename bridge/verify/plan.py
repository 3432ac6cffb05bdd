"""Which columns a table's checksums cover and how each side renders them. Pure.

A column is rendered server-side ("kind") only when both servers produce the same text for
equal values; otherwise it is compared on the client after `bridge.types.normalize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.mapping import TableMapping
from bridge.model import Side
from bridge.schema import ColumnInfo, Family, TableInfo
from bridge.verify.model import VerifyError

_TEXTUAL = frozenset({Family.TEXT, Family.ENUM, Family.UUID})
_NUMBER = frozenset({Family.INT, Family.DECIMAL})
_TIMESTAMPS = frozenset({Family.TIMESTAMP, Family.TIMESTAMPTZ})


@dataclass(frozen=True)
class ColumnPair:
    crm: str
    mes: str
    crm_info: ColumnInfo
    mes_info: ColumnInfo
    kind: str | None  # server rendering: int, bool, decimal, text, timestamp, date, time, bytes
    mes_to_crm: dict[Any, Any] | None  # value map, MES value -> CRM value

    def name(self, side: Side) -> str:
        return self.crm if side is Side.CRM else self.mes

    def info(self, side: Side) -> ColumnInfo:
        return self.crm_info if side is Side.CRM else self.mes_info


@dataclass(frozen=True)
class TablePlan:
    tm: TableMapping
    columns: tuple[ColumnPair, ...]  # every compared column, keys first
    key: tuple[ColumnPair, ...]

    def table(self, side: Side) -> str:
        return self.tm.table(side)

    @property
    def server(self) -> tuple[ColumnPair, ...]:
        return tuple(c for c in self.columns if c.kind is not None)

    @property
    def client(self) -> tuple[ColumnPair, ...]:
        return tuple(c for c in self.columns if c.kind is None)

    def names(self, side: Side, pairs: tuple[ColumnPair, ...] | None = None) -> list[str]:
        return [c.name(side) for c in (self.columns if pairs is None else pairs)]


def render_kind(c: ColumnInfo, m: ColumnInfo) -> str | None:
    """How both servers can render a CRM/MES column pair identically, or None."""
    fc, fm = c.family, m.family
    if fc is Family.BOOL and fm is Family.INT and m.bool_like:
        return "bool"
    if c.bool_like or m.bool_like or fc is Family.BOOL or fm is Family.BOOL:
        return None
    if fc is Family.INT and fm is Family.INT:
        return "int"
    if fc in _NUMBER and fm in _NUMBER:
        return "decimal"
    if fc in _TEXTUAL and fm in _TEXTUAL:
        return "text"
    if fc in _TIMESTAMPS and fm in _TIMESTAMPS:
        return "timestamp"
    if fc is fm and fc in (Family.DATE, Family.TIME, Family.BYTES):
        return fc.value
    return None


def plan_table(tm: TableMapping, crm: TableInfo, mes: TableInfo) -> TablePlan:
    pairs: dict[str, ColumnPair] = {}
    problems: list[str] = []
    for crm_col, mes_col in tm.names[Side.CRM].items():
        ci, mi = crm.columns.get(crm_col), mes.columns.get(mes_col)
        if ci is None or mi is None:
            problems.append(f"{crm.qualified}.{crm_col}" if ci is None else f"{mes.qualified}.{mes_col}")
            continue
        if ci.generated or mi.generated:
            continue  # never written by the bridge: nothing to compare
        vmap = tm.values[Side.MES].get(mes_col)
        kind = None if vmap or tm.values[Side.CRM].get(crm_col) else render_kind(ci, mi)
        pairs[crm_col] = ColumnPair(crm_col, mes_col, ci, mi, kind, vmap)
    if problems:
        raise VerifyError(f"mapped column(s) missing: {', '.join(problems)} (run `bridge check`)")
    unkeyed = [k for k in tm.keys[Side.CRM] if k not in pairs]
    if unkeyed:
        raise VerifyError(f"{crm.qualified}: key column(s) {unkeyed} are generated: cannot compare")
    key = tuple(pairs[k] for k in tm.keys[Side.CRM])
    rest = tuple(p for name, p in pairs.items() if name not in tm.keys[Side.CRM])
    return TablePlan(tm, key + rest, key)
