"""One direction of the bridge: read source transactions, apply them to the target, store the
position with them, then acknowledge the source.

Ordering that makes it exactly once:
1. target transaction: [position marker] rows... [position] COMMIT
2. only then `source.acknowledge(position)`.
A crash before 1 commits loses nothing (the source re-sends from the stored position); a crash
between 1 and 2 re-sends transactions the reader skips (<= stored position) or, for the binlog,
resumes exactly after them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Protocol

import structlog

from bridge.apply import Applier, direction_name
from bridge.errors import Fatal, Retryable, SourceUnavailable
from bridge.mapping import Mapping
from bridge.metrics import Metrics
from bridge.readahead import ReadAhead
from bridge.versions import CommitTimes
from bridge.model import (
    Idle,
    Position,
    RowChange,
    Side,
    TxBegin,
    TxCommit,
    position_from_text,
    position_to_text,
)
from connectors.base import ChangeSource
from connectors.postgres.errors import Action

log = structlog.get_logger("bridge.pipeline")
audit_log = structlog.get_logger("bridge.audit")


class Target(Protocol):
    side: Side

    def connect(self) -> None: ...
    def close(self) -> None: ...


class StreamHook(Protocol):
    """Work merged into the stream by its own thread (the backfill, bridge/backfill/driver.py)."""

    wants_commit: bool  # the open target transaction holds work that should commit now

    def on_begin(self, ev: TxBegin) -> None: ...
    def on_change(self, ev: RowChange, applier: Applier) -> None: ...
    def between(self, applier: Applier, ev: TxCommit | Idle) -> None:
        """Called between source transactions (after a TxCommit or an Idle)."""
    def after_commit(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class DirectionSettings:
    batch_rows: int = 500
    max_group_transactions: int = 50
    retry_max_seconds: float = 30.0
    position_store_interval: float = 5.0
    read_ahead_events: int = 4096  # decoded source events queued ahead of the apply; 0: off


class Direction:
    """Runs one direction until `stop` is set. Survives outages; raises Fatal on bad setup."""

    def __init__(self, source_side: Side, mapping: Mapping,
                 make_source: Callable[[Position | None], ChangeSource],
                 make_target: Callable[[], Target],
                 classify: Callable[[BaseException], Action],
                 stop: threading.Event, settings: DirectionSettings | None = None,
                 metrics: Metrics | None = None,
                 make_admin: Callable[[], Target] | None = None,
                 seen_times: CommitTimes | None = None,
                 target_times: CommitTimes | None = None,
                 backfill: Callable[[Target, Applier], StreamHook] | None = None):
        self.side = source_side
        self.name = direction_name(source_side)
        self.mapping = mapping
        self.make_source = make_source
        self.make_target = make_target
        self.classify = classify
        self.stop = stop
        self.settings = settings or DirectionSettings()
        self.metrics = metrics or Metrics.disabled()
        self.log = log.bind(direction=self.name)
        self.sessions = 0
        self.make_admin = make_admin  # writer on the SOURCE side for ownership write-backs
        self.seen_times = seen_times  # commit times of this source's rows (for the other direction)
        self.target_times = target_times  # commit times of the target's rows (other direction's reader)
        self.use_target_commit_times = True  # off when the other side cannot supply them
        # backfill hook (issue 4): builds, per session, the hook that merges initial-load chunks
        # into this stream (bridge.backfill.driver.backfill_factory); None: no backfill
        self.backfill = backfill

    # --- outer loop: outages and retries --------------------------------------------------
    def run(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            sessions = self.sessions
            try:
                self._session()
                return
            except Fatal:
                raise
            except Exception as exc:  # classified: reconnect / retry, or stop
                action = self._action(exc)
                if action in (Action.STOP, Action.DEAD_LETTER):
                    # a data error the applier did not turn into a dead letter (it is not a
                    # row's fault) repeats on every retry: stop and say so
                    raise Fatal(f"{self.name}: {type(exc).__name__}: {exc}") from exc
                if self.sessions != sessions:
                    delay = 0.5  # the last outage ended: a new one starts its backoff afresh
                self.metrics.retries.labels(self.name).inc()
                if action is Action.RETRY_TXN:
                    self.log.info("retrying_transaction", reason=str(exc))
                    delay_now = 0.05
                else:
                    server = self.side if isinstance(exc, SourceUnavailable) else self.side.other
                    self.log.warning("waiting_for_server", server=server.value,
                                     error=f"{type(exc).__name__}: {exc}",
                                     retry_in_seconds=round(delay, 2))
                    delay_now = delay
                    delay = min(delay * 2, self.settings.retry_max_seconds)
                self.stop.wait(delay_now)
                continue

    def _action(self, exc: BaseException) -> Action:
        if isinstance(exc, Retryable):
            return Action.RECONNECT
        return self.classify(exc)

    # --- one connected session ------------------------------------------------------------
    def _session(self) -> None:
        target = self.make_target()
        source: ChangeSource | None = None
        applier: Applier | None = None
        hook: StreamHook | None = None
        try:
            target.connect()
            applier = Applier(target, self.mapping, self.side,  # type: ignore[arg-type]
                              batch_rows=self.settings.batch_rows, classify=self.classify)
            applier.prepare()
            if not self.use_target_commit_times:
                applier.track_target_commit_ts = False
            if self.target_times is not None and not applier.track_target_commit_ts:
                applier.target_times = self._target_time_lookup(target)
            stored_text = target.read_state(self.name)  # type: ignore[attr-defined]
            stored = position_from_text(stored_text) if stored_text else None
            source = self.make_source(stored)
            if self.settings.read_ahead_events > 0:
                source = ReadAhead(source, self.settings.read_ahead_events,
                                   prepare=applier.precompute)
            self.sessions += 1
            self.log.info("streaming", resume_from=str(stored) if stored else "start")
            hook = self.backfill(target, applier) if self.backfill is not None else None
            self._loop(source, applier, stored, hook)
        finally:
            if hook is not None:
                hook.close()
            if applier is not None and applier.in_group:
                try:
                    applier.rollback_group()
                except Exception:  # the connection may be gone; the rollback is implicit then
                    pass
            if source is not None:
                try:
                    source.close()
                except Exception as exc:
                    self.log.debug("source_close_failed", error=str(exc))
            target.close()

    def _loop(self, source: ChangeSource, applier: Applier, stored: Position | None,
              hook: StreamHook | None = None) -> None:
        s = self.settings
        in_tx = False
        group_n = 0
        last_commit: Position | None = None
        last_commit_ts: datetime | None = None
        last_store = time.monotonic()
        group_started = 0.0

        def commit_group() -> None:
            nonlocal group_n, stored
            assert last_commit is not None
            writebacks = applier.writebacks
            records = applier.commit_group(position_to_text(last_commit))
            source.acknowledge(last_commit)
            stored = last_commit
            if writebacks:
                self._write_back(writebacks)
            if hook is not None:
                hook.after_commit()
            for rec in records:
                audit_log.info("applied", **rec)
                self.metrics.applied_rows.labels(self.name).inc(rec["rows_applied"])
                self.metrics.dead_letters.labels(self.name).inc(rec["rows_dead_lettered"])
                self.metrics.conflicts.labels(self.name).inc(rec["conflicts"])
            self.metrics.transactions.labels(self.name).inc(group_n)
            if last_commit_ts is not None:
                lag = (datetime.now(timezone.utc) - last_commit_ts).total_seconds()
                self.metrics.lag.labels(self.name).set(max(lag, 0.0))
            group_n = 0

        seen = self.seen_times
        tx_ts: datetime | None = None
        for ev in source.events():
            if isinstance(ev, RowChange):
                applier.add(ev)
                if hook is not None:
                    hook.on_change(ev, applier)
                if seen is not None and ev.key:
                    seen.record(ev.table, tuple(ev.key.values()), tx_ts)
            elif isinstance(ev, TxBegin):
                if not applier.in_group:
                    if self.stop.is_set():
                        break
                    first = position_to_text(ev.position) if ev.position else (
                        position_to_text(stored) if stored else None)
                    applier.begin_group(first)
                    group_started = time.monotonic()
                applier.begin_tx(ev)
                tx_ts = ev.commit_ts
                in_tx = True
                if hook is not None:
                    hook.on_begin(ev)
            elif isinstance(ev, TxCommit):
                applier.end_tx(ev, position_to_text(ev.position))
                in_tx = False
                group_n += 1
                last_commit = ev.position
                last_commit_ts = ev.commit_ts
                if seen is not None:
                    seen.advance(ev.position)
                if (group_n >= s.max_group_transactions or time.monotonic() - group_started > 1.0
                        or (hook is not None and hook.wants_commit)):
                    commit_group()
                    last_store = time.monotonic()
                if hook is not None:
                    hook.between(applier, ev)
            elif isinstance(ev, Idle):
                if in_tx:
                    continue
                if seen is not None and ev.position is not None:
                    seen.advance(ev.position)
                if applier.in_group:
                    if ev.pending and not self.stop.is_set():
                        continue  # an echo's end in a busy stream: keep grouping
                    commit_group()
                    last_store = time.monotonic()
                elif ev.position is not None and (stored is None or _newer(ev.position, stored)):
                    # Nothing is pending up to here: the source may release it at once (a
                    # PostgreSQL fast shutdown waits until the walsender's sent WAL is
                    # confirmed). Storing it on the target costs a transaction: now and then.
                    source.acknowledge(ev.position)
                    if time.monotonic() - last_store >= s.position_store_interval:
                        self._store_position(applier, source, ev.position)
                        stored = ev.position
                        last_store = time.monotonic()
                if hook is not None:
                    hook.between(applier, ev)
                if self.stop.is_set():
                    break
        if applier.in_group and not in_tx and last_commit is not None and group_n:
            commit_group()

    def _target_time_lookup(self, target: Target) -> Callable[[str, tuple], datetime | None]:
        """Row commit times on the target, from the other direction's reader."""
        times = self.target_times
        assert times is not None

        def lookup(table: str, key: tuple) -> datetime | None:
            now = position_from_text(target.current_position_text())  # type: ignore[attr-defined]
            return times.lookup(table, key, after=now)

        return lookup

    def _write_back(self, writebacks: list) -> None:
        """Ownership violations: put the owner's value back on the source (compare-and-set,
        so a newer change on the source is never overwritten), without echo."""
        if self.make_admin is None:
            return
        from bridge.types import to_target

        admin = self.make_admin()
        try:
            self._connect_admin(admin)
            admin.begin()  # type: ignore[attr-defined]
            admin.write_state("writeback", "n/a")  # type: ignore[attr-defined]  # MES echo marker
            for tt, inc, cols in writebacks:
                tm = tt.mapping
                src_table = tm.table(self.side)
                info = admin.table_info(src_table)  # type: ignore[attr-defined]
                back = tm.names[self.side.other]
                conv = lambda col, v: to_target(v, info.columns[col], self.side)  # noqa: E731
                key = {back[k]: conv(back[k], v) for k, v in zip(tt.key, inc.new_key)}
                values = {back[c]: conv(back[c], owner) for c, (_, owner) in cols.items()}
                expect = {back[c]: conv(back[c], src) for c, (src, _) in cols.items()}
                n = admin.update_if(src_table, values, key, expect)  # type: ignore[attr-defined]
                self.log.info("ownership_write_back", table=src_table, key=list(key.values()),
                              columns=list(values), applied=bool(n))
            admin.commit()  # type: ignore[attr-defined]
        except Exception as exc:  # the target commit stands; verify --repair can finish this
            self.log.warning("ownership_write_back_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            admin.close()

    def _connect_admin(self, admin: Target, attempts: int = 10) -> None:
        """The admin origin is shared with `conflicts resolve` and `verify --repair`; only one
        session may hold it, so wait a little for the other one to finish."""
        import psycopg

        for attempt in range(attempts):
            try:
                admin.connect()
                return
            except psycopg.errors.ObjectInUse:
                admin.close()
                if attempt == attempts - 1:
                    raise
                self.stop.wait(0.5)

    def _store_position(self, applier: Applier, source: ChangeSource, pos: Position) -> None:
        """Move the stored position past skipped (echo/unbridged) traffic."""
        applier.begin_group(position_to_text(pos))
        applier.commit_group(position_to_text(pos))
        source.acknowledge(pos)


def _newer(a: Position, b: Position) -> bool:
    try:
        return a > b  # type: ignore[operator]
    except TypeError:
        return False
