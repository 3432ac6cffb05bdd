"""Table and column mapping between the CRM and the MES. Pure: no driver imports.

Only mapped columns travel; everything else on the target is left alone. Value maps
(e.g. CRM status `confirmed` <-> MES `RELEASED`) are applied to string values; a value with
no entry passes through as is (the target's type check may then dead-letter it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.config import ColumnSpec, Config, TableSpec
from bridge.model import UNCHANGED, Row, Side


@dataclass(frozen=True)
class TableMapping:
    spec: TableSpec
    crm_table: str  # "schema.table"
    mes_table: str  # "database.table"
    names: dict[Side, dict[str, str]]  # source side -> {source column: target column}
    values: dict[Side, dict[str, dict[Any, Any]]]  # source side -> {source column: {v: v'}}
    keys: dict[Side, tuple[str, ...]]  # side -> key columns in that side's names

    @classmethod
    def from_spec(cls, spec: TableSpec, mes_database: str) -> "TableMapping":
        to_mes: dict[str, str] = {}
        to_crm: dict[str, str] = {}
        v_mes: dict[str, dict[Any, Any]] = {}
        v_crm: dict[str, dict[Any, Any]] = {}
        for crm_col, target in spec.columns.items():
            mes_col = target if isinstance(target, str) else target.mes
            to_mes[crm_col] = mes_col
            to_crm[mes_col] = crm_col
            if isinstance(target, ColumnSpec) and target.values:
                v_mes[crm_col] = dict(target.values)
                v_crm[mes_col] = {m: c for c, m in target.values.items()}
        return cls(
            spec=spec,
            crm_table=spec.crm,
            mes_table=f"{mes_database}.{spec.mes}",
            names={Side.CRM: to_mes, Side.MES: to_crm},
            values={Side.CRM: v_mes, Side.MES: v_crm},
            keys={Side.CRM: tuple(spec.key), Side.MES: tuple(to_mes[k] for k in spec.key)},
        )

    def table(self, side: Side) -> str:
        return self.crm_table if side is Side.CRM else self.mes_table

    def flows_from(self, source: Side) -> bool:
        d = self.spec.direction
        return d == "both" or d == ("crm_to_mes" if source is Side.CRM else "mes_to_crm")

    def columns(self, side: Side) -> tuple[str, ...]:
        """Mapped columns in `side`'s names."""
        return tuple(self.names[side])

    def target_column(self, source: Side, column: str) -> str:
        return self.names[source][column]

    def map_row(self, source: Side, row: Row | None) -> Row | None:
        """Rename a source row to target names, apply value maps, drop unmapped columns."""
        if row is None:
            return None
        names = self.names[source]
        vmaps = self.values[source]
        out: Row = {}
        for col, value in row.items():
            target = names.get(col)
            if target is None:
                continue
            vmap = vmaps.get(col)
            if vmap is not None and value is not None and value is not UNCHANGED:
                value = vmap.get(value, value)
            out[target] = value
        return out

    def key_of(self, side: Side, row: Row) -> tuple[Any, ...]:
        """Key values of a row given in `side`'s column names."""
        return tuple(row[k] for k in self.keys[side])


class Mapping:
    """All bridged tables, looked up by source table."""

    def __init__(self, tables: list[TableMapping]):
        self.tables = tables
        self._by_source = {
            Side.CRM: {t.crm_table: t for t in tables},
            Side.MES: {t.mes_table: t for t in tables},
        }

    @classmethod
    def from_config(cls, config: Config) -> "Mapping":
        db = str(config.mes.parts()["database"])
        return cls([TableMapping.from_spec(t, db) for t in config.tables])

    def for_source(self, side: Side, table: str) -> TableMapping | None:
        return self._by_source[side].get(table)

    def source_tables(self, side: Side) -> list[str]:
        """Tables whose changes flow out of `side`."""
        return [t.table(side) for t in self.tables if t.flows_from(side)]

    def target_tables(self, side: Side) -> list[str]:
        """Tables on `side` that receive changes."""
        return [t.table(side) for t in self.tables if t.flows_from(side.other)]
