"""BinlogChangeSource against real MariaDB servers, plus its pure parts (framer, statements).

Readers get unique server_ids (1000 + counter). Tests that crash, purge or reconfigure a
server start their own; the others use the shared session server with their own database.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import psutil
import pymysql
import pytest
from structlog.testing import capture_logs

from bridge.devservers import MariaDBServer
from bridge.errors import Fatal, SetupError, SourceUnavailable
from bridge.model import (
    UNCHANGED,
    BinlogPosition,
    Event,
    Idle,
    InvalidValue,
    Op,
    RowChange,
    Side,
    TxBegin,
    TxCommit,
)
from connectors.mysql import introspect
from connectors.mysql.reader import (
    BinlogChangeSource,
    Framer,
    GtidState,
    bridge_prefix,
    classify_statement,
)

pytestmark = pytest.mark.integration

MARKER = "plant1_bridge_state"
_server_ids = itertools.count(1000)
FIGURES_FILE = Path(os.environ.get("BRIDGE_FIGURES", "/tmp/binlog_reader_figures.json"))


# --- helpers ---------------------------------------------------------------------------------


def _parts(dsn: str) -> dict[str, Any]:
    p = urlsplit(dsn)
    return {"host": p.hostname, "port": p.port, "user": p.username, "database": p.path.lstrip("/")}


def _connect(dsn: str, **kwargs: Any) -> pymysql.connections.Connection:
    p = _parts(dsn)
    return pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password="",
                           database=p["database"], autocommit=True, charset="utf8mb4", **kwargs)


def _sql(dsn: str, *statements: str, args: tuple | None = None) -> None:
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt, args)
    finally:
        conn.close()


def _position(dsn: str) -> BinlogPosition:
    conn = _connect(dsn)
    try:
        return introspect.current_position(conn)
    finally:
        conn.close()


def _binlog_files(dsn: str) -> list[str]:
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def _reader(dsn: str, resume: BinlogPosition | None, *, tables: set[str] | None = None,
            idle: float = 0.2, heartbeat: float = 0.5) -> BinlogChangeSource:
    p = _parts(dsn)
    return BinlogChangeSource(p["host"], p["port"], p["user"], None, p["database"],
                              server_id=next(_server_ids), resume=resume, marker_table=MARKER,
                              heartbeat_seconds=heartbeat, idle_seconds=idle, tables=tables)


@dataclass
class Tx:
    begin: TxBegin
    rows: list[RowChange] = field(default_factory=list)
    commit: TxCommit | None = None


class Collector:
    """Pulls events from a reader and groups them into transactions."""

    def __init__(self, reader: BinlogChangeSource) -> None:
        self.reader = reader
        self.it: Iterator[Event] = reader.events()
        self.events: list[Event] = []
        self.txs: list[Tx] = []

    def pull(self) -> Event:
        event = next(self.it)
        self.events.append(event)
        if isinstance(event, TxBegin):
            assert not self.txs or self.txs[-1].commit is not None, "TxBegin inside a transaction"
            self.txs.append(Tx(event))
        elif isinstance(event, RowChange):
            assert self.txs and self.txs[-1].commit is None, "RowChange outside a transaction"
            self.txs[-1].rows.append(event)
        elif isinstance(event, TxCommit):
            assert self.txs and self.txs[-1].commit is None, "TxCommit without TxBegin"
            assert event.xid == self.txs[-1].begin.xid
            self.txs[-1].commit = event
        return event

    def until(self, done: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.pull()
            if done(event):
                return event
        raise AssertionError(f"timed out; got {self.events[-5:]}")

    def commits(self, n: int, timeout: float = 30.0) -> list[Tx]:
        """Read until `n` more transactions are complete; return them."""
        start = sum(1 for t in self.txs if t.commit is not None)
        self.until(lambda _: sum(1 for t in self.txs if t.commit is not None) >= start + n, timeout)
        return [t for t in self.txs if t.commit is not None][start:start + n]

    def quiet(self, seconds: float) -> list[Event]:
        """Everything yielded during `seconds` of reading."""
        first = len(self.events)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pull()
        return self.events[first:]

    def close(self) -> None:
        self.reader.close()


@pytest.fixture
def collect():
    made: list[Collector] = []

    def make(reader: BinlogChangeSource) -> Collector:
        c = Collector(reader)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _ids(txs: list[Tx]) -> list[int]:
    return [r.after["id"] if r.after is not None else r.before["id"] for t in txs for r in t.rows]


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- values ----------------------------------------------------------------------------------

TYPES_DDL = """
CREATE TABLE types_t (
  id INT NOT NULL PRIMARY KEY,
  i INT, bu BIGINT UNSIGNED, bi BIGINT, dec65 DECIMAL(65,30), f FLOAT, d DOUBLE, flag TINYINT(1),
  v VARCHAR(50), c CHAR(10), tx MEDIUMTEXT, dt6 DATETIME(6), ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  dte DATE, tm TIME, tm6 TIME(6), j JSON, u CHAR(36), bl BLOB, bn BINARY(4),
  e ENUM('new','running','done'), st SET('a','b','c'), y YEAR
)
"""
TYPES_COLUMNS = ["id", "i", "bu", "bi", "dec65", "f", "d", "flag", "v", "c", "tx", "dt6", "ts6",
                 "dte", "tm", "tm6", "j", "u", "bl", "bn", "e", "st", "y"]
BIG_TEXT = ("Grüße 😀 " * 12_000)[:100_000]  # ~100k characters, multi-byte

ROW_MAX = {
    "id": 1, "i": -2147483648, "bu": 18446744073709551615, "bi": -9223372036854775808,
    "dec65": Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
    "f": 1.1, "d": 1.7976931348623157e308, "flag": 1, "v": "emoji 😀 and 中文 ü", "c": "abc",
    "tx": BIG_TEXT, "dt6": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "ts6": datetime(2038, 1, 19, 3, 14, 7, 999999), "dte": date(9999, 12, 31),
    "tm": timedelta(hours=-838, minutes=-59, seconds=-59),
    "tm6": -timedelta(hours=12, minutes=34, seconds=56, microseconds=789012),
    "j": '{"a": [1, 2.5, "x"], "b": {"c": null}}', "u": "123e4567-e89b-12d3-a456-426614174000",
    "bl": bytes(range(256)) * 40, "bn": b"\x00\x01\x00\x00", "e": "running", "st": "a,c", "y": 2155,
}
ROW_MIN = {
    "id": 2, "i": 2147483647, "bu": 0, "bi": 9223372036854775807,
    "dec65": Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
    "f": -3.4e38, "d": 2.2250738585072014e-308, "flag": 0, "v": "", "c": "x  ", "tx": "",
    "dt6": datetime(1000, 1, 1, 0, 0, 0, 1), "ts6": datetime(1970, 1, 1, 0, 0, 1, 1),
    "dte": date(1000, 1, 1), "tm": timedelta(hours=838, minutes=59, seconds=59),
    "tm6": timedelta(microseconds=1), "j": "[]", "u": "00000000-0000-0000-0000-000000000000",
    "bl": b"", "bn": b"\xff\x00\x00\x00", "e": "new", "st": "", "y": 1901,
}
ROW_NULL = {name: None for name in TYPES_COLUMNS} | {"id": 3}


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    """What the reader yields for a row inserted with `row`'s values."""
    out = dict(row)
    if out["f"] is not None:
        out["f"] = _f32(out["f"])
    if out["c"] is not None:
        out["c"] = out["c"].rstrip(" ")  # CHAR: trailing spaces are not kept
    if out["ts6"] is not None:
        out["ts6"] = out["ts6"].replace(tzinfo=timezone.utc)
    return out


