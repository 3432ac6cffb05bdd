"""bridge.types: per-family conversion, refusal reasons, normal forms, and round-trip
properties. Pure and fast: no servers. The `read_*` helpers simulate what each side's
reader returns for a value the writer bound (padding, zone, Python type)."""

from __future__ import annotations

import json
import struct
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bridge.errors import Unrepresentable
from bridge.model import UNCHANGED, InvalidValue, Side
from bridge.schema import ColumnInfo, Family
from bridge.types import (
    NAN,
    float32_shortest,
    json_dumps,
    json_loads,
    normalize,
    to_target,
    values_equal,
)

CRM, MES = Side.CRM, Side.MES
UTC = timezone.utc
F32 = struct.Struct("<f")


def col(family: Family, db_type: str = "", **kw) -> ColumnInfo:
    return ColumnInfo(name="c", family=family, db_type=db_type, **kw)


def refused(value, column, target) -> str:
    """The reason to_target gives for refusing `value`; fails the test if it does not."""
    with pytest.raises(Unrepresentable) as info:
        to_target(value, column, target)
    assert info.value.column == column.name
    return info.value.reason


# --- columns used throughout ----------------------------------------------------------------

PG_SMALLINT = col(Family.INT, "smallint", int_bits=16)
PG_INT = col(Family.INT, "integer", int_bits=32)
PG_BIGINT = col(Family.INT, "bigint", int_bits=64)
MY_TINYINT_U = col(Family.INT, "tinyint unsigned", int_bits=8, unsigned=True)
MY_TINYINT1 = col(Family.INT, "tinyint(1)", int_bits=8, bool_like=True)
MY_MEDIUMINT = col(Family.INT, "mediumint", int_bits=24)
MY_BIGINT_U = col(Family.INT, "bigint unsigned", int_bits=64, unsigned=True)
PG_BOOL = col(Family.BOOL, "boolean")
PG_NUMERIC = col(Family.DECIMAL, "numeric")
PG_NUM_10_2 = col(Family.DECIMAL, "numeric(10,2)", precision=10, scale=2)
PG_NUM_20 = col(Family.DECIMAL, "numeric(20,0)", precision=20, scale=0)
MY_DEC_5_2 = col(Family.DECIMAL, "decimal(5,2)", precision=5, scale=2)
MY_DEC_65_30 = col(Family.DECIMAL, "decimal(65,30)", precision=65, scale=30)
PG_REAL = col(Family.FLOAT, "real", float_bits=32)
PG_DOUBLE = col(Family.FLOAT, "double precision", float_bits=64)
MY_FLOAT = col(Family.FLOAT, "float", float_bits=32)
MY_DOUBLE = col(Family.FLOAT, "double", float_bits=64)
PG_TEXT = col(Family.TEXT, "text")
PG_VARCHAR_10 = col(Family.TEXT, "character varying(10)", max_length=10)
PG_CHAR_5 = col(Family.TEXT, "character(5)", max_length=5, fixed_length=True)
MY_VARCHAR_10 = col(Family.TEXT, "varchar(10)", max_length=10, charset="utf8mb4")
MY_VARCHAR_10_MB3 = col(Family.TEXT, "varchar(10)", max_length=10, charset="utf8mb3")
MY_CHAR_5 = col(Family.TEXT, "char(5)", max_length=5, fixed_length=True, charset="utf8mb4")
MY_CHAR_36 = col(Family.TEXT, "char(36)", max_length=36, fixed_length=True, charset="ascii")
MY_TINYTEXT = col(Family.TEXT, "tinytext", charset="utf8mb4")
MY_LATIN1 = col(Family.TEXT, "varchar(20)", max_length=20, charset="latin1")
PG_BYTEA = col(Family.BYTES, "bytea")
MY_VARBINARY_4 = col(Family.BYTES, "varbinary(4)", max_length=4)
MY_BINARY_4 = col(Family.BYTES, "binary(4)", max_length=4, fixed_length=True)
MY_BLOB = col(Family.BYTES, "blob")
PG_TS = col(Family.TIMESTAMP, "timestamp without time zone", fsp=6)
PG_TS_3 = col(Family.TIMESTAMP, "timestamp(3) without time zone", fsp=3)
MY_DATETIME_6 = col(Family.TIMESTAMP, "datetime(6)", fsp=6)
MY_DATETIME_3 = col(Family.TIMESTAMP, "datetime(3)", fsp=3)
MY_DATETIME_0 = col(Family.TIMESTAMP, "datetime", fsp=0)
PG_TSTZ = col(Family.TIMESTAMPTZ, "timestamp with time zone", fsp=6)
MY_TIMESTAMP_6 = col(Family.TIMESTAMPTZ, "timestamp(6)", fsp=6)
MY_TIMESTAMP_0 = col(Family.TIMESTAMPTZ, "timestamp", fsp=0)
PG_DATE = col(Family.DATE, "date")
MY_DATE = col(Family.DATE, "date")
PG_TIME = col(Family.TIME, "time without time zone", fsp=6)
MY_TIME_6 = col(Family.TIME, "time(6)", fsp=6)
MY_TIME_0 = col(Family.TIME, "time", fsp=0)
PG_JSONB = col(Family.JSON, "jsonb")
PG_JSON = col(Family.JSON, "json")
MARIADB_JSON = col(Family.JSON, "longtext", charset="utf8mb4")
MYSQL_JSON = col(Family.JSON, "json")
PG_UUID = col(Family.UUID, "uuid")
PG_ENUM = col(Family.ENUM, "order_status", enum_values=("new", "confirmed", "shipped"))
MY_ENUM = col(Family.ENUM, "enum('new','RELEASED','done')", enum_values=("new", "RELEASED", "done"))
PG_INET = col(Family.OTHER, "inet")
MY_SET = col(Family.OTHER, "set('a','b')")


# --- simulated readers -------------------------------------------------------------------------


def read_decimal(value: Decimal, column: ColumnInfo) -> Decimal:
    """Both servers return DECIMAL(p,s)/numeric(p,s) padded to exactly s fractional digits."""
    if column.precision is None or not value.is_finite():
        return value
    with localcontext() as ctx:
        ctx.prec = 200
        return value.quantize(Decimal(1).scaleb(-(column.scale or 0)))


def read_mes(value, column: ColumnInfo):
    """What the MariaDB binlog reader yields for a value the MES writer bound."""
    fam = column.family
    if fam is Family.DECIMAL:
        return read_decimal(value, column)
    if fam is Family.FLOAT and column.float_bits == 32:
        return F32.unpack(F32.pack(value))[0]  # binlog FLOAT: the exact float32
    if fam is Family.TEXT and column.fixed_length:
        return value.rstrip(" ")  # MySQL CHAR strips trailing spaces
    if fam is Family.TIME:
        assert isinstance(value, timedelta)
    if fam in (Family.TIMESTAMP, Family.TIMESTAMPTZ):
        assert value.tzinfo is None
    return value


