"""Resilience against real servers: no echo under concurrent bursts, kill -9 of the bridge,
server restarts (fast and crash) during a stream, and SIGTERM followed by a resume.

Writers remember every transaction they commit (its id as the bridge reports it, and the rows
it leaves behind), so each test compares both sides with what was really written, and the
audit tables with the transactions really committed on the other side."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

import psycopg
import pymysql
import pytest

from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = pytest.mark.integration

CRM_SCHEMA = [
    "CREATE TABLE items (id bigint PRIMARY KEY, v integer NOT NULL, note text)",
    "CREATE TABLE crm_only (id bigint PRIMARY KEY, v integer NOT NULL)",
    "CREATE TABLE mes_only (id bigint PRIMARY KEY, v integer NOT NULL)",
    "ALTER TABLE items REPLICA IDENTITY FULL",
    "ALTER TABLE crm_only REPLICA IDENTITY FULL",
    "ALTER TABLE mes_only REPLICA IDENTITY FULL",
]
MES_SCHEMA = [
    "CREATE TABLE items (id BIGINT PRIMARY KEY, v INT NOT NULL, note TEXT) ENGINE=InnoDB",
    "CREATE TABLE crm_only (id BIGINT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE mes_only (id BIGINT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
]
TABLES = [
    {"crm": "public.items", "mes": "items", "direction": "both", "key": ["id"],
     "columns": {"id": "id", "v": "v", "note": "note"}},
    {"crm": "public.crm_only", "mes": "crm_only", "direction": "crm_to_mes", "key": ["id"],
     "columns": {"id": "id", "v": "v"}},
    {"crm": "public.mes_only", "mes": "mes_only", "direction": "mes_to_crm", "key": ["id"],
     "columns": {"id": "id", "v": "v"}},
]
COLUMNS = {"items": "id, v, note", "crm_only": "id, v", "mes_only": "id, v"}
OWN_TABLE = {"crm": "crm_only", "mes": "mes_only"}  # the one-way table each side writes


# --- writers ---------------------------------------------------------------------------------
def _connect(env: BridgeEnv, side: str):
    if side == "crm":
        return psycopg.connect(env.pg.dsn(env.crm_db), autocommit=False, connect_timeout=10)
    return pymysql.connect(host="127.0.0.1", port=env.my.port, user="root", database=env.mes_db,
                           autocommit=False, charset="utf8mb4", connect_timeout=10)


def run_tx(conn, side: str, statements: list[tuple[str, list[tuple]]]) -> str:
    """Commit `statements` (sql, rows for executemany) as one transaction; return its id as
    the bridge's audit reports it (PostgreSQL xid, MariaDB GTID)."""
    cur = conn.cursor()
    if side == "crm":
        cur.execute("SELECT pg_current_xact_id()::text")
        xid = cur.fetchone()[0]
    for sql, rows in statements:
        if rows:
            cur.executemany(sql, rows)
    conn.commit()
    if side == "mes":
        cur.execute("SELECT @@last_gtid")
        xid = cur.fetchone()[0]
        conn.commit()
    cur.close()
    return xid


def latest_deadlock(env: BridgeEnv) -> str:
    """InnoDB's account of the latest deadlock (who held and who waited for which lock)."""
    status = env.mes("SHOW ENGINE INNODB STATUS")[0][2]
    start = status.find("LATEST DETECTED DEADLOCK")
    return status[start:status.find("TRANSACTIONS\n", start)] if start >= 0 else "(none recorded)"


