"""Per-column converters compiled once: `compile_converter(col, to_mes)(value)`.

The applier converts every value of every row; the family converters (`to_int`, ...) look
up the column's limits on each call. A compiled converter holds them in a closure and
returns the value at once when it is of the usual exact type and plainly within the
column's limits. For anything else (another type, a value near or past a limit, a refusal)
it calls the family converter, so the result, or the refusal and its message, is always
exactly that of `bridge.types.to_target` (tests/test_types.py checks this by property).

As with the family converters, the caller handles None, UNCHANGED and generated columns
before calling. An InvalidValue raises Unrepresentable with its own reason, as in `to_target`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable

from bridge.errors import Unrepresentable
from bridge.model import InvalidValue, JsonText
from bridge.schema import ColumnInfo, Family
from bridge.types import json_, numeric, temporal, text

Compiled = Callable[[Any], Any]
combine = datetime.combine


def _fallback(family_fn: Callable[[Any, ColumnInfo, bool], Any], col: ColumnInfo,
              to_mes: bool) -> Compiled:
    """The family converter for the values a compiled converter does not take at once; an
    InvalidValue (never of a type the fast paths take) is refused as `to_target` does."""

    def general(v: Any) -> Any:
        if type(v) is InvalidValue:
            raise Unrepresentable(col.name, v.reason)
        return family_fn(v, col, to_mes)

    return general


def _int(col: ColumnInfo, to_mes: bool) -> Compiled:
    lo, hi = numeric._INT_RANGE.get((col.int_bits or 64, col.unsigned)) or numeric._int_range(col)
    general = _fallback(numeric.to_int, col, to_mes)

    bool_like = col.bool_like

    def conv(v: Any) -> Any:
        if type(v) is int and lo <= v <= hi:
            return v
        if bool_like and type(v) is bool:
            return 1 if v else 0  # as to_int: int(True) is 1
        return general(v)

    return conv


def _decimal(col: ColumnInfo, to_mes: bool) -> Compiled | None:
    p, s = col.precision, col.scale or 0
    if p is None:
        return None
    general = _fallback(numeric.to_decimal, col, to_mes)
    neg_s = -s

    def conv(v: Any) -> Any:
        if type(v) is Decimal:
            _sign, digits, exp = v.as_tuple()
            if exp == neg_s and len(digits) <= p:  # exactly the scale, within the precision
                return v
        return general(v)

    return conv


def _float(col: ColumnInfo, to_mes: bool) -> Compiled | None:
    if col.float_bits == 32:
        return None
    general = _fallback(numeric.to_float, col, to_mes)

    def conv(v: Any) -> Any:
        if type(v) is float and v - v == 0.0:  # finite double
            return v
        return general(v)

    return conv


def _timestamp(col: ColumnInfo, to_mes: bool) -> Compiled:
    """timestamp / DATETIME: naive; aware values become UTC wall time."""
    any_us = col.fsp >= 6
    low = temporal._DATETIME_MIN if to_mes else None
    general = _fallback(temporal.to_timestamp, col, to_mes)

    def conv(v: Any) -> Any:
        if type(v) is datetime:
            if v.tzinfo is None:
                naive = v
            elif not v.utcoffset():
                naive = combine(v.date(), v.time())  # 5x faster than v.replace(tzinfo=None)
            else:
                return general(v)
            if (any_us or not naive.microsecond) and (low is None or naive >= low):
                return naive
        return general(v)

    return conv


def _timestamptz(col: ColumnInfo, to_mes: bool) -> Compiled:
    """timestamptz: aware UTC; MySQL TIMESTAMP: naive UTC within its range."""
    any_us = col.fsp >= 6
    general = _fallback(temporal.to_timestamptz, col, to_mes)
    utc = temporal._UTC
    lo, hi = temporal._TIMESTAMP_MIN, temporal._TIMESTAMP_MAX

    def conv(v: Any) -> Any:
        if type(v) is datetime:
            tz = v.tzinfo
            if not to_mes and tz is utc and (any_us or not v.microsecond):
                return v  # aware UTC already
            if tz is None:
                naive = v
            elif not v.utcoffset():
                naive = combine(v.date(), v.time())
            else:
                return general(v)
            if any_us or not naive.microsecond:
                if not to_mes:
                    return combine(naive.date(), naive.time(), utc)
                if lo <= naive <= hi:
                    return naive
        return general(v)

    return conv


def _date(col: ColumnInfo, to_mes: bool) -> Compiled:
    low = temporal._DATE_MIN if to_mes else None
    general = _fallback(temporal.to_date, col, to_mes)

    def conv(v: Any) -> Any:
        if type(v) is date and (low is None or v >= low):
            return v
        return general(v)

    return conv


def _text(col: ColumnInfo, to_mes: bool) -> Compiled | None:
    if col.fixed_length:
        return None
    n = col.max_length
    cap = text._BYTE_CAP.get(text.base_type(col.db_type)) if to_mes else None
    limit = min(x for x in (n, cap // 4 if cap is not None else None, 1 << 62) if x is not None)
    general = _fallback(text.to_text, col, to_mes)

    def conv(v: Any) -> Any:
        # ASCII: no character any target refuses but NUL on PostgreSQL; 1 byte each
        if type(v) is str and len(v) <= limit and v.isascii() and (to_mes or "\x00" not in v):
            return v
        return general(v)

    return conv


def _enum(col: ColumnInfo, to_mes: bool) -> Compiled | None:
    if not col.enum_values:
        return None
    labels = frozenset(col.enum_values)
    general = _fallback(text.to_enum, col, to_mes)

    def conv(v: Any) -> Any:
        if type(v) is str and v in labels:
            return v
        return general(v)

    return conv


def _json(col: ColumnInfo, to_mes: bool) -> Compiled:
    return _fallback(json_.to_json, col, to_mes)  # its own fast path decides


_FACTORIES: dict[Family, Callable[[ColumnInfo, bool], Compiled | None]] = {
    Family.INT: _int,
    Family.DECIMAL: _decimal,
    Family.FLOAT: _float,
    Family.TIMESTAMP: _timestamp,
    Family.TIMESTAMPTZ: _timestamptz,
    Family.DATE: _date,
    Family.TEXT: _text,
    Family.ENUM: _enum,
    Family.JSON: _json,
}


def compile_validated_json(col: ColumnInfo, to_mes: bool) -> Compiled:
    """For a JSON column whose source database validated every value (a MariaDB JSON column's
    `json_valid` CHECK, MySQL's JSON type): text values are taken as `JsonText`, so they are
    not parsed again. Should a value be invalid after all (a writer that turned
    `check_constraint_checks` off), PostgreSQL's own JSON input refuses it and the row is
    dead-lettered with the server's reason."""
    general = _fallback(json_.to_json, col, to_mes)

    def conv(v: Any) -> Any:
        return general(JsonText(v) if type(v) is str else v)

    return conv


def compile_converter(col: ColumnInfo, to_mes: bool) -> Compiled:
    """`fn(value)`, the same as `to_target(value, col, side)` for any value that is not None
    or UNCHANGED, with `col` not generated."""
    from bridge.types import converter

    factory = _FACTORIES.get(col.family)
    fast = factory(col, to_mes) if factory is not None else None
    if fast is not None:
        return fast
    return _fallback(converter(col), col, to_mes)