def read_crm(value, column: ColumnInfo):
    """What the PostgreSQL reader yields for a value the CRM writer bound."""
    fam = column.family
    if fam is Family.DECIMAL:
        return read_decimal(value, column)
    if fam is Family.FLOAT and column.float_bits == 32:
        return float(float32_shortest(value))  # real read as text: its shortest form
    if fam is Family.TEXT and column.fixed_length:
        return value.ljust(column.max_length or 0)  # bpchar pads
    if fam is Family.JSON:
        return json_loads(value)  # json.loads(..., parse_float=Decimal)
    if fam is Family.UUID:
        return uuid.UUID(value)
    if fam is Family.TIMESTAMPTZ:
        assert value.tzinfo is not None
    return value


def crm_to_mes_to_crm(value, pg: ColumnInfo, my: ColumnInfo):
    """PG value -> MES write -> MES read -> CRM write -> CRM read."""
    on_mes = read_mes(to_target(value, my, MES), my)
    return read_crm(to_target(on_mes, pg, CRM), pg), on_mes


def mes_to_crm_to_mes(value, my: ColumnInfo, pg: ColumnInfo):
    on_crm = read_crm(to_target(value, pg, CRM), pg)
    return read_mes(to_target(on_crm, my, MES), my), on_crm


# --- dispatcher ----------------------------------------------------------------------------------


class TestDispatch:
    def test_none_passes(self):
        """None is bound as NULL on every family, even NOT NULL columns (the server decides)."""
        for family in Family:
            assert to_target(None, col(family, nullable=False), MES) is None
            assert to_target(None, col(family), CRM) is None

    def test_unchanged_is_a_bug(self):
        """UNCHANGED must be filtered out by the writer; reaching a converter is a TypeError."""
        with pytest.raises(TypeError):
            to_target(UNCHANGED, PG_TEXT, CRM)

    def test_generated_column_is_never_written(self):
        """Any value, even None, for a generated column is a TypeError."""
        gen = col(Family.INT, "integer", int_bits=32, generated=True)
        with pytest.raises(TypeError):
            to_target(1, gen, CRM)
        with pytest.raises(TypeError):
            to_target(None, gen, MES)

    def test_invalid_value_dead_letters_with_its_reason(self):
        """InvalidValue always raises Unrepresentable carrying the reader's reason."""
        bad = InvalidValue("0000-00-00", "zero date 0000-00-00 has no PostgreSQL equivalent")
        for family in Family:
            assert refused(bad, col(family), CRM) == bad.reason
        assert refused(InvalidValue("infinity", "timestamp infinity"), MY_DATETIME_6, MES) == (
            "timestamp infinity"
        )

    def test_target_may_be_given_as_text(self):
        """Side is a StrEnum: 'mes' selects the MySQL rules too."""
        assert "range" in refused(10**7, MY_MEDIUMINT, "mes")  # type: ignore[arg-type]


# --- INT ----------------------------------------------------------------------------------------


class TestInt:
    def test_accepted_inputs(self):
        """int, bool, integral Decimal/float and integral text become plain ints."""
        assert to_target(7, PG_INT, CRM) == 7
        assert to_target(True, PG_INT, CRM) == 1 and type(to_target(True, PG_INT, CRM)) is int
        assert to_target(Decimal("42.000"), PG_INT, CRM) == 42
        assert to_target(Decimal("1E+2"), PG_INT, CRM) == 100
        assert to_target(3.0, PG_INT, CRM) == 3
        assert to_target("-12", PG_INT, CRM) == -12
        assert to_target("12.0", PG_INT, CRM) == 12

    def test_ranges_by_width_and_sign(self):
        """Every MySQL and PostgreSQL width, signed and unsigned, checks its exact bounds."""
        cases = [
            (MY_TINYINT_U, 0, 255),
            (col(Family.INT, "tinyint", int_bits=8), -128, 127),
            (col(Family.INT, "smallint unsigned", int_bits=16, unsigned=True), 0, 65535),
            (MY_MEDIUMINT, -(2**23), 2**23 - 1),
            (col(Family.INT, "mediumint unsigned", int_bits=24, unsigned=True), 0, 2**24 - 1),
            (col(Family.INT, "int unsigned", int_bits=32, unsigned=True), 0, 2**32 - 1),
            (MY_BIGINT_U, 0, 2**64 - 1),
        ]
        for c, lo, hi in cases:
            assert to_target(lo, c, MES) == lo and to_target(hi, c, MES) == hi
            refused(lo - 1, c, MES)
            refused(hi + 1, c, MES)
        for c, bits in ((PG_SMALLINT, 16), (PG_INT, 32), (PG_BIGINT, 64)):
            assert to_target(2 ** (bits - 1) - 1, c, CRM) == 2 ** (bits - 1) - 1
            refused(2 ** (bits - 1), c, CRM)
            refused(-(2 ** (bits - 1)) - 1, c, CRM)

    def test_reason_names_type_and_range(self):
        """The reason names the value, the target type and its range."""
        assert (
            refused(300, MY_TINYINT_U, MES)
            == "value 300 out of range for TINYINT UNSIGNED (0..255)"
        )
        assert (
            refused(40000, PG_SMALLINT, CRM)
            == "value 40000 out of range for smallint (-32768..32767)"
        )

    def test_bigint_unsigned_never_wraps(self):
        """BIGINT UNSIGNED max does not fit PostgreSQL bigint (no wrap to negative)..."""
        top = 2**64 - 1
        assert "out of range for bigint" in refused(top, PG_BIGINT, CRM)
        # ...but numeric(20,0) holds it exactly, and it comes back intact.
        assert to_target(top, PG_NUM_20, CRM) == top
        assert to_target(Decimal(top), MY_BIGINT_U, MES) == top

    def test_non_integers_refused(self):
        """Fractions, NaN, floats with fractions and non-numeric text are refused, never rounded."""
        assert "would round" in refused(Decimal("1.5"), PG_INT, CRM)
        assert "would round" in refused(2.5, PG_INT, CRM)
        refused(float("nan"), PG_INT, CRM)
        refused(Decimal("NaN"), PG_INT, CRM)
        assert refused("abc", PG_INT, CRM) == "'abc' is not an integer"
        refused("1_000", PG_INT, CRM)
        refused(" 12", PG_INT, CRM)
        refused("٣", PG_INT, CRM)  # a non-ASCII digit int() would accept
        refused(b"12", PG_INT, CRM)
        refused(Decimal("1E+40"), PG_BIGINT, CRM)
        refused("9" * 50, MY_BIGINT_U, MES)

    def test_bool_to_tinyint1(self):
        """PostgreSQL boolean -> TINYINT(1) writes 1/0."""
        assert to_target(True, MY_TINYINT1, MES) == 1
        assert to_target(False, MY_TINYINT1, MES) == 0
        assert type(to_target(True, MY_TINYINT1, MES)) is int

    @given(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([8, 16, 24, 32, 64]),
        st.booleans(),
        st.sampled_from([CRM, MES]),
    )
    def test_any_int_fits_exactly_or_is_refused(self, value, bits, unsigned, side):
        """For every width: in range -> the same int; out of range -> Unrepresentable."""
        c = col(Family.INT, "int", int_bits=bits, unsigned=unsigned)
        lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if lo <= value <= hi:
            assert to_target(value, c, side) == value
        else:
            with pytest.raises(Unrepresentable):
                to_target(value, c, side)


# --- BOOL ---------------------------------------------------------------------------------------


