"""The fast row-image decoder (connectors.mysql.rowdecode) against the library's decoding.

The oracle is the reader's library path (`BinlogChangeSource(fast_rows=False)`: the library
decodes, `_TablePlan.repair` corrects it). Both readers stream the same binlog range from a
real MariaDB server, and every RowChange must be identical, value types and reprs included
(Decimal exponents, -0.0, str vs bytes, InvalidValue texts, UNCHANGED). Hypothesis drives
generated rows; a pure property test covers the DECIMAL binary format on its own.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import Fatal
from bridge.model import UNCHANGED, InvalidValue, Op, RowChange, TxCommit
from connectors.mysql import introspect
from connectors.mysql.reader import BinlogChangeSource, ReaderStats
from connectors.mysql.rowdecode import Unsupported, compile_table

_server_ids = itertools.count(3000)


# --- helpers ---------------------------------------------------------------------------------


def _parts(dsn: str) -> dict[str, Any]:
    p = urlsplit(dsn)
    return {"host": p.hostname, "port": p.port, "user": p.username, "database": p.path.lstrip("/")}


def _connect(dsn: str) -> pymysql.connections.Connection:
    p = _parts(dsn)
    return pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password="",
                           database=p["database"], autocommit=True, charset="utf8mb4")


def _sql(dsn: str, *statements: str | tuple[str, Any]) -> None:
    """Run statements on one session; an item may be (sql, args)."""
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for stmt in statements:
                if isinstance(stmt, tuple):
                    cur.execute(*stmt)
                else:
                    cur.execute(stmt)
    finally:
        conn.close()


def _position(dsn: str):
    conn = _connect(dsn)
    try:
        return introspect.current_position(conn)
    finally:
        conn.close()


def _stream(dsn: str, start: Any, commits: int, *, fast: bool) -> tuple[list[RowChange], ReaderStats]:
    """The RowChanges of the next `commits` transactions after `start`, and reader stats."""
    p = _parts(dsn)
    reader = BinlogChangeSource(p["host"], p["port"], p["user"], None, p["database"],
                                server_id=next(_server_ids), resume=start,
                                marker_table="plant1_bridge_state", heartbeat_seconds=0.5,
                                idle_seconds=0.2, fast_rows=fast)
    changes: list[RowChange] = []
    seen = 0
    deadline = time.monotonic() + 60
    try:
        for event in reader.events():
            if isinstance(event, RowChange):
                changes.append(event)
            elif isinstance(event, TxCommit):
                seen += 1
                if seen == commits:
                    break
            assert time.monotonic() < deadline, f"timed out after {seen} of {commits} commits"
        return changes, reader.stats
    finally:
        reader.close()


def _typed(row: dict[str, Any] | None) -> list[tuple[str, type, str]] | None:
    """A row with each value's exact type and repr, in column order."""
    if row is None:
        return None
    return [(name, type(value), repr(value)) for name, value in row.items()]


def _both(dsn: str, start: Any, commits: int) -> list[RowChange]:
    """Stream with both decoders; assert identical changes; return the fast decoder's."""
    fast, fast_stats = _stream(dsn, start, commits, fast=True)
    slow, slow_stats = _stream(dsn, start, commits, fast=False)
    assert fast_stats.fast_row_events > 0 and fast_stats.library_row_events == 0
    assert slow_stats.fast_row_events == 0 and slow_stats.library_row_events > 0
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow):
        assert (f.op, f.table) == (s.op, s.table)
        assert _typed(f.key) == _typed(s.key)
        assert _typed(f.before) == _typed(s.before)
        assert _typed(f.after) == _typed(s.after)
    return fast


# --- every column type -----------------------------------------------------------------------

ENUM_300 = [f"m{i}" for i in range(300)]  # > 255 members: a 2-byte ENUM
SET_64 = [f"s{i}" for i in range(64)]  # 64 members: an 8-byte SET


def _members(values: list[str]) -> str:
    return ",".join(f"'{v}'" for v in values)


