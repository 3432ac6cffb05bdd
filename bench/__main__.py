"""`python -m bench` (or `make bench`): the benchmark suite on private servers.

Prints a Markdown table, writes the JSON to bench/results/<UTC timestamp>.json and, on a full
run, the table to bench/RESULTS.md. `--quick` is a ~2-minute smoke run with small sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import report

PARTS = ("streaming", "lag", "backfill", "backlog")

FULL = {"rows_1": 5_000, "rows_100": 100_000, "rows_10000": 100_000, "update_rows": 50_000,
        "lag_seconds": 30.0, "backlog_rows": 1_000_000, "backfill_rows": 200_000}
QUICK = {"rows_1": 500, "rows_100": 10_000, "rows_10000": 20_000, "update_rows": 5_000,
         "lag_seconds": 5.0, "backlog_rows": 50_000, "backfill_rows": 20_000}


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a ~2-minute smoke run")
    p.add_argument("--seed", type=int, default=42, help="row generator seed (default 42)")
    p.add_argument("--only", type=_csv(str), default=list(PARTS),
                   help=f"comma list of parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--directions", type=_csv(str), default=["crm_to_mes", "mes_to_crm"])
    p.add_argument("--tables", type=_csv(str), default=["narrow", "wide"])
    p.add_argument("--tx-sizes", type=_csv(int), default=[1, 100, 10_000],
                   help="source transaction sizes in rows (default 1,100,10000)")
    for key, help_ in (("rows_1", "rows streamed in 1-row transactions"),
                       ("rows_100", "rows streamed in 100-row transactions"),
                       ("rows_10000", "rows streamed in 10,000-row transactions"),
                       ("update_rows", "rows updated (wide, 100-row transactions); 0: skip"),
                       ("backlog_rows", "rows in the memory backlog (wide)"),
                       ("backfill_rows", "rows copied by the backfill (wide)")):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"{help_} (default {FULL[key]:,}; --quick {QUICK[key]:,})")
    p.add_argument("--lag-seconds", type=float, default=None,
                   help=f"seconds of load per lag rate (default {FULL['lag_seconds']:.0f}; "
                        f"--quick {QUICK['lag_seconds']:.0f})")
    p.add_argument("--lag-rates", type=_csv(int), default=[500, 2000],
                   help="offered rows/s per direction (default 500,2000)")
    p.add_argument("--lag-tx-rows", type=int, default=10, help="rows per lag transaction (10)")
    p.add_argument("--lag-load", type=_csv(str), default=["crm_to_mes", "mes_to_crm"],
                   help="directions loaded during the lag runs (default both at once)")
    p.add_argument("--batch-rows", type=int, default=None, help="apply.batch_rows for the bridge")
    p.add_argument("--profile", action="store_true",
                   help="record a py-spy profile (raw collapsed stacks) of every bridge run")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="directory for JSON results and profiles (default bench/results)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep configs and bridge logs here (default: a temporary directory)")
    p.add_argument("--results-md", action=argparse.BooleanOptionalAction, default=None,
                   help="write bench/RESULTS.md (default: on for full runs, off for --quick)")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.results_md is None:
        args.results_md = not args.quick
    unknown = set(args.only) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench import backfill, lag, memory, streaming
    from bench.env import Servers
    from bench.schema import TABLES, WIDE

    from bridge.logs import configure

    configure("warning")  # the bridge's setup() logs each step; the suite prints its own lines
    started = datetime.now(timezone.utc)
    t_start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    apply = {"batch_rows": args.batch_rows} if args.batch_rows else None
    results: dict = {"started": started.isoformat(timespec="seconds"),
                     "command": "python -m bench " + " ".join(argv), "seed": args.seed,
                     "streaming": [], "lag": [], "backfill": [], "backlog": []}

    def profile(name: str) -> Path | None:
        return args.out / f"{stamp}-{name}.txt" if args.profile else None

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.0f}s] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Servers() as servers:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results["machine"] = report.machine(servers.versions())
        say(f"servers up: {results['machine']}")
        if "streaming" in args.only:
            sizes = {1: args.rows_1, 100: args.rows_100, 10_000: args.rows_10000}
            for direction in args.directions:
                for tname in args.tables:
                    for tx in args.tx_sizes:
                        n = sizes.get(tx, args.rows_100)
                        r = streaming.run(servers, work, direction, TABLES[tname], tx, n, args.seed,
                                          profile=profile(f"{direction}-{tname}-{tx}"), apply=apply)
                        results["streaming"].append(r.to_dict())
                        say(f"streaming {direction} {tname} tx={tx}: {r.rows_per_s:,.0f} rows/s "
                            f"(read {r.read_limit:,.0f}, write {r.write_limit:,.0f}, "
                            f"{r.pct_of_limit}%, rss {r.peak_rss_mb} MB, cpu {r.bridge_cpu_pct}% "
                            f"{r.bridge_cpu_us_per_row} us/row, other {r.other_cores})")
                if args.update_rows:
                    r = streaming.run(servers, work, direction, WIDE, 100, args.update_rows, args.seed,
                                      workload="update", profile=profile(f"{direction}-wide-update"),
                                      apply=apply)
                    results["streaming"].append(r.to_dict())
                    say(f"streaming {direction} wide updates: {r.rows_per_s:,.0f} rows/s "
                        f"(read {r.read_limit:,.0f}, write {r.write_limit:,.0f}, {r.pct_of_limit}%, "
                        f"cpu {r.bridge_cpu_pct}% {r.bridge_cpu_us_per_row} us/row, other {r.other_cores})")
        if "lag" in args.only:
            for rate in args.lag_rates:
                for r in lag.run(servers, work, rate, args.lag_seconds, args.lag_tx_rows, args.seed,
                                 profile=profile(f"lag-{rate}"), load=tuple(args.lag_load)):
                    results["lag"].append(r.to_dict())
                    say(f"lag {r.direction} @{rate}/s: p50 {r.p50_ms} p95 {r.p95_ms} "
                        f"p99 {r.p99_ms} max {r.max_ms} ms (achieved {r.achieved_rate}/s)")
        if "backfill" in args.only:
            for direction in args.directions:
                r = backfill.run(servers, work, direction, args.backfill_rows, args.seed,
                                 profile=profile(f"backfill-{direction}"))
                results["backfill"].append(r)
                if r.get("blocked"):
                    say(f"backfill {direction}: blocked: {r['blocked']}")
                else:
                    say(f"backfill {direction}: {r['rows_per_s']:,.0f} rows/s (read "
                        f"{r['read_limit']:,.0f}, write {r['write_limit']:,.0f}, "
                        f"{r['pct_of_limit']}%, rss {r['peak_rss_mb']} MB, other {r['other_cores']})")
        if "backlog" in args.only:
            for direction in args.directions:
                r = memory.run(servers, work, direction, args.backlog_rows, args.seed,
                               profile=profile(f"backlog-{direction}"))
                results["backlog"].append(r.to_dict())
                say(f"backlog {direction} {r.rows:,} rows: peak RSS {r.peak_rss_mb} MB, "
                    f"{r.rows_per_s:,.0f} rows/s")
    results["seconds"] = round(time.monotonic() - t_start, 1)
    results["targets"] = report.targets(results)
    path = report.write(results, args.out, args.results_md)
    print()
    print(report.markdown(results))
    print(f"JSON: {path}" + ("; table: bench/RESULTS.md" if args.results_md else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
