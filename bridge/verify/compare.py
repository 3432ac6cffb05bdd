"""Find the rows that differ between the two sides of one table (see `bridge.verify`).

The algorithm only talks to two `SideReader`s; the row comparison (`row_diffs`) is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from bridge.errors import Unrepresentable
from bridge.model import Side
from bridge.rowjson import to_jsonable
from bridge.types import normalize, to_target
from bridge.verify.model import Difference, VerifyError
from bridge.verify.plan import ColumnPair, TablePlan
from bridge.verify.sides import Key, Range, SideReader

FANOUT = 16
DEFAULT_RANGE_ROWS = 10_000
DEFAULT_LEAF_ROWS = 256

NormKey = tuple[Any, ...]


@dataclass
class Stats:
    ranges: int = 0
    rows: dict[str, int] | None = None


def norm_key(pairs: Sequence[ColumnPair], side: Side, values: Sequence[Any]) -> NormKey:
    return tuple(normalize(v, p.info(side)) for p, v in zip(pairs, values))


def same_value(p: ColumnPair, crm: Any, mes: Any) -> bool:
    """Do a CRM and a MES value hold the same data (as the bridge maps and converts it)?"""
    if crm is None or mes is None:
        return crm is None and mes is None
    if p.mes_to_crm is not None:
        return normalize(crm, p.crm_info) == normalize(p.mes_to_crm.get(mes, mes), p.crm_info)
    if normalize(crm, p.crm_info) == normalize(mes, p.mes_info):
        return True
    try:  # unlike types: what replication would have written
        return normalize(to_target(crm, p.mes_info, Side.MES), p.mes_info) == normalize(mes, p.mes_info)
    except (Unrepresentable, TypeError, ValueError, ArithmeticError):
        return False


def row_diffs(plan: TablePlan, crm_rows: Sequence[tuple], mes_rows: Sequence[tuple],
              only_keys: set[NormKey] | None = None) -> list[Difference]:
    """Differences between rows of both sides (each row: plan.columns in order)."""
    nkey = len(plan.key)
    crm_by = {norm_key(plan.key, Side.CRM, r[:nkey]): r for r in crm_rows}
    mes_by = {norm_key(plan.key, Side.MES, r[:nkey]): r for r in mes_rows}
    one_way = plan.tm.spec.direction != "both"
    source = Side.CRM if plan.tm.spec.direction == "crm_to_mes" else Side.MES
    out: list[Difference] = []
    for nk in sorted(set(crm_by) | set(mes_by), key=_sort_key):
        if only_keys is not None and nk not in only_keys:
            continue
        c, m = crm_by.get(nk), mes_by.get(nk)
        if c is None or m is None:
            there = Side.CRM if c is not None else Side.MES
            row = c if c is not None else m
            assert row is not None
            kind = "extra" if one_way and there is not source else "missing"
            key = {p.crm: to_jsonable(v) for p, v in zip(plan.key, row[:nkey])}
            out.append(Difference(plan.tm.crm_table, kind, key, only_on=there))
            continue
        cols: dict[str, dict[str, Any]] = {}
        for p, cv, mv in zip(plan.columns, c, m):
            if not same_value(p, cv, mv):
                cols[p.crm] = {"crm": to_jsonable(cv), "mes": to_jsonable(mv)}
        if cols:
            key = {p.crm: to_jsonable(v) for p, v in zip(plan.key, c[:nkey])}
            out.append(Difference(plan.tm.crm_table, "differs", key, columns=cols))
    return out


def _sort_key(nk: NormKey) -> tuple:
    return tuple((type(v).__name__, str(v)) for v in nk)


class TableComparer:
    """Checksums per range, narrowing down, then row comparison. Range bounds and keys are
    kept in CRM types and converted for the MES when queried."""

    def __init__(self, plan: TablePlan, crm: SideReader, mes: SideReader, *,
                 range_rows: int = DEFAULT_RANGE_ROWS, leaf_rows: int = DEFAULT_LEAF_ROWS):
        self.plan = plan
        self.sides = {Side.CRM: crm, Side.MES: mes}
        self.range_rows = range_rows
        self.leaf_rows = leaf_rows
        self.ranges = 0
        self.rows = {Side.CRM.value: 0, Side.MES.value: 0}
        self._diffs: dict[tuple, Difference] = {}

    # -- keys across sides ---------------------------------------------------------------
    def _convert(self, key: Key, to: Side) -> Key:
        out = []
        for p, v in zip(self.plan.key, key):
            try:
                out.append(None if v is None else to_target(v, p.info(to), to))
            except Unrepresentable as exc:
                raise VerifyError(f"{self.plan.tm.crm_table}: key {key!r} cannot be expressed "
                                  f"on {to.value}: {exc}") from None
        return tuple(out)

    def _crm(self, key: Key, read_on: Side) -> Key:
        """A key read on `read_on`, in CRM types."""
        return key if read_on is Side.CRM else self._convert(key, Side.CRM)

    def _on(self, side: Side, key: Key) -> Key:
        """A key in CRM types, in `side`'s types."""
        return key if side is Side.CRM else self._convert(key, Side.MES)

    def _range_on(self, side: Side, rng: Range) -> Range:
        lo, hi = rng
        return (None if lo is None else self._on(side, lo), None if hi is None else self._on(side, hi))

    # -- the walk ------------------------------------------------------------------------------
    def run(self) -> list[Difference]:
        edges: list[Key | None] = [None, *self._top_boundaries(), None]
        for lo, hi in pairwise(edges):
            self._range((lo, hi), top=True)
        return list(self._diffs.values())

    def _top_boundaries(self) -> list[Key]:
        best: list[Key] = []
        for side in (Side.CRM, Side.MES):
            b = [self._crm(k, side) for k in self.sides[side].boundaries(self.plan, self.range_rows)]
            if len(b) > len(best):
                best = b
            if len(b) > 1:
                break  # enough to cut the space; the MES is walked only if the CRM is tiny
        return best

    def _range(self, rng: Range, top: bool = False) -> None:
        self.ranges += 1
        sums = {side: reader.checksum(self.plan, self._range_on(side, rng))
                for side, reader in self.sides.items()}
        if top:
            for side, (count, _) in sums.items():
                self.rows[side.value] += count
            if self.plan.client:
                self._client_pass(rng)
        if sums[Side.CRM] == sums[Side.MES]:
            return
        biggest = max(sums, key=lambda s: sums[s][0])
        if sums[biggest][0] <= self.leaf_rows:
            self._leaf(rng)
            return
        keys = self.sides[biggest].keys(self.plan, self._range_on(biggest, rng))
        step = max(1, len(keys) // FANOUT)
        cuts = [self._crm(k, biggest) for k in keys[step::step][: FANOUT - 1]]
        edges: list[Key | None] = [rng[0], *cuts, rng[1]]
        for lo, hi in pairwise(edges):
            if lo is not None and hi is not None and lo == hi:
                continue
            self._range((lo, hi))

    def _leaf(self, rng: Range) -> None:
        rows = {side: reader.rows(self.plan, self._range_on(side, rng), self.plan.columns)
                for side, reader in self.sides.items()}
        self._record(row_diffs(self.plan, rows[Side.CRM], rows[Side.MES]))

    def _record(self, diffs: list[Difference]) -> None:
        for d in diffs:
            self._diffs[tuple(sorted(d.key.items()))] = d

    def _client_pass(self, rng: Range) -> None:
        """Columns no server can render like the other: compare them here, per row."""
        pairs = (*self.plan.key, *self.plan.client)
        nkey = len(self.plan.key)
        seen: dict[Side, dict[NormKey, tuple]] = {}
        for side, reader in self.sides.items():
            rows = reader.rows(self.plan, self._range_on(side, rng), pairs)
            seen[side] = {norm_key(self.plan.key, side, r[:nkey]): r for r in rows}
        odd: list[Key] = []
        for nk, c in seen[Side.CRM].items():
            m = seen[Side.MES].get(nk)
            if m is None:
                continue  # missing rows show in the counts
            if not all(same_value(p, cv, mv) for p, cv, mv in
                       zip(self.plan.client, c[nkey:], m[nkey:])):
                odd.append(tuple(c[:nkey]))
        if odd:
            self.check_keys(odd)

    def check_keys(self, keys: Sequence[Key]) -> list[Difference]:
        """Compare the rows of `keys` (CRM types) on both sides; record differences."""
        rows = {side: reader.rows_by_keys(self.plan, [self._on(side, k) for k in keys],
                                          self.plan.columns)
                for side, reader in self.sides.items()}
        wanted = {norm_key(self.plan.key, Side.CRM, k) for k in keys}
        found = row_diffs(self.plan, rows[Side.CRM], rows[Side.MES], only_keys=wanted)
        self._record(found)
        return found


def recheck(plan: TablePlan, crm: SideReader, mes: SideReader, diffs: list[Difference],
            wait: Callable[[], None]) -> list[Difference]:
    """The differences that are still there after `wait()` (changes in flight settle)."""
    if not diffs:
        return diffs
    wait()
    comparer = TableComparer(plan, crm, mes)
    keys = [tuple(_key_value(p, d.key[p.crm]) for p in plan.key) for d in diffs]
    return comparer.check_keys(keys)


def _key_value(p: ColumnPair, value: Any) -> Any:
    """A key value from a report (JSON-able) back into a CRM value."""
    from bridge.rowjson import from_jsonable

    return from_jsonable(value, p.crm_info)