class Writer(threading.Thread):
    """Commits random transactions (inserts, updates, deletes) on one side, on its own key
    range, and remembers the ids of the committed transactions and the rows they left.

    It does not retry a deadlock: on disjoint keys the bridge must never deadlock it."""

    def __init__(self, env: BridgeEnv, side: str, base: int, *, seed: int,
                 sizes: tuple[int, int] = (1, 5), pause: float = 0.0, min_rows: int = 0):
        super().__init__(daemon=True, name=f"writer-{side}-{base}")
        self.env, self.side, self.next_id = env, side, base
        self.rng = random.Random(seed)
        self.sizes, self.pause, self.min_rows = sizes, pause, min_rows
        self.expected: dict[str, dict[int, tuple]] = {"items": {}, OWN_TABLE[side]: {}}
        self.live: list[int] = []  # own item ids that exist
        self.xids: list[str] = []
        self.rows = 0
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._hold = threading.Event()
        self._held = threading.Event()

    def run(self) -> None:
        conn = None
        try:
            conn = _connect(self.env, self.side)
            while not self.stop_event.is_set() or self.rows < self.min_rows:
                if self._hold.is_set():
                    conn.close()
                    self._held.set()
                    while self._hold.is_set():
                        time.sleep(0.02)
                    conn = _connect(self.env, self.side)
                self._one(conn)
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by finish() and committed_rows
            if self.side == "mes" and getattr(exc, "args", (None,))[0] == 1213:
                exc = AssertionError(f"{exc!r}\n{latest_deadlock(self.env)}")
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def _one(self, conn) -> None:
        n = self.rng.randint(*self.sizes)
        live = self.live
        n_del = min(len(live), sum(self.rng.random() < 0.1 for _ in range(n)))
        n_upd = min(len(live) - n_del, sum(self.rng.random() < 0.3 for _ in range(n - n_del)))
        touched = self.rng.sample(live, n_del + n_upd)
        deletes, updates = touched[:n_del], touched[n_del:]
        inserts = list(range(self.next_id, self.next_id + n - n_del - n_upd))
        items = self.expected["items"]
        new_rows = {i: (i, self.rng.randint(0, 10**6), f"{self.side}-{i}") for i in inserts}
        upd_rows = {i: (i, items[i][1] + 1, f"{self.side}-{i}-u{self.rng.randint(0, 999)}")
                    for i in updates}
        own = OWN_TABLE[self.side]
        extra = {self.next_id: (self.next_id, self.rng.randint(0, 99))} if self.rng.random() < 0.3 else {}
        p = "%s"
        xid = run_tx(conn, self.side, [
            (f"INSERT INTO items (id, v, note) VALUES ({p}, {p}, {p})", list(new_rows.values())),
            (f"UPDATE items SET v = {p}, note = {p} WHERE id = {p}",
             [(r[1], r[2], i) for i, r in upd_rows.items()]),
            (f"DELETE FROM items WHERE id = {p}", [(i,) for i in deletes]),
            (f"INSERT INTO {own} (id, v) VALUES ({p}, {p})", list(extra.values())),
        ])
        # committed: remember it
        self.next_id += max(len(inserts), 1)
        items.update(new_rows)
        items.update(upd_rows)
        for i in deletes:
            del items[i]
        self.expected[own].update(extra)
        dead = set(deletes)
        self.live = [i for i in live if i not in dead] + inserts
        self.xids.append(xid)
        self.rows += n + len(extra)

    @property
    def committed_rows(self) -> int:
        """Rows committed so far; raises if the writer failed (so waits end at once)."""
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error
        return self.rows

    def hold(self, timeout: float = 30) -> None:
        """Stop between two transactions and close the connection until `release`."""
        self._hold.set()
        if not self._held.wait(timeout):
            raise AssertionError(f"{self.name} did not pause (error: {self.error!r})")

    def release(self) -> None:
        self._held.clear()
        self._hold.clear()

    def finish(self, timeout: float = 120) -> None:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not finish"
        assert self.error is None, f"{self.name} failed: {self.error!r}"


# --- comparisons -------------------------------------------------------------------------------
def side_rows(env: BridgeEnv, side: str, table: str) -> list[tuple]:
    sql = f"SELECT {COLUMNS[table]} FROM {table} ORDER BY id"
    return [tuple(r) for r in (env.crm(sql) if side == "crm" else env.mes(sql))]


def expected_rows(writers: list[Writer], extra: dict[str, dict[int, tuple]] | None = None
                  ) -> dict[str, list[tuple]]:
    out: dict[str, dict[int, tuple]] = {t: {} for t in COLUMNS}
    for w in writers:
        for table, rows in w.expected.items():
            out[table].update(rows)
    for table, rows in (extra or {}).items():
        out[table].update(rows)
    return {t: [rows[k] for k in sorted(rows)] for t, rows in out.items()}


