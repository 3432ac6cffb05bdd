"""Integration tests of the CRM capture (PgChangeSource) against real PostgreSQL 15 servers.

Tests on the shared session server make their own database, tables, publication and slot
(slots and origins are cluster-wide: names carry the database name and are dropped at the
end). Tests that restart a server or change its settings start their own PostgresServer.
"""

from __future__ import annotations

import json

import os
import threading
import time
import uuid
from datetime import date, datetime, timezone
from datetime import time as dtime
from decimal import Decimal
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
from psycopg import sql

from bridge.devservers import PostgresServer
from bridge.errors import SetupError, SourceUnavailable
from bridge.model import UNCHANGED, Event, Idle, InvalidValue, Op, PgPosition, RowChange, TxBegin, TxCommit
from bridge.schema import Family
from connectors.postgres import introspect
from connectors.postgres.reader import PgChangeSource

pytestmark = pytest.mark.integration

UTC = timezone.utc
Tx = tuple[TxBegin, list[RowChange], TxCommit]


# --- helpers ---------------------------------------------------------------------------------


def run(dsn: str, statement: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def dbname(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


class Capture:
    """Publication + slot for some tables of one database, and the readers made on them."""

    def __init__(self, dsn: str, tables: list[str], tag: str = "") -> None:
        self.dsn = dsn
        self.slot = f"s_{dbname(dsn)}{tag}"
        self.publication = f"p_{dbname(dsn)}{tag}"
        self.sources: list[PgChangeSource] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(self.publication),
                    sql.SQL(", ").join(sql.Identifier(*t.split(".")) for t in tables),
                )
            )
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))

    def source(self, resume: PgPosition | None = None, **kwargs: Any) -> PgChangeSource:
        src = PgChangeSource(self.dsn, None, self.slot, self.publication, resume, **kwargs)
        self.sources.append(src)
        return src

    def confirmed_flush(self) -> int:
        rows = run(self.dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                   (self.slot,))
        return PgPosition.parse(rows[0][0]).lsn

    def cleanup(self) -> None:
        for src in self.sources:
            src.close()
        deadline = time.monotonic() + 15
        while True:
            try:
                run(self.dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s", (self.slot,))
                return
            except psycopg.errors.ObjectInUse:  # the walsender is still exiting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def capture(pg_db: str) -> Iterator[Callable[..., Capture]]:
    made: list[Capture] = []

    def make(tables: list[str], tag: str = "") -> Capture:
        cap = Capture(pg_db, tables, tag)
        made.append(cap)
        return cap

    yield make
    for cap in made:
        cap.cleanup()


def next_transactions(events: Iterator[Event], count: int, timeout: float = 30.0,
                      idles: list[Idle] | None = None) -> list[Tx]:
    """Read `count` transactions from the stream (Idle events go to `idles`)."""
    deadline = time.monotonic() + timeout
    out: list[Tx] = []
    begin: TxBegin | None = None
    rows: list[RowChange] = []
    while len(out) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(out)} of {count} transactions within {timeout}s")
        event = next(events)
        if isinstance(event, Idle):
            assert begin is None, "Idle inside a transaction"
            if idles is not None:
                idles.append(event)
        elif isinstance(event, TxBegin):
            assert begin is None
            begin, rows = event, []
        elif isinstance(event, RowChange):
            assert begin is not None
            rows.append(event)
        else:
            assert isinstance(event, TxCommit) and begin is not None
            assert event.position == begin.position and event.xid == begin.xid
            out.append((begin, rows, event))
            begin = None
    return out


def idle_for(events: Iterator[Event], seconds: float) -> list[Event]:
    """Consume the stream for `seconds`; return what arrived."""
    seen: list[Event] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(next(events))
    return seen


# --- values and operations -------------------------------------------------------------------

