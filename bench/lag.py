"""End-to-end lag, source commit -> visible on the target, both directions loaded at once.

Method: the bridge runs; one paced writer per side commits `tx_rows`-row transactions into the
wide table at the offered rate (each side its own rate; CRM ids from 1, MES ids from 10^12), on
an absolute schedule so a slow commit does not lower the rate. The writer notes the wall-clock
time each COMMIT returned. One poller per target reads `max(id)` of the other side's id range
every `poll` seconds (5 ms): rows arrive in source order, so the first poll that sees a
transaction's last id is when that transaction became visible. lag = seen - committed; the
figures include up to one poll interval (mean poll/2) of detection delay. Binlog event times
have one-second resolution, so source commit times are taken on the writer side.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from psycopg import sql

from bench import rows as R
from bench.env import CpuMeter, Env, Servers
from bench.schema import WIDE, Table

MES_IDS = 10**12


@dataclass
class LagResult:
    figure: str
    direction: str
    rate: int
    achieved_rate: float
    tx_rows: int
    transactions: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    peak_rss_mb: float
    bridge_cpu_pct: float
    other_cores: float

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


class _Writer(threading.Thread):
    def __init__(self, env: Env, side: str, table: Table, rows: list[tuple], tx_rows: int,
                 rate: float, start_at: float):
        super().__init__(daemon=True)
        self.env, self.side, self.table, self.rows = env, side, table, rows
        self.tx_rows, self.interval, self.start_at = tx_rows, tx_rows / rate, start_at
        self.commits: list[tuple[int, float]] = []  # (last id, commit returned)
        self.error: BaseException | None = None
        self.finished_at = 0.0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        cols = self.table.columns
        batches = [self.rows[i:i + self.tx_rows] for i in range(0, len(self.rows), self.tx_rows)]
        if self.side == "crm":
            conn = self.env.crm()
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(self.table.name), sql.SQL(", ").join(map(sql.Identifier, cols)))

            def write(batch: list[tuple]) -> None:
                with conn.cursor() as cur, cur.copy(copy) as cp:
                    for r in batch:
                        cp.write_row(r)
                conn.commit()
        else:
            conn = self.env.mes()
            query = (f"INSERT INTO `{self.table.name}` ({', '.join(f'`{c}`' for c in cols)}) "
                     f"VALUES ({', '.join(['%s'] * len(cols))})")
            cur = conn.cursor()

            def write(batch: list[tuple]) -> None:
                conn.begin()
                cur.executemany(query, [R.for_mes(r) for r in batch])
                conn.commit()
        try:
            for i, batch in enumerate(batches):
                due = self.start_at + i * self.interval
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                write(batch)
                self.commits.append((batch[-1][0], time.time()))
        finally:
            self.finished_at = time.time()
            conn.close()


class _Poller(threading.Thread):
    """Samples max(id) of one id range on one target."""

    def __init__(self, env: Env, target: str, table: Table, lo: int, hi: int, until_id: int,
                 poll: float, deadline: float):
        super().__init__(daemon=True)
        self.env, self.target, self.table = env, target, table
        self.lo, self.hi, self.until_id, self.poll, self.deadline = lo, hi, until_id, poll, deadline
        self.times: list[float] = []
        self.max_ids: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        if self.target == "mes":
            conn = self.env.mes(autocommit=True)
            cur = conn.cursor()
            q = f"SELECT max(id) FROM `{self.table.name}` WHERE id >= {self.lo} AND id < {self.hi}"

            def sample() -> int:
                cur.execute(q)
                return cur.fetchone()[0] or 0
        else:
            conn = self.env.crm(autocommit=True)
            q = sql.SQL("SELECT max(id) FROM {} WHERE id >= %s AND id < %s").format(
                sql.Identifier(self.table.name))

            def sample() -> int:
                return conn.execute(q, (self.lo, self.hi)).fetchone()[0] or 0
        try:
            last = -1
            while time.time() < self.deadline:
                m = sample()
                now = time.time()
                if m != last:
                    self.times.append(now)
                    self.max_ids.append(m)
                    last = m
                if m >= self.until_id:
                    return
                time.sleep(self.poll)
        finally:
            conn.close()

    def seen_at(self, row_id: int) -> float | None:
        i = bisect.bisect_left(self.max_ids, row_id)
        return self.times[i] if i < len(self.times) else None


def run(servers: Servers, workdir: Path, rate: int, seconds: float, tx_rows: int, seed: int,
        poll: float = 0.005, table: Table = WIDE, profile: Path | None = None,
        load: tuple[str, ...] = ("crm_to_mes", "mes_to_crm")) -> list[LagResult]:
    """`load`: the directions that get a writer (both by default; one only to isolate it)."""
    env = Env(servers, workdir, tables=(table,))
    try:
        env.setup()
        bridge = env.bridge(profile)
        try:
            bridge.wait_streaming("crm_to_mes")
            bridge.wait_streaming("mes_to_crm")
            time.sleep(1.0)  # both readers connected and idle
            count = int(rate * seconds)
            crm_rows = list(R.generate(table, 1, count, seed))
            mes_rows = list(R.generate(table, MES_IDS + 1, count, seed + 1))
            start_at = time.time() + 0.5
            deadline = start_at + seconds + 60
            pollers = [
                _Poller(env, "mes", table, 1, MES_IDS, count, poll, deadline),
                _Poller(env, "crm", table, MES_IDS + 1, 2 * MES_IDS, MES_IDS + count, poll, deadline),
            ]
            writers = [_Writer(env, "crm", table, crm_rows, tx_rows, rate, start_at),
                       _Writer(env, "mes", table, mes_rows, tx_rows, rate, start_at)]
            active = [i for i, d in enumerate(("crm_to_mes", "mes_to_crm")) if d in load]
            writers = [writers[i] for i in active]
            pollers = [pollers[i] for i in active]
            for t in pollers:
                t.start()
            bridge.rss.reset()
            cpu0, t0 = bridge.rss.cpu_seconds(), time.time()
            meter = CpuMeter()
            for t in writers:
                t.start()
            for t in writers + pollers:
                t.join()
            cpu1, t1 = bridge.rss.cpu_seconds(), time.time()
            other = meter.stop()["other_cores"]
            bridge.check_alive()
            for t in writers + pollers:
                if t.error is not None:
                    raise t.error
        finally:
            peak = bridge.stop()
        results = []
        names = [("crm_to_mes", "mes_to_crm")[i] for i in active]
        for direction, writer, poller in zip(names, writers, pollers):
            lags = []
            for last_id, committed in writer.commits:
                seen = poller.seen_at(last_id)
                if seen is None:
                    raise RuntimeError(f"{direction}: row {last_id} never arrived")
                lags.append(max(0.0, seen - committed) * 1000)
            lags.sort()
            span = writer.finished_at - start_at
            results.append(LagResult(
                figure="lag" if len(active) == 2 else "lag_one_way", direction=direction, rate=rate,
                achieved_rate=round(len(writer.commits) * tx_rows / span) if span > 0 else 0,
                tx_rows=tx_rows, transactions=len(lags),
                p50_ms=round(_pct(lags, 50), 1), p95_ms=round(_pct(lags, 95), 1),
                p99_ms=round(_pct(lags, 99), 1), max_ms=round(lags[-1], 1),
                peak_rss_mb=round(peak / 2**20, 1),
                bridge_cpu_pct=round(100 * (cpu1 - cpu0) / (t1 - t0), 1), other_cores=other,
            ))
        return results
    finally:
        env.drop()
