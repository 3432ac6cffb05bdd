"""Backfill progress for people: a rich progress bar per table on a terminal, structured log
lines otherwise, and a summary at the end."""

from __future__ import annotations

import time
from typing import Any, TextIO

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bridge.backfill.model import Status
from bridge.backfill.runner import Follower, Tracked

log = structlog.get_logger("bridge.backfill")

LOG_EVERY_SECONDS = 5.0


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        return Text(f"{rate:,.0f} rows/s" if rate else "- rows/s", style="cyan")


class _Rows(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = f"{int(task.total):,}" if task.total is not None else "?"
        return Text(f"{int(task.completed):,}/{total} rows")


def _label(t: Tracked) -> str:
    r = t.req
    arrow = "crm->mes" if r.direction == "crm_to_mes" else "mes->crm"
    return f"{r.table} {arrow}"


def _total(t: Tracked) -> int | None:
    r = t.req
    if r.status is Status.DONE:
        return t.done_rows
    if r.rows_estimate is None:
        return None
    return max(r.rows_estimate, t.done_rows)


class BarView:
    """A rich progress bar per table (rows, rows/s, ETA)."""

    def __init__(self, console: Console | None = None):
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _Rows(),
            _Rate(), TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
            console=console or Console(stderr=True), transient=False)
        self.tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> BarView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, f: Follower) -> None:
        for key, t in f.tracked.items():
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(_label(t), total=_total(t),
                                                         completed=t.done_rows)
            status = t.req.status
            desc = _label(t) + ("" if status is Status.RUNNING else f" [{status.value}]")
            self.progress.update(self.tasks[key], completed=t.done_rows, total=_total(t),
                                 description=desc, rate=t.rate if t.run_rows else 0.0)


class LogView:
    """Structured progress lines, one per table every `every` seconds and on each change of
    status."""

    def __init__(self, every: float = LOG_EVERY_SECONDS):
        self.every = every
        self.last: dict[tuple[str, str], tuple[float, str]] = {}

    def __enter__(self) -> LogView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, f: Follower) -> None:
        now = time.monotonic()
        for key, t in f.tracked.items():
            at, status = self.last.get(key, (0.0, ""))
            if now - at < self.every and status == t.req.status.value:
                continue
            self.last[key] = (now, t.req.status.value)
            total = _total(t)
            rate = t.rate if t.run_rows else 0.0
            eta = round((total - t.done_rows) / rate, 1) if total and rate else None
            log.info("backfill_progress", table=t.req.table, direction=t.req.direction,
                     status=t.req.status.value, rows=t.done_rows, rows_estimate=total,
                     rows_per_second=round(rate), eta_seconds=eta, chunks=t.req.chunks)


def summary_rows(f: Follower) -> list[dict[str, Any]]:
    out = []
    for t in f.tracked.values():
        r = t.req
        out.append({
            "table": r.table, "direction": r.direction, "status": r.status.value,
            "rows_copied": r.rows_copied, "rows_left_to_stream": r.rows_skipped,
            "dead_letters": r.dead_letters, "conflicts": r.conflicts, "chunks": r.chunks,
            "rows_this_run": t.run_rows, "seconds": round(t.seconds, 2),
            "rows_per_second": round(t.rate), "error": r.error,
        })
    return out


def print_summary(f: Follower, out: TextIO) -> None:
    rows = summary_rows(f)
    table = Table(title="backfill summary")
    for col in ("table", "direction", "status", "rows copied", "left to stream", "dead letters",
                "conflicts", "chunks", "seconds", "rows/s"):
        table.add_column(col, justify="left" if col in ("table", "direction", "status") else "right")
    for r in rows:
        table.add_row(r["table"], r["direction"], r["status"], f"{r['rows_copied']:,}",
                      f"{r['rows_left_to_stream']:,}", f"{r['dead_letters']:,}",
                      f"{r['conflicts']:,}", str(r["chunks"]), f"{r['seconds']:.1f}",
                      f"{r['rows_per_second']:,}")
    Console(file=out, width=140).print(table)
    for r in rows:
        if r["error"]:
            out.write(f"{r['table']} ({r['direction']}) failed: {r['error']}\n")
        log.info("backfill_summary", **r)
