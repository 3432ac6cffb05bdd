"""Peak RSS of the bridge under a large backlog (default 1M rows of the wide table).

The backlog is generated on the source server itself (INSERT ... SELECT over
generate_series / MariaDB's seq_1_to_N), in 1,000-row transactions, while the bridge is
stopped; then the bridge starts and drains it. Peak RSS is sampled with psutil every 50 ms;
the drain rate is reported as well (from `streaming` to the sentinel row on the target).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from bench import load
from bench.env import CpuMeter, Env, Servers
from bench.schema import WIDE
from bench.streaming import DIRECTIONS

_PG = """INSERT INTO bench_wide (id, customer_id, status, quantity, price, weight, active,
    due_date, created_at, updated_at, payload, note)
SELECT g, 1 + (g * 7919) %% 100000,
  (ARRAY['new','queued','running','done','failed']::bench_status[])[1 + g %% 5],
  1 + g %% 9999, ((g * 104729) %% 100000000) / 100.0, (g %% 100000) / 100.0, g %% 2 = 0,
  date '2024-01-01' + (g %% 730)::int,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1.234567 second',
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 second',
  jsonb_build_object('sku', 'SKU-' || lpad((g %% 1000000)::text, 6, '0'),
    'tags', jsonb_build_array('red', 'bulk'),
    'dims', jsonb_build_object('w', g %% 500, 'h', g %% 300, 'unit', 'mm'),
    'lot', g * 31, 'inspected', g %% 3 = 0),
  CASE WHEN g %% 10 < 3 THEN NULL ELSE repeat(md5(g::text), 2) END
FROM generate_series(%s::bigint, %s::bigint) AS g"""

_MES = """INSERT INTO bench_wide (id, customer_id, status, quantity, price, weight, active,
    due_date, created_at, updated_at, payload, note)
SELECT seq, 1 + (seq * 7919) % 100000,
  ELT(1 + seq % 5, 'new', 'queued', 'running', 'done', 'failed'),
  1 + seq % 9999, ((seq * 104729) % 100000000) / 100, (seq % 100000) / 100, seq % 2 = 0,
  DATE '2024-01-01' + INTERVAL (seq % 730) DAY,
  TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * 1234567) MICROSECOND,
  TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * 1500000) MICROSECOND,
  JSON_OBJECT('sku', CONCAT('SKU-', LPAD(seq % 1000000, 6, '0')),
    'tags', JSON_ARRAY('red', 'bulk'),
    'dims', JSON_OBJECT('w', seq % 500, 'h', seq % 300, 'unit', 'mm'),
    'lot', seq * 31, 'inspected', seq % 3 = 0),
  IF(seq % 10 < 3, NULL, REPEAT(MD5(seq), 2))
FROM seq_{lo}_to_{hi}"""


@dataclass
class BacklogResult:
    figure: str
    direction: str
    table: str
    tx_rows: int
    rows: int
    seconds: float
    rows_per_s: float
    peak_rss_mb: float
    bridge_cpu_pct: float
    other_cores: float

    def to_dict(self) -> dict:
        return asdict(self)


def generate(env: Env, side: str, rows: int, tx_rows: int) -> None:
    if side == "crm":
        with env.crm() as conn:
            for lo in range(1, rows + 1, tx_rows):
                conn.execute(_PG, (lo, min(rows, lo + tx_rows - 1)))
                conn.commit()
        return
    conn = env.mes()
    try:
        with conn.cursor() as cur:
            for lo in range(1, rows + 1, tx_rows):
                conn.begin()
                cur.execute(_MES.format(lo=lo, hi=min(rows, lo + tx_rows - 1)))
                conn.commit()
    finally:
        conn.close()


def run(servers: Servers, workdir: Path, direction: str, rows: int, seed: int,
        tx_rows: int = 1000, profile: Path | None = None) -> BacklogResult:
    source, target = DIRECTIONS[direction]
    env = Env(servers, workdir, tables=(WIDE,))
    try:
        env.setup()
        generate(env, source, rows, tx_rows)
        load.sentinel(env, source, WIDE, seed)
        bridge = env.bridge(profile)
        try:
            t0 = bridge.wait_streaming(direction)
            cpu0 = bridge.rss.cpu_seconds()
            meter = CpuMeter()
            t1 = load.wait_sentinel(env, target, WIDE, timeout=max(600.0, rows / 500),
                                    poll=0.2, alive=bridge.check_alive)
            cpu1 = bridge.rss.cpu_seconds()
            other = meter.stop()["other_cores"]
        finally:
            peak = bridge.stop()
        seconds = t1 - t0
        return BacklogResult(
            figure="backlog", direction=direction, table="wide", tx_rows=tx_rows, rows=rows + 1,
            seconds=round(seconds, 2), rows_per_s=round((rows + 1) / seconds),
            peak_rss_mb=round(peak / 2**20, 1),
            bridge_cpu_pct=round(100 * (cpu1 - cpu0) / seconds, 1), other_cores=other,
        )
    finally:
        env.drop()