def _insert(cur: Any, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(f"`{c}`" for c in row)
    cur.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(row))})",
                tuple(row.values()))


class TestValues:
    def test_insert_update_delete_truncate_with_exact_values(self, mes_db, collect) -> None:
        """Every type round-trips exactly; updates carry full images; a key change keeps the
        old key; deletes carry the full row; TRUNCATE is its own transaction."""
        _sql(mes_db, TYPES_DDL)
        start = _position(mes_db)
        conn = _connect(mes_db)
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for row in (ROW_MAX, ROW_MIN, ROW_NULL):
                _insert(cur, "types_t", row)
            cur.execute("UPDATE types_t SET v = 'changed ✓', tm6 = '-00:00:00.5', j = '{}' WHERE id = 1")
            cur.execute("UPDATE types_t SET id = 100 WHERE id = 2")
            cur.execute("DELETE FROM types_t WHERE id = 3")
            cur.execute("TRUNCATE TABLE types_t")
        conn.close()

        c = collect(_reader(mes_db, start))
        txs = c.commits(7)
        db = _parts(mes_db)["database"]
        table = f"{db}.types_t"

        inserts = [t.rows for t in txs[:3]]
        for rows, row in zip(inserts, (ROW_MAX, ROW_MIN, ROW_NULL)):
            assert len(rows) == 1
            change = rows[0]
            assert (change.op, change.table, change.before, change.key) == (Op.INSERT, table, None, {"id": row["id"]})
            assert change.after == _expected(row)
            assert type(change.after["flag"]) is (int if row["flag"] is not None else type(None))

        (upd,) = txs[3].rows
        assert upd.op is Op.UPDATE and upd.key == {"id": 1}
        assert upd.before == _expected(ROW_MAX)
        assert upd.after == _expected(ROW_MAX) | {"v": "changed ✓", "tm6": timedelta(microseconds=-500000), "j": "{}"}

        (pk_change,) = txs[4].rows
        assert pk_change.op is Op.UPDATE and pk_change.key == {"id": 2}
        assert pk_change.before == _expected(ROW_MIN)
        assert pk_change.after == _expected(ROW_MIN) | {"id": 100}

        (delete,) = txs[5].rows
        assert (delete.op, delete.before, delete.after, delete.key) == (Op.DELETE, _expected(ROW_NULL), None, {"id": 3})

        (trunc,) = txs[6].rows
        assert (trunc.op, trunc.table, trunc.before, trunc.after, trunc.key) == (Op.TRUNCATE, table, None, None, {})

        for t in txs:
            assert t.begin.side is Side.MES and t.begin.position is None
            assert t.begin.commit_ts is not None and t.begin.commit_ts.tzinfo is timezone.utc
            assert t.commit.position.gtid is not None and t.begin.xid.count("-") == 2  # MariaDB GTID
        positions = [t.commit.position for t in txs]
        assert positions == sorted(positions) and len(set(positions)) == 7

    def test_zero_dates_zero_timestamp_and_zero_year(self, mes_db, collect) -> None:
        """Zero and invalid dates become InvalidValue in NOT NULL and nullable columns alike;
        real NULLs stay None; a zero TIMESTAMP is InvalidValue; YEAR 0000 is 0."""
        _sql(mes_db, """CREATE TABLE z (id INT PRIMARY KEY, d DATE NOT NULL, dn DATE NULL,
                        dt DATETIME(3) NOT NULL, ts TIMESTAMP NOT NULL DEFAULT '2000-01-01', y YEAR)""")
        start = _position(mes_db)
        _sql(mes_db, "SET SESSION sql_mode = ''",
             "INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00', '0000-00-00 00:00:00', 0, 0)",
             "INSERT INTO z VALUES (2, '2020-00-10', NULL, '2020-02-30 10:00:00', '2000-01-01 00:00:00', NULL)")
        c = collect(_reader(mes_db, start))
        first, second = (t.rows[0].after for t in c.commits(2))
        zero = "zero date (or a date with a zero/invalid month or day, e.g. 2020-00-10: the binlog decoder reports them alike)"
        assert first == {
            "id": 1, "d": InvalidValue("0000-00-00", zero), "dn": InvalidValue("0000-00-00", zero),
            "dt": InvalidValue("0000-00-00 00:00:00.000", zero),
            "ts": InvalidValue("0000-00-00 00:00:00", "zero TIMESTAMP"), "y": 0,
        }
        assert second == {
            "id": 2, "d": InvalidValue("0000-00-00", zero), "dn": None,
            "dt": InvalidValue("0000-00-00 00:00:00.000", zero),
            "ts": datetime(2000, 1, 1, tzinfo=timezone.utc), "y": None,
        }

    @pytest.mark.parametrize("fsp", [0, 1, 2, 3, 4, 5, 6])
    def test_time_values_match_select(self, mes_db, collect, fsp: int) -> None:
        """TIME(fsp), negative values with fractions included, decode as SELECT returns them."""
        texts = ["-838:59:59.999999", "-00:00:00.000001", "-00:00:01.5", "-01:00:00.1",
                 "-12:34:56.789012", "-00:00:00.999999", "00:00:00.000001", "838:59:59.999999",
                 "-00:00:01", "00:00:00", "-100:00:00.100001", "-00:00:00.5"]
        _sql(mes_db, f"CREATE TABLE tt (id INT PRIMARY KEY, t TIME({fsp}))")
        start = _position(mes_db)
        conn = _connect(mes_db)
        with conn.cursor() as cur:
            for i, text in enumerate(texts):
                cur.execute("INSERT INTO tt VALUES (%s, %s)", (i, text))
            cur.execute("SELECT id, t FROM tt ORDER BY id")
            selected = dict(cur.fetchall())
        conn.close()
        c = collect(_reader(mes_db, start))
        decoded = {t.rows[0].after["id"]: t.rows[0].after["t"] for t in c.commits(len(texts))}
        assert decoded == selected

    def test_binary_padding_set_bit_and_json_text(self, mes_db, collect) -> None:
        """BINARY(n) keeps trailing zero bytes; SET is a string in definition order; BIT is a
        bit string; MariaDB JSON is the stored text."""
        _sql(mes_db, "CREATE TABLE misc (id INT PRIMARY KEY, b BINARY(8), s SET('x','y','z') NOT NULL, "
                     "bt BIT(5), j JSON)")
        start = _position(mes_db)
        _sql(mes_db, "INSERT INTO misc VALUES (1, 0x0100000000000000, 'z,x', b'00101', '{\"k\": \"ü\"}')",
             "INSERT INTO misc VALUES (2, 0x00, '', NULL, NULL)")
        c = collect(_reader(mes_db, start))
        rows = [t.rows[0].after for t in c.commits(2)]
        assert rows == [
            {"id": 1, "b": b"\x01" + b"\x00" * 7, "s": "x,z", "bt": "00101", "j": '{"k": "ü"}'},
            {"id": 2, "b": b"\x00" * 8, "s": "", "bt": None, "j": None},
        ]