class TestBool:
    def test_from_tinyint1(self):
        """TINYINT(1) 0/1 -> boolean; bools pass."""
        assert to_target(1, PG_BOOL, CRM) is True
        assert to_target(0, PG_BOOL, CRM) is False
        assert to_target(True, PG_BOOL, CRM) is True

    def test_other_ints_refused(self):
        """TINYINT(1) can hold 2..127 and -128..-1: those are not booleans."""
        assert "is not a boolean" in refused(2, PG_BOOL, CRM)
        refused(-1, PG_BOOL, CRM)
        refused(Decimal("0.5"), PG_BOOL, CRM)

    def test_postgres_literals(self):
        """PostgreSQL's own boolean literals (e.g. from a value map) are accepted."""
        assert to_target("t", PG_BOOL, CRM) is True
        assert to_target("FALSE", PG_BOOL, CRM) is False
        refused("maybe", PG_BOOL, CRM)

    def test_bool_normal_form(self):
        """boolean True and TINYINT(1) 1 compare equal under their columns."""
        assert normalize(1, MY_TINYINT1) is True
        assert normalize(True, PG_BOOL) is True
        assert normalize(5, MY_TINYINT1) == 5  # not a boolean: left as int
        assert values_equal(True, 1, PG_BOOL)
        assert normalize(True, PG_BOOL) == normalize(1, MY_TINYINT1)

    @given(st.booleans())
    def test_round_trip(self, value):
        """boolean -> TINYINT(1) -> boolean is the identity."""
        back, on_mes = crm_to_mes_to_crm(value, PG_BOOL, MY_TINYINT1)
        assert back is value and on_mes == int(value)


# --- DECIMAL ------------------------------------------------------------------------------------


class TestDecimal:
    def test_exact_values_pass(self):
        """Values within precision and scale pass unchanged; trailing zeros do not count."""
        assert to_target(Decimal("999.99"), MY_DEC_5_2, MES) == Decimal("999.99")
        assert to_target(Decimal("1.50000"), MY_DEC_5_2, MES) == Decimal("1.5")
        assert to_target(Decimal("-0.00"), MY_DEC_5_2, MES) == 0
        assert to_target(12, MY_DEC_5_2, MES) == Decimal(12)
        assert to_target("1.25", MY_DEC_5_2, MES) == Decimal("1.25")
        assert to_target(0.1, MY_DEC_5_2, MES) == Decimal("0.1")  # the float's shortest text

    def test_scale_overflow_refused(self):
        """A digit beyond the scale would be rounded: refused, with the value in the reason."""
        assert (
            refused(Decimal("1.005"), MY_DEC_5_2, MES)
            == "digits beyond scale 2 would be rounded: 1.005"
        )
        refused(Decimal("0.001"), PG_NUM_10_2, CRM)
        refused(Decimal("1.5"), PG_NUM_20, CRM)

    def test_precision_overflow_refused(self):
        """Too many integer digits: refused with the type and the limit."""
        reason = refused(Decimal("1000"), MY_DEC_5_2, MES)
        assert (
            reason
            == "value 1000 out of range for DECIMAL(5,2) (at most 3 digits before the decimal point)"
        )
        refused(Decimal("1E+3"), MY_DEC_5_2, MES)
        refused(10**20, PG_NUM_20, CRM)

    def test_nan_and_infinity(self):
        """MySQL DECIMAL has no NaN/Infinity; PostgreSQL numeric has NaN, unbounded has Infinity."""
        assert refused(Decimal("NaN"), MY_DEC_5_2, MES) == "NaN cannot be stored in DECIMAL(5,2)"
        assert "Infinity cannot be stored in DECIMAL" in refused(
            Decimal("Infinity"), MY_DEC_5_2, MES
        )
        assert "NaN cannot be stored in DECIMAL" in refused(float("nan"), MY_DEC_65_30, MES)
        assert to_target(Decimal("NaN"), PG_NUM_10_2, CRM).is_nan()
        assert to_target(Decimal("-Infinity"), PG_NUMERIC, CRM) == Decimal("-Infinity")
        assert "only unbounded" in refused(Decimal("Infinity"), PG_NUM_10_2, CRM)
        refused(Decimal("sNaN"), PG_NUMERIC, CRM)

    def test_unbounded_numeric_into_mysql(self):
        """PostgreSQL's unbounded numeric can exceed DECIMAL(65,30) either way."""
        refused(Decimal("1E+40"), MY_DEC_65_30, MES)
        refused(Decimal("1E-31"), MY_DEC_65_30, MES)
        assert to_target(Decimal("1E-30"), MY_DEC_65_30, MES) == Decimal("1E-30")
        big = Decimal("9" * 35 + "." + "1" * 30)
        assert to_target(big, MY_DEC_65_30, MES) == big

    def test_not_a_number(self):
        """Text that is not a number, and booleans, are refused."""
        assert refused("abc", MY_DEC_5_2, MES) == "'abc' is not a number"
        refused(True, MY_DEC_5_2, MES)
        refused("1,5", MY_DEC_5_2, MES)

    def test_normal_form(self):
        """1.10 and 1.1 (and 1E+2 and 100) share one normal form; NaN equals NaN."""
        assert normalize(Decimal("1.10"), PG_NUM_10_2) == normalize(Decimal("1.1"), MY_DEC_5_2)
        assert str(normalize(Decimal("1E+2"))) == "100"
        assert str(normalize(Decimal("100.00"))) == "100"
        assert str(normalize(Decimal("-0.000"))) == "0"
        assert normalize(Decimal("NaN")) is NAN
        assert values_equal(Decimal("12.500"), Decimal("12.5"), PG_NUM_10_2)
        assert values_equal(12, Decimal("12.00"), PG_NUM_10_2)
        assert not values_equal(Decimal("12.5"), Decimal("12.51"), PG_NUM_10_2)
        long = Decimal("1." + "0" * 40 + "1")  # beyond the default 28-digit context
        assert normalize(long) == long and normalize(long) != Decimal(1)

    @given(st.integers(min_value=1, max_value=65), st.data())
    def test_any_decimal_fits_exactly_or_is_refused(self, precision, data):
        """Random decimals vs DECIMAL(p,s): accepted values are numerically equal to the
        input and fit; everything else is refused."""
        scale = data.draw(st.integers(min_value=0, max_value=min(precision, 30)))
        c = col(Family.DECIMAL, "decimal", precision=precision, scale=scale)
        digits = data.draw(st.integers(min_value=0, max_value=10**40))
        exp = data.draw(st.integers(min_value=-40, max_value=40))
        value = Decimal((0, tuple(map(int, str(digits))), exp))
        if data.draw(st.booleans()):
            value = -value
        with localcontext() as ctx:
            ctx.prec = 200
            fits = value == value.quantize(Decimal(1).scaleb(-scale)) and abs(value) < Decimal(
                10
            ) ** (precision - scale)
        for side in (MES, CRM):
            if fits:
                assert to_target(value, c, side) == value
            else:
                with pytest.raises(Unrepresentable):
                    to_target(value, c, side)

    @given(st.integers(min_value=1, max_value=38), st.data())
    def test_round_trip(self, precision, data):
        """numeric(p,s) -> DECIMAL(p,s) -> numeric(p,s) keeps the number."""
        scale = data.draw(st.integers(min_value=0, max_value=min(precision, 30)))
        pg = col(Family.DECIMAL, "numeric", precision=precision, scale=scale)
        my = col(Family.DECIMAL, "decimal", precision=precision, scale=scale)
        unscaled = data.draw(
            st.integers(min_value=-(10**precision) + 1, max_value=10**precision - 1)
        )
        value = Decimal(f"{unscaled}E-{scale}")  # exact (scaleb would round at 28 digits)
        back, on_mes = crm_to_mes_to_crm(value, pg, my)
        assert values_equal(value, back, pg) and values_equal(value, on_mes, my)
        again, _ = mes_to_crm_to_mes(on_mes, my, pg)
        assert values_equal(on_mes, again, my)


