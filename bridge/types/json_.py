"""JSON: canonical text both ways, numbers kept exact.

Values travel as JSON text. Numbers are never passed through a float: the PostgreSQL reader
loads json with parse_float=Decimal, text is parsed the same way here, and `json_dumps`
writes a Decimal digit for digit. Two JSON values are equal when they are equal as JSON:
key order, whitespace and 1.0 vs 1.00 do not matter (`normal_json`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable

from bridge.model import JsonText
from bridge.schema import ColumnInfo, Family
from bridge.types.base import Converter, Normalizer, refuse, show, wrong_type
from bridge.types.numeric import canonical_decimal
from bridge.types.text import base_type, check_chars

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # C version when available

# Fast path for documents without Decimal numbers (C encoder); TypeError sends us to ours.
_C_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)
# Integers beyond Python's int-from-text digit limit (4300) go through Decimal.
# validation only: floats as float and huge ints as text are cheaper than Decimal, and
# the parsed value is thrown away
_SCAN = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=_no_constant)
_BIG_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)


def json_loads(text: str | bytes) -> Any:
    """Parse JSON text; numbers with a fraction or exponent become Decimal (exact)."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if "digit" not in str(exc):  # not the int digit limit: a NaN/Infinity constant
            raise
        return _BIG_DECODER.decode(text)


# --- writing -----------------------------------------------------------------------------


def _number_text(o: Any, canonical: bool) -> str:
    t = type(o)
    if t is int:
        return int.__repr__(o)
    if t is float or isinstance(o, float):
        if o - o != 0.0:
            raise ValueError(f"{o!r} is not a JSON number")
        return str(canonical_decimal(Decimal(repr(o)))) if canonical else float.__repr__(o)
    if isinstance(o, Decimal):
        if not o.is_finite():
            raise ValueError(f"{o} is not a JSON number")
        return str(canonical_decimal(o) if canonical else o)
    return int.__repr__(o)


def _key_text(k: Any, canonical: bool) -> str:
    if isinstance(k, str):
        return str.__str__(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, (int, float, Decimal)):
        return _number_text(k, canonical)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _encode(o: Any, out: Callable[[str], None], sort_keys: bool, canonical: bool) -> None:
    t = type(o)
    if t is str:
        out(_encode_str(o))
    elif t is dict or (t is not list and isinstance(o, dict)):
        if not o:
            out("{}")
            return
        items = [(_key_text(k, canonical), v) for k, v in o.items()]
        if sort_keys:
            items.sort(key=lambda kv: kv[0])
        out("{")
        first = True
        for k, v in items:
            if first:
                first = False
            else:
                out(",")
            out(_encode_str(k))
            out(":")
            _encode(v, out, sort_keys, canonical)
        out("}")
    elif t is list or t is tuple or isinstance(o, (list, tuple)):
        if not o:
            out("[]")
            return
        out("[")
        first = True
        for v in o:
            if first:
                first = False
            else:
                out(",")
            _encode(v, out, sort_keys, canonical)
        out("]")
    elif o is None:
        out("null")
    elif o is True:
        out("true")
    elif o is False:
        out("false")
    elif t is int or t is Decimal or t is float or isinstance(o, (int, float, Decimal)):
        out(_number_text(o, canonical))
    elif isinstance(o, str):
        out(_encode_str(str.__str__(o)))
    else:
        raise TypeError(f"a {t.__name__} value is not JSON")


def _dumps_python(obj: Any, sort_keys: bool, canonical: bool) -> str:
    parts: list[str] = []
    _encode(obj, parts.append, sort_keys, canonical)
    return "".join(parts)