class TestFraming:
    def test_marker_transactions_are_dropped(self, mes_db, collect) -> None:
        """A transaction whose first row event is on the marker table is dropped whole and
        followed by Idle at its end; other transactions never show bridge tables."""
        _sql(mes_db, f"CREATE TABLE {MARKER} (direction VARCHAR(32) PRIMARY KEY, position VARCHAR(512))",
             "CREATE TABLE plant1_bridge_audit (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)",
             "CREATE TABLE orders (id INT PRIMARY KEY, qty INT)",
             "CREATE TABLE notes (id INT PRIMARY KEY)",
             f"INSERT INTO {MARKER} VALUES ('crm_to_mes', 'pg:0/0')")
        start = _position(mes_db)
        conn = _connect(mes_db)
        with conn.cursor() as cur:
            cur.execute("BEGIN")  # A: the bridge's own transaction (UPDATE first)
            cur.execute(f"UPDATE {MARKER} SET position = 'pg:0/1' WHERE direction = 'crm_to_mes'")
            cur.execute("INSERT INTO orders VALUES (1, 10)")
            cur.execute("INSERT INTO plant1_bridge_audit (note) VALUES ('a')")
            cur.execute("COMMIT")
        end_a = _position(mes_db)
        with conn.cursor() as cur:
            cur.execute("BEGIN")  # B: a user transaction that touches the marker later
            cur.execute("INSERT INTO orders VALUES (2, 20)")
            cur.execute(f"UPDATE {MARKER} SET position = 'pg:0/2'")
            cur.execute("INSERT INTO plant1_bridge_audit (note) VALUES ('b')")
            cur.execute("COMMIT")
            cur.execute("INSERT INTO notes VALUES (1)")  # C: unbridged table only
            cur.execute("BEGIN")  # D: unbridged first, bridged second
            cur.execute("INSERT INTO notes VALUES (2)")
            cur.execute("UPDATE orders SET qty = 21 WHERE id = 2")
            cur.execute("COMMIT")
            cur.execute("BEGIN")  # E: the bridge's own transaction (INSERT first)
            cur.execute(f"INSERT INTO {MARKER} VALUES ('x', 'y')")
            cur.execute("DELETE FROM orders WHERE id = 2")
            cur.execute("COMMIT")
        end_e = _position(mes_db)
        conn.close()

        c = collect(_reader(mes_db, start, tables={"orders", MARKER, "plant1_bridge_audit"}))
        c.until(lambda e: isinstance(e, Idle) and e.position == end_e)
        db = _parts(mes_db)["database"]
        assert [[(r.op, r.table, r.key) for r in t.rows] for t in c.txs] == [
            [(Op.INSERT, f"{db}.orders", {"id": 2})],
            [(Op.UPDATE, f"{db}.orders", {"id": 2})],
        ]
        idles = [e.position for e in c.events if isinstance(e, Idle)]
        assert end_a in idles  # A's end is acknowledged right after it
        assert c.reader.stats.echo_transactions == 2

    def test_idle_reports_position_and_moves_over_unbridged_work(self, mes_db, collect) -> None:
        """Idle comes every ~idle_seconds while quiet, carrying the current position, which
        also advances over transactions that touch no bridged table."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
        start = _position(mes_db)
        c = collect(_reader(mes_db, None, tables={"orders"}, idle=0.3))
        quiet = c.quiet(2.0)
        assert quiet and all(isinstance(e, Idle) for e in quiet)
        assert {e.position for e in quiet} == {start}
        times = []
        for _ in range(4):
            c.pull()
            times.append(time.monotonic())
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) <= 0.3 * 1.5 + 0.15, gaps  # idle_seconds, paced by 2 heartbeats/period
        _sql(mes_db, "INSERT INTO other VALUES (1)")
        _sql(mes_db.rsplit("/", 1)[0] + "/mysql", "CREATE DATABASE IF NOT EXISTS elsewhere",
             "CREATE TABLE IF NOT EXISTS elsewhere.orders (id INT PRIMARY KEY)",
             "REPLACE INTO elsewhere.orders VALUES (1)")
        end = _position(mes_db)
        c.until(lambda e: isinstance(e, Idle) and e.position == end)
        assert c.txs == []

    def test_idle_follows_a_commit_at_once_when_caught_up(self, mes_db, collect) -> None:
        """When nothing more has arrived after a transaction, Idle with the transaction's end
        position comes right after its TxCommit, not idle_seconds later; within a backlog,
        an Idle after a commit carries that commit's position."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)")
        start = _position(mes_db)
        for i in range(20):
            _sql(mes_db, "INSERT INTO orders VALUES (%s)", args=(i,))
        c = collect(_reader(mes_db, start, idle=30.0, heartbeat=10.0))  # timers out of play
        c.commits(20)
        for i in range(20, 23):
            _sql(mes_db, "INSERT INTO orders VALUES (%s)", args=(i,))
            (tx,) = c.commits(1)
            committed = time.monotonic()
            idle = c.pull()
            assert time.monotonic() - committed < 2.0
            assert isinstance(idle, Idle) and idle.position == tx.commit.position and not idle.pending
        for before, event in zip(c.events, c.events[1:]):
            if isinstance(event, Idle):
                assert isinstance(before, TxCommit) and event.position == before.position

    def test_events_are_freed_without_the_cyclic_collector(self, mes_db, collect) -> None:
        """Read events leave no reference cycles behind: after 300 transactions read with the
        cyclic collector off, it finds (almost) none of the library's packet wrappers."""
        import gc

        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY, note TEXT)")
        start = _position(mes_db)
        for i in range(300):
            _sql(mes_db, "INSERT INTO orders VALUES (%s, REPEAT('x', 2000))", args=(i,))
        c = collect(_reader(mes_db, start))

        gc.collect()
        gc.disable()
        try:
            c.commits(300)
            gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds goes to gc.garbage
            gc.collect()
            left = sum(1 for o in gc.garbage if type(o).__name__ == "BinLogPacketWrapper")
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert len(c.txs) == 300 and left < 10, f"{left} packet wrappers wait for the collector"

    def test_table_maps_parsed_once_per_layout_and_again_after_ddl(self, mes_db, collect) -> None:
        """Transactions of one table share one parsed table map; after an ALTER the rows
        decode with the new layout (a new body is parsed afresh), before it with the old."""
        from connectors.mysql import tablemap

        assert tablemap.install()
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20))")
        start = _position(mes_db)
        for i in range(30):
            _sql(mes_db, "INSERT INTO orders VALUES (%s, %s)", args=(i, f"n{i}"))
        _sql(mes_db, "ALTER TABLE orders ADD COLUMN qty INT NOT NULL DEFAULT 7 AFTER id")
        for i in range(30, 60):
            _sql(mes_db, "INSERT INTO orders VALUES (%s, %s, %s)", args=(i, i * 2, f"n{i}"))
        layouts = set(tablemap._layouts)
        before = dict(tablemap.stats)
        c = collect(_reader(mes_db, start))
        rows = [r.after for t in c.commits(60) for r in t.rows]
        assert rows[:30] == [{"id": i, "note": f"n{i}"} for i in range(30)]
        assert rows[30:] == [{"id": i, "qty": i * 2, "note": f"n{i}"} for i in range(30, 60)]
        new = [k for k in tablemap._layouts if k not in layouts and b"orders" in k[0]]
        assert len(new) == 2, f"{len(new)} layouts kept for 2 table layouts"
        parsed = tablemap.stats["parsed"] - before["parsed"]
        reused = tablemap.stats["reused"] - before["reused"]
        assert reused >= 56 and parsed <= 4, (parsed, reused)  # 60 table maps, 2 layouts

    def test_starts_at_current_position_without_resume(self, mes_db, collect) -> None:
        """With resume=None, transactions committed before the start are not replayed."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)", "INSERT INTO orders VALUES (1)")
        c = collect(_reader(mes_db, None))
        c.until(lambda e: isinstance(e, Idle))
        _sql(mes_db, "INSERT INTO orders VALUES (2)")
        (tx,) = c.commits(1)
        assert _ids([tx]) == [2]

    def test_other_ddl_warns_and_yields_nothing(self, mes_db, collect) -> None:
        """ALTER/RENAME/DROP of a bridged table log a warning naming table and statement."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)", "CREATE TABLE notes (id INT PRIMARY KEY)")
        start = _position(mes_db)
        _sql(mes_db, "ALTER TABLE orders ADD COLUMN qty INT", "ALTER TABLE notes ADD COLUMN x INT",
             "TRUNCATE TABLE notes", "RENAME TABLE orders TO orders_old", "DROP TABLE orders_old")
        end = _position(mes_db)
        with capture_logs() as logs:
            c = collect(_reader(mes_db, start, tables={"orders"}))
            c.until(lambda e: isinstance(e, Idle) and e.position == end)
        db = _parts(mes_db)["database"]
        warnings = [entry for entry in logs if entry["event"] == "ddl_on_bridged_table"]
        assert [(w["tables"], w["statement"]) for w in warnings] == [
            ([f"{db}.orders"], "ALTER TABLE orders ADD COLUMN qty INT"),
            ([f"{db}.orders"], "RENAME TABLE orders TO orders_old"),
        ]
        assert all(w["log_level"] == "warning" for w in warnings)
        assert c.txs == []  # DROP of orders_old: not bridged any more, TRUNCATE notes: unbridged

    def test_non_transactional_engine_groups_end_with_commit_statement(self, mes_db, collect) -> None:
        """Aria/MyISAM groups (GTID, rows, QueryEvent COMMIT) frame like InnoDB ones."""
        _sql(mes_db, "CREATE TABLE a (id INT PRIMARY KEY) ENGINE=Aria",
             "CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM")
        start = _position(mes_db)
        _sql(mes_db, "INSERT INTO a VALUES (1), (2)")
        after_first = _position(mes_db)
        _sql(mes_db, "INSERT INTO m VALUES (3)")
        c = collect(_reader(mes_db, start))
        txs = c.commits(2)
        assert [_ids([t]) for t in txs] == [[1, 2], [3]]
        assert txs[0].commit.position == after_first

    def test_statement_based_dml_on_bridged_table_is_fatal(self, mes_db, collect) -> None:
        """A session writing STATEMENT format to a bridged table stops the reader."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)")
        start = _position(mes_db)
        _sql(mes_db, "SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO orders VALUES (1)")
        c = collect(_reader(mes_db, start))
        with pytest.raises(Fatal, match="statement-based change"):
            c.until(lambda e: False, timeout=10)


class TestResume:
    def test_resume_yields_only_later_transactions_across_rotation(self, mes_db, mariadb_server, collect) -> None:
        """From any TxCommit position a new reader yields exactly the later transactions,
        also when the position is the last transaction of a rotated binlog file."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)")
        start = _position(mes_db)
        for i in range(1, 4):
            _sql(mes_db, f"INSERT INTO orders VALUES ({i})")
        _sql(mes_db, "FLUSH BINARY LOGS")
        for i in range(4, 7):
            _sql(mes_db, f"INSERT INTO orders VALUES ({i})")
        c = collect(_reader(mes_db, start))
        txs = c.commits(6)
        assert _ids(txs) == [1, 2, 3, 4, 5, 6]
        positions = [t.commit.position for t in txs]
        assert positions[2].file != positions[3].file  # the rotation lies between 3 and 4

        conn = _connect(mes_db)
        try:
            for pos in positions:
                assert pos.gtid == introspect.gtid_state_at(conn, pos.file, pos.pos)
        finally:
            conn.close()

        for k, pos in enumerate(positions):
            later = collect(_reader(mes_db, pos))
            if k == len(positions) - 1:
                events = later.quiet(1.0)
                assert later.txs == [] and all(isinstance(e, Idle) for e in events)
                continue
            got = later.commits(len(positions) - k - 1)
            assert _ids(got) == list(range(k + 2, 7)), f"resume after tx {k + 1}"
            assert [t.commit.position for t in got] == positions[k + 1:]
            assert later.quiet(0.5) and later.txs == got  # nothing extra afterwards
            later.close()

    def test_resume_from_idle_position_after_rotation(self, mes_db, collect) -> None:
        """An Idle position taken after a rotation resumes in the new file without loss."""
        _sql(mes_db, "CREATE TABLE orders (id INT PRIMARY KEY)")
        c = collect(_reader(mes_db, None))
        c.until(lambda e: isinstance(e, Idle))
        _sql(mes_db, "FLUSH BINARY LOGS")
        new_file = _position(mes_db).file
        idle = c.until(lambda e: isinstance(e, Idle) and e.position.file == new_file)
        c.close()
        _sql(mes_db, "INSERT INTO orders VALUES (1)")
        later = collect(_reader(mes_db, idle.position))
        assert _ids(later.commits(1)) == [1]