# --- FLOAT --------------------------------------------------------------------------------------


class TestFloat:
    def test_double(self):
        """Finite doubles pass; ints and Decimals only when exactly representable."""
        assert to_target(0.1, MY_DOUBLE, MES) == 0.1
        assert to_target(3, MY_DOUBLE, MES) == 3.0
        assert to_target(Decimal("0.1"), MY_DOUBLE, MES) == 0.1
        assert "cannot be stored exactly in DOUBLE" in refused(2**53 + 1, MY_DOUBLE, MES)
        assert "more significant digits" in refused(
            Decimal("0.12345678901234567890"), PG_DOUBLE, CRM
        )
        refused(True, MY_DOUBLE, MES)

    def test_nan_infinity(self):
        """MySQL has no NaN/Infinity floats; PostgreSQL real/double precision have them."""
        assert refused(float("nan"), MY_DOUBLE, MES) == "NaN cannot be stored in DOUBLE"
        assert refused(float("-inf"), MY_FLOAT, MES) == "-Infinity cannot be stored in FLOAT"
        out = to_target(float("nan"), PG_DOUBLE, CRM)
        assert out != out
        assert to_target(float("inf"), PG_REAL, CRM) == float("inf")

    def test_single_precision(self):
        """FLOAT/real accept a float32 value or its shortest text; others would change."""
        exact = F32.unpack(F32.pack(0.1))[0]
        assert to_target(exact, MY_FLOAT, MES) == exact  # from a binlog FLOAT
        assert to_target(0.1, MY_FLOAT, MES) == 0.1  # from PostgreSQL real read as text
        assert "single precision would make it 0.1" in refused(0.1000000001, MY_FLOAT, MES)
        assert "out of range for real" in refused(1e39, PG_REAL, CRM)
        refused(1e-50, PG_REAL, CRM)  # would underflow to 0
        refused(16777217, MY_FLOAT, MES)

    def test_float_normal_form(self):
        """Under a 32-bit column, 0.1 and float32(0.1) are the same value; NaN equals NaN."""
        assert values_equal(0.1, F32.unpack(F32.pack(0.1))[0], MY_FLOAT)
        assert not values_equal(0.1, F32.unpack(F32.pack(0.1))[0], MY_DOUBLE)
        assert values_equal(float("nan"), float("nan"), PG_DOUBLE)
        assert values_equal(float("nan"), Decimal("NaN"))

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_double_round_trip(self, value):
        """double precision -> DOUBLE -> double precision is the identity."""
        back, _ = crm_to_mes_to_crm(value, PG_DOUBLE, MY_DOUBLE)
        assert back == value

    @given(st.floats(width=32, allow_nan=False, allow_infinity=False))
    def test_real_round_trip(self, value):
        """real (read as shortest text) -> FLOAT (read from binlog) -> real keeps the value."""
        as_read = read_crm(value, PG_REAL)
        back, on_mes = crm_to_mes_to_crm(as_read, PG_REAL, MY_FLOAT)
        assert values_equal(as_read, back, PG_REAL)
        assert values_equal(as_read, on_mes, MY_FLOAT)

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_any_double_into_float32_exact_or_refused(self, value):
        """A double either survives FLOAT (as itself or its shortest float32 text) or is refused."""
        try:
            out = to_target(value, MY_FLOAT, MES)
        except Unrepresentable:
            try:
                f32 = F32.unpack(F32.pack(value))[0]
            except OverflowError:
                return
            assert f32 != value and float(float32_shortest(value)) != value
            return
        f32 = F32.unpack(F32.pack(out))[0]
        assert f32 == value or float(format(f32, ".9g")) == value or out == value


# --- TEXT ---------------------------------------------------------------------------------------


class TestText:
    def test_plain(self):
        """Text passes unchanged; UUIDs become lowercase text; valid UTF-8 bytes decode."""
        assert to_target("héllo", MY_VARCHAR_10, MES) == "héllo"
        u = uuid.UUID("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")
        assert to_target(u, MY_CHAR_36, MES) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        assert to_target("é".encode(), PG_TEXT, CRM) == "é"

    def test_length_in_characters(self):
        """VARCHAR(n)/varchar(n) count characters, not bytes."""
        assert to_target("é" * 10, MY_VARCHAR_10, MES) == "é" * 10
        assert refused("x" * 12, MY_VARCHAR_10, MES) == "12 characters do not fit VARCHAR(10)"
        assert refused("x" * 11, PG_VARCHAR_10, CRM) == "11 characters do not fit varchar(10)"
        assert refused("abc  ", col(Family.TEXT, "varchar(3)", max_length=3), CRM)

    def test_char_padding(self):
        """CHAR(n): trailing spaces are padding; stripped before the length check."""
        assert to_target("ab   ", MY_CHAR_5, MES) == "ab"
        assert to_target("abcde     ", PG_CHAR_5, CRM) == "abcde"
        assert refused("abcdef", MY_CHAR_5, MES) == "6 characters do not fit CHAR(5)"
        assert values_equal("ab   ", "ab", PG_CHAR_5)
        assert not values_equal("ab   ", "ab", PG_TEXT)

    def test_utf8mb3(self):
        """utf8mb3 cannot hold characters beyond U+FFFF: refused, never replaced by '?'."""
        reason = refused("smile \U0001f600", MY_VARCHAR_10_MB3, MES)
        assert reason == "4-byte character U+1F600 cannot be stored in utf8mb3 column"
        assert to_target("smile \U0001f600", MY_VARCHAR_10, MES) == "smile \U0001f600"
        assert to_target("ü€", MY_VARCHAR_10_MB3, MES) == "ü€"
        refused("\U0001f600", col(Family.TEXT, "varchar(5)", max_length=5, charset="utf8"), MES)

    def test_latin1_and_ascii(self):
        """latin1 (Windows-1252) and ascii columns refuse characters they cannot hold."""
        assert to_target("café €", MY_LATIN1, MES) == "café €"
        assert "U+0416" in refused("Ж", MY_LATIN1, MES)
        refused("é", MY_CHAR_36, MES)

    def test_nul(self):
        """PostgreSQL text cannot hold NUL; MySQL can."""
        assert (
            refused("a\x00b", PG_TEXT, CRM)
            == "text contains NUL (\\x00), which PostgreSQL text cannot hold"
        )
        refused("é\x00", PG_TEXT, CRM)
        assert to_target("a\x00b", MY_VARCHAR_10, MES) == "a\x00b"

    def test_lone_surrogates(self):
        """A lone surrogate is not a character any UTF-8 column can store."""
        assert "lone surrogate U+D800" in refused("a\ud800", PG_TEXT, CRM)
        refused("a\udfff", MY_VARCHAR_10, MES)

    def test_strict_types(self):
        """Numbers are not silently turned into text; invalid UTF-8 bytes are refused."""
        assert "cannot be stored in text" in refused(5, PG_TEXT, CRM)
        refused(Decimal("1.5"), MY_VARCHAR_10, MES)
        assert "not valid UTF-8" in refused(b"\xff", PG_TEXT, CRM)

    def test_text_types_count_bytes(self):
        """MySQL TINYTEXT/TEXT limits are in bytes of the column's character set."""
        assert to_target("x" * 255, MY_TINYTEXT, MES) == "x" * 255
        assert (
            refused("é" * 128, MY_TINYTEXT, MES)
            == "256 bytes do not fit TINYTEXT (at most 255 bytes)"
        )

    @given(st.text(max_size=20), st.integers(min_value=0, max_value=15))
    @example("\U0001f600", 5)
    @example("\ud800", 5)
    def test_varchar_utf8mb3_exact_or_refused(self, value, n):
        """Random strings (astral, surrogates) vs VARCHAR(n) utf8mb3: stored exactly or refused."""
        c = col(Family.TEXT, f"varchar({n})", max_length=n, charset="utf8mb3")
        ok = len(value) <= n and all(
            ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) <= 0xDFFF for ch in value
        )
        if ok:
            assert to_target(value, c, MES) == value
        else:
            with pytest.raises(Unrepresentable):
                to_target(value, c, MES)

    @given(
        st.text(
            alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            max_size=10,
        )
    )
    def test_round_trip(self, value):
        """varchar(10) -> VARCHAR(10) utf8mb4 -> varchar(10) is the identity."""
        back, _ = crm_to_mes_to_crm(value, PG_VARCHAR_10, MY_VARCHAR_10)
        assert back == value

    @given(st.text(alphabet="ab ", max_size=5))
    def test_char_round_trip(self, value):
        """char(5) -> CHAR(5) -> char(5) keeps the value up to padding."""
        padded = value.ljust(5)
        back, on_mes = crm_to_mes_to_crm(padded, PG_CHAR_5, MY_CHAR_5)
        assert values_equal(padded, back, PG_CHAR_5)
        assert values_equal(padded, on_mes, MY_CHAR_5)


