"""The long-lived daemon: both directions in one process, one thread each.

Signal handlers only set a flag. Each direction finishes (or rolls back) the batch in hand and
returns; the process then exits 0. A Fatal error in either direction stops both and exits 1.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

import structlog

from bridge.backfill.driver import backfill_factory
from bridge.backfill.window import RecentKeys
from bridge.config import Config
from bridge.connect import classifier, make_source, make_target
from bridge.errors import Fatal
from bridge.mapping import Mapping
from bridge.metrics import Metrics
from bridge.model import Side
from bridge.pipeline import Direction, DirectionSettings
from bridge.versions import CommitTimes

log = structlog.get_logger("bridge.daemon")


class Daemon:
    def __init__(self, config: Config, metrics: Metrics | None = None):
        self.config = config
        self.mapping = Mapping.from_config(config)
        self.metrics = metrics or Metrics.create()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        a = config.apply
        self.settings = DirectionSettings(
            batch_rows=a.batch_rows, max_group_transactions=a.max_group_transactions,
            retry_max_seconds=a.retry_max_seconds,
        )
        # MES rows' commit times as the MES reader sees them, for last-writer-wins on the MES
        # side without version columns (the CRM side reads them from track_commit_timestamp)
        self.mes_times = CommitTimes() if self._needs_commit_times() else None
        # keys recently changed by either stream: a backfill chunk leaves them to the streams
        self.recent = RecentKeys()
        self.directions = [self._direction(side) for side in (Side.CRM, Side.MES)
                           if self.mapping.source_tables(side)]

    def _needs_commit_times(self) -> bool:
        return any(t.spec.conflict.rule in ("last_writer_wins", "column_merge")
                   and not (t.spec.conflict.crm_version_column or t.spec.conflict.mes_version_column)
                   and t.spec.direction == "both"
                   for t in self.mapping.tables)

    def _direction(self, side: Side) -> Direction:
        sources = self.mapping.source_tables(side)
        return Direction(
            side, self.mapping,
            make_source=lambda resume: make_source(self.config, side, resume, sources),
            make_target=lambda: make_target(self.config, side.other),
            classify=classifier(side.other),
            stop=self.stop, settings=self.settings, metrics=self.metrics,
            make_admin=lambda: make_target(self.config, side, admin=True),
            seen_times=self.mes_times if side is Side.MES else None,
            target_times=self.mes_times if side is Side.CRM else None,
            backfill=backfill_factory(self.config, side, self.recent),
        )

    def _run_direction(self, d: Direction) -> None:
        try:
            d.run()
        except BaseException as exc:  # recorded and reported by run(); stops the other side
            self.errors.append(exc)
            log.error("direction_failed", direction=d.name, error=str(exc))
            self.stop.set()

    def _settle_commit_times(self) -> None:
        """Commit-time last-writer-wins needs row commit times on BOTH sides (CRM:
        track_commit_timestamp); without them both sides fall back to the priority side, so
        they still decide alike."""
        if self.mes_times is None:
            return
        from bridge.connect import pg_connect

        try:
            with pg_connect(self.config) as pg:
                on = pg.execute("SELECT current_setting('track_commit_timestamp')").fetchone()[0] == "on"
        except Exception as exc:  # the directions will report the outage themselves
            log.warning("commit_time_check_failed", error=str(exc))
            on = False
        if not on:
            log.warning("commit_times_unavailable",
                        detail="last_writer_wins without version columns: track_commit_timestamp "
                               "is off on the CRM, so conflicts go to the priority side",
                        fix="ALTER SYSTEM SET track_commit_timestamp = on; restart PostgreSQL "
                            "(or set crm_version_column / mes_version_column)")
            self.mes_times = None
            for d in self.directions:
                d.seen_times = d.target_times = None
                d.use_target_commit_times = False

    def run(self, install_signals: bool = True) -> int:
        self._settle_commit_times()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        if self.config.metrics.port:
            self.metrics.serve(self.config.metrics.port, self.config.metrics.host)
            log.info("metrics_listening", host=self.config.metrics.host, port=self.config.metrics.port)
        threads = [threading.Thread(target=self._run_direction, args=(d,), name=d.name, daemon=True)
                   for d in self.directions]
        for t in threads:
            t.start()
        log.info("bridge_started", name=self.config.bridge.name,
                 directions=[d.name for d in self.directions])
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
        if self.errors:
            for exc in self.errors:
                log.error("bridge_stopped_on_error", error=str(exc),
                          kind="fatal" if isinstance(exc, Fatal) else type(exc).__name__)
            return 1
        log.info("bridge_stopped")
        return 0

    def _on_signal(self, signum: int, _frame) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stop.set()


def run_daemon(config: Config, before_start: Callable[[], None] | None = None) -> int:
    if before_start:
        before_start()
    return Daemon(config).run()