ALL_TYPES_DDL = f"""
CREATE TABLE all_types (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  flag TINYINT(1), f FLOAT, d DOUBLE,
  d1 DECIMAL(1,0), d52 DECIMAL(5,2), d99 DECIMAL(9,9), d100 DECIMAL(10,0), d189 DECIMAL(18,9),
  d2010u DECIMAL(20,10) UNSIGNED, d6530 DECIMAL(65,30), d650 DECIMAL(65,0), d3030 DECIMAL(30,30),
  y YEAR, dte DATE,
  dt0 DATETIME, dt1 DATETIME(1), dt2 DATETIME(2), dt3 DATETIME(3), dt4 DATETIME(4),
  dt5 DATETIME(5), dt6 DATETIME(6),
  ts0 TIMESTAMP NULL DEFAULT NULL, ts1 TIMESTAMP(1) NULL DEFAULT NULL,
  ts4 TIMESTAMP(4) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  tm0 TIME, tm1 TIME(1), tm2 TIME(2), tm3 TIME(3), tm4 TIME(4), tm5 TIME(5), tm6 TIME(6),
  c CHAR(10), c255 CHAR(255), v VARCHAR(50), v300 VARCHAR(300),
  vl1 VARCHAR(20) CHARACTER SET latin1, vsw VARCHAR(20) CHARACTER SET swe7,
  vsj VARCHAR(20) CHARACTER SET sjis, vgr VARCHAR(20) CHARACTER SET greek,
  bn BINARY(4), vb VARBINARY(10), vb300 VARBINARY(300),
  tb TINYBLOB, b BLOB, mb MEDIUMBLOB, lb LONGBLOB, tt TINYTEXT, t TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  j JSON, e ENUM('new','running','done'), e300 ENUM({_members(ENUM_300)}),
  st SET('a','b','c'), st64 SET({_members(SET_64)}),
  bt1 BIT(1), bt10 BIT(10), bt64 BIT(64),
  g GEOMETRY, pt POINT, u UUID, ip INET6
) DEFAULT CHARSET=utf8mb4
"""

