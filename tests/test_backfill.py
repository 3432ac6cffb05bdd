"""Backfill (issue 4): DBLog chunks merged into the running stream.

Pure tests of the window, keys, conversion and the binlog framer's watermark rows; then
integration tests on real servers: size (with throughput figures), concurrent updates while
the stream runs, kill -9 and resume, and the CLI's paths.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from bridge.backfill.convert import RowConverter
from bridge.backfill.model import BackfillError, KeyCodec, Request, Status
from bridge.backfill.runner import attach, plan, register, see_through
from bridge.backfill.source import _mysql_keyset, _mysql_keyset_params
from bridge.backfill.window import RecentKeys, Window, norm_key
from bridge.config import parse_config
from bridge.mapping import Mapping
from bridge.model import UNCHANGED, InvalidValue, Op, RowChange, Side
from bridge.schema import ColumnInfo, Family, TableInfo
from tests.bridgeenv import ROOT, BridgeEnv, wait_until

# --- the wide test table ---------------------------------------------------------------------

CRM_WIDE = [
    "CREATE TYPE wide_kind AS ENUM ('alpha', 'beta', 'gamma')",
    """CREATE TABLE wide (
        id bigint PRIMARY KEY, name text NOT NULL, amount numeric(18,4), qty integer,
        ratio double precision, happened_at timestamptz, day date, kind wide_kind,
        payload jsonb, note text, flag boolean, code varchar(32), version integer NOT NULL DEFAULT 0)""",
    "ALTER TABLE wide REPLICA IDENTITY FULL",
]
MES_WIDE = [
    """CREATE TABLE wide (
        id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, amount DECIMAL(18,4), qty INT,
        ratio DOUBLE, happened_at DATETIME(6), day DATE, kind ENUM('alpha','beta','gamma'),
        payload JSON, note TEXT, flag TINYINT(1), code VARCHAR(32), version INT NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]
WIDE_COLS = ["id", "name", "amount", "qty", "ratio", "happened_at", "day", "kind", "payload",
             "note", "flag", "code", "version"]


def wide_tables(direction: str) -> list[dict[str, Any]]:
    return [{"crm": "public.wide", "mes": "wide", "direction": direction, "key": ["id"],
             "columns": {c: c for c in WIDE_COLS}}]


def fill_crm(env: BridgeEnv, first: int, last: int) -> None:
    env.crm(f"""INSERT INTO wide SELECT g, 'name ' || g, g * 1.2345, g % 1000, g / 7.0,
        '2024-01-01'::timestamptz + g * interval '1 second 1 microsecond',
        '2024-01-01'::date + (g % 365), (ARRAY['alpha','beta','gamma'])[1 + g % 3]::wide_kind,
        jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7), 'x', 1.5),
        CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || repeat('z', g % 40) END, g % 2 = 0,
        'C' || g, 0 FROM generate_series({first}, {last}) g""")
    env.crm("ANALYZE wide")


def fill_mes(env: BridgeEnv, first: int, last: int) -> None:
    step = 200_000  # the sequence engine's tables are cheap; one statement per 200k rows
    for lo in range(first, last + 1, step):
        hi = min(last, lo + step - 1)
        env.mes(f"""INSERT INTO wide SELECT seq, CONCAT('name ', seq), seq * 1.2345, seq % 1000,
            seq / 7.0, TIMESTAMPADD(MICROSECOND, seq * 1000001, '2024-01-01'),
            DATE_ADD('2024-01-01', INTERVAL seq % 365 DAY), ELT(1 + seq % 3, 'alpha','beta','gamma'),
            JSON_OBJECT('g', seq, 'tags', JSON_ARRAY('a', seq % 7), 'x', 1.5),
            IF(seq % 5 = 0, NULL, CONCAT('note ', REPEAT('z', seq % 40))), seq % 2 = 0,
            CONCAT('C', seq), 0 FROM seq_{lo}_to_{hi}""")
    env.mes("ANALYZE TABLE wide")


def start_daemon(env: BridgeEnv) -> None:
    """The daemon with the backfill hook, in a thread (`env.stop()` stops it)."""
    from bridge.daemon import Daemon

    env.setup()
    env.daemon = Daemon(env.config)
    attach(env.daemon)
    env.thread = threading.Thread(target=env.daemon.run, kwargs={"install_signals": False},
                                  daemon=True)
    env.thread.start()


def backfill(env: BridgeEnv, source: Side | None = None, chunk_rows: int | None = None,
             tables: list[str] | None = None, **kw: Any):
    env.setup()
    reqs = register(env.config, plan(env.config, tables, source), chunk_rows=chunk_rows, **kw)
    return see_through(env.config, reqs, on_progress=lambda f: None, stop=threading.Event())


def progress(env: BridgeEnv, table: str = "public.wide", direction: str = "crm_to_mes") -> Request:
    from bridge.backfill.runner import progress_stores

    with progress_stores(env.config) as stores:
        target = Side.MES if direction == "crm_to_mes" else Side.CRM
        req = stores[target].get(table, direction)
    assert req is not None
    return req


def verify_clean(env: BridgeEnv, tables: list[str] | None = None) -> None:
    from bridge.verify.report import render_text
    from bridge.verify.run import run_verify

    report = run_verify(env.config, tables, settle=0.5)
    assert report.differences == 0, render_text(report)


@pytest.fixture
def wide_env(request, pg_server, mariadb_server, tmp_path):
    envs: list[BridgeEnv] = []

    def make(direction: str, **sections: Any) -> BridgeEnv:
        e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_WIDE, MES_WIDE,
                      tables=wide_tables(direction), **sections)
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.close()


# =========================================================================================
# pure
# =========================================================================================

INT = ColumnInfo("id", Family.INT, "bigint", int_bits=64)