@pytest.fixture(scope="module")
def own_server():
    """A private server for tests that crash, restart or purge it."""
    with MariaDBServer(server_id=11) as server:
        server.create_database("mes")
        server.execute("CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(40))", "mes")
        yield server


class TestOutages:
    def test_crash_mid_stream_then_resume_loses_nothing(self, own_server, collect) -> None:
        """SIGKILL of the server while rows stream in: the reader raises SourceUnavailable;
        a new reader from the last TxCommit position yields every committed row exactly once."""
        dsn = own_server.dsn("mes")
        _sql(dsn, "DELETE FROM orders")
        start = _position(dsn)
        stop = threading.Event()
        attempted: list[int] = []

        def writer() -> None:
            next_id = 1
            while not stop.is_set():
                try:
                    _sql(dsn, "INSERT INTO orders VALUES (%s, 'x')", args=(next_id,))
                except pymysql.err.MySQLError:
                    time.sleep(0.2)  # server down; the insert may or may not have committed
                    try:
                        _sql(dsn, "INSERT IGNORE INTO orders VALUES (%s, 'x')", args=(next_id,))
                    except pymysql.err.MySQLError:
                        continue
                attempted.append(next_id)
                next_id += 1
                time.sleep(0.005)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            first = collect(_reader(dsn, start))
            first.commits(50)
            own_server.kill()
            with pytest.raises(SourceUnavailable):
                first.until(lambda e: False, timeout=30)
            committed = [t for t in first.txs if t.commit is not None]
            resume = committed[-1].commit.position
            own_server.start()
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(30)
        conn = _connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM orders ORDER BY id")
            in_table = [r[0] for r in cur.fetchall()]
        conn.close()
        end = _position(dsn)

        second = collect(_reader(dsn, resume))
        second.until(lambda e: isinstance(e, Idle) and e.position is not None and e.position >= end)
        seen = _ids(committed) + _ids([t for t in second.txs if t.commit is not None])
        assert seen == in_table  # every committed row once, in commit order
        assert len(in_table) > 50

    def test_dump_connection_killed_mid_transaction_continues_in_place(self, own_server, collect, caplog) -> None:
        """When the server drops the dump connection inside a large transaction, the
        library's one reconnect resumes at the next event: no row lost or repeated."""
        dsn = own_server.dsn("mes")
        _sql(dsn, "CREATE TABLE IF NOT EXISTS wide (id INT PRIMARY KEY, pad VARCHAR(200))", "DELETE FROM wide")
        start = _position(dsn)
        _sql(dsn, "INSERT INTO wide SELECT seq, REPEAT('p', 150) FROM seq_1_to_100000")
        c = collect(_reader(dsn, start))
        c.until(lambda e: isinstance(e, RowChange) and len(c.txs[-1].rows) == 5000)
        conn = _connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%%'")
            threads = [r[0] for r in cur.fetchall()]
            assert threads
            for thread_id in threads:
                cur.execute(f"KILL {int(thread_id)}")
        conn.close()
        (tx,) = c.commits(1, timeout=120)
        assert _ids([tx]) == list(range(1, 100_001))
        assert "Re-request the connection" in caplog.text  # the library did reconnect

    def test_clean_restart_raises_source_unavailable(self, own_server, collect) -> None:
        """A clean shutdown ends the stream with SourceUnavailable, not with silence."""
        dsn = own_server.dsn("mes")
        c = collect(_reader(dsn, None))
        c.until(lambda e: isinstance(e, Idle))
        own_server.stop("fast")
        try:
            with pytest.raises(SourceUnavailable):
                c.until(lambda e: False, timeout=30)
        finally:
            own_server.start()

    def test_purged_position_is_fatal(self, own_server, collect) -> None:
        """Resuming from a purged binlog file is Fatal (a new initial load is needed)."""
        dsn = own_server.dsn("mes")
        old = _position(dsn)
        deadline = time.monotonic() + 30
        while old.file in _binlog_files(dsn):  # the server keeps files until InnoDB's checkpoint
            assert time.monotonic() < deadline, "could not purge the old binlog file"
            _sql(dsn, "FLUSH BINARY LOGS")
            _sql(dsn, f"PURGE BINARY LOGS TO '{_position(dsn).file}'")
            time.sleep(0.2)
        c = collect(_reader(dsn, BinlogPosition(old.file, old.pos)))
        with pytest.raises(Fatal, match="purged"):
            c.until(lambda e: False, timeout=15)

    def test_refuses_minimal_metadata(self, collect) -> None:
        """The reader will not start on a server without FULL row metadata."""
        with MariaDBServer(settings={"binlog_row_metadata": "MINIMAL"}) as server:
            server.create_database("mes")
            c = collect(_reader(server.dsn("mes"), None))
            with pytest.raises(SetupError, match="SET GLOBAL binlog_row_metadata=FULL"):
                c.pull()

    def test_events_written_without_metadata_are_refused(self, collect) -> None:
        """Rows logged while metadata was MINIMAL are not decoded with made-up names."""
        with MariaDBServer() as server:
            server.create_database("mes")
            dsn = server.dsn("mes")
            _sql(dsn, "CREATE TABLE orders (id INT PRIMARY KEY)")
            _sql(dsn, "SET GLOBAL binlog_row_metadata = MINIMAL")
            start = _position(dsn)
            _sql(dsn, "INSERT INTO orders VALUES (1)")
            _sql(dsn, "SET GLOBAL binlog_row_metadata = FULL")
            c = collect(_reader(dsn, start))
            with pytest.raises(SetupError, match="carry no column names"):
                c.until(lambda e: False, timeout=15)


