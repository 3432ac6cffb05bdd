"""The compiled per-column converters (bridge.types.fast) give exactly what `to_target` gives:
the same value of the same type, or the same refusal with the same reason, for any value."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import Unrepresentable
from bridge.model import InvalidValue, JsonText, Side
from bridge.schema import ColumnInfo, Family
from bridge.types import to_target
from bridge.types.fast import compile_converter


def col(family: Family, db_type: str, **kw) -> ColumnInfo:
    return ColumnInfo(name="c", family=family, db_type=db_type, **kw)


COLUMNS = [
    col(Family.INT, "bigint", int_bits=64),
    col(Family.INT, "integer", int_bits=32),
    col(Family.INT, "smallint", int_bits=16),
    col(Family.INT, "tinyint(3) unsigned", int_bits=8, unsigned=True),
    col(Family.INT, "tinyint(1)", int_bits=8, bool_like=True),
    col(Family.INT, "bigint unsigned", int_bits=64, unsigned=True),
    col(Family.DECIMAL, "decimal(12,2)", precision=12, scale=2),
    col(Family.DECIMAL, "numeric(5,0)", precision=5, scale=0),
    col(Family.DECIMAL, "numeric(4,4)", precision=4, scale=4),
    col(Family.DECIMAL, "numeric"),
    col(Family.FLOAT, "double precision", float_bits=64),
    col(Family.FLOAT, "real", float_bits=32),
    col(Family.TIMESTAMP, "datetime(6)", fsp=6),
    col(Family.TIMESTAMP, "datetime", fsp=0),
    col(Family.TIMESTAMP, "timestamp(3) without time zone", fsp=3),
    col(Family.TIMESTAMPTZ, "timestamp with time zone", fsp=6),
    col(Family.TIMESTAMPTZ, "timestamp(2)", fsp=2),
    col(Family.DATE, "date"),
    col(Family.TEXT, "text"),
    col(Family.TEXT, "varchar(5)", max_length=5),
    col(Family.TEXT, "tinytext", charset="utf8mb4"),
    col(Family.TEXT, "varchar(10)", max_length=10, charset="utf8mb3"),
    col(Family.TEXT, "char(4)", max_length=4, fixed_length=True),
    col(Family.ENUM, "enum('new','done')", enum_values=("new", "done")),
    col(Family.ENUM, "some_enum"),
    col(Family.JSON, "jsonb"),
    col(Family.JSON, "longtext", charset="utf8mb4"),
    col(Family.JSON, "json"),
    col(Family.BOOL, "boolean"),
]

_tz = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=2)), timezone(-timedelta(minutes=90))])
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**63 - 1, -(2**63), 2**64 - 1, 255, 256, -1, True, False]),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.decimals(min_value=-10**12, max_value=10**12, places=2),
    st.sampled_from([Decimal("-0.00"), Decimal("1E+2"), Decimal("0.10"), Decimal("1.000"), Decimal("NaN")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), _tz),
    st.sampled_from([datetime(1970, 1, 1, 0, 0, 1), datetime(2038, 1, 19, 3, 14, 7, 999999),
                     datetime(999, 12, 31, 23, 59, 59), datetime(2024, 1, 1, 0, 0, 0, 500),
                     datetime(2024, 1, 1, 0, 0, 0, 500, tzinfo=timezone.utc)]),
    st.dates(),
    st.text(max_size=12),
    st.sampled_from(["new", "done", "New", "", "abcd ", "a\x00b", "é", "\U0001f600", "x" * 300]),
    st.sampled_from(['{"a": [1, 2.50]}', "[]", '"s"', "{oops", '{"a":"\\u0000"}', "1e400",
                     '{"é": 1}']),
    st.sampled_from(['{"a": [1, 2.50]}', '{"a":"\\u0000"}', "[1.5, 18446744073709551616]"]).map(JsonText),
    st.sampled_from([InvalidValue("0000-00-00", "zero date"), InvalidValue("infinity", "no MySQL equivalent")]),
)


def _outcome(fn, value):
    try:
        out = fn(value)
    except Unrepresentable as exc:
        return ("refused", exc.column, exc.reason)
    except TypeError as exc:
        return ("type error", str(exc))
    return ("ok", type(out), out, getattr(out, "tzinfo", None))


@pytest.mark.parametrize("to_mes", [True, False], ids=["to_mes", "to_crm"])
@pytest.mark.parametrize("column", COLUMNS, ids=lambda c: f"{c.family}:{c.db_type}")
@settings(max_examples=150, deadline=None)
@given(value=VALUES)
def test_compiled_converter_equals_to_target(column, to_mes, value):
    side = Side.MES if to_mes else Side.CRM
    fast = compile_converter(column, to_mes)
    expected = _outcome(lambda v: to_target(v, column, side), value)
    got = _outcome(fast, value)
    if expected[0] == "ok" and got[0] == "ok" and isinstance(expected[2], float):
        assert got[1] is expected[1] and (got[2] == expected[2] or (got[2] != got[2] and expected[2] != expected[2]))
        return
    assert got == expected


def test_fast_paths_return_plain_types():
    """A JsonText goes out as a plain str (the MySQL renderer and drivers want exact types)."""
    jsonb_to_mariadb = compile_converter(col(Family.JSON, "longtext"), True)
    out = jsonb_to_mariadb(JsonText('{"a": 1}'))
    assert out == '{"a": 1}' and type(out) is str
    ts = compile_converter(col(Family.TIMESTAMP, "datetime(6)", fsp=6), True)
    aware = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)
    assert ts(aware) == datetime(2024, 5, 1, 12, 30, 0, 123456) and ts(aware).tzinfo is None