ALL_TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.all_types (
    id int PRIMARY KEY,
    c_big bigint, c_num numeric(12,3), c_real real, c_double double precision, c_bool bool,
    c_text text, c_varchar varchar(10), c_char char(4), c_tstz timestamptz, c_ts timestamp,
    c_date date, c_time time, c_jsonb jsonb, c_json json, c_uuid uuid, c_bytea bytea, c_mood mood
);
"""

ALL_TYPES_ROW = {
    "id": 1,
    "c_big": -9223372036854775808,
    "c_num": Decimal("123456789.123"),
    "c_real": 1.5,
    "c_double": 0.1,
    "c_bool": True,
    "c_text": "grüße 😀 'quoted' \\ back",
    "c_varchar": "abc",
    "c_char": "ab  ",
    "c_tstz": datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC),
    "c_ts": datetime(2024, 2, 29, 23, 59, 59, 999999),
    "c_date": date(2024, 2, 29),
    "c_time": dtime(23, 59, 59, 999999),
    "c_jsonb": {"a": Decimal("1.10"), "b": [1, "x", None]},
    "c_json": {"z": Decimal("0.30000000000000000001")},
    "c_uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "c_bytea": b"\x00\xff\x10",
    "c_mood": "happy",
}

ALL_TYPES_INSERT = """
INSERT INTO all_types VALUES (1, -9223372036854775808, 123456789.123, 1.5, 0.1, true,
  'grüße 😀 ''quoted'' \\ back', 'abc', 'ab', '2024-01-02 03:04:05.123456+02',
  '2024-02-29 23:59:59.999999', '2024-02-29', '23:59:59.999999', '{"b": [1, "x", null], "a": 1.10}',
  '{"z": 0.30000000000000000001}', '12345678-1234-5678-1234-567812345678', '\\x00ff10', 'happy')