MULTIBYTE = "Grüße 😀 中文 ü"
ROW_MAX = {
    "id": 1, "ti": 127, "tiu": 255, "si": 32767, "siu": 65535, "mi": 8388607, "miu": 16777215,
    "i": 2147483647, "iu": 4294967295, "bi": 9223372036854775807, "biu": 18446744073709551615,
    "flag": 1, "f": 3.4e38, "d": 1.7976931348623157e308,
    "d1": Decimal("9"), "d52": Decimal("999.99"), "d99": Decimal("0.999999999"),
    "d100": Decimal("9999999999"), "d189": Decimal("999999999.999999999"),
    "d2010u": Decimal("9999999999.9999999999"),
    "d6530": Decimal("99999999999999999999999999999999999.999999999999999999999999999999"),
    "d650": Decimal("9" * 65), "d3030": Decimal("0." + "9" * 30),
    "y": 2155, "dte": date(9999, 12, 31),
    "dt0": datetime(9999, 12, 31, 23, 59, 59), "dt1": datetime(9999, 12, 31, 23, 59, 59, 900000),
    "dt2": datetime(9999, 12, 31, 23, 59, 59, 990000), "dt3": datetime(9999, 12, 31, 23, 59, 59, 999000),
    "dt4": datetime(9999, 12, 31, 23, 59, 59, 999900), "dt5": datetime(9999, 12, 31, 23, 59, 59, 999990),
    "dt6": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "ts0": datetime(2038, 1, 19, 3, 14, 7), "ts1": datetime(2038, 1, 19, 3, 14, 7, 900000),
    "ts4": datetime(2038, 1, 19, 3, 14, 7, 999900), "ts6": datetime(2038, 1, 19, 3, 14, 7, 999999),
    "tm0": "838:59:59", "tm1": "838:59:59.9", "tm2": "838:59:59.99", "tm3": "838:59:59.999",
    "tm4": "838:59:59.9999", "tm5": "838:59:59.99999", "tm6": "838:59:59.999999",
    "c": "abcdefghij", "c255": "ü" * 255, "v": MULTIBYTE, "v300": "😀" * 300,
    "vl1": "Grüße ÿ", "vsw": "abc", "vsj": "日本語テキスト", "vgr": "Ελληνικά",
    "bn": b"\xff\xff\xff\xff", "vb": b"\x00" * 10, "vb300": bytes(range(256)) + b"\x01" * 44,
    "tb": bytes(range(255)), "b": bytes(range(256)) * 100, "mb": b"\xfe" * 70000,
    "lb": b"\x00\xff" * 50000, "tt": "t" * 255, "t": MULTIBYTE * 100, "mt": "ü" * 40000,
    "lt": "x" * 100000, "j": '{"a": [1, 2.5, "x"], "b": {"c": null}, "ü": "😀"}',
    "e": "done", "e300": "m299", "st": "a,b,c", "st64": ",".join(SET_64),
    "bt1": 1, "bt10": 1023, "bt64": 2**64 - 1,
    "u": "ffffffff-ffff-ffff-ffff-ffffffffffff", "ip": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
}
ROW_MIN = {
    "id": 2, "ti": -128, "tiu": 0, "si": -32768, "siu": 0, "mi": -8388608, "miu": 0,
    "i": -2147483648, "iu": 0, "bi": -9223372036854775808, "biu": 0,
    "flag": 0, "f": -3.4e38, "d": -2.2250738585072014e-308,
    "d1": Decimal("-9"), "d52": Decimal("-999.99"), "d99": Decimal("-0.000000001"),
    "d100": Decimal("-1"), "d189": Decimal("-0.000000001"), "d2010u": Decimal("0"),
    "d6530": Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
    "d650": Decimal("-" + "9" * 65), "d3030": Decimal("-0." + "0" * 29 + "1"),
    "y": 1901, "dte": date(1000, 1, 1),
    "dt0": datetime(1000, 1, 1), "dt1": datetime(1000, 1, 1, 0, 0, 0, 100000),
    "dt2": datetime(1000, 1, 1, 0, 0, 0, 10000), "dt3": datetime(1000, 1, 1, 0, 0, 0, 1000),
    "dt4": datetime(1000, 1, 1, 0, 0, 0, 100), "dt5": datetime(1000, 1, 1, 0, 0, 0, 10),
    "dt6": datetime(1000, 1, 1, 0, 0, 0, 1),
    "ts0": datetime(1970, 1, 1, 0, 0, 1), "ts1": datetime(1970, 1, 1, 0, 0, 1, 100000),
    "ts4": datetime(1970, 1, 1, 0, 0, 1, 100), "ts6": datetime(1970, 1, 1, 0, 0, 1, 1),
    "tm0": "-838:59:59", "tm1": "-838:59:59.9", "tm2": "-00:00:00.01", "tm3": "-12:34:56.789",
    "tm4": "-00:00:01.5", "tm5": "-100:00:00.00001", "tm6": "-00:00:00.000001",
    "c": "x  ", "c255": "", "v": "", "v300": "", "vl1": "", "vsw": "", "vgr": "", "vsj": "",
    "bn": b"", "vb": b"", "vb300": b"", "tb": b"", "b": b"", "mb": b"", "lb": b"",
    "tt": "", "t": "", "mt": "", "lt": "", "j": "[]",
    "e": "new", "e300": "m0", "st": "", "st64": "", "bt1": 0, "bt10": 0, "bt64": 0,
    "u": "00000000-0000-0000-0000-000000000000", "ip": "::",
}
COLUMNS = [*ROW_MAX][:-2] + ["g", "pt", "u", "ip"]  # table order (g, pt set by UPDATE)
ROW_NULL = {name: None for name in COLUMNS} | {"id": 3}
ROW_ZERO = {  # zero and small values (not the type's minimum)
    "id": 4, "ti": 0, "tiu": 1, "si": 0, "siu": 1, "mi": -1, "miu": 1, "i": 0, "iu": 1, "bi": -1,
    "biu": 2**63, "flag": 0, "f": 0.0, "d": -0.0, "d1": Decimal("0"), "d52": Decimal("-0.01"),
    "d99": Decimal("0"), "d100": Decimal("0"), "d189": Decimal("-123456789.123456789"),
    "d2010u": Decimal("0.0000000001"), "d6530": Decimal("0"), "d650": Decimal("0"),
    "d3030": Decimal("0"), "y": 2000, "dte": date(2024, 2, 29), "dt0": datetime(2024, 2, 29, 12),
    "dt6": datetime(2024, 2, 29, 12, 0, 0, 500000), "ts6": datetime(2000, 1, 1, 0, 0, 0, 123456),
    "tm0": "00:00:00", "tm6": "-00:00:01", "tm3": "-00:00:00.5", "c": " a", "v": " trailing  ",
    "bn": b"\x01", "vb": b"\x00", "e": "running", "e300": "m255", "st": "b", "st64": "s63,s0",
    "bt1": 1, "bt10": 512, "bt64": 2**63,
}


