"""Numbers: INT, BOOL, DECIMAL, FLOAT. Never rounds, never wraps: a number that does not
fit the target exactly is refused."""

from __future__ import annotations

import re
import struct
from decimal import Decimal
from typing import Any

from bridge.schema import ColumnInfo, Family
from bridge.types.base import Converter, Normalizer, refuse, show, wrong_type

# --- integers ----------------------------------------------------------------------------

_INT_RANGE: dict[tuple[int, bool], tuple[int, int]] = {}
for _bits in (8, 16, 24, 32, 64):
    _INT_RANGE[(_bits, False)] = (-(1 << (_bits - 1)), (1 << (_bits - 1)) - 1)
    _INT_RANGE[(_bits, True)] = (0, (1 << _bits) - 1)

_MYSQL_INT = {8: "TINYINT", 16: "SMALLINT", 24: "MEDIUMINT", 32: "INT", 64: "BIGINT"}
_PG_INT = {16: "smallint", 32: "integer", 64: "bigint"}

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SPECIAL_TEXT = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def int_type_name(col: ColumnInfo, to_mes: bool) -> str:
    bits = col.int_bits or 64
    if to_mes:
        name = "TINYINT(1)" if col.bool_like else _MYSQL_INT.get(bits, f"{bits}-bit INT")
        return name + " UNSIGNED" if col.unsigned else name
    name = _PG_INT.get(bits, f"{bits}-bit integer")
    return "unsigned " + name if col.unsigned else name


def _int_range(col: ColumnInfo) -> tuple[int, int]:
    bits = col.int_bits or 64
    r = _INT_RANGE.get((bits, col.unsigned))
    if r is None:  # an unusual width: compute it
        r = (0, (1 << bits) - 1) if col.unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return r


def _out_of_range(col: ColumnInfo, to_mes: bool, value: Any) -> Exception:
    lo, hi = _int_range(col)
    name = int_type_name(col, to_mes)
    return refuse(col, f"value {show(value)} out of range for {name} ({lo}..{hi})")


def parse_number_text(text: str) -> Decimal | None:
    """A Decimal for plain ASCII number text ('12', '-1.5e3', 'NaN'); None if it is not one."""
    if _NUMBER_TEXT.match(text) or text.lower() in _SPECIAL_TEXT:
        return Decimal(text)
    return None


def _exact_int(value: Any, col: ColumnInfo, to_mes: bool) -> int:
    """The int equal to `value` (bool, integral Decimal/float/str), or refuse."""
    if isinstance(value, int):  # bool and int subclasses
        return int(value)
    if isinstance(value, str):
        if _INTEGER_TEXT.match(value):
            if len(value) > 30:  # beyond any column; int() would also hit the digit limit
                raise _out_of_range(col, to_mes, value)
            return int(value)
        d = parse_number_text(value)
        if d is None:
            raise refuse(col, f"{show(value)} is not an integer")
        value = d
    if isinstance(value, float):
        if value - value != 0.0 or not value.is_integer():
            name = int_type_name(col, to_mes)
            raise refuse(col, f"{value!r} is not an integer; {name} would round it")
        if abs(value) > 2.0**70:
            raise _out_of_range(col, to_mes, value)
        return int(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise refuse(col, f"{value} cannot be stored in {int_type_name(col, to_mes)}")
        if value != value.to_integral_value():
            name = int_type_name(col, to_mes)
            raise refuse(col, f"{value} is not an integer; {name} would round it")
        if value.adjusted() > 25:
            raise _out_of_range(col, to_mes, value)
        return int(value)
    raise wrong_type(col, value, int_type_name(col, to_mes))


def to_int(value: Any, col: ColumnInfo, to_mes: bool) -> int:
    v = value if type(value) is int else _exact_int(value, col, to_mes)
    lo, hi = _INT_RANGE.get((col.int_bits or 64, col.unsigned)) or _int_range(col)
    if lo <= v <= hi:
        return v
    raise _out_of_range(col, to_mes, v)


# --- booleans ----------------------------------------------------------------------------

# PostgreSQL's own boolean literals (boolin), lower-cased and trimmed.
_BOOL_TEXT = {
    "t": True, "true": True, "y": True, "yes": True, "on": True, "1": True,
    "f": False, "false": False, "n": False, "no": False, "off": False, "0": False,
}  # fmt: skip


def to_bool(value: Any, col: ColumnInfo, to_mes: bool) -> bool | int:
    if type(value) is bool:
        b = value
    elif isinstance(value, int) and (value == 0 or value == 1):
        b = value == 1
    elif isinstance(value, Decimal) and value.is_finite() and (value == 0 or value == 1):
        b = value == 1
    elif isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        b = _BOOL_TEXT[value.strip().lower()]
    elif isinstance(value, (int, Decimal, float, str)):
        raise refuse(col, f"value {show(value)} is not a boolean (only true/false, 1/0)")
    else:
        raise wrong_type(col, value, "boolean")
    return int(b) if to_mes else b


# --- decimals ----------------------------------------------------------------------------

_NAN = Decimal("NaN")
_ZERO = Decimal(0)
# Unbounded PostgreSQL numeric: up to 131072 digits before the point, 16383 after.
_PG_UNBOUNDED = (131072 + 16383, 16383)
_MYSQL_MAX = (65, 30)


def decimal_type_name(col: ColumnInfo, to_mes: bool) -> str:
    if col.precision is None:
        return "DECIMAL(65,30)" if to_mes else "numeric"
    return f"{'DECIMAL' if to_mes else 'numeric'}({col.precision},{col.scale or 0})"


def _as_decimal(value: Any, col: ColumnInfo, to_mes: bool) -> Decimal:
    t = type(value)
    if t is int:
        return Decimal(value)
    if t is float:
        # The shortest text that reads back as the same float: what the user saw.
        return Decimal(repr(value))
    if t is str:
        d = parse_number_text(value)
        if d is None:
            raise refuse(col, f"{show(value)} is not a number")
        return d
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, float):
        return Decimal(repr(float(value)))
    raise wrong_type(col, value, decimal_type_name(col, to_mes))