class TestWindow:
    def test_records_old_and_new_keys_with_their_last_state(self) -> None:
        """A key change marks the old key gone and the new one present; a delete, gone."""
        w = Window("db.t", ["id"], [INT])
        w.observe(RowChange(Op.INSERT, "db.t", None, {"id": 1, "v": "a"}))
        w.observe(RowChange(Op.UPDATE, "db.t", {"id": 2, "v": "b"}, {"id": 3, "v": "b"}))
        w.observe(RowChange(Op.DELETE, "db.t", {"id": 4}, None))
        assert w.exists == {(1,): True, (2,): False, (3,): True, (4,): False}
        assert w.changed == {(1,), (2,), (3,), (4,)}
        assert not w.truncated

    def test_keeps_the_last_update_image_while_the_row_exists(self) -> None:
        """The after-image of a key's last UPDATE is kept (None if not whole); a later
        INSERT or DELETE of the key drops it."""
        w = Window("db.t", ["id"], [INT])
        w.observe(RowChange(Op.UPDATE, "db.t", {"id": 1, "v": "a"}, {"id": 1, "v": "b"}))
        w.observe(RowChange(Op.UPDATE, "db.t", {"id": 2, "v": "a"}, {"id": 2, "v": UNCHANGED}))
        w.observe(RowChange(Op.UPDATE, "db.t", {"id": 3, "v": "a"}, {"id": 3, "v": "c"}))
        w.observe(RowChange(Op.DELETE, "db.t", {"id": 3, "v": "c"}, None))
        assert w.updated == {(1,): {"id": 1, "v": "b"}, (2,): None}

    def test_truncate_voids_the_window(self) -> None:
        """A TRUNCATE in flight marks the window so the chunk is read again."""
        w = Window("db.t", ["id"], [INT])
        w.observe(RowChange(Op.TRUNCATE, "db.t", None, None))
        assert w.truncated

    def test_unchanged_key_values_are_not_keys(self) -> None:
        """An image whose key was not sent adds nothing."""
        w = Window("db.t", ["id"], [INT])
        w.observe(RowChange(Op.UPDATE, "db.t", None, {"id": UNCHANGED, "v": 1}))
        assert w.exists == {}

    def test_stream_and_select_keys_compare_equal(self) -> None:
        """A MySQL TIMESTAMP key from the binlog (aware UTC) equals the SELECT's (naive UTC)."""
        ts = ColumnInfo("at", Family.TIMESTAMPTZ, "timestamp(6)")
        aware = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
        assert norm_key([aware], [ts]) == norm_key([aware.replace(tzinfo=None)], [ts])


class TestRecentKeys:
    def test_keys_expire_after_the_horizon(self) -> None:
        """Only changes within the horizon are returned, per table and side."""
        now = [100.0]
        r = RecentKeys(horizon=10, clock=lambda: now[0])
        r.record("public.t", "mes", (1,))
        now[0] = 105
        r.record("public.t", "mes", (2,))
        r.record("public.t", "crm", (3,))
        assert r.since("public.t", "mes", 0) == {(1,), (2,)}
        now[0] = 112
        r.record("public.t", "mes", (4,))
        assert r.since("public.t", "mes", 0) == {(2,), (4,)}
        assert r.since("public.t", "mes", 106) == {(4,)}


