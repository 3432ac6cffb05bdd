"""Chunk rows -> target rows: the streaming path's mapping and type conversion, planned once
per table so a chunk of thousands of rows costs one loop. Pure.

Same semantics as `bridge.apply.Applier` for an INSERT: only mapped columns travel, value
maps (`TableMapping.values`) apply to non-NULL values, generated target columns are never
written, NULL passes as NULL, and every other value goes through `bridge.types.to_target`;
a value the target cannot hold exactly (`Unrepresentable`, `InvalidValue`) sends the whole row
to the dead-letter table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import SetupError, Unrepresentable
from bridge.mapping import TableMapping
from bridge.model import Side
from bridge.schema import ColumnInfo, TableInfo
from bridge.types import to_target


@dataclass(frozen=True)
class DeadRow:
    """A chunk row the target cannot take: mapped (target names) but not converted."""

    row: dict[str, Any]
    key: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class _Step:
    index: int  # position in the source row
    column: str  # target column
    vmap: dict[Any, Any] | None
    info: ColumnInfo


class RowConverter:
    """Converts rows read from the source (tuples in `source_columns` order) into tuples of
    target values in `columns` order."""

    def __init__(self, tm: TableMapping, source: Side, source_columns: Sequence[str],
                 target_info: TableInfo):
        self.source = source
        self.target = source.other
        names = tm.names[source]
        vmaps = tm.values[source]
        steps: list[_Step] = []
        for i, sc in enumerate(source_columns):
            tc = names.get(sc)
            if tc is None:
                continue
            ci = target_info.columns.get(tc)
            if ci is None:
                raise SetupError(f"mapped column {target_info.qualified}.{tc} does not exist")
            if ci.generated:
                continue
            steps.append(_Step(i, tc, vmaps.get(sc), ci))
        self._steps = tuple(steps)
        self.columns: list[str] = [s.column for s in steps]
        self.key: list[str] = list(tm.keys[self.target])
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise SetupError(f"{target_info.qualified}: key column(s) {missing} are not writable")
        self.key_index = [self.columns.index(k) for k in self.key]
        self.infos = [s.info for s in steps]

    def convert(self, rows: Sequence[Sequence[Any]]) -> tuple[list[tuple], list[DeadRow]]:
        """(converted rows, dead rows). Order is kept."""
        both, _ = self.convert_all(rows)
        return ([r for r in both if not isinstance(r, DeadRow)],
                [r for r in both if isinstance(r, DeadRow)])

    def convert_all(self, rows: Sequence[Sequence[Any]]) -> tuple[list[tuple | DeadRow], int]:
        """Each row converted, or its DeadRow, in order; and how many are dead."""
        out: list[tuple | DeadRow] = []
        dead = 0
        target = self.target
        steps = self._steps
        for row in rows:
            values = []
            try:
                for st in steps:
                    v = row[st.index]
                    if v is not None:
                        if st.vmap is not None:
                            v = st.vmap.get(v, v)
                        v = to_target(v, st.info, target)
                    values.append(v)
            except Unrepresentable as exc:
                mapped = self.mapped(row)
                out.append(DeadRow(mapped, {k: mapped.get(k) for k in self.key}, str(exc)))
                dead += 1
                continue
            out.append(tuple(values))
        return out, dead

    def target_key(self, row: Sequence[Any]) -> tuple[Any, ...] | None:
        """The target key of a source row, or None if a key value cannot be converted."""
        out = []
        try:
            for i in self.key_index:
                st = self._steps[i]
                v = row[st.index]
                if v is not None:
                    if st.vmap is not None:
                        v = st.vmap.get(v, v)
                    v = to_target(v, st.info, self.target)
                out.append(v)
        except Unrepresentable:
            return None
        return tuple(out)

    def mapped(self, row: Sequence[Any]) -> dict[str, Any]:
        """The row in target names with value maps applied, before type conversion."""
        out: dict[str, Any] = {}
        for st in self._steps:
            v = row[st.index]
            if v is not None and st.vmap is not None:
                v = st.vmap.get(v, v)
            out[st.column] = v
        return out

    def key_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """Target key values of a converted row."""
        return tuple(row[i] for i in self.key_index)