def _special_decimal(d: Decimal, col: ColumnInfo, to_mes: bool) -> Decimal:
    name = decimal_type_name(col, to_mes)
    if d.is_snan():
        raise refuse(col, f"signaling NaN cannot be stored in {name}")
    if d.is_nan():
        if to_mes:
            raise refuse(col, f"NaN cannot be stored in {name}")
        return _NAN
    text = "-Infinity" if d < 0 else "Infinity"
    if to_mes:
        raise refuse(col, f"{text} cannot be stored in {name}")
    if col.precision is not None:
        raise refuse(col, f"{text} cannot be stored in {name} (only unbounded numeric holds it)")
    return d


def to_decimal(value: Any, col: ColumnInfo, to_mes: bool) -> Decimal:
    d = value if type(value) is Decimal else _as_decimal(value, col, to_mes)
    if not d.is_finite():
        return _special_decimal(d, col, to_mes)
    p = col.precision
    if p is None:
        p, s = _MYSQL_MAX if to_mes else _PG_UNBOUNDED
    else:
        s = col.scale or 0
    _sign, digits, exp = d.as_tuple()
    n = len(digits)
    if n == 1 and digits[0] == 0:
        return d  # zero, at any exponent
    if exp < -s:  # maybe more fractional digits than the scale: strip trailing zeros first
        tz = 0
        while digits[n - 1 - tz] == 0:
            tz += 1
        if exp + tz < -s:
            raise refuse(col, f"digits beyond scale {s} would be rounded: {show(d)}")
        # Only zeros lie beyond the scale: drop them, so the server has nothing to round.
        keep = n - (-s - exp)
        d = Decimal((_sign, digits[:keep], -s))
        digits, exp, n = digits[:keep], -s, keep
    if exp + n > p - s:  # d.adjusted() >= p - s
        name = decimal_type_name(col, to_mes)
        if p - s > 0:
            limit = f"at most {p - s} digits before the decimal point"
        else:
            limit = f"absolute value must be below 1E{p - s}"
        raise refuse(col, f"value {show(d)} out of range for {name} ({limit})")
    return d


def canonical_decimal(d: Decimal) -> Decimal:
    """One representative per number: trailing zeros stripped, integers at exponent 0.

    Decimal('1.10') and Decimal('1.1') give Decimal('1.1'); Decimal('1E+2') and
    Decimal('100.00') give Decimal('100'); -0 gives 0. Never uses the context precision
    (Decimal.normalize() would round beyond 28 digits).
    """
    if not d.is_finite():
        return _NAN if d.is_nan() else d
    sign, digits, exp = d.as_tuple()
    n = len(digits)
    if n == 1 and digits[0] == 0:
        return _ZERO
    tz = 0
    while digits[n - 1 - tz] == 0:
        tz += 1
    exp += tz
    if exp >= 0:
        if exp == 0 and tz == 0:
            return d
        if exp > 1000:  # keep astronomically large integers compact (still canonical)
            return Decimal((sign, digits[: n - tz], exp))
        return Decimal((sign, digits[: n - tz] + (0,) * exp, 0))
    if tz == 0:
        return d
    return Decimal((sign, digits[: n - tz], exp))


# --- floats ------------------------------------------------------------------------------

_F32 = struct.Struct("<f")


def float_type_name(col: ColumnInfo, to_mes: bool) -> str:
    if col.float_bits == 32:
        return "FLOAT" if to_mes else "real"
    return "DOUBLE" if to_mes else "double precision"