class TestTls:
    def test_tls_stream_decodes_and_idles_after_a_commit(self, tmp_path, collect) -> None:
        """Against a server with TLS (which PyMySQL then uses by default) rows decode as
        without it, and Idle still follows a commit at once (no complete TLS record waiting
        is "nothing pending")."""
        import shutil
        import ssl
        import subprocess

        if shutil.which("openssl") is None:
            pytest.skip("openssl is needed to make the test certificate")
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        with MariaDBServer(settings={"ssl-cert": str(cert), "ssl-key": str(key)}) as server:
            server.create_database("mes")
            dsn = server.dsn("mes")
            _sql(dsn, "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(40), amount DECIMAL(9,2))")
            start = _position(dsn)
            _sql(dsn, "INSERT INTO orders VALUES (1, 'über', -12.5)")
            c = collect(_reader(dsn, start, idle=30.0, heartbeat=10.0))
            (tx,) = c.commits(1)
            assert isinstance(c.reader._stream._stream_connection._sock, ssl.SSLSocket)  # TLS in use
            assert tx.rows[0].after == {"id": 1, "note": "über", "amount": Decimal("-12.50")}
            committed = time.monotonic()
            idle = c.pull()
            assert time.monotonic() - committed < 2.0
            assert isinstance(idle, Idle) and idle.position == tx.commit.position