def converged(env: BridgeEnv, expected: dict[str, list[tuple]]) -> bool:
    return all(side_rows(env, side, t) == rows for t, rows in expected.items() for side in ("crm", "mes"))


def applied_on(env: BridgeEnv, target: str) -> list[tuple[str, str]]:
    """(source_xid, source_position) of every source transaction applied on `target`."""
    if target == "mes":
        return [tuple(r) for r in env.mes(
            f"SELECT source_xid, source_position FROM {env.config.state_prefix}audit "
            "WHERE direction = 'crm_to_mes'")]
    return [tuple(r) for r in env.crm(
        f"SELECT source_xid, source_position FROM {env.config.state_schema}.audit "
        "WHERE direction = 'mes_to_crm'")]


def assert_applied_exactly(env: BridgeEnv, target: str, committed: list[str]) -> None:
    """The audit of `target` holds each transaction committed on the other side once."""
    applied = applied_on(env, target)
    xids = [x for x, _ in applied]
    positions = [p for _, p in applied]
    twice = sorted({x for x in xids if xids.count(x) > 1})
    assert not twice, f"applied twice on {target}: {twice[:10]}"
    assert len(set(positions)) == len(positions), f"a source position applied twice on {target}"
    missing = set(committed) - set(xids)
    echo_or_foreign = set(xids) - set(committed)
    assert not missing, f"{len(missing)} committed transactions never applied on {target}"
    assert not echo_or_foreign, f"{len(echo_or_foreign)} applied on {target} were never committed " \
                                f"on the other side (echo?): {sorted(echo_or_foreign)[:10]}"
    assert len(xids) == len(committed)


def log_events(env: BridgeEnv) -> list[dict]:
    out = []
    for line in env.log_path.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def waits_logged(env: BridgeEnv) -> list[dict]:
    return [e for e in log_events(env) if e.get("event") == "waiting_for_server"]


def probe(env: BridgeEnv, side: str, ident: int) -> tuple[str, tuple]:
    """Commit one row into the side's one-way table; returns (xid, row)."""
    conn = _connect(env, side)
    try:
        row = (ident, 7)
        return run_tx(conn, side, [(f"INSERT INTO {OWN_TABLE[side]} (id, v) VALUES (%s, %s)", [row])]), row
    finally:
        conn.close()


def new_env(pg, my, tmp_path) -> BridgeEnv:
    return BridgeEnv(pg, my, tmp_path, CRM_SCHEMA, MES_SCHEMA, tables=TABLES)


