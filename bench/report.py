"""Machine description, the results table (Markdown), the JSON file and bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent

TARGETS = {
    "streaming_crm_to_mes": 20_000,  # rows/s, wide, 100-row transactions
    "streaming_mes_to_crm": 15_000,
    "lag_p99_ms": 250,  # at 2,000 rows/s, both directions loaded
    "backfill_pct": 60,  # % of the raw bulk rate
    "backlog_rss_mb": 250,  # 1M-row backlog
}


def machine(versions: dict[str, str]) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def _n(v: Any) -> str:
    if isinstance(v, float) and v != v:
        return "-"
    if isinstance(v, (int, float)) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_n(c) for c in r) + " |" for r in rows]
    return out


_ARROW = {"crm_to_mes": "CRM→MES", "mes_to_crm": "MES→CRM"}


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run {results['started']} (`{results['command']}`, {results['seconds']:.0f} s). "
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; "
        f"PostgreSQL {m['postgresql']}, MariaDB {m['mariadb']}; Python {m['python']}. "
        "Servers and bridge share the cores. \"Other load\": cores used by processes outside "
        "the suite while the figure was measured (2 = the machine was fully taken by others).",
        "",
    ]
    s = results.get("streaming") or []
    if s:
        lines += ["**Streaming** (backlog drained; rows/s; limit = min(read, write))", ""]
        lines += _table(
            ["Direction", "Table", "Load", "Tx rows", "Rows", "Bridge rows/s", "Read limit",
             "Write limit", "% of limit", "Peak RSS MB", "Bridge CPU %", "Other load"],
            [[_ARROW[r["direction"]], r["table"], r["workload"], r["tx_rows"], r["rows"],
              r["rows_per_s"], r["read_limit"], r["write_limit"], f"{r['pct_of_limit']}%",
              r["peak_rss_mb"], r["bridge_cpu_pct"], r.get("other_cores", "-")] for r in s])
        lines.append("")
    lg = results.get("lag") or []
    if lg:
        both = all(r["figure"] == "lag" for r in lg)
        lines += ["**Lag** (source commit → visible on target; "
                  + ("both directions loaded at once" if both else "only the direction shown loaded")
                  + "; wide table)", ""]
        lines += _table(
            ["Direction", "Offered rows/s", "Achieved", "Tx rows", "p50 ms", "p95 ms", "p99 ms",
             "max ms", "Peak RSS MB", "Bridge CPU %", "Other load"],
            [[_ARROW[r["direction"]], r["rate"], r["achieved_rate"], r["tx_rows"], r["p50_ms"],
              r["p95_ms"], r["p99_ms"], r["max_ms"], r["peak_rss_mb"], r["bridge_cpu_pct"],
              r.get("other_cores", "-")] for r in lg])
        lines.append("")
    bf = results.get("backfill") or []
    if bf:
        lines += ["**Backfill** (existing rows copied; rows/s)", ""]
        rows = []
        for r in bf:
            if r.get("blocked"):
                rows.append([_ARROW[r["direction"]], "-", "blocked", "-", "-", "-", "-", r["blocked"]])
            else:
                rows.append([_ARROW[r["direction"]], r["rows"], r["rows_per_s"], r["read_limit"],
                             r["write_limit"], f"{r['pct_of_limit']}%", r["peak_rss_mb"], ""])
        lines += _table(["Direction", "Rows", "Backfill rows/s", "Read limit", "Write limit",
                         "% of limit", "Peak RSS MB", "Note"], rows)
        lines.append("")
    bl = results.get("backlog") or []
    if bl:
        lines += ["**Memory under a backlog** (wide table, started after the rows were committed)", ""]
        lines += _table(["Direction", "Rows", "Tx rows", "Drain rows/s", "Peak RSS MB",
                         "Bridge CPU %", "Other load"],
                        [[_ARROW[r["direction"]], r["rows"], r["tx_rows"], r["rows_per_s"],
                          r["peak_rss_mb"], r["bridge_cpu_pct"], r.get("other_cores", "-")]
                         for r in bl])
        lines.append("")
    t = results.get("targets") or []
    if t:
        lines += ["**Targets**", ""]
        lines += _table(["Target", "Measured", "Met"],
                        [[x["target"], x["measured"], "yes" if x["met"] else "**no**"] for x in t])
        lines.append("")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in results.get("streaming") or []:
        if r["table"] == "wide" and r["tx_rows"] == 100 and r["workload"] == "insert":
            goal = TARGETS[f"streaming_{r['direction']}"]
            out.append({"target": f"streaming {_ARROW[r['direction']]} wide, 100-row tx ≥ {goal:,} rows/s",
                        "measured": f"{r['rows_per_s']:,} rows/s", "met": r["rows_per_s"] >= goal})
    for r in results.get("lag") or []:
        if r["rate"] == 2000 and r["figure"] == "lag":
            out.append({"target": f"lag p99 {_ARROW[r['direction']]} at 2,000 rows/s ≤ 250 ms",
                        "measured": f"{r['p99_ms']} ms", "met": r["p99_ms"] <= TARGETS["lag_p99_ms"]})
    for r in results.get("backfill") or []:
        if r.get("blocked"):
            out.append({"target": f"backfill {_ARROW[r['direction']]} ≥ 60% of raw bulk",
                        "measured": "blocked", "met": False})
        else:
            out.append({"target": f"backfill {_ARROW[r['direction']]} ≥ 60% of raw bulk",
                        "measured": f"{r['pct_of_limit']}%",
                        "met": r["pct_of_limit"] >= TARGETS["backfill_pct"]})
    for r in results.get("backlog") or []:
        out.append({"target": f"RSS ≤ 250 MB, {r['rows']:,}-row backlog {_ARROW[r['direction']]}",
                    "measured": f"{r['peak_rss_mb']} MB",
                    "met": r["peak_rss_mb"] <= TARGETS["backlog_rss_mb"]})
    return out


def write(results: dict[str, Any], out_dir: Path, results_md: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if results_md:
        (HERE / "RESULTS.md").write_text(
            "# Benchmark results\n\nWritten by `python -m bench` (latest full run; JSON under "
            "`bench/results/`). How it is measured: README, section Benchmarks.\n\n"
            + markdown(results) + "\n")
    return path
