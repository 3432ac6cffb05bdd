"""CLI commands for the initial load and its check: `backfill` and `verify`.

`bridge.cli` adds them with `register(main)`; `python -m bridge.cli_load` runs them on their own.
Exit codes: 0 done / no differences, 1 failed / differences found, 2 bad usage or config,
130 interrupted (a rerun resumes).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from bridge import collector
from bridge.config import Config, ConfigError, load_config
from bridge.logs import configure
from bridge.model import Side

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    required=True, help="TOML config file (see examples/bridge.toml).")


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


class _Stderr:
    """Whatever sys.stderr is at write time: rich redirects it above its progress bars."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _interrupts(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _database_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    import pymysql

    return (psycopg.OperationalError, pymysql.err.OperationalError)


# --- backfill ------------------------------------------------------------------------------


@click.command("backfill")
@config_option
@click.option("--table", "-t", "tables", multiple=True, metavar="TABLE",
              help="Bridged table (CRM or MES name); repeat for several. Default: all.")
@click.option("--from", "from_side", type=click.Choice(["crm", "mes"]),
              help="Side that holds the data; required for tables that flow both ways.")
@click.option("--chunk-rows", type=click.IntRange(1, 100_000), default=None,
              help="Rows per chunk (default 16384).")
@click.option("--key-min", default=None, metavar="KEY",
              help="Copy keys >= KEY only (a JSON array for multi-column keys).")
@click.option("--key-max", default=None, metavar="KEY", help="Copy keys <= KEY only.")
@click.option("--restart", is_flag=True, help="Start over even if an unfinished load exists.")
@click.option("--no-setup", is_flag=True, help="Do not create missing state tables and objects.")
def backfill(config_path: Path, tables: tuple[str, ...], from_side: str | None,
             chunk_rows: int | None, key_min: str | None, key_max: str | None,
             restart: bool, no_setup: bool) -> None:
    """Load the rows a side already holds into the other side, while the bridge streams.

    Chunks are merged into the change stream with low/high watermarks (DBLog), so a chunk
    never overwrites a newer change. If a daemon streams this bridge, it does the copying and
    this command shows progress; otherwise the daemon runs here until the load is done. A
    rerun after an interruption continues from the last completed chunk.
    """
    cfg = _load(config_path)
    tty = sys.stderr.isatty()
    configure(cfg.logging.level, audit_file=cfg.logging.audit_file, stream=_Stderr(), pretty=tty)
    from bridge.backfill.display import BarView, LogView, print_summary
    from bridge.backfill.model import BackfillError
    from bridge.backfill.runner import plan, register, see_through
    from bridge.errors import Fatal

    try:
        planned = plan(cfg, list(tables) or None, Side(from_side) if from_side else None)
    except BackfillError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    stop = threading.Event()
    _interrupts(stop)
    try:
        if not no_setup:
            from bridge.setup import setup as do_setup

            do_setup(cfg)
        requests = register(cfg, planned, chunk_rows=chunk_rows, key_min=key_min,
                            key_max=key_max, restart=restart)
        view = BarView() if tty else LogView()
        collector.tune()
        with view:
            outcome = see_through(cfg, requests, on_progress=view, stop=stop)
    except BackfillError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Fatal as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except _database_errors() as exc:
        click.echo(f"error: cannot reach a database: {str(exc).strip()}", err=True)
        sys.exit(1)
    print_summary(outcome.follower, sys.stdout)
    for err in outcome.errors:
        click.echo(f"error: the bridge stopped: {err}", err=True)
    if outcome.mode == "interrupted":
        click.echo("interrupted: run the same command again to continue", err=True)
        sys.exit(130)
    sys.exit(0 if outcome.ok else 1)


# --- verify --------------------------------------------------------------------------------


@click.command("verify")
@config_option
@click.option("--table", "-t", "tables", multiple=True, metavar="TABLE",
              help="Bridged table (CRM or MES name); repeat for several. Default: all.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--repair", is_flag=True,
              help="Fix the differences (owner / direction / priority side wins), audited.")
@click.option("--range-rows", type=click.IntRange(16, 10_000_000), default=None,
              help="Rows per checksum range at the top level (default 10000).")
@click.option("--settle", type=click.FloatRange(0, 600), default=2.0, show_default=True,
              help="Seconds to wait before re-checking differing rows (changes in flight).")
def verify(config_path: Path, tables: tuple[str, ...], fmt: str, repair: bool,
           range_rows: int | None, settle: float) -> None:
    """Compare the mapped rows of both sides; exit 1 if they differ.

    Checksums over key ranges are computed on each server and compared; differing ranges are
    split until the differing rows are found: missing, extra, or differing values (with a
    column diff). --repair makes both sides equal and records each change in the audit log.
    """
    cfg = _load(config_path)
    configure(cfg.logging.level, audit_file=cfg.logging.audit_file, stream=_Stderr())
    from bridge.verify.model import VerifyError
    from bridge.verify.report import render_json, render_text
    from bridge.verify.run import run_verify

    collector.tune()
    try:
        report = run_verify(cfg, list(tables) or None, repair=repair, range_rows=range_rows,
                            settle=settle)
    except VerifyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except _database_errors() as exc:
        click.echo(f"error: cannot reach a database: {str(exc).strip()}", err=True)
        sys.exit(1)
    click.echo(render_json(report) if fmt == "json" else render_text(report))
    sys.exit(0 if report.clean_after else 1)


def register(main: click.Group) -> None:
    """Add `backfill` and `verify` to the bridge's CLI."""
    main.add_command(backfill)
    main.add_command(verify)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _standalone() -> None:
    """Initial load and verification (also available as `bridge backfill` / `bridge verify`)."""


register(_standalone)

if __name__ == "__main__":
    _standalone()