def report(tmp_path, name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    (tmp_path / f"{name}.json").write_text(json.dumps(figures, indent=2))


# --- tests -------------------------------------------------------------------------------------
def test_no_echo_under_concurrent_bursts(pg_server, mariadb_server, tmp_path):
    """Concurrent bursts of small transactions on both sides each arrive once and never echo."""
    env = new_env(pg_server, mariadb_server, tmp_path)
    try:
        env.start()
        writers = [Writer(env, "crm", 1_000_000, seed=1), Writer(env, "crm", 2_000_000, seed=2),
                   Writer(env, "mes", 11_000_000, seed=3), Writer(env, "mes", 12_000_000, seed=4)]
        for w in writers:
            w.start()
        time.sleep(2.0)  # the burst
        for w in writers:
            w.finish()
        crm_xids = [x for w in writers if w.side == "crm" for x in w.xids]
        mes_xids = [x for w in writers if w.side == "mes" for x in w.xids]
        assert len(crm_xids) > 50 and len(mes_xids) > 50, "the burst committed too little to prove much"
        expected = expected_rows(writers)
        wait_until(lambda: converged(env, expected), timeout=90, what="both sides equal the writes")

        # A last transaction on each side, written after every bridged apply: once it arrived,
        # any echo of an earlier apply would have arrived before it.
        sentinels: dict[str, dict[int, tuple]] = {"crm_only": {}, "mes_only": {}}
        for side, xids in (("crm", crm_xids), ("mes", mes_xids)):
            xid, row = probe(env, side, 99_000_000 + len(xids))
            xids.append(xid)
            sentinels[OWN_TABLE[side]][row[0]] = row
        expected = expected_rows(writers, sentinels)
        wait_until(lambda: converged(env, expected), timeout=60, what="sentinels on both sides")

        assert_applied_exactly(env, "mes", crm_xids)
        assert_applied_exactly(env, "crm", mes_xids)
        print(f"\nbursts: {len(crm_xids)} CRM and {len(mes_xids)} MES transactions, "
              f"{sum(w.rows for w in writers)} rows")
        env.stop()
    finally:
        env.close()


def test_apply_does_not_wait_for_unrelated_rows(pg_server, mariadb_server, tmp_path):
    """While an application transaction holds one MES row, CRM rows with other keys still arrive."""
    env = new_env(pg_server, mariadb_server, tmp_path)
    try:
        env.start()
        env.mes("INSERT INTO items VALUES (11000000, 1, 'held by the application')")
        wait_until(lambda: env.crm("SELECT count(*) FROM items") == [(1,)], what="the MES row on the CRM")
        app = _connect(env, "mes")
        try:
            with app.cursor() as cur:
                cur.execute("SELECT * FROM items WHERE id = 11000000 FOR UPDATE")  # held, not committed
                env.crm("INSERT INTO items SELECT g, g, 'crm' FROM generate_series(1, 600) g")
                wait_until(lambda: env.mes("SELECT count(*) FROM items WHERE id <= 600") == [(600,)],
                           timeout=20, what="CRM rows applied beside the held MES row")
                assert env.mes("SELECT count(*) FROM items WHERE id <= 600") == [(600,)]
        finally:
            app.rollback()
            app.close()
        env.stop()
    finally:
        env.close()


@pytest.mark.slow
def test_kill_9_loses_and_duplicates_nothing(pg_server, mariadb_server, tmp_path):
    """SIGKILLed at random instants and restarted, the bridge ends with both sides identical."""
    env = new_env(pg_server, mariadb_server, tmp_path)
    try:
        env.setup()  # slot and MES start position exist before the first write
        writers = [Writer(env, "crm", 1_000_000, seed=11, sizes=(1, 500), pause=0.02, min_rows=10_000),
                   Writer(env, "mes", 11_000_000, seed=12, sizes=(1, 500), pause=0.02, min_rows=10_000)]
        started = time.monotonic()
        env.start_process()
        for w in writers:
            w.start()
        seed = int(os.environ.get("BRIDGE_KILL_SEED", time.time_ns() % 10**6))
        print(f"\nkill instants from seed {seed} (rerun with BRIDGE_KILL_SEED={seed})")
        rng = random.Random(seed)
        kills = 0
        for _ in range(6):
            time.sleep(rng.uniform(0.2, 2.0))  # a random instant, not an assertion
            env.kill_process()
            kills += 1
            env.start_process()
        for w in writers:
            w.finish(timeout=180)
        writes_done = time.monotonic()
        expected = expected_rows(writers)
        wait_until(lambda: converged(env, expected), timeout=180, interval=0.5,
                   what="both sides equal the writes after the kills")
        caught_up = time.monotonic()
        assert env.proc is not None and env.proc.poll() is None, "the bridge died by itself"
        env.wait_running()
        assert env.term_process() == 0

        crm_w, mes_w = writers
        assert_applied_exactly(env, "mes", crm_w.xids)
        assert_applied_exactly(env, "crm", mes_w.xids)
        for table, rows in expected.items():
            assert len(side_rows(env, "crm", table)) == len(side_rows(env, "mes", table)) == len(rows)
        rows = sum(w.rows for w in writers)
        report(tmp_path, "kill9", {
            "kills": kills, "seed": seed, "rows_crm_to_mes": crm_w.rows, "rows_mes_to_crm": mes_w.rows,
            "transactions": len(crm_w.xids) + len(mes_w.xids),
            "seconds": round(caught_up - started, 1),
            "catch_up_seconds": round(caught_up - writes_done, 1),
            "rows_per_second": round(rows / (caught_up - started)),
        })
        assert crm_w.rows >= 10_000 and mes_w.rows >= 10_000
    finally:
        env.close()


def test_sigterm_exits_zero_and_resumes(pg_server, mariadb_server, tmp_path):
    """SIGTERM mid-stream exits 0; a restart resumes without loss or duplicates."""
    env = new_env(pg_server, mariadb_server, tmp_path)
    try:
        env.setup()
        writers = [Writer(env, "crm", 1_000_000, seed=21, sizes=(1, 200), pause=0.05),
                   Writer(env, "mes", 11_000_000, seed=22, sizes=(1, 200), pause=0.05)]
        env.start_process()
        for w in writers:
            w.start()
        wait_until(lambda: env.mes("SELECT count(*) FROM items WHERE id < 10000000")[0][0] > 500
                   and env.crm("SELECT count(*) FROM items WHERE id >= 10000000")[0][0] > 500,
                   timeout=60, what="rows flowing both ways")
        t = time.monotonic()
        env.wait_running()
        assert env.term_process(timeout=30) == 0
        stop_seconds = time.monotonic() - t
        assert any(e.get("event") == "bridge_stopped" for e in log_events(env))
        # the writers go on while the bridge is down
        marks = [w.committed_rows for w in writers]
        wait_until(lambda: all(w.committed_rows > m + 500 for w, m in zip(writers, marks)), timeout=60,
                   what="writes while the bridge is stopped")
        env.start_process()
        for w in writers:
            w.finish()
        expected = expected_rows(writers)
        wait_until(lambda: converged(env, expected), timeout=120, interval=0.3,
                   what="both sides equal the writes after the restart")
        env.wait_running()
        assert env.term_process(timeout=30) == 0
        assert_applied_exactly(env, "mes", writers[0].xids)
        assert_applied_exactly(env, "crm", writers[1].xids)
        print(f"\nsigterm: exited 0 after {stop_seconds:.2f}s")
    finally:
        env.close()


@pytest.mark.slow
def test_sigterm_during_a_large_transaction(pg_server, mariadb_server, tmp_path):
    """SIGTERM while a 50k-row transaction is applied exits 0; after a restart it is there once."""
    env = new_env(pg_server, mariadb_server, tmp_path)
    try:
        env.setup()
        env.start_process()
        probes: dict[str, dict[int, tuple]] = {"crm_only": {}, "mes_only": {}}
        xids: dict[str, list[str]] = {"crm": [], "mes": []}
        for side in ("crm", "mes"):
            xid, row = probe(env, side, 1)
            xids[side].append(xid)
            probes[OWN_TABLE[side]][row[0]] = row
        wait_until(lambda: converged(env, expected_rows([], probes)), what="the bridge streaming")
        conn = _connect(env, "mes")
        try:
            xids["mes"].append(run_tx(conn, "mes", [(
                ("INSERT INTO items SELECT 20000000 + seq, seq, CONCAT('big ', seq) "
                 "FROM seq_1_to_50000 WHERE seq > %s"), [(0,)])]))
        finally:
            conn.close()
        time.sleep(1.0)  # let the bridge get into the transaction (a timing, not an assertion)
        t = time.monotonic()
        env.wait_running()
        assert env.term_process(timeout=120) == 0
        stop_seconds = time.monotonic() - t
        def big() -> int:
            return env.crm("SELECT count(*) FROM items WHERE id > 20000000")[0][0]

        at_stop = big()
        assert at_stop in (0, 50_000), f"a partial transaction is on the CRM: {at_stop} rows"
        env.start_process()
        wait_until(lambda: big() == 50_000, timeout=120, what="the large transaction after restart")
        env.wait_running()
        assert env.term_process(timeout=60) == 0
        assert_applied_exactly(env, "crm", xids["mes"])
        assert_applied_exactly(env, "mes", xids["crm"])
        print(f"\nsigterm mid-transaction: exited 0 after {stop_seconds:.1f}s, "
              f"{'finished' if at_stop else 'rolled back'} the transaction in hand")
    finally:
        env.close()


# --- server restarts (own servers: they are stopped and crashed) ---------------------------------
@pytest.fixture(scope="module")
def own_servers():
    from bridge.devservers import MariaDBServer, PostgresServer

    with PostgresServer(settings={"track_commit_timestamp": "on"}) as pg, \
            MariaDBServer(server_id=7) as my:
        yield pg, my


@pytest.mark.parametrize("which,mode", [("crm", "fast"), ("crm", "immediate"),
                                        ("mes", "fast"), ("mes", "immediate")])
def test_server_restart_during_stream(own_servers, tmp_path, which, mode):
    """A server restarted during a stream: the daemon waits, says so, and resumes without loss."""
    pg, my = own_servers
    pg.start()
    my.start()
    env = new_env(pg, my, tmp_path)
    try:
        env.setup()
        crm_w = Writer(env, "crm", 1_000_000, seed=31, sizes=(1, 20), pause=0.02)
        mes_w = Writer(env, "mes", 11_000_000, seed=32, sizes=(1, 20), pause=0.02)
        writers = [crm_w, mes_w]
        env.start_process()
        for w in writers:
            w.start()
        wait_until(lambda: env.mes("SELECT count(*) FROM items WHERE id < 10000000")[0][0] > 100
                   and env.crm("SELECT count(*) FROM items WHERE id >= 10000000")[0][0] > 100,
                   timeout=60, what="rows flowing both ways")

        server, victim, other = (pg, crm_w, mes_w) if which == "crm" else (my, mes_w, crm_w)
        victim.hold()
        waits_before = len(waits_logged(env))
        t = time.monotonic()
        server.stop(mode)
        stop_seconds = time.monotonic() - t
        mark = other.committed_rows
        # while the server is down: the other side keeps writing and the daemon says it waits
        wait_until(lambda: other.committed_rows > mark + 100
                   and sum(e.get("server") == which for e in waits_logged(env)[waits_before:]) >= 2,
                   timeout=30, what=f"writes on the other side and 'waiting_for_server' {which} logged")
        assert env.proc is not None and env.proc.poll() is None, "the daemon exited"
        server.start()
        up = time.monotonic()
        victim.release()

        # recovery: a row committed on each side now reaches the other side
        probes: dict[str, dict[int, tuple]] = {"crm_only": {}, "mes_only": {}}
        extra_xids: dict[str, list[str]] = {"crm": [], "mes": []}
        for side in ("crm", "mes"):
            xid, row = probe(env, side, 99_000_001)
            extra_xids[side].append(xid)
            probes[OWN_TABLE[side]][row[0]] = row
        wait_until(lambda: env.mes("SELECT count(*) FROM crm_only WHERE id = 99000001")[0][0] == 1
                   and env.crm("SELECT count(*) FROM mes_only WHERE id = 99000001")[0][0] == 1,
                   timeout=90, what="rows written after the restart on the other side")
        recovery_seconds = time.monotonic() - up
        assert env.proc is not None and env.proc.poll() is None, "the daemon exited"

        for w in writers:
            w.finish()
        expected = expected_rows(writers, probes)
        wait_until(lambda: converged(env, expected), timeout=120, interval=0.3,
                   what="both sides equal the writes")
        assert env.proc.poll() is None, "the daemon exited"
        waits = waits_logged(env)
        env.wait_running()
        assert env.term_process(timeout=30) == 0
        assert_applied_exactly(env, "mes", crm_w.xids + extra_xids["crm"])
        assert_applied_exactly(env, "crm", mes_w.xids + extra_xids["mes"])
        report(tmp_path, f"restart_{which}_{mode}", {
            "stop_seconds": round(stop_seconds, 2), "recovery_seconds": round(recovery_seconds, 2),
            "waiting_logged": len(waits), "example": waits[0].get("error", "")[:120],
        })
        if which == "crm" and mode == "fast":
            # a fast shutdown waits for the walsender's WAL to be confirmed by the bridge
            assert stop_seconds < 3.0, f"PostgreSQL fast shutdown took {stop_seconds:.1f}s"
    finally:
        env.close()