class TestKeys:
    def test_codec_round_trip_and_cli_forms(self) -> None:
        """Keys survive JSON, and the CLI accepts a bare value for one-column keys."""
        ts = ColumnInfo("at", Family.TIMESTAMPTZ, "timestamptz")
        codec = KeyCodec(("id", "at"), (INT, ts))
        key = (2**62, datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
        assert codec.from_json(json.loads(json.dumps(codec.to_json(key)))) == key
        one = KeyCodec(("id",), (INT,))
        assert one.parse_cli("42") == [42]
        assert one.parse_cli("[43]") == [43]
        with pytest.raises(BackfillError):
            codec.parse_cli("42")

    def test_mysql_keyset_is_expanded_for_the_range_optimizer(self) -> None:
        """(a, b) > (x, y) becomes a > x OR (a = x AND b > y), with matching parameters."""
        cond = _mysql_keyset(["a", "b"], ">")
        assert cond == "((`a` > %s) OR (`a` = %s AND `b` > %s))"
        assert _mysql_keyset_params([1, 2], ">") == [1, 1, 2]
        assert _mysql_keyset(["a", "b"], "<=").endswith("OR (`a` = %s AND `b` = %s))")
        assert _mysql_keyset_params([1, 2], "<=") == [1, 1, 2, 1, 2]


class TestConverter:
    def _conv(self) -> RowConverter:
        cfg = parse_config({
            "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
            "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
            "tables": [{"crm": "public.o", "mes": "o", "key": ["id"], "columns": {
                "id": "oid", "status": {"mes": "state", "values": {"confirmed": "RELEASED"}},
                "at": "at"}}]})
        tm = Mapping.from_config(cfg).tables[0]
        info = TableInfo("mes", "mes", "o", {
            "oid": ColumnInfo("oid", Family.INT, "bigint", int_bits=64),
            "state": ColumnInfo("state", Family.TEXT, "varchar(20)", max_length=20),
            "at": ColumnInfo("at", Family.TIMESTAMP, "datetime(3)", fsp=3),
            "gen": ColumnInfo("gen", Family.INT, "int", int_bits=32, generated=True)})
        return RowConverter(tm, Side.CRM, ["id", "status", "at"], info)

    def test_maps_names_values_and_types(self) -> None:
        """Value maps and type conversion as in streaming; key found in target names."""
        conv = self._conv()
        rows, dead = conv.convert([(1, "confirmed", datetime(2024, 1, 1, 0, 0, 0, 5000,
                                                              tzinfo=UTC))])
        assert conv.columns == ["oid", "state", "at"]
        assert rows == [(1, "RELEASED", datetime(2024, 1, 1, 0, 0, 0, 5000))] and not dead
        assert conv.key_of(rows[0]) == (1,)

    def test_unrepresentable_rows_are_dead_letters(self) -> None:
        """A value the target would change (microseconds into DATETIME(3)), or an invalid
        one, dead-letters its row with the reason; other rows go on."""
        conv = self._conv()
        rows, dead = conv.convert([
            (1, "x", datetime(2024, 1, 1, 0, 0, 0, 1)),
            (2, "y", InvalidValue("0000-00-00", "zero date")),
            (3, "z", None)])
        assert rows == [(3, "z", None)]
        assert [d.key for d in dead] == [{"oid": 1}, {"oid": 2}]
        assert "microseconds" in dead[0].reason and "zero date" in dead[1].reason


class TestIdentityConversions:
    """Column pairs whose conversion is an identity skip `to_target`; nothing else changes."""

    def _conv(self, source: Side, pairs: list[tuple[ColumnInfo, ColumnInfo]]) -> RowConverter:
        names = [f"c{i}" for i in range(len(pairs))]
        cfg = parse_config({
            "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
            "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
            "tables": [{"crm": "public.t", "mes": "t", "key": ["c0"],
                        "columns": {n: n for n in names}}]})
        tm = Mapping.from_config(cfg).tables[0]
        side = source.other.value
        info = TableInfo(side, side, "t", {n: replace(d, name=n) for n, (_, d) in zip(names, pairs)})
        return RowConverter(tm, source, names, info, [replace(s, name=n)
                                                      for n, (s, _) in zip(names, pairs)])

    def test_only_provable_pairs_are_identities_and_values_match_to_target(self) -> None:
        """int4 -> BIGINT and a PG enum into a wider ENUM pass unchanged; BIGINT UNSIGNED ->
        bigint does not (its top half does not fit) and still dead-letters what cannot fit."""
        from bridge.types import to_target

        pairs = [
            (ColumnInfo("x", Family.INT, "bigint", int_bits=64),
             ColumnInfo("x", Family.INT, "bigint", int_bits=64)),
            (ColumnInfo("x", Family.INT, "integer", int_bits=32),
             ColumnInfo("x", Family.INT, "bigint", int_bits=64)),
            (ColumnInfo("x", Family.ENUM, "kind", enum_values=("a", "b")),
             ColumnInfo("x", Family.ENUM, "enum('a','b','c')", enum_values=("a", "b", "c"))),
            (ColumnInfo("x", Family.INT, "bigint", int_bits=64),
             ColumnInfo("x", Family.INT, "int", int_bits=32)),
            (ColumnInfo("x", Family.TIMESTAMPTZ, "timestamptz"),
             ColumnInfo("x", Family.TIMESTAMP, "datetime(6)")),
        ]
        conv = self._conv(Side.CRM, pairs)
        assert [st.same for st in conv._steps] == [int, int, str, None, None]
        at = datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC)
        rows = [(1, -2**31, "b", 2**31 - 1, at), (2, None, "a", 2**31, at), (3, 7, "a", 0, None)]
        out, dead = conv.convert_all(rows)
        want = tuple(to_target(v, d, Side.MES) for v, (_, d) in zip(rows[0], pairs))
        assert out[0] == want and [type(v) for v in out[0]] == [type(v) for v in want]
        assert dead == 1 and "out of range" in out[1].reason  # 2**31 into INT
        assert out[2] == (3, 7, "a", 0, None)

    def test_mes_enum_and_unsigned_are_never_identities(self) -> None:
        """A MySQL ENUM may hold '' (invalid value); BIGINT UNSIGNED exceeds bigint."""
        pairs = [
            (ColumnInfo("x", Family.INT, "bigint unsigned", int_bits=64, unsigned=True),
             ColumnInfo("x", Family.INT, "bigint", int_bits=64)),
            (ColumnInfo("x", Family.ENUM, "enum('a')", enum_values=("a",)),
             ColumnInfo("x", Family.ENUM, "kind", enum_values=("a",))),
            (ColumnInfo("x", Family.DATE, "date"), ColumnInfo("x", Family.DATE, "date")),
            (ColumnInfo("x", Family.FLOAT, "double", float_bits=64),
             ColumnInfo("x", Family.FLOAT, "double precision", float_bits=64)),
        ]
        conv = self._conv(Side.MES, pairs)
        assert [st.same for st in conv._steps] == [None, None, date, float]
        out, dead = conv.convert_all([(2**63, "", date(2024, 1, 2), 1.5),
                                      (1, "a", InvalidValue("0000-00-00", "zero date"), 0.5)])
        assert dead == 2
        assert "out of range" in out[0].reason and "zero date" in out[1].reason


class TestFastReads:
    def test_date_decoders_match_pymysql(self) -> None:
        """The chunk reader's DATETIME/DATE decoders give PyMySQL's values; a zero or invalid
        date, which PyMySQL leaves as text, as the InvalidValue the reader's fix makes of it."""
        import pymysql.converters as conv

        from bridge.backfill.source import _date_text, _datetime_text, _invalid_date

        for text in ("2024-01-01 00:00:00", "2024-01-01 00:00:00.5", "1000-01-01 00:00:00.123",
                     "9999-12-31 23:59:59.999999", "0000-00-00 00:00:00", "2024-00-10 00:00:00",
                     "2024-02-30 10:00:00", "2024-01-01 24:00:00", "2024-01-01"):
            got, want = _datetime_text(text), _invalid_date(conv.convert_datetime(text))
            assert got == want and type(got) is type(want), text
        for text in ("2024-01-01", "0000-00-00", "2024-02-30", "1000-01-01", "2024-13-01"):
            got, want = _date_text(text), _invalid_date(conv.convert_date(text))
            assert got == want and type(got) is type(want), text
        assert isinstance(_date_text("0000-00-00"), InvalidValue)
        assert isinstance(_datetime_text("2024-02-30 10:00:00"), InvalidValue)

    def test_key_normalizer_matches_norm_key(self) -> None:
        """The planned key normal form equals `norm_key`, for int keys and others."""
        from bridge.backfill.window import key_normalizer

        text = ColumnInfo("k", Family.TEXT, "char(4)", max_length=4, fixed_length=True)
        flag = ColumnInfo("f", Family.INT, "tinyint(1)", int_bits=8, bool_like=True)
        for infos, idx, row in (((INT,), [1], ("x", 5)), ((INT,), [0], ("7", 1)),
                                ((flag,), [0], (1,)), ((INT, text), [0, 1], (3, "ab  "))):
            assert key_normalizer(idx, infos)(row) == norm_key([row[i] for i in idx], infos)


