"""Backfill rows/s per direction (filled in once the `backfill` command is usable)."""

from __future__ import annotations

from pathlib import Path

from bench.env import Servers


def available() -> str | None:
    """None when the `backfill` command exists, else why the figure is blocked."""
    from bridge.cli import main as cli

    if "backfill" not in cli.commands:  # type: ignore[attr-defined]
        return "`backfill` command not registered in bridge/cli.py yet"
    return None


def run(servers: Servers, workdir: Path, direction: str, rows: int, seed: int,
        profile: Path | None = None) -> dict:
    blocked = available()
    return {"figure": "backfill", "direction": direction, "blocked": blocked}