def _insert(cur: Any, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(f"`{c}`" for c in row)  # fixed test identifiers
    cur.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(row))})", tuple(row.values()))


@pytest.fixture
def all_types(mes_db: str) -> str:
    _sql(mes_db, ALL_TYPES_DDL)
    return mes_db


class TestAllTypes:
    def test_inserts_updates_deletes_match_the_library(self, all_types) -> None:
        """Every supported column type at its extremes, NULL, empty and multi-byte values,
        zero dates, FULL before/after images and deletes decode exactly as the library path."""
        dsn = all_types
        start = _position(dsn)
        conn = _connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for row in (ROW_MAX, ROW_MIN, ROW_NULL, ROW_ZERO):
                _insert(cur, "all_types", row)
            cur.execute("UPDATE all_types SET g = ST_GeomFromText('LINESTRING(0 0, 1 1, 2 -5.5)'), "
                        "pt = POINT(1.5, -2) WHERE id IN (1, 4)")
            cur.execute("UPDATE all_types SET v = 'changed ✓', tm6 = '-00:00:00.5', d52 = -d52, "
                        "j = '{}', lb = NULL, ts0 = NULL WHERE id IN (1, 2)")
            cur.execute("SET SESSION sql_mode = ''")  # zero and invalid dates
            cur.execute("INSERT INTO all_types (id, dte, dt0, dt3, dt6, ts0, ts6, y) VALUES "
                        "(5, '0000-00-00', '0000-00-00 00:00:00', '2020-02-30 10:00:00', "
                        "'2020-00-10 00:00:00.5', 0, 0, 0)")
            cur.execute("INSERT INTO all_types (id, dte, dt6) VALUES (6, '2020-00-10', '0000-00-00')")
            cur.execute("UPDATE all_types SET id = id + 100 WHERE id >= 5")
            cur.execute("INSERT INTO all_types (id, ti) SELECT seq, seq % 100 FROM seq_1000_to_1300")
            cur.execute("DELETE FROM all_types")
        conn.close()

        changes = _both(dsn, start, 11)
        assert [c.op for c in changes[:4]] == [Op.INSERT] * 4
        after = {c.after["id"]: c.after for c in changes if c.op is Op.INSERT}
        # spot checks against the inserted values (the library path is the oracle for the rest)
        assert after[1]["d6530"] == ROW_MAX["d6530"] and after[2]["d650"] == ROW_MIN["d650"]
        assert after[1]["bn"] == b"\xff" * 4 and after[2]["bn"] == b"\x00" * 4
        assert after[2]["tm6"] == timedelta(microseconds=-1) and after[2]["tm4"] == timedelta(seconds=-1.5)
        assert after[1]["ts6"] == ROW_MAX["ts6"].replace(tzinfo=timezone.utc)
        assert after[1]["st64"] == ROW_MAX["st64"] and after[4]["st64"] == "s0,s63"
        assert after[1]["bt64"] == "1" * 64 and after[4]["bt10"] == "1000000000"
        assert after[1]["vsj"] == ROW_MAX["vsj"] and after[1]["vgr"] == "Ελληνικά"
        assert after[1]["vsw"] == b"abc" and after[2]["vsw"] == ""  # no Python codec: bytes
        assert after[3] == ROW_NULL and list(after[3]) == COLUMNS
        assert isinstance(after[5]["dte"], InvalidValue) and isinstance(after[5]["ts0"], InvalidValue)
        assert isinstance(after[5]["dt3"], InvalidValue) and after[5]["y"] == 0
        assert after[4]["d"] == 0.0  # the server stores -0.0 as 0
        updates = [c for c in changes if c.op is Op.UPDATE]
        assert {u.after["id"] for u in updates} >= {1, 2, 4, 105, 106}
        assert sum(1 for c in changes if c.op is Op.INSERT and c.after["id"] >= 1000) == 301
        assert sum(1 for c in changes if c.op is Op.DELETE) == 307

    def test_minimal_and_noblob_images_match_the_library(self, all_types) -> None:
        """Sessions with binlog_row_image MINIMAL / NOBLOB: absent columns are UNCHANGED in
        both paths, present ones decode alike (NULL bitmaps over present columns only)."""
        dsn = all_types
        conn = _connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            _insert(cur, "all_types", ROW_MAX)
            _insert(cur, "all_types", ROW_NULL)
        conn.close()
        start = _position(dsn)
        _sql(dsn, "SET SESSION binlog_row_image = 'MINIMAL'",
             "UPDATE all_types SET v = 'minimal', tm3 = NULL, d189 = -1.5 WHERE id = 1",
             "UPDATE all_types SET i = 7 WHERE id = 3",
             "INSERT INTO all_types (id, v, dt6) VALUES (10, 'few columns', '2024-01-01 00:00:00.25')",
             "DELETE FROM all_types WHERE id = 10",
             "SET SESSION binlog_row_image = 'NOBLOB'",
             "UPDATE all_types SET d = 2.5, t = 'text changes' WHERE id = 1",
             "DELETE FROM all_types WHERE id = 3")
        changes = _both(dsn, start, 6)
        assert changes[0].before == {c: (1 if c == "id" else UNCHANGED) for c in COLUMNS}
        assert changes[0].after["v"] == "minimal" and changes[0].after["tm3"] is None
        assert changes[0].after["d189"] == Decimal("-1.5") and changes[0].after["i"] is UNCHANGED
        assert changes[4].after["t"] == "text changes" and changes[4].after["lb"] is UNCHANGED
        assert changes[4].before["d"] == ROW_MAX["d"] and changes[4].before["b"] is UNCHANGED