# --- BYTES --------------------------------------------------------------------------------------


class TestBytes:
    def test_bytes_like(self):
        """bytes, bytearray and memoryview bind as bytes; a UUID as its 16 bytes."""
        assert to_target(bytearray(b"ab"), PG_BYTEA, CRM) == b"ab"
        assert to_target(memoryview(b"ab"), MY_VARBINARY_4, MES) == b"ab"
        u = uuid.uuid4()
        assert to_target(u, PG_BYTEA, CRM) == u.bytes
        refused(5, PG_BYTEA, CRM)

    def test_lengths(self):
        """VARBINARY(n) and BLOB limits are bytes; BINARY(n) would pad short values."""
        assert refused(b"abcde", MY_VARBINARY_4, MES) == "5 bytes do not fit VARBINARY(4)"
        assert to_target(b"abcd", MY_BINARY_4, MES) == b"abcd"
        assert "padded with zero bytes to BINARY(4)" in refused(b"ab", MY_BINARY_4, MES)
        refused(b"x" * 65536, MY_BLOB, MES)

    @given(st.binary(max_size=64))
    def test_round_trip(self, value):
        """bytea -> BLOB -> bytea is the identity."""
        back, _ = crm_to_mes_to_crm(value, PG_BYTEA, MY_BLOB)
        assert back == value


# --- TIMESTAMP ----------------------------------------------------------------------------------


class TestTimestamp:
    def test_naive_passes_aware_becomes_utc(self):
        """Naive values pass; aware values are converted to UTC wall time."""
        dt = datetime(2024, 5, 1, 12, 30, 0, 250000)
        assert to_target(dt, MY_DATETIME_6, MES) == dt
        aware = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
        out = to_target(aware, MY_DATETIME_6, MES)
        assert out == datetime(2024, 5, 1, 12, 30) and out.tzinfo is None
        assert to_target(date(2024, 1, 2), PG_TS, CRM) == datetime(2024, 1, 2)

    def test_fractional_seconds_rule(self):
        """Microseconds the column's fsp cannot hold are refused (MariaDB would drop them)."""
        dt = datetime(2024, 5, 1, 12, 0, 0, 123456)
        assert (
            refused(dt, MY_DATETIME_3, MES)
            == "microseconds .123456 would be dropped by DATETIME(3)"
        )
        assert refused(dt, PG_TS_3, CRM) == "microseconds .123456 would be rounded by timestamp(3)"
        assert to_target(dt.replace(microsecond=123000), MY_DATETIME_3, MES).microsecond == 123000
        refused(dt.replace(microsecond=1), MY_DATETIME_0, MES)

    def test_datetime_range(self):
        """MySQL DATETIME starts at year 1000; PostgreSQL timestamp holds any Python datetime."""
        early = datetime(999, 12, 31, 23, 59, 59)
        assert "outside MySQL DATETIME range" in refused(early, MY_DATETIME_6, MES)
        assert to_target(early, PG_TS, CRM) == early
        assert to_target(datetime(9999, 12, 31, 23, 59, 59, 999999), MY_DATETIME_6, MES)

    def test_wrong_type(self):
        """Text and numbers are not timestamps."""
        assert refused("2024-01-01", MY_DATETIME_6, MES)
        assert refused(0, PG_TS, CRM)

    @given(st.datetimes(min_value=datetime(1000, 1, 1)), st.integers(min_value=0, max_value=6))
    def test_fsp_exact_or_refused(self, value, fsp):
        """Random datetimes vs fsp 0..6: refused exactly when digits would be lost."""
        c = col(Family.TIMESTAMP, "datetime", fsp=fsp)
        if value.microsecond % 10 ** (6 - fsp):
            with pytest.raises(Unrepresentable):
                to_target(value, c, MES)
            with pytest.raises(Unrepresentable):
                to_target(value, c, CRM)
        else:
            assert to_target(value, c, MES) == value == to_target(value, c, CRM)

    @given(st.datetimes(min_value=datetime(1000, 1, 1)))
    def test_round_trip(self, value):
        """timestamp -> DATETIME(6) -> timestamp is the identity."""
        back, _ = crm_to_mes_to_crm(value, PG_TS, MY_DATETIME_6)
        assert back == value