"""


class TestChangesAndValues:
    def test_all_operations_and_types(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """insert / update / delete / PK change / truncate arrive with exact values of every type."""
        run(pg_db, ALL_TYPES_DDL)
        cap = capture(["public.all_types"])
        run(pg_db, ALL_TYPES_INSERT)
        run(pg_db, "INSERT INTO all_types (id) VALUES (2)")
        run(pg_db, "UPDATE all_types SET c_num = -0.001, c_mood = 'sad', c_tstz = 'infinity' WHERE id = 1")
        run(pg_db, "UPDATE all_types SET id = 3 WHERE id = 2")
        run(pg_db, "DELETE FROM all_types WHERE id = 3")
        run(pg_db, "TRUNCATE all_types")

        events = cap.source().events()
        txs = next_transactions(events, 6)
        rows = [rows for _, rows, _ in txs]

        ins = rows[0][0]
        assert (ins.op, ins.table, ins.before, ins.key) == (Op.INSERT, "public.all_types", None, {"id": 1})
        for column, expected in ALL_TYPES_ROW.items():
            if column in ("c_jsonb", "c_json"):  # JSON arrives as raw text, parsed exactly here
                assert json.loads(ins.after[column], parse_float=Decimal) == expected, column
                continue
            assert ins.after[column] == expected, column
            assert type(ins.after[column]) is type(expected), column
        assert rows[1][0].after == {"id": 2, **{c: None for c in ALL_TYPES_ROW if c != "id"}}

        upd = rows[2][0]
        assert upd.op is Op.UPDATE and upd.before is None and upd.key == {"id": 1}
        assert upd.after["c_num"] == Decimal("-0.001") and upd.after["c_mood"] == "sad"
        assert upd.after["c_tstz"] == InvalidValue("infinity", upd.after["c_tstz"].reason)
        assert upd.after["c_text"] == ALL_TYPES_ROW["c_text"]

        pk = rows[3][0]
        assert (pk.op, pk.before, pk.key, pk.after["id"]) == (Op.UPDATE, {"id": 2}, {"id": 3}, 3)

        dele = rows[4][0]
        assert (dele.op, dele.before, dele.after, dele.key) == (Op.DELETE, {"id": 3}, None, {"id": 3})

        assert [(r.op, r.table, r.before, r.after) for r in rows[5]] == [
            (Op.TRUNCATE, "public.all_types", None, None)
        ]
        positions = [commit.position for _, _, commit in txs]
        assert positions == sorted(positions) and len(set(positions)) == 6

    def test_session_settings_cannot_change_values(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """Odd database-level DateStyle / TimeZone / extra_float_digits / bytea_output do not
        change what the reader decodes."""
        run(pg_db, ALL_TYPES_DDL)
        database = sql.Identifier(dbname(pg_db))
        for setting in ("DateStyle = 'SQL, DMY'", "TimeZone = 'Asia/Kolkata'", "extra_float_digits = -3",
                        "bytea_output = 'escape'"):
            run(pg_db, sql.SQL("ALTER DATABASE {} SET " + setting).format(database))
        cap = capture(["public.all_types"])
        run(pg_db, ALL_TYPES_INSERT)
        [(_, [ins], _)] = next_transactions(cap.source().events(), 1)
        assert _parse_json(ins.after) == ALL_TYPES_ROW

    def test_toasted_value(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """A 100 KB TOASTed text arrives intact; untouched it is UNCHANGED (DEFAULT identity)
        or filled from the old tuple (FULL identity), never None."""
        run(pg_db, "CREATE TABLE td (id int PRIMARY KEY, n int, big text);"
                   "CREATE TABLE tf (id int PRIMARY KEY, n int, big text);"
                   "ALTER TABLE tf REPLICA IDENTITY FULL")
        cap = capture(["public.td", "public.tf"])
        make_big = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3200))"  # 100 KB
        for table in ("td", "tf"):
            run(pg_db, f"INSERT INTO {table} VALUES (1, 0, {make_big})")
            run(pg_db, f"UPDATE {table} SET n = 1 WHERE id = 1")
            run(pg_db, f"UPDATE {table} SET big = {make_big} WHERE id = 1")
        stored = dict(run(pg_db, "SELECT 'td', big FROM td UNION ALL SELECT 'tf', big FROM tf"))
        assert all(len(v) == 102_400 for v in stored.values())

        txs = next_transactions(cap.source().events(), 6)
        td_ins, td_untouched, td_changed, tf_ins, tf_untouched, tf_changed = (rows[0] for _, rows, _ in txs)
        assert len(td_ins.after["big"]) == 102_400
        assert td_untouched.after["big"] is UNCHANGED and td_untouched.before is None
        assert td_changed.after["big"] == stored["td"]

        assert tf_untouched.before["big"] == tf_ins.after["big"]
        assert tf_untouched.after == {"id": 1, "n": 1, "big": tf_ins.after["big"]}
        assert tf_untouched.key == {"id": 1}  # the primary key, not every FULL column
        assert tf_changed.after["big"] == stored["tf"]


class TestTransactionSelection:
    def test_origin_transactions_dropped(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """A transaction from a replication-origin session is not yielded; a normal one is,
        and the dropped one still shows up as an acknowledgeable Idle position."""
        run(pg_db, "CREATE TABLE t (id int PRIMARY KEY, v text)")
        cap = capture(["public.t"])
        origin = f"o_{dbname(pg_db)}"
        run(pg_db, "SELECT pg_replication_origin_create(%s)", (origin,))
        try:
            with psycopg.connect(pg_db) as applier:
                applier.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
                applier.commit()
                start_lsn = PgPosition.parse(applier.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
                applier.commit()
                applier.execute("SELECT pg_replication_origin_xact_setup('0/AB', now())")
                applier.execute("INSERT INTO t VALUES (1, 'echo')")
                applier.commit()
                echo_lsn = PgPosition.parse(applier.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
                applier.commit()
            run(pg_db, "INSERT INTO t VALUES (2, 'local')")
            idles: list[Idle] = []
            [(begin, rows, _)] = next_transactions(cap.source().events(), 1, idles=idles)
        finally:
            run(pg_db, "SELECT pg_replication_origin_drop(%s)", (origin,))
        assert [r.after for r in rows] == [{"id": 2, "v": "local"}]
        # the dropped transaction's commit position was offered for acknowledgement
        assert any(i.position is not None and start_lsn < i.position <= echo_lsn for i in idles)
        assert echo_lsn < begin.position

    def test_resume_skips_applied(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """A reader resuming at a position drops every transaction committed at or before it."""
        run(pg_db, "CREATE TABLE t (id int PRIMARY KEY)")
        cap = capture(["public.t"])
        for i in range(1, 4):
            run(pg_db, f"INSERT INTO t VALUES ({i})")
        first = cap.source()
        txs = next_transactions(first.events(), 3)
        first.close()
        resume = txs[1][2].position
        [(_, rows, _)] = next_transactions(cap.source(resume=resume).events(), 1)
        assert rows[0].after == {"id": 3}


class TestSlotFeedback:
    def test_acknowledge_moves_confirmed_flush(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """acknowledge(commit position) reports that transaction's END lsn as flushed."""
        run(pg_db, "CREATE TABLE t (id int PRIMARY KEY)")
        cap = capture(["public.t"])
        before = cap.confirmed_flush()
        run(pg_db, "INSERT INTO t VALUES (1)")
        source = cap.source()
        events = source.events()
        [(_, _, commit)] = next_transactions(events, 1)
        assert cap.confirmed_flush() == before  # nothing acknowledged, nothing released
        source.acknowledge(commit.position)
        deadline = time.monotonic() + 10
        while cap.confirmed_flush() <= commit.position.lsn:
            assert time.monotonic() < deadline, "confirmed_flush_lsn did not move"
            next(events)
        assert cap.confirmed_flush() > commit.position.lsn

    def test_acknowledged_idle_releases_filtered_traffic(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """Idle positions from keepalives can be acknowledged and move the slot past
        unpublished traffic."""
        run(pg_db, "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE other (id int)")
        cap = capture(["public.t"])
        source = cap.source()
        events = source.events()
        idle_for(events, 0.5)
        run(pg_db, "INSERT INTO other SELECT generate_series(1, 1000)")
        target = PgPosition.parse(run(pg_db, "SELECT pg_current_wal_lsn()::text")[0][0])
        deadline = time.monotonic() + 20
        while cap.confirmed_flush() < target.lsn:
            assert time.monotonic() < deadline, "slot never moved past unpublished traffic"
            event = next(events)
            assert isinstance(event, Idle)
            if event.position is not None:
                source.acknowledge(event.position)

    def test_keepalives_keep_idle_stream_alive(self) -> None:
        """With wal_sender_timeout=2s an idle stream survives 7 s and still delivers (and,
        as a control, is cut off once the consumer stops iterating)."""
        with PostgresServer(settings={"wal_sender_timeout": "2s"}) as server:
            server.create_database("ka")
            dsn = server.dsn("ka")
            run(dsn, "CREATE TABLE t (id int PRIMARY KEY)")
            cap = Capture(dsn, ["public.t"])
            try:
                events = cap.source(status_interval=30.0).events()
                idle_for(events, 0.5)
                pid_query = "SELECT pid FROM pg_stat_replication"
                [(pid,)] = run(dsn, pid_query)
                idle_for(events, 7.0)
                assert run(dsn, pid_query) == [(pid,)]
                run(dsn, "INSERT INTO t VALUES (1)")
                [(_, rows, _)] = next_transactions(events, 1, timeout=10)
                assert rows[0].after == {"id": 1}
                assert "replication timeout" not in server.log_path.read_text()
                # control: a consumer that stops iterating stops answering, and is cut off
                time.sleep(4.0)
                with pytest.raises(SourceUnavailable):
                    idle_for(events, 5.0)
                assert "replication timeout" in server.log_path.read_text()
            finally:
                cap.cleanup()


class TestLargeTransaction:
    def test_200k_rows_bounded_memory(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """A 200k-row transaction streams row by row: RSS of the consumer stays bounded."""
        run(pg_db, "CREATE TABLE big (id int PRIMARY KEY, label text, at timestamptz, amount numeric(12,2))")
        cap = capture(["public.big"])
        run(pg_db, "INSERT INTO big SELECT g, md5(g::text), now(), g * 1.25 FROM generate_series(1, 200000) g")
        process = psutil.Process(os.getpid())
        before_connect = process.memory_info().rss
        events = cap.source().events()
        count = 0
        baseline = peak = 0
        started = 0.0
        for event in events:
            if isinstance(event, TxBegin):
                started = time.perf_counter()
                baseline = peak = process.memory_info().rss
            elif isinstance(event, RowChange):
                count += 1
                if count % 10_000 == 0:
                    peak = max(peak, process.memory_info().rss)
            elif isinstance(event, TxCommit):
                break
        elapsed = time.perf_counter() - started
        growth_mb = (peak - baseline) / 2**20
        print(f"\n200k-row transaction: {count} rows in {elapsed:.2f}s ({count / elapsed:,.0f} rows/s); "
              f"RSS {before_connect / 2**20:.1f} MiB before connecting, {baseline / 2**20:.1f} MiB at "
              f"TxBegin, peak {peak / 2**20:.1f} MiB: growth while streaming {growth_mb:.1f} MiB")
        assert count == 200_000
        assert growth_mb < 32


class TestFailures:
    @pytest.mark.parametrize("mode", ["fast", "immediate"])
    def test_restart_raises_and_new_reader_resumes(self, mode: str) -> None:
        """A server restart raises SourceUnavailable; a new reader from the stored position
        gets everything after it and nothing before it.

        The stream is consumed the way the pipeline does while the server restarts in
        another thread: a fast shutdown waits until the reader has acknowledged everything
        the walsender sent, so acknowledgements (of applied work) must keep flowing.
        """
        with PostgresServer() as server:
            server.create_database("rs")
            dsn = server.dsn("rs")
            run(dsn, "CREATE TABLE t (id int PRIMARY KEY)")
            cap = Capture(dsn, ["public.t"])
            try:
                run(dsn, "INSERT INTO t VALUES (1)")
                source = cap.source()
                events = source.events()
                [(_, _, applied)] = next_transactions(events, 1)
                source.acknowledge(applied.position)
                run(dsn, "INSERT INTO t VALUES (2)")
                [(_, _, second)] = next_transactions(events, 1)
                if mode == "fast":  # a clean shutdown: the pipeline applied what it received
                    applied = second
                    source.acknowledge(applied.position)
                restarter = threading.Thread(target=server.restart, args=(mode,))
                restarter.start()
                try:
                    with pytest.raises(SourceUnavailable):
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline:
                            event = next(events)
                            if isinstance(event, Idle) and event.position is not None and mode == "fast":
                                source.acknowledge(event.position)  # nothing pending: acknowledge
                finally:
                    restarter.join(90)
                assert server.running
                source.close()
                run(dsn, "INSERT INTO t VALUES (3)")
                expected = [2, 3] if mode == "immediate" else [3]
                txs = next_transactions(cap.source(resume=applied.position).events(), len(expected))
                assert [rows[0].after["id"] for _, rows, _ in txs] == expected
            finally:
                cap.cleanup()

    def test_missing_slot_is_setup_error(self, pg_db: str) -> None:
        """A slot that does not exist is a SetupError naming it."""
        with pytest.raises(SetupError, match="no_such_slot"):
            next(PgChangeSource(pg_db, None, "no_such_slot", "nopub").events())

    def test_missing_publication_is_setup_error(self, pg_db: str, capture: Callable[..., Capture]) -> None:
        """A publication that does not exist is a SetupError naming it."""
        run(pg_db, "CREATE TABLE t (id int PRIMARY KEY)")
        cap = capture(["public.t"])
        source = PgChangeSource(pg_db, None, cap.slot, "no_such_pub")
        cap.sources.append(source)
        with pytest.raises(SetupError, match="no_such_pub"):
            next(source.events())

    def test_server_down_is_source_unavailable(self) -> None:
        """Nobody listening: SourceUnavailable (retry later)."""
        server = PostgresServer()
        try:
            dsn = server.dsn()  # a free port, server never started
            with pytest.raises(SourceUnavailable):
                next(PgChangeSource(dsn, None, "s", "p", connect_timeout=2).events())
        finally:
            server.cleanup()


class TestIntrospection:
    def test_load_table(self, pg_db: str) -> None:
        """Columns map to families with their bounds; PK and replica identity are read."""
        run(pg_db, ALL_TYPES_DDL + "ALTER TABLE all_types ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED;"
                   "ALTER TABLE all_types ADD COLUMN vc varchar(7), ADD COLUMN tz timestamptz(3)")
        with psycopg.connect(pg_db) as conn:
            info = introspect.load_table(conn, "public.all_types")
            assert introspect.load_table(conn, "public.nope") is None
            settings = introspect.server_settings(conn)
        assert info is not None
        assert (info.primary_key, info.replica_identity, info.qualified) == (("id",), "d", "public.all_types")
        cols = info.columns
        assert (cols["id"].family, cols["id"].int_bits, cols["id"].nullable) == (Family.INT, 32, False)
        assert cols["c_big"].int_bits == 64
        assert (cols["c_num"].family, cols["c_num"].precision, cols["c_num"].scale) == (Family.DECIMAL, 12, 3)
        assert (cols["c_real"].float_bits, cols["c_double"].float_bits) == (32, 64)
        assert (cols["c_char"].max_length, cols["c_char"].fixed_length) == (4, True)
        assert (cols["vc"].max_length, cols["vc"].fixed_length) == (7, False)
        assert (cols["tz"].family, cols["tz"].fsp, cols["c_ts"].fsp) == (Family.TIMESTAMPTZ, 3, 6)
        assert cols["c_mood"].family is Family.ENUM and cols["c_mood"].enum_values == ("sad", "ok", "happy")
        assert cols["c_jsonb"].family is Family.JSON and cols["c_uuid"].family is Family.UUID
        assert cols["g"].generated and not cols["id"].generated
        assert settings["wal_level"] == "logical" and settings["server_version_num"] >= 150000


def _parse_json(row: dict) -> dict:
    """JSON columns arrive as raw text; parse them exactly for comparison."""
    return {k: json.loads(v, parse_float=Decimal) if k in ("c_jsonb", "c_json") and isinstance(v, str) else v
            for k, v in row.items()}