class TestSharedFailures:
    def test_utf16_text_stops_both_paths_alike(self, mes_db) -> None:
        """utf16/utf32 columns: the library's charset table names the little-endian codecs
        for MySQL's big-endian encodings, so decoding fails (Fatal) - the fast path keeps
        that behaviour rather than yield different values than the library path."""
        _sql(mes_db, "CREATE TABLE u16 (id INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET utf16)")
        start = _position(mes_db)
        _sql(mes_db, "INSERT INTO u16 VALUES (1, 'Grüße 😀')")
        for fast in (True, False):
            with pytest.raises(Fatal, match="UnicodeDecodeError"):
                _stream(mes_db, start, 1, fast=fast)


# --- generated values (hypothesis) ----------------------------------------------------------

GEN_DDL = """
CREATE TABLE gen (
  id INT NOT NULL PRIMARY KEY, i INT, mi MEDIUMINT, su SMALLINT UNSIGNED, bu BIGINT UNSIGNED,
  bi BIGINT, dec20 DECIMAL(20,6), dec38 DECIMAL(38,19), dfrac DECIMAL(9,9), dint DECIMAL(27,0),
  d DOUBLE, dt DATETIME(6), dt3 DATETIME(3), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6),
  tm1 TIME(1), dte DATE, v VARCHAR(100), c CHAR(20), bl BLOB, bn BINARY(6),
  st SET('a','b','c','d'), e ENUM('x','y','z'), bt BIT(13), y YEAR, j JSON
) DEFAULT CHARSET=utf8mb4
"""
TIME_MAX = timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)


