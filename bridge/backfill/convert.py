"""Chunk rows -> target rows: the streaming path's mapping and type conversion, planned once
per table so a chunk of thousands of rows costs one loop. Pure.

Same semantics as `bridge.apply.Applier` for an INSERT: only mapped columns travel, value
maps (`TableMapping.values`) apply to non-NULL values, generated target columns are never
written, NULL passes as NULL, and every other value goes through `bridge.types.to_target`
(its compiled per-column form, `bridge.types.fast`);
a value the target cannot hold exactly (`Unrepresentable`, `InvalidValue`) sends the whole row
to the dead-letter table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bridge.errors import SetupError, Unrepresentable
from bridge.mapping import TableMapping
from bridge.model import Side
from bridge.schema import ColumnInfo, Family, TableInfo
from bridge.types import to_target
from bridge.types.fast import compile_converter, compile_validated_json


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
    same: type | None = None  # values of exactly this type pass unchanged (see `_identity`)


def _int_range(ci: ColumnInfo) -> tuple[int, int] | None:
    bits = ci.int_bits
    if bits is None:
        return None
    if ci.unsigned:
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _identity(src: ColumnInfo | None, dst: ColumnInfo, source: Side) -> type | None:
    """The Python type whose values `to_target` returns unchanged for this column pair, or
    None. Only pairs where that follows from the two column types alone:

    * integer -> integer whose range holds the source's (`to_int` checks the range only);
    * PostgreSQL enum -> enum holding every source label (a PostgreSQL enum value is always
      one of its labels; a MySQL ENUM may hold '' for an invalid value, so not from MES);
    * -> PostgreSQL date / double precision (`to_date` / `to_float` change nothing there:
      PostgreSQL holds every date and every double, NaN included).
    """
    if src is None or dst.generated:
        return None
    fam = dst.family
    if src.family is Family.INT and fam is Family.INT:
        s, d = _int_range(src), _int_range(dst)
        if s is not None and d is not None and d[0] <= s[0] and s[1] <= d[1]:
            return int
        return None
    if src.family is Family.ENUM and fam is Family.ENUM and source is Side.CRM:
        if src.enum_values and dst.enum_values and set(src.enum_values) <= set(dst.enum_values):
            return str
        return None
    if source is Side.MES:  # the target is PostgreSQL
        if src.family is Family.DATE and fam is Family.DATE:
            return date
        if src.family is Family.FLOAT and fam is Family.FLOAT and dst.float_bits == 64:
            return float
    return None


class RowConverter:
    """Converts rows read from the source (tuples in `source_columns` order) into tuples of
    target values in `columns` order. `source_infos` (the source columns' ColumnInfo, same
    order) lets it skip the conversions that are identities for a column pair."""

    def __init__(self, tm: TableMapping, source: Side, source_columns: Sequence[str],
                 target_info: TableInfo, source_infos: Sequence[ColumnInfo] | None = None):
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
            vmap = vmaps.get(sc)
            same = None
            if vmap is None and source_infos is not None:
                same = _identity(source_infos[i], ci, source)
            steps.append(_Step(i, tc, vmap, ci, same))
        self._steps = tuple(steps)
        self.columns: list[str] = [s.column for s in steps]
        self.key: list[str] = list(tm.keys[self.target])
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise SetupError(f"{target_info.qualified}: key column(s) {missing} are not writable")
        self.key_index = [self.columns.index(k) for k in self.key]
        self.infos = [s.info for s in steps]
        # the hot loop's plan: (source index, type passed unchanged or None, the column's
        # compiled converter: `to_target` for this column, at a fraction of the cost)
        self._plain = all(s.vmap is None for s in steps)
        to_mes = self.target is Side.MES
        self._fast = tuple((s.index, s.same, self._compile(s, source_infos, to_mes))
                           for s in steps)

    @staticmethod
    def _compile(step: _Step, source_infos: Sequence[ColumnInfo] | None, to_mes: bool) -> Any:
        src = source_infos[step.index] if source_infos is not None else None
        if (not to_mes and src is not None and src.family is Family.JSON
                and step.info.family is Family.JSON):
            # MES JSON into PostgreSQL: validated by the MES, and again by PostgreSQL's input
            return compile_validated_json(step.info, to_mes)
        return compile_converter(step.info, to_mes)

    def convert(self, rows: Sequence[Sequence[Any]]) -> tuple[list[tuple], list[DeadRow]]:
        """(converted rows, dead rows). Order is kept."""
        both, _ = self.convert_all(rows)
        return ([r for r in both if not isinstance(r, DeadRow)],
                [r for r in both if isinstance(r, DeadRow)])

    def convert_all(self, rows: Sequence[Sequence[Any]]) -> tuple[list[tuple | DeadRow], int]:
        """Each row converted, or its DeadRow, in order; and how many are dead."""
        if not self._plain:
            return self._convert_mapped(rows)
        out: list[tuple | DeadRow] = []
        append = out.append
        dead = 0
        plan = self._fast
        for row in rows:
            try:
                # a value of the pair's unchanged type skips conversion; None stays None
                append(tuple([v if (v := row[i]) is None or type(v) is same
                              else conv(v) for i, same, conv in plan]))
            except Unrepresentable as exc:
                append(self._dead(row, exc))
                dead += 1
        return out, dead

    def _convert_mapped(self, rows: Sequence[Sequence[Any]]) -> tuple[list[tuple | DeadRow], int]:
        """convert_all for tables with value maps."""
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
                out.append(self._dead(row, exc))
                dead += 1
                continue
            out.append(tuple(values))
        return out, dead

    def _dead(self, row: Sequence[Any], exc: Unrepresentable) -> DeadRow:
        mapped = self.mapped(row)
        return DeadRow(mapped, {k: mapped.get(k) for k in self.key}, str(exc))

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