def float32_shortest(x: float) -> str:
    """The shortest decimal text that identifies float32(x) (how PostgreSQL prints real)."""
    packed = _F32.pack(x)
    f32 = _F32.unpack(packed)[0]
    for digits in range(1, 10):
        text = "%.*g" % (digits, f32)
        try:
            if _F32.pack(float(text)) == packed:
                return text
        except OverflowError:  # rounded up past the largest float32
            continue
    return repr(f32)  # not reached: 9 digits identify every float32


def _float_text(f: float) -> str:
    return "NaN" if f != f else ("Infinity" if f > 0 else "-Infinity")


def _as_float(value: Any, col: ColumnInfo, to_mes: bool) -> float:
    name = float_type_name(col, to_mes)
    if isinstance(value, str):
        d = parse_number_text(value)
        if d is None:
            raise refuse(col, f"{show(value)} is not a number")
        value = d
    if isinstance(value, bool):
        raise wrong_type(col, value, name)
    if isinstance(value, int):
        try:
            f = float(value)
        except OverflowError:
            f = float("inf")
        if f != value:
            raise refuse(col, f"integer {show(value)} cannot be stored exactly in {name}")
        return f
    if isinstance(value, Decimal):
        if not value.is_finite():
            if value.is_snan():
                raise refuse(col, f"signaling NaN cannot be stored in {name}")
            return float(value)
        f = float(value)
        if f - f != 0.0 or Decimal(repr(f)) != value:
            raise refuse(col, f"{show(value)} has more significant digits than {name} holds")
        return f
    if isinstance(value, float):
        return float(value)
    raise wrong_type(col, value, name)


def _check_float32(f: float, col: ColumnInfo, to_mes: bool) -> None:
    try:
        f32 = _F32.unpack(_F32.pack(f))[0]
    except OverflowError:
        raise refuse(
            col, f"value {f!r} out of range for {float_type_name(col, to_mes)} (single precision)"
        ) from None
    if f32 == f:
        return
    # A real/FLOAT read as text arrives as its shortest decimal (0.1, not 0.100000001490...).
    text = float32_shortest(f)
    if float(text) == f:
        return
    raise refuse(
        col,
        f"{f!r} cannot be stored exactly in {float_type_name(col, to_mes)} "
        f"(single precision would make it {text})",
    )


def to_float(value: Any, col: ColumnInfo, to_mes: bool) -> float:
    f = value if type(value) is float else _as_float(value, col, to_mes)
    if f - f != 0.0:  # NaN or +-Infinity
        if to_mes:
            name = float_type_name(col, to_mes)
            raise refuse(col, f"{_float_text(f)} cannot be stored in {name}")
        return f
    if col.float_bits == 32:
        _check_float32(f, col, to_mes)
    return f


# --- normal forms --------------------------------------------------------------------------


class _NaNType:
    """The one normal form of every NaN (float or Decimal), equal to itself."""

    _instance: "_NaNType | None" = None

    def __new__(cls) -> "_NaNType":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NaN"

    def __reduce__(self) -> str:
        return "NAN"


NAN: Any = _NaNType()


def normal_decimal(value: Any) -> Any:
    d = value if type(value) is Decimal else _to_decimal_loose(value)
    if d is None:
        return value
    if d.is_nan():
        return NAN
    return canonical_decimal(d)


def _to_decimal_loose(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return parse_number_text(value)
    return None


def normal_float(value: Any, col: ColumnInfo | None = None) -> Any:
    if type(value) is not float:
        if isinstance(value, (bool, str)) or not isinstance(value, (int, float, Decimal)):
            return value
        value = float(value)
    if value != value:
        return NAN
    if col is not None and col.float_bits == 32 and value - value == 0.0:
        try:
            return _F32.unpack(_F32.pack(value))[0]
        except OverflowError:
            return value
    return value


def _normal_int(value: Any, col: ColumnInfo) -> Any:
    if type(value) is not int:
        if isinstance(value, str):
            if not _INTEGER_TEXT.match(value) or len(value) > 4000:
                return value
            value = int(value)
        elif isinstance(value, (float, Decimal)):
            if value != value or value - value != 0 or value != int(value):
                return value
            value = int(value)
        elif isinstance(value, int):
            value = int(value)
        else:
            return value
    if col.bool_like and (value == 0 or value == 1):
        return value == 1
    return value


def _normal_bool(value: Any, col: ColumnInfo) -> Any:
    if type(value) is bool:
        return value
    if isinstance(value, (int, Decimal)) and (value == 0 or value == 1):
        return value == 1
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().lower(), value)
    return value


TO_TARGET: dict[Family, Converter] = {
    Family.INT: to_int,
    Family.BOOL: to_bool,
    Family.DECIMAL: to_decimal,
    Family.FLOAT: to_float,
}

NORMALIZE: dict[Family, Normalizer] = {
    Family.INT: _normal_int,
    Family.BOOL: _normal_bool,
    Family.DECIMAL: lambda value, col: normal_decimal(value),
    Family.FLOAT: normal_float,
}