class TestFramerMarks:
    def test_watermark_rows_are_yielded_other_bridge_tables_are_not(self) -> None:
        """The binlog framer yields rows of <prefix>backfill_marks, never other state tables."""
        from bridge.model import BinlogPosition, TxBegin, TxCommit
        from connectors.mysql.reader import Framer

        f = Framer("mes", "b_bridge_state", frozenset({"orders"}), BinlogPosition("binlog.000001", 4), None)
        events: list[Any] = []
        mark = {"direction": "mes_to_crm", "mark": "x:1:low", "table_name": "public.o"}
        for table, image in (("mes.b_bridge_backfill_marks", mark),
                             ("mes.b_bridge_backfill_progress", {"table_name": "t"})):
            f.open("0-1-1", 0, 100, ends_with_statement=False)
            events += f.rows(table, Op.UPDATE, ("direction",), lambda image=image: [(image, image)], 0, 150)
            events += f.commit(200, 0)
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["TxBegin", "RowChange", "TxCommit"]
        assert isinstance(events[0], TxBegin) and isinstance(events[2], TxCommit)
        assert events[1].table == "mes.b_bridge_backfill_marks" and events[1].after["mark"] == "x:1:low"


class _FakeSource:
    """Rows (id, v) in memory; remembers how many windows were open at each mark."""

    side = Side.CRM

    def __init__(self, rows: list[tuple], hub: Any):
        self.rows, self.hub, self.marks = rows, hub, []

    def write_mark(self, direction: str, mark: str, table: str):
        from bridge.model import PgPosition

        self.marks.append((mark, len(self.hub._windows)))
        return PgPosition(len(self.marks))

    def read_chunk(self, plan, after, inclusive, upto, limit, keys=()):
        from bridge.backfill.source import ChunkRead

        rng = [r for r in self.rows if after is None or r[0] > after[0]][:limit]
        extra = [r for r in self.rows if (r[0],) in set(keys)]
        return ChunkRead(rng + extra, len(rng), datetime.now(UTC))


class TestPrefetcher:
    def _worker(self, rows: list[tuple], chunk: int):
        from bridge.backfill.prefetch import Prefetcher, WindowHub
        from bridge.backfill.source import ReadPlan

        hub = WindowHub()
        src = _FakeSource(rows, hub)
        text = ColumnInfo("v", Family.TEXT, "text")
        plan_ = ReadPlan("public.t", ("id", "v"), ("id",), (INT, text))
        cfg = parse_config({
            "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
            "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
            "tables": [{"crm": "public.t", "mes": "t", "key": ["id"], "columns": {"id": "id", "v": "v"}}]})
        tm = Mapping.from_config(cfg).tables[0]
        conv = RowConverter(tm, Side.CRM, ["id", "v"], TableInfo("mes", "mes", "t", {
            "id": ColumnInfo("id", Family.INT, "bigint", int_bits=64),
            "v": ColumnInfo("v", Family.TEXT, "varchar(1)", max_length=1)}))
        w = Prefetcher(hub=hub, src=src, plan=plan_, conv=conv, direction="crm_to_mes",
                       table="public.t", token="tok", chunk_rows=chunk, after=None,
                       inclusive=False, upto=None, check_race=False, depth=2)
        return w, src, hub

    def test_chunks_in_order_windows_open_before_low_and_peek_ends_the_range(self) -> None:
        """Two chunks ahead at most; each LOW is written with its window open; the last chunk
        knows it is the last from the row read beyond the chunk; rows that do not convert
        are marked dead, not dropped."""
        rows = [(i, "x" if i != 5 else "too long") for i in range(1, 8)]
        w, src, _ = self._worker(rows, 3)
        w.start()
        wait_until(lambda: len(src.marks) == 4, timeout=10, what="two chunks prepared")
        time.sleep(0.2)
        assert len(src.marks) == 4  # depth 2: nothing more until a chunk completes
        first = w.pop("tok:1:high")
        assert first is not None and [it.raw[0] for it in first.items] == [1, 2, 3]
        assert first.last_key == (1 + 2,) and not first.exhausted
        assert w.pop("tok:3:high") is None  # out of order: not this one
        second = w.pop("tok:2:high")
        assert second is not None and [type(it.converted).__name__ for it in second.items] == [
            "tuple", "DeadRow", "tuple"]
        wait_until(lambda: len(src.marks) == 6, timeout=10, what="third chunk")
        third = w.pop("tok:3:high")
        assert third is not None and third.exhausted and [it.raw[0] for it in third.items] == [7]
        assert all(open_ >= 1 for mark, open_ in src.marks if mark.endswith(":low"))
        w.recheck({(2,): (2,)})
        wait_until(lambda: len(src.marks) == 8, timeout=10, what="re-read chunk")
        again = w.pop("tok:4:high")
        assert again is not None and [it.raw[0] for it in again.items] == [2]
        wait_until(lambda: w.finished, timeout=10, what="finished")
        w.stop()
        assert not w.is_alive() and w.error is None


class TestViews:
    def test_bar_and_log_views_show_rows_rate_and_eta(self) -> None:
        """On a terminal a bar per table; without one, structured progress lines."""
        import io

        from rich.console import Console
        from structlog.testing import capture_logs

        from bridge.backfill.display import BarView, LogView, print_summary
        from bridge.backfill.runner import Follower

        cfg = parse_config({
            "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
            "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
            "tables": [{"crm": "public.t", "mes": "t", "key": ["id"], "columns": {"id": "id"}}]})
        req = Request("public.t", "crm_to_mes", "r1", Status.RUNNING, rows_estimate=1000)
        f = Follower(cfg, [req])
        t = f.tracked[("public.t", "crm_to_mes")]
        t.started -= 2
        t.req = Request("public.t", "crm_to_mes", "r1", Status.RUNNING, rows_estimate=1000,
                        rows_copied=400, chunks=4)
        out = io.StringIO()
        with BarView(Console(file=out, force_terminal=True, width=150)) as view:
            view(f)
        text = out.getvalue()
        assert "public.t crm->mes" in text and "400/1,000 rows" in text and "rows/s" in text
        with capture_logs() as logs:
            LogView(every=0)(f)
        assert logs[0]["event"] == "backfill_progress" and logs[0]["rows"] == 400
        assert logs[0]["rows_estimate"] == 1000 and logs[0]["eta_seconds"] > 0
        summary = io.StringIO()
        print_summary(f, summary)
        assert "backfill summary" in summary.getvalue() and "400" in summary.getvalue()


