"""A 200,000-row source transaction, each direction, through the bridge run as a process:
every row arrives, atomically (the target shows 0 or all of them, never part), while the
bridge's resident memory stays bounded. Prints the peak RSS and the time taken, and writes
them to big_transaction_<direction>.json in the test's tmp dir."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import psutil
import pytest

from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000
RSS_LIMIT_MB = 300
CRM_BASE, MES_BASE = 0, 10_000_000  # each side writes its own key range of the one table

CRM_SCHEMA = [
    "CREATE TABLE big (id bigint PRIMARY KEY, v integer NOT NULL, note text NOT NULL)",
    "ALTER TABLE big REPLICA IDENTITY FULL",
]
MES_SCHEMA = ["CREATE TABLE big (id BIGINT PRIMARY KEY, v INT NOT NULL, note VARCHAR(100) NOT NULL)"]
TABLES = [{"crm": "public.big", "mes": "big", "direction": "both", "key": ["id"],
           "columns": {"id": "id", "v": "v", "note": "note"}}]


class Sampler:
    """Samples the bridge's RSS (every 20 ms) and, in another thread, the target's row count
    of the source's key range (as often as the count query allows)."""

    def __init__(self, pid: int, count: Callable[[], int]):
        self.proc = psutil.Process(pid)
        self.count = count
        self.rss: list[int] = []
        self.counts: set[int] = set()
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._loop, args=(f, w), daemon=True)
                        for f, w in ((self._sample_rss, 0.02), (self._sample_count, 0.0))]

    def _sample_rss(self) -> None:
        self.rss.append(self.proc.memory_info().rss)

    def _sample_count(self) -> None:
        self.counts.add(self.count())

    def _loop(self, sample: Callable[[], None], wait: float) -> None:
        try:
            while not self.done.is_set():
                sample()
                self.done.wait(wait)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(exc)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(10)
        assert not self.errors, f"sampling failed: {self.errors!r}"


def summary(rows: list[tuple]) -> tuple:
    return tuple(int(x) for x in rows[0])


SUMMARY = "SELECT count(*), COALESCE(sum(id), 0), COALESCE(sum(v), 0), COALESCE(sum(length(note)), 0) FROM big"


@pytest.mark.parametrize("direction", ["crm_to_mes", "mes_to_crm"])
def test_200k_row_transaction(pg_server, mariadb_server, tmp_path, direction):
    """A 200k-row transaction arrives whole and at once, with bounded bridge memory."""
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_SCHEMA, MES_SCHEMA, tables=TABLES)
    try:
        env.setup()
        proc = env.start_process()
        # streaming both ways: a row from each side has arrived on the other
        env.crm("INSERT INTO big VALUES (-1, 0, 'probe')")
        env.mes("INSERT INTO big VALUES (-2, 0, 'probe')")
        wait_until(lambda: env.mes("SELECT count(*) FROM big WHERE id = -1") == [(1,)]
                   and env.crm("SELECT count(*) FROM big WHERE id = -2") == [(1,)],
                   timeout=60, what="the bridge streaming both ways")
        base_rss = psutil.Process(proc.pid).memory_info().rss

        lo, target = (CRM_BASE, env.mes) if direction == "crm_to_mes" else (MES_BASE, env.crm)
        where = f"WHERE id > {lo} AND id <= {lo + ROWS}"
        sampler = Sampler(proc.pid, lambda: target(f"SELECT count(*) FROM big {where}")[0][0])
        sampler.start()
        started = time.monotonic()
        if direction == "crm_to_mes":
            env.crm(f"INSERT INTO big SELECT {lo} + g, g % 1000, 'row ' || g "
                    f"FROM generate_series(1, {ROWS}) g")
        else:
            env.mes(f"INSERT INTO big SELECT {lo} + seq, seq % 1000, CONCAT('row ', seq) "
                    f"FROM seq_1_to_{ROWS}")
        committed = time.monotonic()
        wait_until(lambda: ROWS in sampler.counts or sampler.errors, timeout=240, interval=0.2,
                   what=f"{ROWS} rows on the target")
        arrived = time.monotonic()
        sampler.stop()

        peak_mb = max(sampler.rss) / 2**20
        figures = {
            "direction": direction, "rows": ROWS,
            "seconds_after_commit": round(arrived - committed, 1),
            "seconds_including_source_write": round(arrived - started, 1),
            "rows_per_second": round(ROWS / (arrived - committed)),
            "rss_before_mb": round(base_rss / 2**20, 1), "peak_rss_mb": round(peak_mb, 1),
            "rss_samples": len(sampler.rss), "target_counts_seen": sorted(sampler.counts),
        }
        print(f"\nbig transaction {direction}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        (tmp_path / f"big_transaction_{direction}.json").write_text(json.dumps(figures, indent=2))

        partial = sorted(c for c in sampler.counts if 0 < c < ROWS)
        assert not partial, f"the target showed a partial transaction: {partial[:10]} rows"
        assert peak_mb < RSS_LIMIT_MB, f"bridge peak RSS {peak_mb:.0f} MB"
        crm = summary(env.crm(f"{SUMMARY} {where}"))
        mes = summary(env.mes(f"{SUMMARY} {where}"))
        assert crm == mes and crm[0] == ROWS
        assert proc.poll() is None, "the bridge exited"
        env.wait_running()
        assert env.term_process() == 0
    finally:
        env.close()
