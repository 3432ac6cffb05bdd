"""Backfill rows/s per direction: `python -m bridge backfill` copying rows that exist on one
side before the bridge is set up (the wide table).

Method: the rows are committed on the source, then `setup`; `python -m bridge backfill -c FILE
--from SIDE -t bench_wide` runs as its own process (no daemon streams the bridge, so it runs
the direction itself until the load is done). rows/s = rows / (time of the `backfill_done`
log line - time of `backfill_started`), so process start-up is not counted. Peak RSS of the
backfill process is sampled. Limits, same run:
* read limit: the same rows read alone from the source in key order (one server-side cursor:
  psycopg named cursor / PyMySQL SSCursor, values decoded by the drivers);
* write limit: the same rows bulk-written into a scratch copy of the target table (as for
  streaming: COPY / multi-row INSERT).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pymysql

from bench import limits, load
from bench import rows as R
from bench.env import ROOT, CpuMeter, Env, RssSampler, Servers
from bench.schema import WIDE
from bench.streaming import DIRECTIONS


def available() -> str | None:
    """None when the `backfill` command exists, else why the figure is blocked."""
    from bridge.cli import main as cli

    if "backfill" not in cli.commands:  # type: ignore[attr-defined]
        return "`backfill` command not registered in bridge/cli.py"
    return None


def _read_all(env: Env, side: str) -> float:
    cols = ", ".join(WIDE.columns)
    t0 = time.perf_counter()
    if side == "crm":
        with env.crm() as conn, conn.cursor(name="bench_read") as cur:
            cur.itersize = 10_000
            cur.execute(f"SELECT {cols} FROM {WIDE.name} ORDER BY id")
            for _ in cur:
                pass
    else:
        conn = env.mes()
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT {cols} FROM {WIDE.name} ORDER BY id")
                for _ in cur:
                    pass
        finally:
            conn.close()
    return time.perf_counter() - t0


def _count(env: Env, side: str) -> int:
    q = f"SELECT count(*) FROM {WIDE.name}"
    if side == "crm":
        with env.crm(autocommit=True) as c:
            return c.execute(q).fetchone()[0]
    conn = env.mes(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(q)
            return cur.fetchone()[0]
    finally:
        conn.close()


def run(servers: Servers, workdir: Path, direction: str, rows: int, seed: int,
        profile: Path | None = None) -> dict:
    blocked = available()
    if blocked:
        return {"figure": "backfill", "direction": direction, "blocked": blocked}
    source, target = DIRECTIONS[direction]
    env = Env(servers, workdir, tables=(WIDE,))
    try:
        data = list(R.generate(WIDE, 1, rows, seed))
        load.insert(env, source, WIDE, data, 10_000)
        env.setup()
        read_s = _read_all(env, source)
        log_path = workdir / f"{env.name}-backfill.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "backfill", "-c", str(env.config_path),
                 "--from", source, "-t", WIDE.name],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
            rss = RssSampler(proc.pid)
            spy = None
            if profile is not None:
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                     str(proc.pid), "--rate", "200", "--format", "raw", "--nonblocking",
                     "--threads", "-o", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            meter = CpuMeter()
            code = proc.wait(timeout=max(600.0, rows / 200))
            other = meter.stop()["other_cores"]
            peak = rss.stop()
            if spy is not None:
                spy.wait(timeout=30)
        if code != 0:
            raise RuntimeError(f"backfill exited with {code}; see {log_path}")
        t_start = t_done = None
        for line in log_path.read_text(errors="replace").splitlines():
            if '"backfill_started"' in line and t_start is None:
                t_start = _ts(line)
            elif '"backfill_done"' in line:
                t_done = _ts(line)
        if t_start is None or t_done is None:
            raise RuntimeError(f"no backfill_started/backfill_done lines in {log_path}")
        copied = _count(env, target)
        if copied != rows:
            raise RuntimeError(f"backfill left {copied} rows on the {target}, expected {rows}")
        write_s = limits.write_insert(env, target, WIDE, data)
        seconds = t_done - t_start
        bf, rd, wr = rows / seconds, rows / read_s, rows / write_s
        return {
            "figure": "backfill", "direction": direction, "table": "wide", "rows": rows,
            "seconds": round(seconds, 2), "rows_per_s": round(bf), "read_limit": round(rd),
            "write_limit": round(wr), "pct_of_limit": round(100 * bf / min(rd, wr), 1),
            "peak_rss_mb": round(peak / 2**20, 1), "other_cores": other,
        }
    finally:
        env.drop()


def _ts(line: str) -> float:
    import json

    return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