def _decimal(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    """DECIMAL(precision, scale) values, built exactly (Decimal arithmetic and hypothesis's
    decimals() round to the context's 28 digits)."""
    bound = 10 ** precision - 1
    return st.integers(-bound, bound).map(
        lambda n: Decimal((int(n < 0), tuple(map(int, str(abs(n)))), -scale)))


def _time_text(value: timedelta) -> str:
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    hours, rest = divmod(value, timedelta(hours=1))
    minutes, rest = divmod(rest, timedelta(minutes=1))
    return f"{sign}{hours}:{minutes:02d}:{rest.seconds:02d}.{rest.microseconds:06d}"


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


GEN_ROW = st.fixed_dictionaries({
    "i": _opt(st.integers(-2**31, 2**31 - 1)), "mi": _opt(st.integers(-2**23, 2**23 - 1)),
    "su": _opt(st.integers(0, 2**16 - 1)), "bu": _opt(st.integers(0, 2**64 - 1)),
    "bi": _opt(st.integers(-2**63, 2**63 - 1)),
    "dec20": _opt(_decimal(20, 6)), "dec38": _opt(_decimal(38, 19)), "dfrac": _opt(_decimal(9, 9)),
    "dint": _opt(_decimal(27, 0)),
    "d": _opt(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)),
    "dt": _opt(st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999))),
    "dt3": _opt(st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31)).map(
        lambda v: v.replace(microsecond=v.microsecond // 1000 * 1000))),
    "ts": _opt(st.datetimes(datetime(1970, 1, 1, 0, 0, 1), datetime(2038, 1, 19, 3, 14, 7)).map(
        lambda v: v.replace(microsecond=v.microsecond // 1000 * 1000))),
    "tm": _opt(st.timedeltas(-TIME_MAX, TIME_MAX)),
    "tm1": _opt(st.timedeltas(-TIME_MAX, TIME_MAX).map(
        lambda v: timedelta(microseconds=int(v / timedelta(microseconds=100000)) * 100000))),
    "dte": _opt(st.dates(date(1000, 1, 1), date(9999, 12, 31))),
    "v": _opt(st.text(st.characters(blacklist_categories=("Cs",)), max_size=100)),
    "c": _opt(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(lambda s: s.rstrip(" "))),
    "bl": _opt(st.binary(max_size=400)), "bn": _opt(st.binary(max_size=6)),
    "st": _opt(st.sets(st.sampled_from("abcd"))), "e": _opt(st.sampled_from("xyz")),
    "bt": _opt(st.integers(0, 2**13 - 1)), "y": _opt(st.one_of(st.just(0), st.integers(1901, 2155))),
    "j": _opt(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps)),
})
_gen_ids = itertools.count(1)


def _sql_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name.startswith("tm"):
        return _time_text(value)
    if name == "st":
        return ",".join(sorted(value))
    return value


def _expected(name: str, value: Any) -> Any:
    """What the reader yields for `value` inserted into gen.`name`."""
    if value is None:
        return None
    if name == "ts":
        return value.replace(tzinfo=timezone.utc)
    if name == "st":
        return ",".join(sorted(value))
    if name == "bn":
        return value.ljust(6, b"\x00")
    if name == "bt":
        return format(value, "013b")
    return value


@pytest.fixture(scope="module")
def gen_db(mariadb_server) -> str:
    name = "rowdecode_gen"
    mariadb_server.create_database(name)
    dsn = mariadb_server.dsn(name)
    _sql(dsn, GEN_DDL)
    return dsn


class TestGenerated:
    @settings(max_examples=20, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(rows=st.lists(GEN_ROW, min_size=1, max_size=12))
    def test_generated_rows_decode_as_inserted_and_as_the_library(self, gen_db, rows) -> None:
        """Generated rows: the fast decoder yields the inserted values (an oracle independent
        of the library) and exactly the library path's changes for insert, update, delete."""
        rows = [{"id": next(_gen_ids)} | row for row in rows]
        start = _position(gen_db)
        conn = _connect(gen_db)
        try:
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cur.execute("BEGIN")
                for row in rows:
                    _insert(cur, "gen", {k: _sql_value(k, v) for k, v in row.items()})
                cur.execute("COMMIT")
                ids = [r["id"] for r in rows]
                marks = ", ".join(["%s"] * len(ids))
                cur.execute(f"UPDATE gen SET dec20 = -dec20, v = CONCAT(COALESCE(v, ''), 'ü'), "
                            f"tm = NULL, dte = COALESCE(dte, '2000-01-01') WHERE id IN ({marks})", ids)
                cur.execute(f"DELETE FROM gen WHERE id IN ({marks})", ids)
        finally:
            conn.close()
        changes = _both(gen_db, start, 3)
        inserted = [c.after for c in changes if c.op is Op.INSERT]
        assert inserted == [{k: _expected(k, v) for k, v in row.items()} for row in rows]
        scales = {"dec20": 6, "dec38": 19, "dfrac": 9, "dint": 0}
        for change in changes:
            for image in (change.before, change.after):
                for name, scale in scales.items():
                    if image is not None and image[name] is not None:  # the column's scale kept
                        assert image[name].as_tuple().exponent == -scale


# --- DECIMAL binary format (pure) ------------------------------------------------------------

_DIGIT_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _encode_decimal(value: Decimal, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin, written from its description: digit groups of 9 (4 bytes), the
    leftover leading/trailing digits in 1-4 bytes, all big-endian; negative values have
    every bit inverted; then the top bit is flipped."""
    text = f"{value.copy_abs():.{scale}f}"  # (abs() would round to 28 digits)
    whole, _, frac = text.partition(".")
    whole = whole.lstrip("0").rjust(precision - scale, "0")
    assert len(whole) == precision - scale
    out = bytearray()
    rest = len(whole) % 9
    if rest:
        out += int(whole[:rest]).to_bytes(_DIGIT_BYTES[rest], "big")
    for k in range(rest, len(whole), 9):
        out += int(whole[k:k + 9]).to_bytes(4, "big")
    for k in range(0, scale - scale % 9, 9):
        out += int(frac[k:k + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(frac[scale - scale % 9:]).to_bytes(_DIGIT_BYTES[scale % 9], "big")
    if value < 0:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return bytes(out)


@st.composite
def _decimal_case(draw: st.DrawFn) -> tuple[int, int, Decimal]:
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(precision, 30)))
    return precision, scale, draw(_decimal(precision, scale))


class TestDecimalFormat:
    @given(_decimal_case())
    def test_decimal_round_trips_with_its_scale(self, case: tuple[int, int, Decimal]) -> None:
        """Any DECIMAL(p,s) value decodes to itself with exponent -s, negative zero kept."""
        precision, scale, value = case
        column = SimpleNamespace(type=246, name="x", unsigned=False, character_set_name=None,
                                 precision=precision, decimals=scale)
        decoder = compile_table([column])
        data = b"\x00" + _encode_decimal(value, precision, scale)  # NULL bitmap, then the value
        ((_, row),) = decoder.rows(Op.INSERT, data, 0, len(data), b"\x01")
        assert row["x"] == value and row["x"].as_tuple().exponent == -scale
        assert row["x"].is_signed() == (value < 0)


class TestCompile:
    @pytest.mark.parametrize("column, reason", [
        (SimpleNamespace(type=245, name="j", length_size=4), "JSON"),
        (SimpleNamespace(type=12, name="old"), "DATETIME"),
        (SimpleNamespace(type=248, name="s", character_set_name="binary", set_values=["a"], size=1), "binary"),
        (SimpleNamespace(type=248, name="s", character_set_name="utf8", set_values=["a", "a"], size=1), "duplicate"),
    ])
    def test_unsupported_columns_are_refused(self, column: Any, reason: str) -> None:
        """Columns the decoder cannot reproduce exactly make the whole table fall back."""
        column.unsigned = False
        with pytest.raises(Unsupported, match=reason):
            compile_table([SimpleNamespace(type=3, name="id", unsigned=False), column])

    def test_truncated_body_is_an_error(self) -> None:
        """Row images that run past the event's end raise instead of yielding cut values."""
        decoder = compile_table([SimpleNamespace(type=3, name="id", unsigned=False),
                                 SimpleNamespace(type=15, name="v", unsigned=False,
                                                 character_set_name="utf8", max_length=40)])
        data = b"\x00" + (7).to_bytes(4, "little") + b"\x05abc"
        with pytest.raises(ValueError, match="overrun"):
            decoder.rows(Op.INSERT, data, 0, len(data), b"\x03")