def json_dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text (no spaces, non-ASCII kept), Decimal written digit for digit.

    Raises ValueError for NaN/Infinity and TypeError for values that are not JSON.
    """
    if not sort_keys:
        try:
            return _C_ENCODER.encode(obj)
        except TypeError:
            pass  # a Decimal (or a type ours rejects too): write it ourselves
    return _dumps_python(obj, sort_keys, canonical=False)


def canonical_json(obj: Any) -> str:
    """The one text of a JSON value: keys sorted, numbers in canonical decimal form
    (1, 1.0 and 1.00 all become 1; 0.50 becomes 0.5)."""
    return _dumps_python(obj, sort_keys=True, canonical=True)


# --- conversion --------------------------------------------------------------------------

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1


def _first_inexact_mysql_number(obj: Any) -> Any:
    """MySQL's native JSON keeps numbers as int64, uint64 or double: the first number that
    would change on the way in, or None."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, bool) or o is None or isinstance(o, (str, float)):
            continue
        elif isinstance(o, int):
            if not _INT64_MIN <= o <= _UINT64_MAX:
                return o
        elif isinstance(o, Decimal):
            if o == o.to_integral_value() and _INT64_MIN <= o <= _UINT64_MAX and o.adjusted() < 20:
                continue
            f = float(o)
            if f - f != 0.0 or Decimal(repr(f)) != o:
                return o
    return None


def _has_nul(obj: Any) -> bool:
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            if "\x00" in o:
                return True
        elif isinstance(o, dict):
            stack.extend(o.values())
            stack.extend(k for k in o if isinstance(k, str))
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return False


def _verbatim_json(text: str, col: ColumnInfo, to_mes: bool, validated: bool = False) -> str | None:
    """ASCII JSON text that the target can store as it is: valid (parsed here, by the C
    scanner, with no Decimal work) and nothing for `to_json`'s checks to refuse (ASCII has no
    surrogates or 4-byte characters; no \\u0000 for PostgreSQL; MySQL's binary JSON needs its
    number check). The same value as the compact re-rendering, without re-rendering it.
    None: take the full path (which also gives the precise refusal)."""
    if to_mes:
        if base_type(col.db_type) == "json":
            return None
    elif "\\u0000" in text:
        return None
    if validated:  # JsonText: the source database parsed it
        return str.__str__(text)
    try:
        _SCAN.decode(text)
    except (ValueError, RecursionError):
        return None
    return text


def to_json(value: Any, col: ColumnInfo, to_mes: bool) -> str:
    """Any JSON value (str and bytes are JSON text) -> compact JSON text for json, jsonb,
    MySQL JSON and MariaDB JSON (LONGTEXT) alike."""
    try:
        t = type(value)
        if (t is str or t is JsonText) and value.isascii():
            fast = _verbatim_json(value, col, to_mes, validated=t is JsonText)
            if fast is not None:
                return fast
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            try:
                value = json_loads(value)
            except UnicodeDecodeError:
                raise refuse(col, "JSON bytes are not valid UTF-8") from None
            except ValueError as exc:
                raise refuse(col, f"invalid JSON ({exc}): {show(value)}") from None
        text = json_dumps(value)
    except RecursionError:
        raise refuse(col, "JSON nested too deeply") from None
    except TypeError as exc:
        raise wrong_type(col, value, "a JSON column") from exc
    except ValueError as exc:
        raise refuse(col, f"{exc}; JSON has no NaN or Infinity") from None
    if not text.isascii():
        check_chars(text, col, to_mes)  # lone surrogates; utf8mb3 JSON columns
    if to_mes:
        if base_type(col.db_type) == "json":  # MySQL native JSON (MariaDB's is LONGTEXT)
            bad = _first_inexact_mysql_number(value)
            if bad is not None:
                raise refuse(
                    col,
                    f"JSON number {show(bad)} would lose digits in MySQL JSON "
                    "(int64, uint64 or double only)",
                )
    elif "\\u0000" in text and base_type(col.db_type) != "json" and _has_nul(value):
        raise refuse(col, "JSON string contains \\u0000, which PostgreSQL jsonb cannot hold")
    return text


def normal_json(value: Any, col: ColumnInfo | None = None) -> Any:
    """Canonical text (`canonical_json`) of a JSON value given as text or as objects."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        try:
            value = json_loads(value)
        except ValueError:
            return value
    try:
        return canonical_json(value)
    except (TypeError, ValueError, RecursionError):
        return value


TO_TARGET: dict[Family, Converter] = {Family.JSON: to_json}
NORMALIZE: dict[Family, Normalizer] = {Family.JSON: normal_json}