class TestPlan:
    def _config(self, direction: str):
        return parse_config({
            "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
            "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
            "tables": [{"crm": "public.a", "mes": "a", "key": ["id"], "direction": direction,
                        "columns": {"id": "id"}},
                       {"crm": "public.b", "mes": "b", "key": ["id"], "direction": "crm_to_mes",
                        "columns": {"id": "id"}}]})

    def test_direction_comes_from_the_config_or_from(self) -> None:
        """One-way tables take their direction; `both` needs --from; mismatches are refused."""
        cfg = self._config("both")
        with pytest.raises(BackfillError, match="--from"):
            plan(cfg, None, None)
        got = plan(cfg, None, Side.MES)
        assert [(p.tm.crm_table, p.source) for p in got] == [("public.a", Side.MES)]
        got = plan(cfg, ["b"], None)
        assert [(p.tm.crm_table, p.source) for p in got] == [("public.b", Side.CRM)]
        with pytest.raises(BackfillError, match="cannot be loaded from mes"):
            plan(cfg, ["public.b"], Side.MES)
        with pytest.raises(BackfillError, match="not bridged"):
            plan(cfg, ["nope"], None)


# =========================================================================================
# integration
# =========================================================================================


def _raw_copy_rate(env: BridgeEnv, rows: list[tuple], columns: list[str]) -> float:
    """psycopg COPY of already-converted rows into an empty copy of the table, one txn."""
    import psycopg

    env.crm("DROP TABLE IF EXISTS wide_raw")
    env.crm("CREATE TABLE wide_raw (LIKE wide INCLUDING ALL)")
    with psycopg.connect(env.pg.dsn(env.crm_db), options="-c TimeZone=UTC") as c:
        t = time.perf_counter()
        with c.cursor() as cur, cur.copy(f"COPY wide_raw ({', '.join(columns)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        c.commit()
        return len(rows) / (time.perf_counter() - t)


def _raw_insert_rate(env: BridgeEnv, rows: list[tuple], columns: list[str], batch: int = 5000) -> float:
    """PyMySQL multi-row INSERT (executemany batching) of converted rows, 5000-row txns."""
    import pymysql

    env.mes("DROP TABLE IF EXISTS wide_raw")
    env.mes("CREATE TABLE wide_raw LIKE wide")
    c = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root", database=env.mes_db,
                        charset="utf8mb4", init_command="SET time_zone='+00:00'")
    try:
        q = (f"INSERT INTO wide_raw ({', '.join(columns)}) VALUES "
             f"({', '.join(['%s'] * len(columns))})")
        t = time.perf_counter()
        for i in range(0, len(rows), batch):
            with c.cursor() as cur:
                cur.executemany(q, rows[i:i + batch])
            c.commit()
        return len(rows) / (time.perf_counter() - t)
    finally:
        c.close()


def _converted_rows(env: BridgeEnv, source: Side) -> tuple[list[tuple], list[str]]:
    """All rows of the source table, read and converted as the backfill does (untimed)."""
    from bridge.backfill.source import ReadPlan, open_source
    from bridge.connect import make_target

    tm = Mapping.from_config(env.config).tables[0]
    src = open_source(env.config, source)
    target = make_target(env.config, source.other)
    target.connect()
    try:
        info = src.table_info(tm.table(source))
        cols = tm.columns(source)
        rp = ReadPlan(tm.table(source), tuple(cols), tuple(tm.keys[source]),
                      tuple(info.columns[c] for c in cols))
        conv = RowConverter(tm, source, cols, target.table_info(tm.table(source.other)))
        out: list[tuple] = []
        after = None
        while True:
            read = src.read_chunk(rp, after, False, None, 50_000)
            if not read.rows:
                return out, conv.columns
            after = tuple(read.rows[-1][i] for i in rp.key_index)
            rows, _ = conv.convert(read.rows)
            out += rows
    finally:
        src.close()
        target.close()


def _rate(req: Request) -> float:
    assert req.started_at and req.finished_at
    return req.rows_copied / (req.finished_at - req.started_at).total_seconds()


@pytest.mark.integration
@pytest.mark.slow
def test_size_wide_table_each_direction_with_rates(wide_env) -> None:
    """A wide table (13 columns: JSON, DECIMAL, timestamps, ENUM, nullable text) backfills in
    each direction; counts and verify agree. Backfill rows/s are measured next to the raw
    COPY and multi-row INSERT rates of the same converted rows on this machine."""
    n = 1_000_000 if os.environ.get("BRIDGE_BIG") == "1" else 100_000
    results: dict[str, Any] = {"rows": n, "columns": len(WIDE_COLS), "cpus": os.cpu_count(),
                               "chunk_rows": 4096}
    # CRM -> MES
    env = wide_env("crm_to_mes")
    fill_crm(env, 1, n)
    t = time.monotonic()
    out = backfill(env)
    wall = time.monotonic() - t
    assert out.ok, out.errors
    req = progress(env)
    assert req.rows_copied == n and req.dead_letters == 0
    assert env.mes("SELECT COUNT(*) FROM wide") == [(n,)]
    verify_clean(env)
    rows, cols = _converted_rows(env, Side.CRM)
    results["crm_to_mes"] = {
        "backfill_rows_per_s": round(_rate(req)), "backfill_wall_seconds": round(wall, 1),
        "chunks": req.chunks,
        "raw_multirow_insert_rows_per_s": round(_raw_insert_rate(env, rows, cols))}
    del rows
    env.close()
    # MES -> CRM
    env = wide_env("mes_to_crm")
    fill_mes(env, 1, n)
    t = time.monotonic()
    out = backfill(env)
    wall = time.monotonic() - t
    assert out.ok, out.errors
    req = progress(env, direction="mes_to_crm")
    assert req.rows_copied == n and req.dead_letters == 0
    assert env.crm("SELECT count(*) FROM wide") == [(n,)]
    verify_clean(env)
    rows, cols = _converted_rows(env, Side.MES)
    results["mes_to_crm"] = {
        "backfill_rows_per_s": round(_rate(req)), "backfill_wall_seconds": round(wall, 1),
        "chunks": req.chunks, "raw_copy_rows_per_s": round(_raw_copy_rate(env, rows, cols))}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"backfill_{n}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


