"""Streaming throughput of one direction, drained from a backlog.

Method (one run = one direction, one table, one transaction size, one workload):
1. fresh databases; `setup` creates the slot and records the MES start position, so every
   later change is the bridge's to stream; a second slot is created for the read limit;
2. the source load is committed while the bridge is stopped (a backlog), then a one-row
   sentinel transaction;
3. read limit: the change stream decoded alone (bench.limits);
4. the bridge process starts; the clock runs from the moment the direction logs
   `streaming` (its reader is about to connect) until the sentinel row is visible on the
   target (polled every 20 ms). rows/s = rows in the backlog / that time;
5. write limit: the same rows bulk-written into a scratch copy of the target table.
The bridge's peak RSS and its CPU time over the drain are sampled with psutil.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import limits, load
from bench import rows as R
from bench.env import CpuMeter, Env, Servers
from bench.schema import Table

DIRECTIONS = {"crm_to_mes": ("crm", "mes"), "mes_to_crm": ("mes", "crm")}


@dataclass
class StreamResult:
    figure: str
    direction: str
    table: str
    workload: str
    tx_rows: int
    rows: int
    seconds: float
    rows_per_s: float
    read_limit: float
    write_limit: float
    pct_of_limit: float
    peak_rss_mb: float
    bridge_cpu_pct: float
    bridge_cpu_us_per_row: float  # bridge CPU time (all threads) per row: robust to noise
    other_cores: float  # cores used by processes outside the suite during the drain

    def to_dict(self) -> dict:
        return asdict(self)


def run(servers: Servers, workdir: Path, direction: str, table: Table, tx_rows: int, rows: int,
        seed: int, workload: str = "insert", profile: Path | None = None,
        apply: dict | None = None) -> StreamResult:
    source, target = DIRECTIONS[direction]
    env = Env(servers, workdir, tables=(table,), apply=apply)
    try:
        base: list[tuple] = []
        if workload == "update":
            base = load.base_rows(env, table, rows, seed)
        env.setup()
        slot = limits.create_read_slot(env) if source == "crm" else None
        if workload == "insert":
            n = load.insert(env, source, table, R.generate(table, 1, rows, seed), tx_rows)
        else:
            n = load.update(env, source, table, base, tx_rows, seed)
        load.sentinel(env, source, table, seed)
        n += 1

        read_n, read_s = limits.read(env, source, table, slot)
        if read_n != n:
            raise RuntimeError(f"read limit saw {read_n} row changes, expected {n}")

        bridge = env.bridge(profile)
        try:
            t0 = bridge.wait_streaming(direction)
            cpu0 = bridge.rss.cpu_seconds()
            meter = CpuMeter()
            t1 = load.wait_sentinel(env, target, table, timeout=max(120.0, n / 500),
                                    alive=bridge.check_alive)
            cpu1 = bridge.rss.cpu_seconds()
            other = meter.stop()["other_cores"]
        finally:
            peak = bridge.stop()
        seconds = t1 - t0
        _check_target(env, target, table, workload, rows)

        if workload == "insert":
            all_rows = list(R.generate(table, 1, rows, seed)) + list(
                R.generate(table, load.SENTINEL, 1, seed))
            write_s = limits.write_insert(env, target, table, all_rows)
        else:
            rng = random.Random(f"{seed}:update:{table.name}")
            new = [R.updated(table, r, rng) for r in base]
            write_s = limits.write_update(env, target, table, base, new)
        bridge_rps, read_rps, write_rps = n / seconds, n / read_s, n / write_s
        return StreamResult(
            figure="streaming", direction=direction, table=table.name.removeprefix("bench_"),
            workload=workload, tx_rows=tx_rows, rows=n, seconds=round(seconds, 3),
            rows_per_s=round(bridge_rps), read_limit=round(read_rps), write_limit=round(write_rps),
            pct_of_limit=round(100 * bridge_rps / min(read_rps, write_rps), 1),
            peak_rss_mb=round(peak / 2**20, 1),
            bridge_cpu_pct=round(100 * (cpu1 - cpu0) / seconds, 1),
            bridge_cpu_us_per_row=round(1e6 * (cpu1 - cpu0) / n, 1), other_cores=other,
        )
    finally:
        env.drop()


def _check_target(env: Env, target: str, table: Table, workload: str, rows: int) -> None:
    """The drain is only a figure if every row arrived."""
    q = f"SELECT count(*) FROM {table.name}"
    if target == "mes":
        conn = env.mes(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(q)
                count = cur.fetchone()[0]
        finally:
            conn.close()
    else:
        with env.crm(autocommit=True) as c:
            count = c.execute(q).fetchone()[0]
    if count != rows + 1:
        raise RuntimeError(f"{table.name} on the {target} holds {count} rows, expected {rows + 1}")