class TestLargeTransaction:
    def test_200k_row_transaction_streams_with_bounded_memory(self, mes_db, collect) -> None:
        """One 200k-row INSERT ... SELECT streams row by row: RSS stays flat while consuming."""
        n = 200_000
        _sql(mes_db, "CREATE TABLE big (id INT PRIMARY KEY, a BIGINT, b VARCHAR(40), "
                     "c DATETIME(6), d DECIMAL(12,2))")
        start = _position(mes_db)
        _sql(mes_db, f"INSERT INTO big SELECT seq, seq * 7, CONCAT('row-', seq), "
                     f"'2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 100 FROM seq_1_to_{n}")
        proc = psutil.Process()
        c = collect(_reader(mes_db, start))
        c.until(lambda e: isinstance(e, TxBegin))
        baseline = proc.memory_info().rss
        peak = baseline
        rows = 0
        t0 = time.perf_counter()
        for event in c.it:  # consume without keeping events
            if isinstance(event, RowChange):
                rows += 1
                if rows % 5000 == 0:
                    peak = max(peak, proc.memory_info().rss)
            elif isinstance(event, TxCommit):
                break
        elapsed = time.perf_counter() - t0
        peak = max(peak, proc.memory_info().rss)
        growth_mb = (peak - baseline) / 2**20
        figures = {"rows": rows, "seconds": round(elapsed, 2), "rows_per_second": round(rows / elapsed),
                   "rss_baseline_mb": round(baseline / 2**20, 1), "rss_growth_mb": round(growth_mb, 1)}
        FIGURES_FILE.write_text(json.dumps(figures))
        print("binlog reader 200k rows:", figures)
        assert rows == n
        assert growth_mb < 30, figures