# --- concurrent updates ------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Updates, inserts and deletes rows on the source while the backfill copies them; most
    updates hit the keys just ahead of the backfill's position."""

    def __init__(self, env: BridgeEnv, source: Side, n: int, position: Any):
        super().__init__(daemon=True)
        self.env, self.source, self.n, self.position = env, source, n, position
        self.stop = threading.Event()
        self.ops = 0
        self.error: BaseException | None = None
        self.next_id = n + 1

    def _sql(self, cur: Any, text: str, params: tuple) -> None:
        cur.execute(text, params)

    def run(self) -> None:
        try:
            if self.source is Side.CRM:
                import psycopg

                conn: Any = psycopg.connect(self.env.pg.dsn(self.env.crm_db))
                upd = ("UPDATE wide SET version = version + 1, note = 'v' || (version + 1), "
                       "amount = amount + 1 WHERE id = %s")
            else:
                import pymysql

                conn = pymysql.connect(host="127.0.0.1", port=self.env.my.port, user="root",
                                       database=self.env.mes_db)
                upd = ("UPDATE wide SET version = version + 1, note = CONCAT('v', version), "
                       "amount = amount + 1 WHERE id = %s")
            rnd = random.Random(7)
            with conn:
                cur = conn.cursor()
                while not self.stop.is_set():
                    for _ in range(rnd.randint(1, 4)):  # a few changes per transaction
                        self._one(cur, upd, rnd)
                    conn.commit()
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _one(self, cur: Any, upd: str, rnd: random.Random) -> None:
        at = self.position()
        roll = rnd.random()
        if roll < 0.75:  # right where the next chunks read
            self._sql(cur, upd, (min(self.n, at + rnd.randint(1, 600)),))
        elif roll < 0.85:
            self._sql(cur, upd, (rnd.randint(1, self.n),))
        elif roll < 0.93:
            self._sql(cur, "INSERT INTO wide (id, name, version) VALUES (%s, 'new', 0)",
                      (self.next_id,))
            self.next_id += 1
        else:
            self._sql(cur, "DELETE FROM wide WHERE id = %s",
                      (min(self.n, at + rnd.randint(1, 600)),))
        self.ops += 1


@pytest.mark.integration
@pytest.mark.parametrize("source", [Side.CRM, Side.MES], ids=["crm_to_mes", "mes_to_crm"])
def test_concurrent_updates_are_never_lost_or_overwritten(wide_env, source: Side) -> None:
    """While `bridge run` streams, updates/inserts/deletes hit the rows being copied; every
    row ends with its newest version on both sides and verify is clean."""
    direction = f"{source.value}_to_{source.other.value}"
    env = wide_env(direction)
    n = 20_000
    (fill_crm if source is Side.CRM else fill_mes)(env, 1, n)
    start_daemon(env)
    time.sleep(1.0)  # the stream is up before the load starts
    last = [0]

    def position() -> int:
        return last[0]

    writer = _Writer(env, source, n, position)
    # small chunks: the backfill takes long enough for the writer to race it many times
    reqs = register(env.config, plan(env.config, None, source), chunk_rows=200)
    writer.start()
    done = threading.Event()

    def follow(f) -> None:
        t = next(iter(f.tracked.values()))
        last[0] = int(t.req.last_key[0]) if t.req.last_key else 0

    try:
        out = see_through(env.config, reqs, on_progress=follow, stop=done, poll=0.05)
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert out.ok and out.mode == "daemon", (out.mode, out.errors)
    req = progress(env, direction=direction)
    print(f"writer ops {writer.ops}, chunk rows left to the stream {req.rows_skipped}")
    assert writer.ops > 100
    assert req.rows_skipped > 0, "no chunk row was left to the stream: the race was not exercised"
    cols = "id, version, note, amount"
    src_sql, tgt_sql = (env.crm, env.mes) if source is Side.CRM else (env.mes, env.crm)

    def same() -> bool:
        return ([tuple(r) for r in src_sql(f"SELECT {cols} FROM wide ORDER BY id")]
                == [tuple(r) for r in tgt_sql(f"SELECT {cols} FROM wide ORDER BY id")])

    wait_until(same, timeout=60, interval=0.5, what="target equal to source after the load")
    verify_clean(env)
    env.stop()


# --- kill -9 and resume ----------------------------------------------------------------------------


def _backfill_process(env: BridgeEnv, log_name: str, *args: str) -> subprocess.Popen:
    log = open(env.tmp / log_name, "a")
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli_load", "backfill", "--config", str(env.config_path),
         *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


