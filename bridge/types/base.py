"""What every per-family converter shares: the signatures and how a refusal is worded.

A converter is `(value, col, to_mes) -> value`: `value` is a decoded source value (never
None, UNCHANGED or InvalidValue: the dispatcher in `bridge.types` handles those), `col` the
target column, `to_mes` True when the target is MySQL/MariaDB. It returns the Python value
to bind as a driver parameter, or raises `Unrepresentable` with a sentence for a DBA.

A normalizer is `(value, col) -> value`: the canonical comparable form of a value as read
back from either database. Normalizers never raise on odd input; the dispatcher returns the
value unchanged if one does.
"""

from __future__ import annotations

from typing import Any, Callable

from bridge.errors import Unrepresentable
from bridge.schema import ColumnInfo

Converter = Callable[[Any, ColumnInfo, bool], Any]
Normalizer = Callable[[Any, ColumnInfo], Any]

_SHOW_LIMIT = 60


def show(value: Any) -> str:
    """A short rendering of a value for a refusal message (long values are cut)."""
    text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return text


def refuse(col: ColumnInfo, reason: str) -> Unrepresentable:
    """The error to raise: `raise refuse(col, "...")`."""
    return Unrepresentable(col.name, reason)


def wrong_type(col: ColumnInfo, value: Any, type_name: str) -> Unrepresentable:
    """A value of a Python type this family does not take (a mapping between unlike types)."""
    return Unrepresentable(
        col.name,
        f"a {type(value).__name__} value ({show(value)}) cannot be stored in {type_name}",
    )
