"""`bridge backfill`: register requests, then see them through.

The copying itself is done by the daemon's direction threads (`bridge.backfill.driver`). This
module stores the requests on each target, then either watches a daemon that is already
streaming this bridge, or runs the daemon in this process until every requested table is done.

Resuming: a table whose last request is unfinished (pending, running, failed) continues from
its last completed chunk; a finished one starts over (`restart=True` forces a new start).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import structlog

from bridge.backfill.driver import backfill_factory
from bridge.backfill.model import (
    DEFAULT_CHUNK_ROWS,
    MAX_CHUNK_ROWS,
    BackfillError,
    KeyCodec,
    Request,
    Status,
)
from bridge.backfill.source import ReadPlan, open_source
from bridge.backfill.store import MysqlProgressStore, PgProgressStore, ProgressStore
from bridge.backfill.window import RecentKeys
from bridge.config import Config
from bridge.connect import mysql_connect, pg_connect
from bridge.mapping import Mapping, TableMapping
from bridge.model import Side

log = structlog.get_logger("bridge.backfill")

PICKUP_SECONDS = 4.0  # a running daemon picks a request up within ~1.5 s


@dataclass(frozen=True)
class Planned:
    """One table to backfill in one direction."""

    tm: TableMapping
    source: Side

    @property
    def direction(self) -> str:
        return f"{self.source.value}_to_{self.source.other.value}"

    @property
    def label(self) -> str:
        return f"{self.tm.crm_table} {self.source.value}->{self.source.other.value}"


def plan(config: Config, tables: list[str] | None, from_side: Side | None) -> list[Planned]:
    """Which tables, which direction. Raises BackfillError naming what to fix."""
    mapping = Mapping.from_config(config)
    chosen: list[TableMapping] = []
    for name in tables or []:
        tm = _find(mapping, name)
        if tm is None:
            known = ", ".join(t.crm_table for t in mapping.tables)
            raise BackfillError(f"table {name!r} is not bridged (tables: {known})")
        if tm not in chosen:
            chosen.append(tm)
    if not tables:
        chosen = list(mapping.tables)
    out: list[Planned] = []
    unsure: list[str] = []
    for tm in chosen:
        d = tm.spec.direction
        if d == "both":
            if from_side is None:
                unsure.append(tm.crm_table)
                continue
            out.append(Planned(tm, from_side))
        else:
            side = Side.CRM if d == "crm_to_mes" else Side.MES
            if from_side is not None and from_side is not side:
                if tables:
                    raise BackfillError(f"{tm.crm_table} flows {d}: it cannot be loaded from "
                                        f"{from_side.value}")
                continue  # all tables: keep those that flow from the chosen side
            out.append(Planned(tm, side))
    if unsure:
        raise BackfillError(f"table(s) {', '.join(unsure)} flow both ways: say which side holds "
                            "the data with --from crm or --from mes")
    if not out:
        raise BackfillError("no table to backfill")
    return out


def _find(mapping: Mapping, name: str) -> TableMapping | None:
    for tm in mapping.tables:
        if name in (tm.crm_table, tm.crm_table.split(".", 1)[1], tm.spec.mes, tm.mes_table):
            return tm
    return None


@contextmanager
def progress_stores(config: Config) -> Iterator[dict[Side, ProgressStore]]:
    """Plain (autocommit) connections to both progress tables, keyed by the TARGET side."""
    pg = pg_connect(config, autocommit=True)
    try:
        my = mysql_connect(config, autocommit=True)
        try:
            yield {Side.CRM: PgProgressStore(pg, config.state_schema),
                   Side.MES: MysqlProgressStore(my, config.state_prefix)}
        finally:
            my.close()
    finally:
        pg.close()


def register(config: Config, planned: list[Planned], *, chunk_rows: int | None = None,
             key_min: str | None = None, key_max: str | None = None,
             restart: bool = False) -> list[Request]:
    """Store a request per planned table (or resume the unfinished one)."""
    if chunk_rows is not None and not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise BackfillError(f"--chunk-rows must be 1..{MAX_CHUNK_ROWS}")
    out: list[Request] = []
    with progress_stores(config) as stores:
        for p in planned:
            store = stores[p.source.other]
            old = store.get(p.tm.crm_table, p.direction)
            if old is not None and not restart and old.status is not Status.DONE:
                req = replace(old, status=Status.PENDING, error=None,
                              chunk_rows=chunk_rows or old.chunk_rows)
                log.info("backfill_resume", table=req.table, direction=req.direction,
                         request_id=req.request_id, after_key=req.last_key,
                         rows_copied=req.rows_copied)
            else:
                low, high, estimate = _bounds_and_estimate(config, p, key_min, key_max)
                req = Request(table=p.tm.crm_table, direction=p.direction,
                              request_id=uuid.uuid4().hex, status=Status.PENDING,
                              chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS, key_min=low,
                              key_max=high, rows_estimate=estimate)
                log.info("backfill_requested", table=req.table, direction=req.direction,
                         request_id=req.request_id, rows_estimate=estimate,
                         chunk_rows=req.chunk_rows, key_min=low, key_max=high)
            store.put(req)
            out.append(req)
    return out


def _bounds_and_estimate(config: Config, p: Planned, key_min: str | None,
                         key_max: str | None) -> tuple[list | None, list | None, int | None]:
    src = open_source(config, p.source)
    try:
        name = p.tm.table(p.source)
        info = src.table_info(name)
        if info is None:
            raise BackfillError(f"source table {name} does not exist")
        key = p.tm.keys[p.source]
        missing = [k for k in key if k not in info.columns]
        if missing:
            raise BackfillError(f"key column(s) {missing} missing in {name}")
        rp = ReadPlan(name, tuple(key), tuple(key), tuple(info.columns[k] for k in key))
        codec = KeyCodec(tuple(key), rp.key_infos)
        low = codec.parse_cli(key_min) if key_min is not None else None
        high = codec.parse_cli(key_max) if key_max is not None else None
        estimate = src.estimate(rp, codec.from_json(low) if low else None,
                                codec.from_json(high) if high else None)
        return low, high, estimate
    finally:
        src.close()


def slot_active(config: Config) -> bool:
    """Is the CRM slot streaming to someone (a daemon of this bridge)?"""
    with pg_connect(config) as pg:
        row = pg.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                         (config.slot_name,)).fetchone()
    return bool(row and row[0])


def attach(daemon: Any, recent: RecentKeys | None = None) -> None:
    """Give a `bridge.daemon.Daemon`'s directions the backfill hook (until daemon.py passes
    `backfill=backfill_factory(config, side)` to each Direction itself)."""
    recent = recent or RecentKeys()
    for d in daemon.directions:
        if getattr(d, "backfill", None) is None:
            d.backfill = backfill_factory(daemon.config, d.side, recent)


# --- seeing requests through -----------------------------------------------------------------


@dataclass
class Tracked:
    """A request as the CLI follows it."""

    req: Request
    first: Request  # as registered (for rates: rows done in this run)
    started: float
    finished: float | None = None

    @property
    def done_rows(self) -> int:
        r = self.req
        return r.rows_copied + r.rows_skipped + r.dead_letters

    @property
    def run_rows(self) -> int:
        f = self.first
        return self.done_rows - (f.rows_copied + f.rows_skipped + f.dead_letters)

    @property
    def seconds(self) -> float:
        return max((self.finished or time.monotonic()) - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.run_rows / self.seconds


class Follower:
    """Polls the progress rows of the registered requests."""

    def __init__(self, config: Config, requests: list[Request]):
        self.config = config
        now = time.monotonic()
        self.tracked = {(r.table, r.direction): Tracked(r, r, now) for r in requests}

    def refresh(self, stores: dict[Side, ProgressStore]) -> None:
        for (table, direction), t in self.tracked.items():
            target = Side.MES if direction == "crm_to_mes" else Side.CRM
            req = stores[target].get(table, direction)
            if req is None or req.request_id != t.req.request_id:
                continue
            if t.req.status is Status.PENDING and req.status is not Status.PENDING:
                t.started = time.monotonic()  # picked up: rates count from here
            if req.status.finished and t.finished is None:
                t.finished = time.monotonic()
            t.req = req

    @property
    def picked_up(self) -> bool:
        return any(t.req.status is not Status.PENDING for t in self.tracked.values())

    @property
    def finished(self) -> bool:
        return all(t.req.status.finished for t in self.tracked.values())


@dataclass
class Outcome:
    follower: Follower
    mode: str  # "daemon" (watched a running one), "in-process", "interrupted"
    errors: list[str]  # the in-process daemon's fatal errors

    @property
    def ok(self) -> bool:
        return (not self.errors and self.mode != "interrupted"
                and all(t.req.status is Status.DONE for t in self.follower.tracked.values()))


def see_through(config: Config, requests: list[Request], *,
                on_progress: Callable[[Follower], None],
                stop: threading.Event, poll: float = 0.5,
                make_daemon: Callable[[Config], Any] | None = None) -> Outcome:
    """Wait until every request finished: watching the running daemon, or running one here."""
    follower = Follower(config, requests)
    started = time.monotonic()
    daemon = None
    thread: threading.Thread | None = None
    mode = "daemon"
    warned = 0.0
    with progress_stores(config) as stores:
        try:
            while not follower.finished:
                if stop.is_set():
                    mode = "interrupted"
                    break
                follower.refresh(stores)
                on_progress(follower)
                if daemon is not None and thread is not None and not thread.is_alive():
                    break  # the in-process daemon stopped (fatal error): reported by the caller
                waited = time.monotonic() - started
                if daemon is None and not follower.picked_up and waited > PICKUP_SECONDS:
                    if not slot_active(config):
                        daemon, thread = _start_daemon(config, make_daemon)
                        mode = "in-process"
                    elif time.monotonic() - warned > 30:
                        warned = time.monotonic()
                        log.warning("backfill_waiting_for_daemon",
                                    note="a daemon streams this bridge but has not picked the "
                                         "request up: is it a version with backfill support?")
                stop.wait(poll)
            follower.refresh(stores)
            on_progress(follower)
        finally:
            if daemon is not None:
                daemon.stop.set()
                assert thread is not None
                thread.join()
    errors = [str(e) for e in daemon.errors] if daemon is not None else []
    return Outcome(follower, mode, errors)


def _start_daemon(config: Config, make_daemon: Callable[[Config], Any] | None) -> tuple[Any, threading.Thread]:
    from bridge.daemon import Daemon

    daemon = (make_daemon or Daemon)(config)
    attach(daemon)
    log.info("backfill_running_daemon_in_process",
             note="no daemon streams this bridge: running one until the backfill is done")
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False},
                              name="bridge-daemon", daemon=True)
    thread.start()
    return daemon, thread