@pytest.mark.integration
def test_kill_9_then_rerun_continues_from_the_last_chunk(wide_env) -> None:
    """kill -9 mid-load; the rerun resumes after the last committed chunk: nothing duplicated
    or missing, every chunk committed once (contiguous key ranges), only the chunk in flight
    at the kill redone."""
    env = wide_env("crm_to_mes")
    n, chunk = 80_000, 1000
    fill_crm(env, 1, n)
    proc = _backfill_process(env, "first.log", "--chunk-rows", str(chunk))
    env.setup()
    try:
        wait_until(lambda: _chunks(env) >= 8, timeout=120, interval=0.05, what="8 chunks")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed = progress(env)
    assert killed.status is Status.RUNNING and 0 < killed.rows_copied < n
    # exactly the committed chunks are on the target: progress and rows commit together
    assert env.mes("SELECT COUNT(*) FROM wide") == [(killed.rows_copied,)]
    assert killed.last_key == [killed.rows_copied]

    proc = _backfill_process(env, "second.log")
    assert proc.wait(timeout=300) == 0, (env.tmp / "second.log").read_text()[-3000:]
    done = progress(env)
    assert done.status is Status.DONE and done.request_id == killed.request_id
    assert done.rows_copied == n and done.chunks == math.ceil(n / chunk)
    assert env.mes("SELECT COUNT(*), MIN(id), MAX(id) FROM wide") == [(n, 1, n)]
    # the chunks' key ranges tile 1..n exactly once: the rerun started right after the kill
    ranges = sorted(
        (json.loads(keys)[0][1][0], json.loads(keys)[-1][1][0]) for (keys,) in env.mes(
            f"SELECT sample_keys FROM {env.config.state_prefix}audit WHERE outcome = 'backfill'"))
    assert len(ranges) == done.chunks
    assert ranges[0][0] == 1 and ranges[-1][1] == n
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    first_after_kill = next(r for r in ranges if r[0] > killed.last_key[0])
    assert first_after_kill[0] == killed.last_key[0] + 1
    verify_clean(env)


def _chunks(env: BridgeEnv) -> int:
    try:
        return progress(env).chunks
    except Exception:  # noqa: BLE001 - the request may not be registered yet
        return 0


# --- CLI --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_cli_watches_a_running_daemon_and_prints_a_summary(wide_env) -> None:
    """With a daemon streaming, `backfill` registers, the daemon copies, the CLI reports."""
    env = wide_env("mes_to_crm")
    fill_mes(env, 1, 5000)
    start_daemon(env)
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli_load", "backfill", "--config", str(env.config_path),
         "--chunk-rows", "1000"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "backfill summary" in proc.stdout and "public.wide" in proc.stdout
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "backfill_progress" for e in lines)  # no terminal: log lines
    assert not any(e["event"] == "backfill_running_daemon_in_process" for e in lines)
    assert env.crm("SELECT count(*) FROM wide") == [(5000,)]
    env.stop()


@pytest.mark.integration
def test_backfill_both_table_needs_from_and_existing_rows_follow_the_rule(
        pg_server, mariadb_server, tmp_path) -> None:
    """A `both` table: rows present on both sides go through the conflict rule (here the
    CRM wins), rows only on the source are inserted, dead letters are counted."""
    crm = ["CREATE TABLE t (id int PRIMARY KEY, v text, at timestamptz)",
           "ALTER TABLE t REPLICA IDENTITY FULL"]
    mes = ["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), at DATETIME(3)) DEFAULT CHARSET=utf8mb4"]
    tables = [{"crm": "public.t", "mes": "t", "direction": "both", "key": ["id"],
               "columns": {"id": "id", "v": "v", "at": "at"}, "conflict": {"rule": "crm_wins"}}]
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, crm, mes, tables=tables)
    try:
        env.crm("INSERT INTO t VALUES (1, 'crm', NULL), (2, 'same', NULL), (3, 'new', NULL), "
                "(4, 'bad', '2024-01-01 00:00:00.123456+00')")
        env.mes("INSERT INTO t VALUES (1, 'mes', NULL), (2, 'same', NULL), (5, 'mes only', NULL)")
        with pytest.raises(BackfillError, match="--from"):
            plan(env.config, None, None)
        env.setup()
        out = backfill(env, Side.CRM)
        assert out.ok
        req = progress(env, "public.t", "crm_to_mes")
        assert (req.rows_copied, req.dead_letters, req.conflicts) == (3, 1, 1)
        assert env.mes("SELECT id, v FROM t ORDER BY id") == [
            (1, "crm"), (2, "same"), (3, "new"), (5, "mes only")]
        dl = env.mes(f"SELECT op, reason FROM {env.config.state_prefix}dead_letters")
        assert len(dl) == 1 and "microseconds" in dl[0][1]
        conflicts = env.mes(f"SELECT conflict_type, winner FROM {env.config.state_prefix}conflicts")
        assert conflicts == [("insert_exists", "crm")]
    finally:
        env.close()


# --- the fast paths ---------------------------------------------------------------------------


@pytest.mark.integration
def test_mysql_chunk_reads_match_pymysql(pg_server, mariadb_server, tmp_path) -> None:
    """The chunk reader's own row parsing and date decoders return what PyMySQL returns, for
    NULLs, values of 251+ and 65536+ bytes (2- and 3-byte lengths), zero dates, DECIMAL,
    DATETIME(3), JSON, BIT and ENUM."""
    import pymysql

    from bridge.backfill.source import MysqlChunkSource, ReadPlan

    mes = ["""CREATE TABLE r (id INT PRIMARY KEY, t MEDIUMTEXT, d DATE, dt DATETIME(3),
              n DECIMAL(30,10), j JSON, b BIT(5), e ENUM('x','y'), f DOUBLE, u BIGINT UNSIGNED)
              DEFAULT CHARSET=utf8mb4"""]
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, ["CREATE TABLE r (id int PRIMARY KEY)"],
                    mes, tables=[{"crm": "public.r", "mes": "r", "direction": "mes_to_crm",
                                  "key": ["id"], "columns": {"id": "id"}}])
    try:
        rows = [(1, "a" * 300, "2024-02-29", "2024-01-01 10:00:00.123", "-12345.0000000001",
                 '{"a": [1, 2.50]}', 5, "y", 1e300, 2**64 - 1),
                (2, "é" * 40_000, None, None, None, None, None, None, None, None),
                (3, "", "1000-01-01", "9999-12-31 23:59:59.999", "0", "null", 0, "x", -0.0, 0)]
        for r in rows:
            env.mes("INSERT INTO r VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", r)
        c = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root",
                            database=env.mes_db, autocommit=True, charset="utf8mb4",
                            sql_mode="", init_command="SET time_zone='+00:00'")
        with c.cursor() as cur:
            cur.execute("INSERT INTO r (id, d, dt) VALUES (4, '0000-00-00', '0000-00-00 00:00:00')")
        c.close()
        src = MysqlChunkSource(env.config)
        try:
            info = src.table_info(f"{env.mes_db}.r")
            cols = ("id", "t", "d", "dt", "n", "j", "b", "e", "f", "u")
            plan_ = ReadPlan(f"{env.mes_db}.r", cols, ("id",), tuple(info.columns[c] for c in cols))
            got = src.read_chunk(plan_, None, False, None, 10, [(2,), (4,)])
            plain = src._fix(plan_, src._query(f"SELECT {', '.join(cols)} FROM r ORDER BY id"))
        finally:
            src.close()
        assert got.range_rows == 4
        want = plain + [plain[1], plain[3]]
        assert got.rows == want
        assert [[type(v) for v in r] for r in got.rows] == [[type(v) for v in r] for r in want]
        assert isinstance(got.rows[3][2], InvalidValue) and got.rows[1][1] == "é" * 40_000
    finally:
        env.close()