class TestTimestamptz:
    def test_to_postgres_is_aware_utc(self):
        """timestamptz gets an aware UTC datetime; naive input is taken as UTC."""
        out = to_target(datetime(2024, 1, 1, 10), PG_TSTZ, CRM)
        assert out == datetime(2024, 1, 1, 10, tzinfo=UTC) and out.utcoffset() == timedelta(0)
        out = to_target(
            datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=-5))), PG_TSTZ, CRM
        )
        assert out == datetime(2024, 1, 1, 15, tzinfo=UTC) and out.tzinfo is UTC

    def test_to_mysql_timestamp_is_naive_utc(self):
        """MySQL TIMESTAMP gets naive UTC (the applier's session runs at +00:00)."""
        out = to_target(
            datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))), MY_TIMESTAMP_6, MES
        )
        assert out == datetime(2024, 1, 1, 9) and out.tzinfo is None

    def test_mysql_timestamp_range(self):
        """1970-01-01 00:00:01 .. 2038-01-19 03:14:07.999999 UTC; outside is refused."""
        assert "outside MySQL TIMESTAMP range" in refused(
            datetime(2100, 1, 1, tzinfo=UTC), MY_TIMESTAMP_6, MES
        )
        refused(datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC), MY_TIMESTAMP_6, MES)  # the zero value
        refused(datetime(1969, 12, 31, 23, 0, tzinfo=UTC), MY_TIMESTAMP_6, MES)
        assert to_target(datetime(1970, 1, 1, 0, 0, 1), MY_TIMESTAMP_0, MES)
        assert to_target(datetime(2038, 1, 19, 3, 14, 7, 999999), MY_TIMESTAMP_6, MES)
        refused(datetime(2038, 1, 19, 3, 14, 8), MY_TIMESTAMP_6, MES)
        # Near the edge, the zone matters: 2038-01-19 05:00 +02:00 is 03:00 UTC.
        assert to_target(
            datetime(2038, 1, 19, 5, tzinfo=timezone(timedelta(hours=2))), MY_TIMESTAMP_0, MES
        )

    def test_fsp(self):
        """TIMESTAMP(0) refuses microseconds."""
        assert "dropped by TIMESTAMP(0)" in refused(
            datetime(2000, 1, 1, 0, 0, 0, 5), MY_TIMESTAMP_0, MES
        )

    def test_normal_form(self):
        """An aware value and its naive UTC twin are equal."""
        aware = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=3)))
        assert values_equal(aware, datetime(2024, 1, 1, 9), PG_TSTZ)
        assert values_equal(aware, datetime(2024, 1, 1, 9, tzinfo=UTC))

    @given(
        st.datetimes(
            min_value=datetime(1970, 1, 1, 0, 0, 1),
            max_value=datetime(2038, 1, 19, 3, 14, 7),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
        )
    )
    def test_round_trip(self, value):
        """timestamptz -> TIMESTAMP(6) -> timestamptz keeps the instant."""
        assume(
            datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
            <= value
            <= datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)
        )
        back, on_mes = crm_to_mes_to_crm(value, PG_TSTZ, MY_TIMESTAMP_6)
        assert back == value
        assert values_equal(value, on_mes, PG_TSTZ)


# --- DATE and TIME ------------------------------------------------------------------------------


class TestDate:
    def test_dates(self):
        """Dates pass; datetimes only at midnight; MySQL starts at year 1000."""
        assert to_target(date(2024, 2, 29), MY_DATE, MES) == date(2024, 2, 29)
        out = to_target(datetime(2024, 2, 29), PG_DATE, CRM)
        assert out == date(2024, 2, 29) and type(out) is date
        assert "time of day" in refused(datetime(2024, 2, 29, 0, 0, 1), PG_DATE, CRM)
        assert (
            refused(date(999, 1, 1), MY_DATE, MES)
            == "date 0999-01-01 outside MySQL DATE range 1000-01-01..9999-12-31"
        )
        assert to_target(date(1, 1, 1), PG_DATE, CRM) == date(1, 1, 1)

    def test_zero_date(self):
        """MySQL's zero date arrives as InvalidValue and is dead-lettered with its reason."""
        zero = InvalidValue("0000-00-00", "zero date 0000-00-00 has no PostgreSQL equivalent")
        assert refused(zero, PG_DATE, CRM) == "zero date 0000-00-00 has no PostgreSQL equivalent"

    @given(st.dates(min_value=date(1000, 1, 1)))
    def test_round_trip(self, value):
        """date -> DATE -> date is the identity."""
        assert crm_to_mes_to_crm(value, PG_DATE, MY_DATE)[0] == value


class TestTime:
    def test_postgres_time(self):
        """time passes; a MySQL TIME timedelta in [0, 24h) becomes a time."""
        assert to_target(time(10, 30, 0, 5), PG_TIME, CRM) == time(10, 30, 0, 5)
        assert to_target(timedelta(hours=23, minutes=59, seconds=59), PG_TIME, CRM) == time(
            23, 59, 59
        )
        assert "outside PostgreSQL time range" in refused(timedelta(hours=24), PG_TIME, CRM)
        assert "-00:00:01" in refused(timedelta(seconds=-1), PG_TIME, CRM)
        assert "outside PostgreSQL time range" in refused(timedelta(hours=838), PG_TIME, CRM)

    def test_mysql_time(self):
        """MySQL TIME takes a timedelta within +-838:59:59; a time becomes a timedelta."""
        assert to_target(time(1, 2, 3), MY_TIME_6, MES) == timedelta(hours=1, minutes=2, seconds=3)
        edge = timedelta(hours=838, minutes=59, seconds=59)
        assert to_target(edge, MY_TIME_0, MES) == edge
        assert to_target(-edge, MY_TIME_0, MES) == -edge
        assert refused(edge + timedelta(seconds=1), MY_TIME_0, MES) == (
            "duration 839:00:00 outside MySQL TIME range -838:59:59..838:59:59"
        )
        refused(-edge - timedelta(microseconds=1), MY_TIME_6, MES)

    def test_fsp(self):
        """Fractional seconds beyond fsp are refused, also for negative durations."""
        assert (
            refused(time(1, 0, 0, 500000), MY_TIME_0, MES)
            == "microseconds .500000 would be dropped by TIME(0)"
        )
        refused(timedelta(seconds=-1, microseconds=-5), MY_TIME_0, MES)
        assert to_target(timedelta(seconds=-1, microseconds=-5), MY_TIME_6, MES) == timedelta(
            seconds=-1, microseconds=-5
        )

    def test_offsets(self):
        """A time with a non-zero UTC offset would lose it: refused."""
        refused(time(10, tzinfo=timezone(timedelta(hours=1))), PG_TIME, CRM)
        assert to_target(time(10, tzinfo=UTC), PG_TIME, CRM) == time(10)

    def test_normal_form(self):
        """time and timedelta compare equal when they name the same time of day."""
        assert values_equal(
            time(1, 2, 3, 4), timedelta(hours=1, minutes=2, seconds=3, microseconds=4), PG_TIME
        )
        assert values_equal(time(1), timedelta(hours=1))

    @given(st.times())
    def test_round_trip(self, value):
        """time -> TIME(6) -> time is the identity."""
        back, on_mes = crm_to_mes_to_crm(value, PG_TIME, MY_TIME_6)
        assert back == value and isinstance(on_mes, timedelta)

    @given(st.timedeltas(min_value=-timedelta(hours=900), max_value=timedelta(hours=900)))
    def test_mysql_time_exact_or_refused(self, value):
        """Random durations vs TIME(6): inside +-838:59:59 kept exactly, else refused."""
        if abs(value) <= timedelta(hours=838, minutes=59, seconds=59):
            assert to_target(value, MY_TIME_6, MES) == value
        else:
            with pytest.raises(Unrepresentable):
                to_target(value, MY_TIME_6, MES)