# --- pure parts ----------------------------------------------------------------------------


class TestClassifyStatement:
    @pytest.mark.parametrize(
        ("sql", "verb", "tables"),
        [
            ("TRUNCATE TABLE t", "TRUNCATE", ("db.t",)),
            ("truncate `we``ird`", "TRUNCATE", ("db.we`ird",)),
            ("TRUNCATE other.t", "TRUNCATE", ("other.t",)),
            ("/* c */ ALTER ONLINE TABLE `db2`.`t` ADD x INT", "ALTER", ("db2.t",)),
            ("ALTER TABLE t RENAME COLUMN a TO b", "ALTER", ("db.t",)),
            ("ALTER TABLE t ADD c INT, RENAME TO t2", "ALTER", ("db.t", "db.t2")),
            ("DROP TABLE IF EXISTS `a`,b /* generated by server */", "DROP", ("db.a", "db.b")),
            ("DROP INDEX i ON t", "DROP", ("db.t",)),
            ("RENAME TABLE a TO b, c TO x.d", "RENAME", ("db.a", "db.b", "db.c", "x.d")),
            ("CREATE TABLE IF NOT EXISTS t (id int)", "CREATE", ("db.t",)),
            ("CREATE UNIQUE INDEX i ON t (a)", "CREATE", ("db.t",)),
            ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", "ALTER", ("db.t",)),
            ("INSERT IGNORE INTO t VALUES (1)", "INSERT", ("db.t",)),
            ("UPDATE LOW_PRIORITY t SET a = '--x'", "UPDATE", ("db.t",)),
            ("DELETE FROM x.t WHERE 1", "DELETE", ("x.t",)),
            ("BEGIN", "BEGIN", ()),
            ("COMMIT", "COMMIT", ()),
            ("GRANT SELECT ON t TO u", "GRANT", ()),
            ("", "", ()),
        ],
    )
    def test_verbs_and_tables(self, sql: str, verb: str, tables: tuple[str, ...]) -> None:
        """Statements name their verb and the tables they touch, qualified."""
        stmt = classify_statement(sql, "db")
        assert (stmt.verb, stmt.tables) == (verb, tables)