_UNIQUE_CRM = ["CREATE TABLE u (id int PRIMARY KEY, code text UNIQUE, v text)",
               "ALTER TABLE u REPLICA IDENTITY FULL"]
_UNIQUE_MES = ["CREATE TABLE u (id INT PRIMARY KEY, code VARCHAR(20) UNIQUE, v VARCHAR(20)) "
               "DEFAULT CHARSET=utf8mb4"]


@pytest.mark.integration
@pytest.mark.parametrize("source", [Side.CRM, Side.MES], ids=["crm_to_mes", "mes_to_crm"])
def test_bulk_insert_into_an_empty_key_range_falls_back_on_a_unique_collision(
        pg_server, mariadb_server, tmp_path, source: Side) -> None:
    """A chunk whose key range the target does not hold is written in one bulk insert; when
    that insert meets another unique value (here `code`, held by a target row outside the
    range) nothing of it stays: the general path inserts the other rows and dead-letters
    the colliding one. A later chunk whose range holds a target row goes through the
    conflict rule (the chunk wins, one-way table)."""
    direction = f"{source.value}_to_{source.other.value}"
    tables = [{"crm": "public.u", "mes": "u", "direction": direction, "key": ["id"],
               "columns": {"id": "id", "code": "code", "v": "v"}}]
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, _UNIQUE_CRM, _UNIQUE_MES, tables=tables)
    src_sql, tgt_sql = (env.crm, env.mes) if source is Side.CRM else (env.mes, env.crm)
    try:
        for i in range(1, 21):
            src_sql("INSERT INTO u VALUES (%s, %s, %s)", (i, f"c{i}", "src"))
        tgt_sql("INSERT INTO u VALUES (100, 'c5', 'tgt')")  # outside chunk 1..10, same code as 5
        tgt_sql("INSERT INTO u VALUES (15, 'c15', 'old')")  # inside chunk 11..20
        out = backfill(env, source, chunk_rows=10)
        assert out.ok, out.errors
        req = progress(env, "public.u", direction)
        assert (req.rows_copied, req.dead_letters, req.chunks) == (19, 1, 2)
        got = [tuple(r) for r in tgt_sql("SELECT id, code, v FROM u ORDER BY id")]
        want = [(i, f"c{i}", "src") for i in range(1, 21) if i != 5] + [(100, "c5", "tgt")]
        assert got == want
        prefix = env.config.state_prefix if source is Side.CRM else f"{env.config.state_schema}."
        dl = tgt_sql(f"SELECT row_key FROM {prefix}dead_letters")
        assert len(dl) == 1 and '5' in str(dl[0][0])
    finally:
        env.close()


@pytest.mark.integration
def test_mes_json_is_trusted_but_postgresql_still_refuses_invalid_json(
        pg_server, mariadb_server, tmp_path) -> None:
    """MES JSON columns are validated by the MES, so the backfill does not parse them again;
    a value that escaped the MES check (written with `check_constraint_checks` off) is
    refused by PostgreSQL's JSON input and only that row is dead-lettered, in the bulk path
    and in the general path alike."""
    import pymysql

    tables = [{"crm": "public.j", "mes": "j", "direction": "mes_to_crm", "key": ["id"],
               "columns": {"id": "id", "doc": "doc"}}]
    env = BridgeEnv(pg_server, mariadb_server, tmp_path,
                    ["CREATE TABLE j (id int PRIMARY KEY, doc jsonb)",
                     "ALTER TABLE j REPLICA IDENTITY FULL"],
                    ["CREATE TABLE j (id INT PRIMARY KEY, doc JSON) DEFAULT CHARSET=utf8mb4"],
                    tables=tables)
    try:
        for i in range(1, 21):
            env.mes("INSERT INTO j VALUES (%s, %s)", (i, f'{{"n": {i}, "s": "x{i}"}}'))
        c = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root",
                            database=env.mes_db, autocommit=True, charset="utf8mb4")
        with c.cursor() as cur:
            cur.execute("SET SESSION check_constraint_checks = 0")
            cur.execute("INSERT INTO j VALUES (7, '{oops')"
                        " ON DUPLICATE KEY UPDATE doc = VALUES(doc)")
            cur.execute("INSERT INTO j VALUES (16, '[1, 2')"
                        " ON DUPLICATE KEY UPDATE doc = VALUES(doc)")
        c.close()
        env.crm("INSERT INTO j VALUES (12, '{\"old\": true}')")  # chunk 11..20: general path
        out = backfill(env, Side.MES, chunk_rows=10)
        assert out.ok, out.errors
        got = {r[0]: r[1] for r in env.crm("SELECT id, doc FROM j ORDER BY id")}
        assert sorted(got) == [i for i in range(1, 21) if i not in (7, 16)]
        assert got[3] == {"n": 3, "s": "x3"} and got[19] == {"n": 19, "s": "x19"}
        dl = env.crm(f"SELECT row_key, reason FROM {env.config.state_schema}.dead_letters "
                     "ORDER BY row_key::text")
        assert [str(r[0]) for r in dl] == ["{'id': 16}", "{'id': 7}"]
        assert all("json" in r[1].lower() for r in dl), dl
    finally:
        env.close()
