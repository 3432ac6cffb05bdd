"""Value conversion between PostgreSQL (CRM) and MySQL/MariaDB (MES). Pure: no driver imports.

One converter per type family (`numeric`, `text`, `temporal`, `json_`), dispatched by
`ColumnInfo.family`. The mapping table and its reasons are in docs/TYPES.md.

- `to_target(value, col, target)`: the Python value to bind for target column `col`, or
  `Unrepresentable` when the target cannot hold the value exactly (the row is dead-lettered).
  Nothing is ever rounded, truncated, padded or re-zoned silently.
- `normalize(value, col)`: the canonical comparable form of a value read back from either
  database (conflict detection, verify). `values_equal(a, b, col)` compares two of them.
- `json_dumps(obj)`: compact JSON text with Decimal numbers written exactly.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Callable
from uuid import UUID

from bridge.errors import Unrepresentable
from bridge.model import UNCHANGED, InvalidValue, Side
from bridge.schema import ColumnInfo, Family
from bridge.types import json_, numeric, temporal, text
from bridge.types.base import Converter, Normalizer
from bridge.types.json_ import canonical_json, json_dumps, json_loads
from bridge.types.numeric import NAN, float32_shortest

__all__ = [
    "NAN",
    "canonical_json",
    "float32_shortest",
    "json_dumps",
    "json_loads",
    "converter",
    "normalize",
    "to_target",
    "values_equal",
]

_TO_TARGET: dict[Family, Converter] = {
    **numeric.TO_TARGET,
    **text.TO_TARGET,
    **temporal.TO_TARGET,
    **json_.TO_TARGET,
}
_NORMALIZE: dict[Family, Normalizer] = {
    **numeric.NORMALIZE,
    **text.NORMALIZE,
    **temporal.NORMALIZE,
    **json_.NORMALIZE,
}
assert set(_TO_TARGET) == set(Family) == set(_NORMALIZE), "a family without a converter"

_MES = Side.MES


def to_target(value: Any, col: ColumnInfo, target: Side) -> Any:
    """Convert a decoded source value for target column `col` on side `target`.

    None passes as None (the server enforces NOT NULL). InvalidValue always raises
    Unrepresentable with its own reason. UNCHANGED, or any value for a generated column,
    is a programming error (TypeError): the writer must filter those out first.
    """
    if col.generated:
        raise TypeError(f"generated column {col.name} must never be written")
    if value is None:
        return None
    if value is UNCHANGED:
        raise TypeError(f"UNCHANGED reached the converter for column {col.name}")
    if type(value) is InvalidValue:
        raise Unrepresentable(col.name, value.reason)
    return _TO_TARGET[col.family](value, col, target == _MES)


def converter(col: ColumnInfo) -> Converter:
    """The family converter `to_target` dispatches to for `col`, for callers that convert
    many values of one column: `fn(value, col, to_mes)`. The caller handles what
    `to_target` checks first: None, UNCHANGED, InvalidValue and generated columns."""
    return _TO_TARGET[col.family]


# --- comparison --------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    int: _identity,
    bool: _identity,
    str: _identity,
    bytes: _identity,
    float: numeric.normal_float,
    Decimal: numeric.normal_decimal,
    datetime: temporal.normal_datetime,
    date: _identity,
    time: temporal.normal_time,
    timedelta: _identity,
    UUID: str,
    bytearray: bytes,
    memoryview: bytes,
    dict: json_.normal_json,
    list: json_.normal_json,
}

_ORDERED_FALLBACK: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (bool, _identity),
    (int, _identity),
    (str, str.__str__),
    (float, numeric.normal_float),
    (Decimal, numeric.normal_decimal),
    (datetime, temporal.normal_datetime),
    (date, _identity),
    (time, temporal.normal_time),
    (UUID, str),
    ((bytes, bytearray, memoryview), bytes),
    ((dict, list), json_.normal_json),
)


def _normalize_untyped(value: Any) -> Any:
    fn = _BY_TYPE.get(type(value))
    if fn is None:
        for types, candidate in _ORDERED_FALLBACK:
            if isinstance(value, types):
                fn = candidate
                break
        else:
            return value
    return fn(value)


def normalize(value: Any, col: ColumnInfo | None = None) -> Any:
    """The canonical comparable form of a value as read back from either database.

    With `col`, by the column's family: JSON -> canonical text (keys sorted, numbers
    canonical), DECIMAL -> canonical Decimal, TINYINT(1)/boolean -> bool, CHAR -> trailing
    spaces stripped, uuid -> lowercase text, timestamps -> naive UTC, time/TIME -> timedelta,
    binary -> bytes, real/FLOAT -> the float32 value. NaN (float or Decimal) -> `NAN`.
    Without `col`, by the value's Python type. Values a family cannot read are returned
    unchanged; None, UNCHANGED and InvalidValue are returned as they are.
    """
    if value is None or value is UNCHANGED:
        return value
    try:
        if col is not None:
            return _NORMALIZE[col.family](value, col)
        return _normalize_untyped(value)
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return value


def values_equal(a: Any, b: Any, col: ColumnInfo | None = None) -> bool:
    """True when `a` and `b` are the same value once normalized for `col`."""
    if a is b:
        return True
    return bool(normalize(a, col) == normalize(b, col))
