"""Rows as JSON for the state tables (dead letters, audit, conflicts) and reports.

Plain, readable JSON: decimals and big integers as strings where JSON numbers would lose
precision, timestamps ISO 8601, bytes as "\\x<hex>", UNCHANGED as {"$unchanged": true}.
`from_jsonable` reads a value back exactly, given the column it belongs to.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from bridge.model import UNCHANGED, InvalidValue
from bridge.schema import ColumnInfo, Family

_MAX_SAFE_INT = 2**53


def _td_text(td: timedelta) -> str:
    total = td.days * 86400 + td.seconds
    sign = "-" if total < 0 or (total == 0 and td.microseconds < 0) else ""
    micros = abs(td.days * 86400_000_000 + td.seconds * 1_000_000 + td.microseconds)
    h, rem = divmod(micros, 3600_000_000)
    m, rem = divmod(rem, 60_000_000)
    s, us = divmod(rem, 1_000_000)
    return f"{sign}{h:02d}:{m:02d}:{s:02d}" + (f".{us:06d}" if us else "")


def to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if value is UNCHANGED:
        return {"$unchanged": True}
    if isinstance(value, int):
        return value if -_MAX_SAFE_INT < value < _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _td_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, InvalidValue):
        return {"$invalid": value.text, "reason": value.reason}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, sort_keys=False)


def from_jsonable(value: Any, col: ColumnInfo) -> Any:
    """Inverse of to_jsonable for a value of column `col` (as stored by either side)."""
    if value is None:
        return None
    if isinstance(value, dict) and value.get("$unchanged"):
        return UNCHANGED
    f = col.family
    if f is Family.INT:
        return int(value)
    if f is Family.DECIMAL:
        return Decimal(str(value))
    if f is Family.FLOAT:
        return float(value)
    if f is Family.BOOL:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "t", "true")
    if f in (Family.TIMESTAMP, Family.TIMESTAMPTZ):
        return datetime.fromisoformat(value)
    if f is Family.DATE:
        return date.fromisoformat(value)
    if f is Family.TIME:
        if isinstance(value, str) and (value.startswith("-") or int(value.split(":")[0]) >= 24):
            neg = value.startswith("-")
            h, m, s = value.lstrip("-").split(":")
            td = timedelta(hours=int(h), minutes=int(m), seconds=float(s))
            return -td if neg else td
        return time.fromisoformat(value)
    if f is Family.BYTES:
        if isinstance(value, str) and value.startswith("\\x"):
            return bytes.fromhex(value[2:])
        return base64.b64decode(value)
    if f is Family.JSON:
        return value if isinstance(value, str) else json.dumps(value)
    return value