# --- JSON ---------------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=8,
    ),
)
json_docs = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(max_size=5).filter(
                lambda k: "\x00" not in k and all(not 0xD800 <= ord(c) <= 0xDFFF for c in k)
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
# Two contract ambiguities are left out here (see TestJson.test_str_is_json_text): a
# top-level JSON null loads as None (= SQL NULL), a top-level JSON string loads as str
# (= JSON text).
json_values = json_docs.filter(lambda v: v is not None and not isinstance(v, str))


class TestJson:
    def test_dumps_exact_and_compact(self):
        """Decimals are written digit for digit, no spaces, non-ASCII kept."""
        assert json_dumps({"a": Decimal("1.10"), "b": [1, 2.5, "é", None, True]}) == (
            '{"a":1.10,"b":[1,2.5,"é",null,true]}'
        )
        big = Decimal("12345678901234567890.12345678901234567890")
        assert json_dumps([big]) == "[12345678901234567890.12345678901234567890]"
        assert json_dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
        assert json_dumps({"a": 1}) == json.dumps({"a": 1}, separators=(",", ":"))
        with pytest.raises(ValueError):
            json_dumps(float("nan"))
        with pytest.raises(ValueError):
            json_dumps([Decimal("NaN")])
        with pytest.raises(TypeError):
            json_dumps({1, 2})

    def test_to_target_returns_text(self):
        """Objects become compact JSON text; valid ASCII JSON text passes as written where the
        target stores it unchanged, and is rendered compact for MySQL's native JSON or when
        it holds non-ASCII characters."""
        assert to_target({"a": [1, Decimal("2.50")]}, PG_JSONB, CRM) == '{"a":[1,2.50]}'
        assert to_target('{ "a" : [1, 2.50] }', MARIADB_JSON, MES) == '{ "a" : [1, 2.50] }'
        assert to_target('{"a": [1, 2.50]}', PG_JSONB, CRM) == '{"a": [1, 2.50]}'
        assert to_target('{ "a" : [1, 2.50] }', MYSQL_JSON, MES) == '{"a":[1,2.50]}'
        assert to_target('{ "é" : [1, 2.50] }', MARIADB_JSON, MES) == '{"é":[1,2.50]}'
        # an escaped backslash before "u0000" is not a NUL: kept, via the compact path
        assert to_target('{"a": "\\\\u0000"}', PG_JSONB, CRM) == '{"a":"\\\\u0000"}'
        assert to_target(b'{"a":1}', PG_JSONB, CRM) == '{"a":1}'
        assert to_target("[]", MYSQL_JSON, MES) == "[]"
        assert to_target(7, PG_JSONB, CRM) == "7"

    def test_invalid_json(self):
        """Invalid text, NaN constants and non-JSON objects are refused."""
        assert refused("{oops", PG_JSONB, CRM).startswith("invalid JSON")
        refused("NaN", MARIADB_JSON, MES)
        refused('{"a": Infinity}', PG_JSONB, CRM)
        refused({"a": float("nan")}, PG_JSONB, CRM)
        refused({"a": {1, 2}}, PG_JSONB, CRM)
        refused(b"\xff", PG_JSONB, CRM)

    def test_jsonb_nul(self):
        """jsonb cannot hold \\u0000; json (text) and MariaDB can."""
        assert "jsonb cannot hold" in refused({"a": "x\x00"}, PG_JSONB, CRM)
        assert to_target({"a": "x\x00"}, PG_JSON, CRM) == '{"a":"x\\u0000"}'
        assert to_target('"x\\u0000"', MARIADB_JSON, MES) == '"x\\u0000"'
        # an escaped backslash followed by 'u0000' is not a NUL
        assert to_target({"a": "\\u0000"}, PG_JSONB, CRM) == '{"a":"\\\\u0000"}'

    def test_str_is_json_text(self):
        """A str is JSON text, so a JSON string scalar must arrive quoted ('"abc"');
        loaded to a bare str it is parsed as text and refused or re-read."""
        assert to_target('"abc"', PG_JSONB, CRM) == '"abc"'
        refused("abc", PG_JSONB, CRM)
        assert (
            to_target("123", PG_JSONB, CRM) == "123"
        )  # a number now: readers must not load scalars

    def test_mysql_native_json_numbers(self):
        """MySQL 8's JSON keeps numbers as int64/uint64/double: more digits are refused."""
        assert (
            to_target({"a": Decimal("0.1"), "b": 2**64 - 1}, MYSQL_JSON, MES)
            == '{"a":0.1,"b":18446744073709551615}'
        )
        assert "would lose digits" in refused([Decimal("0.12345678901234567890")], MYSQL_JSON, MES)
        refused([2**64], MYSQL_JSON, MES)
        big = "[0.12345678901234567890, 18446744073709551616]"
        assert to_target(big, MARIADB_JSON, MES) == big  # MariaDB keeps every digit, as written
        assert to_target(json.loads(big, parse_float=Decimal), MARIADB_JSON, MES) == (
            "[0.12345678901234567890,18446744073709551616]")

    def test_json_utf8mb3(self):
        """A JSON document in a utf8mb3 column cannot carry 4-byte characters."""
        c = col(Family.JSON, "longtext", charset="utf8mb3")
        assert "U+1F600" in refused({"a": "\U0001f600"}, c, MES)

    def test_semantic_equality(self):
        """Key order, whitespace, 1.0 vs 1.00 and text vs objects do not matter; nested too."""
        a = '{"b": {"y": [1.0, {"q": 2.50}], "x": null}, "a": "é"}'
        b = {"a": "é", "b": {"x": None, "y": [Decimal("1.00"), {"q": Decimal("2.5")}]}}
        assert values_equal(a, b, PG_JSONB)
        assert values_equal(a, '{"a":"\\u00e9","b":{"x":null,"y":[1,{"q":2.5}]}}', MARIADB_JSON)
        assert values_equal({"n": 1}, {"n": 1.0}, PG_JSONB)
        assert values_equal({"n": 100}, '{"n": 1E+2}', PG_JSONB)
        assert not values_equal({"a": [1, 2]}, {"a": [2, 1]}, PG_JSONB)
        assert not values_equal({"a": 1}, {"a": "1"}, PG_JSONB)
        assert not values_equal({"a": True}, {"a": 1}, PG_JSONB)
        assert not values_equal('{"a":1.5}', '{"a":1.50001}', PG_JSONB)
        assert normalize({"b": 1, "a": 2}) == '{"a":2,"b":1}'

    @given(json_values)
    @settings(max_examples=150)
    def test_round_trip(self, value):
        """jsonb (objects) -> MariaDB JSON (text) -> jsonb keeps the JSON value, and the
        text is stable from the second hop on."""
        back, on_mes = crm_to_mes_to_crm(value, PG_JSONB, MARIADB_JSON)
        assert values_equal(value, back, PG_JSONB)
        assert values_equal(value, on_mes, MARIADB_JSON)
        assert to_target(on_mes, MARIADB_JSON, MES) == on_mes

    @given(json_values)
    def test_mysql_json_exact_or_refused(self, value):
        """Into MySQL native JSON, a document is accepted only if reading it back as MySQL
        would (numbers as double or 64-bit integers) gives the same JSON value."""
        try:
            text = to_target(value, MYSQL_JSON, MES)
        except Unrepresentable:
            return
        as_mysql = json.loads(text)  # floats, as MySQL holds them
        assert values_equal(value, as_mysql, MYSQL_JSON)


# --- UUID, ENUM, OTHER --------------------------------------------------------------------------


class TestUuid:
    def test_uuid(self):
        """uuid takes UUIDs, their text in any case or PostgreSQL's forms, or 16 bytes."""
        u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        assert to_target(u, PG_UUID, CRM) == str(u)
        assert to_target(str(u).upper(), PG_UUID, CRM) == str(u)
        assert to_target("{" + u.hex + "}", PG_UUID, CRM) == str(u)
        assert to_target(u.bytes, PG_UUID, CRM) == str(u)
        assert refused("not-a-uuid", PG_UUID, CRM) == "'not-a-uuid' is not a UUID"
        refused(5, PG_UUID, CRM)

    def test_normal_form(self):
        """A UUID and its upper-case text compare equal under a uuid column."""
        u = uuid.uuid4()
        assert values_equal(u, str(u).upper(), PG_UUID)
        assert normalize(u) == str(u)

    @given(st.uuids())
    def test_round_trip(self, value):
        """uuid -> CHAR(36) -> uuid is the identity."""
        back, on_mes = crm_to_mes_to_crm(value, PG_UUID, MY_CHAR_36)
        assert back == value and on_mes == str(value)


class TestEnum:
    def test_members(self):
        """Only exact (case-sensitive) labels pass; MySQL would fold case or store ''."""
        assert to_target("confirmed", PG_ENUM, CRM) == "confirmed"
        assert to_target("RELEASED", MY_ENUM, MES) == "RELEASED"
        assert refused("foo", col(Family.ENUM, "enum('a','b')", enum_values=("a", "b")), MES) == (
            "'foo' is not a value of ENUM('a','b')"
        )
        refused("released", MY_ENUM, MES)
        refused("new ", MY_ENUM, MES)
        refused(1, MY_ENUM, MES)

    @given(st.sampled_from(PG_ENUM.enum_values))
    def test_round_trip(self, value):
        """A label present on both sides survives the round trip."""
        shared = col(Family.ENUM, "enum", enum_values=PG_ENUM.enum_values)
        assert crm_to_mes_to_crm(value, PG_ENUM, shared)[0] == value


class TestOther:
    def test_other(self):
        """Other types travel as text; bytes stay bytes; containers are refused."""
        assert to_target("10.0.0.1/32", PG_INET, CRM) == "10.0.0.1/32"
        assert to_target(5, PG_INET, CRM) == "5"
        assert to_target(True, MY_SET, MES) == "true"
        assert to_target(b"\x01", MY_SET, MES) == b"\x01"
        refused(["a", "b"], PG_INET, CRM)
        refused("a\x00", PG_INET, CRM)

    def test_compared_as_text(self):
        """OTHER values compare by their text."""
        assert values_equal(5, "5", PG_INET)


# --- normalize without a column ----------------------------------------------------------------


class TestNormalizeUntyped:
    def test_by_python_type(self):
        """Without a column: aware -> naive UTC, bytes-likes -> bytes, UUID -> text,
        Decimal canonical, JSON objects canonical text, None/UNCHANGED unchanged."""
        assert normalize(datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(
            2024, 1, 1
        )
        assert normalize(memoryview(b"x")) == b"x"
        assert normalize(Decimal("2.50")) == Decimal("2.5")
        assert normalize(None) is None and normalize(UNCHANGED) is UNCHANGED
        assert normalize(1.5) == 1.5
        assert values_equal(Decimal("1.0"), 1)
        bad = InvalidValue("x", "y")
        assert normalize(bad, PG_JSONB) == bad and normalize(bad, PG_INT) == bad

    def test_never_raises(self):
        """Odd values come back unchanged rather than raising."""
        for family in Family:
            c = col(family, precision=5, scale=2, float_bits=32, int_bits=8)
            for value in (object, "zz", b"\xff", float("inf"), Decimal("sNaN"), [1, {2}], -1):
                normalize(value, c)


# --- MES-origin round trips ----------------------------------------------------------------------


class TestMesOrigin:
    @given(st.sampled_from([0, 1]))
    def test_tinyint1_bool(self, value):
        """TINYINT(1) 0/1 -> boolean -> TINYINT(1) is the identity."""
        back, on_crm = mes_to_crm_to_mes(value, MY_TINYINT1, PG_BOOL)
        assert back == value and on_crm is bool(value)

    @given(st.floats(width=32, allow_nan=False, allow_infinity=False))
    def test_float32(self, value):
        """FLOAT (binlog float32) -> real (read as shortest text) -> FLOAT keeps the float32."""
        back, on_crm = mes_to_crm_to_mes(value, MY_FLOAT, PG_REAL)
        assert back == value or (back == 0 and value == 0)
        assert values_equal(value, on_crm, PG_REAL)

    @given(
        st.timedeltas(
            min_value=timedelta(0), max_value=timedelta(hours=24) - timedelta(microseconds=1)
        )
    )
    def test_time_of_day(self, value):
        """MySQL TIME within a day -> time -> TIME is the identity."""
        back, on_crm = mes_to_crm_to_mes(value, MY_TIME_6, PG_TIME)
        assert back == value and isinstance(on_crm, time)

    @given(
        st.datetimes(
            min_value=datetime(1970, 1, 1, 0, 0, 1), max_value=datetime(2038, 1, 19, 3, 14, 7)
        )
    )
    def test_timestamp(self, value):
        """MySQL TIMESTAMP (naive UTC) -> timestamptz -> TIMESTAMP is the identity."""
        back, on_crm = mes_to_crm_to_mes(value, MY_TIMESTAMP_6, PG_TSTZ)
        assert back == value and on_crm.tzinfo is not None

    @given(json_values)
    def test_mariadb_json_text(self, value):
        """MariaDB JSON text (any spacing) -> jsonb -> MariaDB JSON keeps the JSON value."""
        text = " " + json_dumps(value) + "\n"  # MariaDB keeps whatever text was written
        back, on_crm = mes_to_crm_to_mes(text, MARIADB_JSON, PG_JSONB)
        assert values_equal(text, back, MARIADB_JSON)
        assert values_equal(text, on_crm, PG_JSONB)

    @given(st.uuids())
    def test_char36_uuid(self, value):
        """CHAR(36) holding a UUID -> uuid -> CHAR(36) is the identity (lowercase text)."""
        text = str(value)
        back, _ = mes_to_crm_to_mes(text, MY_CHAR_36, PG_UUID)
        assert back == text

    @given(st.integers(min_value=0, max_value=2**64 - 1))
    def test_bigint_unsigned_via_numeric(self, value):
        """BIGINT UNSIGNED -> numeric(20,0) -> BIGINT UNSIGNED is the identity."""
        back, _ = mes_to_crm_to_mes(value, MY_BIGINT_U, PG_NUM_20)
        assert back == value


def test_pure_no_driver_imports():
    """bridge.types imports no database driver (it is part of the pure core)."""
    import subprocess
    import sys

    code = (
        "import sys, bridge.types; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('psycopg', 'pymysql', 'pymysqlreplication')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
