"""Command line: `crm-mes-bridge` (or `python -m bridge`).

Commands: run, setup, check, validate, demo (and more as they land). Exit codes: 0 ok,
1 problems found / fatal error, 2 bad usage or invalid config.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge import __version__, collector
from bridge.config import Config, ConfigError, load_config
from bridge.logs import configure


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    required=True, help="TOML config file (see examples/bridge.toml).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crm-mes-bridge")
def main() -> None:
    """Bidirectional CDC bridge between a PostgreSQL CRM and a MySQL/MariaDB MES."""


@main.command()
@config_option
def validate(config_path: Path) -> None:
    """Validate the config file without connecting to anything."""
    cfg = _load(config_path)
    click.echo(f"{config_path}: valid ({len(cfg.tables)} table(s), bridge {cfg.bridge.name!r})")


@main.command()
@config_option
def setup(config_path: Path) -> None:
    """Create state tables, publication, replication origin and slot (idempotent)."""
    cfg = _load(config_path)
    configure(cfg.logging.level, pretty=sys.stderr.isatty())
    from bridge.setup import setup as do_setup

    try:
        done = do_setup(cfg)
    except Exception as exc:  # a privilege or server problem: say what, not a traceback
        click.echo(f"error: setup failed: {type(exc).__name__}: {exc}\n"
                   "run `check` to see what is missing and how to fix it", err=True)
        sys.exit(1)
    click.echo("\n".join(done) if done else "nothing to do: everything exists")


@main.command()
@config_option
def check(config_path: Path) -> None:
    """Verify server settings, privileges, keys, replica identity and the mapping."""
    cfg = _load(config_path)
    from bridge.check import run_checks

    problems = run_checks(cfg)
    if not problems:
        click.echo("check: OK - settings, privileges, keys, replica identity and mapping are fine")
        return
    click.echo(f"check: {len(problems)} problem(s)\n")
    for i, p in enumerate(problems, 1):
        click.echo(f"{i}. [{p.where}] {p.problem}\n   fix: {p.fix}\n")
    sys.exit(1)


@main.command()
@config_option
@click.option("--no-setup", is_flag=True, help="Do not create missing slot/publication/state tables.")
def run(config_path: Path, no_setup: bool) -> None:
    """Stream changes in both directions until SIGTERM/SIGINT."""
    cfg = _load(config_path)
    configure(cfg.logging.level, audit_file=cfg.logging.audit_file)
    import psycopg
    import pymysql

    from bridge.daemon import Daemon
    from bridge.errors import Fatal

    # a stop request during the checks and setup is honoured once they are done (exit 0)
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if not no_setup:
            from bridge.check import preflight
            from bridge.setup import setup as do_setup

            preflight(cfg)
            do_setup(cfg)
        daemon = Daemon(cfg)
        if stop.is_set():
            daemon.stop.set()
        collector.tune()
        code = daemon.run()
    except Fatal as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (psycopg.Error, pymysql.Error) as exc:  # setup on a server that refuses it
        click.echo(f"error: setup failed: {type(exc).__name__}: {exc}\n"
                   "run `check` to see what is missing and how to fix it", err=True)
        sys.exit(1)
    sys.exit(code)


@main.command()
@click.option("--seconds", type=float, default=20.0, show_default=True,
              help="How long to keep streaming after the scripted changes.")
def demo(seconds: float) -> None:
    """Live demo between throwaway local servers (no config needed)."""
    from bridge.demo import run_demo

    collector.tune()
    sys.exit(run_demo(seconds))


def _register_groups() -> None:
    """Command groups that live beside their component."""
    from bridge.cli_load import register as register_load
    from conflict.cli import register as register_conflicts

    register_conflicts(main)
    register_load(main)


_register_groups()


if __name__ == "__main__":
    main()