class TestFramerUnit:
    def _framer(self) -> Framer:
        return Framer("db", MARKER, frozenset({"orders"}), BinlogPosition("binlog.000001", 100, "0-1-5"),
                      GtidState("0-1-5,3-2-9"))

    def test_gtid_state_tracks_domains(self) -> None:
        """Commits advance their own domain and keep the others."""
        f = self._framer()
        f.open("0-1-6", 0, 150, ends_with_statement=False, gtid=(0, 1, 6))
        out = f.rows("db.orders", Op.INSERT, ("id",), lambda: [(None, {"id": 1})], 0, 180)
        out += f.commit(200, 0)
        assert isinstance(out[-1], TxCommit)
        assert out[-1].position == BinlogPosition("binlog.000001", 200, "0-1-6,3-2-9")
        assert str(GtidState("")) == ""

    def test_unterminated_group_and_mid_transaction_rotation_are_unavailable(self) -> None:
        """A group that never ends is not committed: the reader asks for a reconnect."""
        f = self._framer()
        f.open("0-1-6", 0, 150, ends_with_statement=False)
        f.rotate("binlog.000001", 4)  # reconnect marker in the same file: fine
        with pytest.raises(SourceUnavailable):
            f.rotate("binlog.000002", 4)
        g = self._framer()
        g.open("0-1-6", 0, 150, ends_with_statement=False)
        with pytest.raises(SourceUnavailable):
            g.open("0-1-7", 0, 250, ends_with_statement=False)

    def test_echo_transactions_are_not_decoded(self) -> None:
        """Rows of a dropped transaction are never decoded."""
        f = self._framer()

        def boom() -> list:
            raise AssertionError("decoded")

        f.open("0-1-6", 0, 150, ends_with_statement=False)
        assert f.rows(f"db.{MARKER}", Op.UPDATE, ("direction",), boom, 0, 160) == []
        assert f.rows("db.orders", Op.INSERT, ("id",), boom, 0, 170) == []
        assert f.commit(200, 0) == [Idle(position=BinlogPosition("binlog.000001", 200, "0-1-5,3-2-9"))]

    def test_two_phase_xa_with_bridged_rows_is_fatal(self) -> None:
        """XA PREPARE of bridged rows stops instead of yielding uncommitted rows."""
        f = self._framer()
        f.open("0-1-6", 0, 150, ends_with_statement=False)
        f.rows("db.orders", Op.INSERT, ("id",), lambda: [(None, {"id": 1})], 0, 170)
        with pytest.raises(Fatal, match="XA"):
            f.xa_prepare(False, 200, 0)

    def test_minimal_image_columns_become_unchanged(self) -> None:
        """Columns missing from a non-FULL image are UNCHANGED, never NULL."""
        from connectors.mysql.reader import plan_table

        class Col:
            def __init__(self, name: str, type_: int) -> None:
                self.name, self.type, self.character_set_name = name, type_, None

        plan = plan_table("db", "orders", [Col("id", 3), Col("v", 15)], "id")
        assert plan.repair({"id": 1, "v": None}, {"v": "cols bitmap"}) == {"id": 1, "v": UNCHANGED}

    def test_bridge_prefix(self) -> None:
        """The bridge prefix is the marker name up to and including `_bridge_`."""
        assert bridge_prefix("plant1_bridge_state") == "plant1_bridge_"
        assert bridge_prefix("a_bridge_b_bridge_state") == "a_bridge_b_bridge_"
        assert bridge_prefix("marker") == "marker"
