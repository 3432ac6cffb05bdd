"""The backfill as a hook of one direction's stream loop (`bridge.pipeline.Direction`).

The direction's thread calls the hook for every transaction start (`on_begin`) and row
change (`on_change`), between source transactions (`between`) and after each target commit
(`after_commit`). The hook:

* polls the target's `backfill_progress` for a request of this direction (outside any open
  target transaction, at most every `poll_seconds`) and starts a read-ahead worker for it
  (`bridge.backfill.prefetch`), which prepares chunks: window, LOW mark, read, convert, HIGH;
* records every stream change of the table into the open windows;
* when a chunk's HIGH mark arrives (every change committed before it has been applied):
  writes the chunk rows whose key no stream change touched since the window opened, in the
  open target transaction, with the progress row and an audit record, and asks the
  direction to commit (`wants_commit`), so a crash redoes at most that chunk's writes.

Rows the stream changed while their chunk was in flight are left to the stream, with one
refinement: the conflict rules skip an UPDATE of a row the target does not hold yet (it may
have been deleted there), so for a row whose last change in the window was an UPDATE and that
the target lacks at HIGH, the backfill writes that UPDATE's after-image (or, when the image
was not whole, reads the row again with the next chunk).

Errors: a lost source connection is `SourceUnavailable` (the direction reconnects and the
chunk is redone); any other source-side problem fails the request (status `failed`, the error
stored), never the stream. Target-side errors are the stream's own: data errors dead-letter
the row, anything else rolls back the target transaction, chunk and progress together.

Rows already on the target are decided by the table's conflict rule as an INSERT of the
source row ("insert_exists"); with a one-way table's default rule the source (the chunk) wins.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql
import structlog

from bridge.apply import TargetTable, direction_name
from bridge.backfill.convert import DeadRow, RowConverter
from bridge.backfill.model import BackfillError, ChunkCounts, KeyCodec, Request, Status
from bridge.backfill.names import mysql_marks_table, pg_marks_table
from bridge.backfill.prefetch import Prefetcher, Prepared, WindowHub
from bridge.backfill.sink import open_sink
from bridge.backfill.source import ChunkSource, ReadPlan, open_source
from bridge.backfill.store import MysqlProgressStore, PgProgressStore, ProgressStore
from bridge.backfill.target import ChunkTarget, ChunkWriter
from bridge.backfill.window import NormKey, RecentKeys, Window, norm_key
from bridge.config import Config
from bridge.connect import classifier, classify_any
from bridge.errors import SourceUnavailable
from bridge.mapping import Mapping, TableMapping
from bridge.model import (
    BinlogPosition,
    Idle,
    PgPosition,
    Position,
    RowChange,
    Side,
    TxBegin,
    TxCommit,
)
from bridge.rowjson import to_jsonable
from bridge.types import normalize
from connectors.postgres.errors import Action

log = structlog.get_logger("bridge.backfill")
audit_log = structlog.get_logger("bridge.audit")

POLL_SECONDS = 1.0
SLOW_HIGH_SECONDS = 60.0
REVERSE_MARGIN_SECONDS = 30.0  # `both` tables: the other side's changes this long before a window
READ_AHEAD = 2  # chunks prepared and not yet written
REMEMBER_BATCH = 1024  # stream keys recorded for the other direction at most this many at once


@dataclass
class _Active:
    """The request being worked on, with everything planned for it."""

    req: Request
    tm: TableMapping
    plan: ReadPlan
    codec: KeyCodec
    target: ChunkTarget
    worker: Prefetcher
    both: bool  # rows flow both ways: consult the other side's recent changes
    stats: dict[str, float] = field(default_factory=dict)


def backfill_factory(config: Config, source: Side, recent: RecentKeys | None = None,
                     poll_seconds: float = POLL_SECONDS) -> Callable[[Any, Any], BackfillDriver]:
    """What `Direction(backfill=...)` takes: builds one driver per connected session. Give
    both directions of a daemon the same `recent`."""

    def make(target: Any, applier: Any) -> BackfillDriver:
        return BackfillDriver(config, source, applier.mapping, target, applier,
                              recent=recent, poll_seconds=poll_seconds)

    return make


class BackfillDriver:
    """One direction's backfill, for one connected session of its stream."""

    def __init__(self, config: Config, source: Side, mapping: Mapping, target: Any, applier: Any,
                 *, recent: RecentKeys | None = None, poll_seconds: float = POLL_SECONDS,
                 open_source_fn: Callable[[Config, Side], ChunkSource] = open_source,
                 read_ahead: int = READ_AHEAD, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.side = source
        self.direction = direction_name(source)
        self.mapping = mapping
        self.target = target
        self.applier = applier
        self.recent = recent
        self.poll_seconds = poll_seconds
        self.read_ahead = read_ahead
        self._open_source = open_source_fn
        self._clock = clock
        self.log = log.bind(direction=self.direction)
        self.store: ProgressStore = (
            PgProgressStore(target.conn, config.state_schema) if target.side is Side.CRM
            else MysqlProgressStore(target.conn, config.state_prefix))
        self.writer = ChunkWriter(self.direction, source, target, open_sink(target),
                                  classifier(source.other))
        self.marks_table = (pg_marks_table(config) if source is Side.CRM
                            else f"{config.mes.parts()['database']}.{mysql_marks_table(config)}")
        self.token = uuid.uuid4().hex[:12]
        self.hub = WindowHub()
        self.src: ChunkSource | None = None
        self.active: _Active | None = None
        self.next_poll = 0.0
        self.wants_commit = False  # a chunk is in the open target transaction: commit it now
        self._pending: list[tuple[str, dict]] = []  # audit lines, logged once committed
        self._both = {t.table(source): t.crm_table for t in mapping.tables
                      if t.spec.direction == "both"}
        self._keys = {t.table(source): t.keys[source] for t in mapping.tables}
        # keys seen in the stream, recorded in `recent` at the end of their transaction (or
        # every REMEMBER_BATCH keys): one clock read and one lock per batch, not per row
        self._seen: dict[str, list[NormKey]] = {}
        self._seen_n = 0

    # --- hook API (called by the direction's thread) -------------------------------------
    def on_begin(self, ev: TxBegin) -> None:
        if self.side is Side.CRM:
            self.hub.delivered(ev.xid)

    def on_change(self, ev: RowChange, applier: Any) -> None:
        if ev.table == self.marks_table:
            self._on_mark(ev, applier)
            return
        if self.active is not None:
            self.hub.observe(ev)
        if self.recent is not None and ev.table in self._both:
            self._remember(ev)

    def between(self, applier: Any, ev: TxCommit | Idle) -> None:
        """Between source transactions: look for work, check on the read-ahead worker."""
        if self._seen_n:
            self._record_seen()
        a = self.active
        if a is None:
            if not applier.in_group and self._clock() >= self.next_poll:
                self._poll()
            return
        if a.worker.error is not None:
            self._worker_failed(a)
            return
        oldest = a.worker.oldest()
        if oldest is not None:
            self._check_high_missed(a, oldest, ev)

    def after_commit(self) -> None:
        self.wants_commit = False
        pending, self._pending = self._pending, []
        for event, fields in pending:
            audit_log.info(event, **fields)

    def close(self) -> None:
        if self._seen_n:
            self._record_seen()
        if self.active is not None:
            self.active.worker.stop()
            self.active = None
        if self.src is not None:
            self.src.close()
            self.src = None

    # --- requests ------------------------------------------------------------------------
    def _poll(self) -> None:
        self.next_poll = self._clock() + self.poll_seconds
        try:
            reqs = self.store.list(self.direction)
        finally:
            self.target.rollback()  # end the read-only transaction
        for req in reqs:
            if req.status in (Status.PENDING, Status.RUNNING):
                self._activate(req)
                return

    def _activate(self, req: Request) -> None:
        try:
            active = self._guard_source(lambda: self._plan(req), req)
        except BackfillError as exc:
            self._fail(req, str(exc))
            return
        if active is None:
            return
        self._update(lambda: self.store.set_status(req, Status.RUNNING))
        self.active = active
        active.worker.start()
        self.log.info("backfill_started", table=req.table, request_id=req.request_id,
                      chunk_rows=req.chunk_rows, resume_after=req.last_key,
                      rows_copied=req.rows_copied)

    def _plan(self, req: Request) -> _Active:
        tm = next((t for t in self.mapping.tables if t.crm_table == req.table), None)
        if tm is None:
            raise BackfillError(f"table {req.table} is not in the config's [[tables]]")
        if not tm.flows_from(self.side):
            raise BackfillError(f"{req.table} does not flow {self.direction} (direction "
                                f"{tm.spec.direction!r})")
        if self.src is None:
            self.src = self._open_source(self.config, self.side)
            self.src.check()
        src_name = tm.table(self.side)
        info = self.src.table_info(src_name)
        if info is None:
            raise BackfillError(f"source table {src_name} does not exist")
        missing = [c for c in tm.columns(self.side) if c not in info.columns]
        if missing:
            raise BackfillError(f"mapped column(s) {missing} missing in {src_name}")
        columns = list(tm.columns(self.side))
        key = tm.keys[self.side]
        plan = ReadPlan(src_name, tuple(columns), tuple(key),
                        tuple(info.columns[c] for c in columns))
        codec = KeyCodec(tuple(key), plan.key_infos)
        target_name = tm.table(self.side.other)
        tinfo = self.target.table_info(target_name)
        if tinfo is None:
            raise BackfillError(f"target table {target_name} does not exist")
        conv = RowConverter(tm, self.side, columns, tinfo, plan.infos)
        tt = TargetTable(tm, tinfo, target_name, list(tm.keys[self.side.other]), conv.columns,
                         tinfo.columns)
        if req.last_key is not None:
            after, inclusive = codec.from_json(req.last_key), False
        elif req.key_min is not None:
            after, inclusive = codec.from_json(req.key_min), True
        else:
            after, inclusive = None, False
        upto = codec.from_json(req.key_max) if req.key_max is not None else None
        worker = Prefetcher(hub=self.hub, src=self.src, plan=plan, conv=conv,
                            direction=self.direction, table=req.table, token=self.token,
                            chunk_rows=req.chunk_rows, after=after, inclusive=inclusive,
                            upto=upto, check_race=self.side is Side.CRM, depth=self.read_ahead,
                            clock=self._clock)
        return _Active(req, tm, plan, codec, ChunkTarget(tt, conv, src_name, req.request_id),
                       worker, both=tm.spec.direction == "both")

    def _fail(self, req: Request, error: str) -> None:
        self.log.error("backfill_failed", table=req.table, request_id=req.request_id, error=error)
        self._update(lambda: self.store.set_status(req, Status.FAILED, error))
        if self.active is not None and self.active.req.request_id == req.request_id:
            self.active.worker.stop()
            self.active = None

    def _update(self, fn: Callable[[], None]) -> None:
        """A progress write: in the open target transaction (it commits with it), or in a
        transaction of its own."""
        if self.applier.in_group:
            fn()
            return
        self.target.begin()
        try:
            fn()
            self.target.commit()
        except BaseException:
            self.target.rollback()
            raise

    def _guard_source(self, fn: Callable[[], Any], req: Request) -> Any:
        """Run source-side I/O. A lost connection is the direction's to retry (it reconnects
        and the chunk is redone); any other database error fails the request, not the stream."""
        try:
            return fn()
        except (psycopg.Error, pymysql.err.MySQLError) as exc:
            self.close()
            if classify_any(exc) in (Action.RECONNECT, Action.RETRY_TXN):
                raise SourceUnavailable(f"backfill source: {type(exc).__name__}: {exc}") from exc
            self._fail(req, f"{type(exc).__name__}: {exc}")
            return None
        except OSError as exc:
            self.close()
            raise SourceUnavailable(f"backfill source: {type(exc).__name__}: {exc}") from exc

    def _worker_failed(self, a: _Active) -> None:
        """The read-ahead worker stopped on an error: classify it here, on the stream thread."""
        exc = a.worker.error
        assert exc is not None
        if isinstance(exc, (psycopg.Error, pymysql.err.MySQLError, OSError)):
            def rethrow() -> None:
                raise exc

            self._guard_source(rethrow, a.req)  # reconnect, or fail the request
        else:
            self.log.error("backfill_worker_failed", error=repr(exc))
            self._fail(a.req, f"{type(exc).__name__}: {exc}")

    def _check_high_missed(self, a: _Active, p: Prepared, ev: TxCommit | Idle) -> None:
        pos: Position | None = None
        if isinstance(ev, TxCommit):
            pos = ev.position
        elif isinstance(ev, Idle) and isinstance(ev.position, BinlogPosition):
            pos = ev.position  # binlog Idle positions are transaction ends; PG's are keepalives
        if pos is not None and p.upper is not None and _after(pos, p.upper):
            self._fail(a.req,
                       f"the HIGH watermark did not arrive in the change stream (the stream is "
                       f"past {p.upper}): the reader does not deliver {self.marks_table} - run "
                       "`bridge setup` and restart the daemon with this version")
            return
        if not p.warned and p.started and self._clock() - p.started > SLOW_HIGH_SECONDS:
            p.warned = True
            self.log.warning("backfill_waiting_for_high_mark", seconds=SLOW_HIGH_SECONDS,
                             note="the stream is behind; the chunk is written when it catches up")

    # --- chunks -----------------------------------------------------------------------------
    def _on_mark(self, ev: RowChange, applier: Any) -> None:
        row = ev.after
        a = self.active
        if a is None or not row or row.get("direction") != self.direction:
            return
        p = a.worker.pop(str(row.get("mark")))
        if p is not None:
            self._complete(applier, a, p)

    def _complete(self, applier: Any, a: _Active, p: Prepared) -> None:
        t_high = self._clock()
        self.hub.close(p.window)
        applier.flush()  # the stream's changes before HIGH go first
        win = p.window
        if win.truncated:
            self.log.warning("backfill_chunk_discarded", table=a.req.table,
                             reason="the source table was truncated while the chunk was read")
            a.worker.stop()
            self.active = None  # picked up again from the stored progress at the next poll
            self.next_poll = 0.0
            return
        excluded = win.changed
        if a.both and self.recent is not None:
            excluded |= self._reverse_changes(a, p, win.opened - REVERSE_MARGIN_SECONDS)
        converted = p.converted
        if excluded:
            converted = [c for nk, c in zip(p.keys, converted) if nk not in excluded]
        counts = ChunkCounts(read=len(p.keys), skipped=len(p.keys) - len(converted))
        position = f"backfill:{a.req.request_id}:{p.seq}"
        if p.dead:
            rows = [c for c in converted if not isinstance(c, DeadRow)]
            dead = [c for c in converted if isinstance(c, DeadRow)]
        else:
            rows, dead = converted, []
        self.writer.write(applier, a.target, rows, dead, counts, position, p.read.read_at)
        # rows left to the stream that it could not create: their last image, or read again
        images, again = self._stream_images(a, p, win)
        if images:
            extra = ChunkCounts()
            converted_images, dead_images = a.target.conv.convert(images)
            self.writer.write(applier, a.target, converted_images, dead_images, extra, position,
                              p.read.read_at)
            counts.written += extra.written
            counts.dead += extra.dead
            counts.conflicts += extra.conflicts
        a.worker.recheck(again)
        last = a.codec.to_json(p.last_key) if p.last_key is not None else a.req.last_key
        done = p.exhausted and not again and a.worker.finished
        req = a.req.advanced(last, counts, done)
        self.store.advance(req)
        record = self._audit(a, req, counts, p)
        self.target.insert_audit(record)
        a.req = req
        self.wants_commit = True  # commit now: a crash redoes at most this chunk's writes
        timing = {"read_ms": round(p.read_seconds * 1000, 1),
                  "wait_ms": round((t_high - p.started) * 1000, 1),
                  "write_ms": round((self._clock() - t_high) * 1000, 1)}
        self._pending.append(("backfill_chunk", {**record, "table": req.table, "chunk": req.chunks,
                                                 "rows_skipped": counts.skipped,
                                                 "last_key": req.last_key, **timing}))
        if done:
            self._pending.append(("backfill_done", {
                "table": req.table, "direction": self.direction, "request_id": req.request_id,
                "rows_copied": req.rows_copied, "rows_skipped": req.rows_skipped,
                "chunks": req.chunks, "dead_letters": req.dead_letters,
                "conflicts": req.conflicts}))
            a.worker.stop()
            self.active = None
            self.next_poll = 0.0

    def _stream_images(self, a: _Active, p: Prepared,
                       win: Window) -> tuple[list[tuple], dict[NormKey, tuple]]:
        """Chunk rows left to the stream whose last change was an UPDATE the target could not
        apply (it does not hold the row yet): (their after-images, as source rows to write;
        keys to read again because their image was not whole). See `Window`."""
        if not win.updated:
            return [], {}
        conv, plan = a.target.conv, a.plan
        raws = p.read.rows
        cands = [(raws[i], nk, conv.target_key(raws[i])) for i, nk in enumerate(p.keys)
                 if nk in win.updated]
        cands = [(raw, nk, tk) for raw, nk, tk in cands if tk is not None]
        if not cands:
            return [], {}
        key_infos = [conv.infos[i] for i in conv.key_index]
        held = self.writer.held_keys(a.target, [tk for _, _, tk in cands])
        images: list[tuple] = []
        again: dict[NormKey, tuple] = {}
        kidx = plan.key_index
        for raw, nk, tk in cands:
            if norm_key(tk, key_infos) in held:
                continue  # the stream's change applied to the row the target holds
            image = win.updated[nk]
            if image is not None and all(c in image for c in plan.columns):
                images.append(tuple(image[c] for c in plan.columns))
            else:
                again[nk] = tuple(raw[i] for i in kidx)
        return images, again

    def _reverse_changes(self, a: _Active, p: Prepared, since: float) -> set[NormKey]:
        """Chunk keys the other side changed recently (see `RecentKeys`)."""
        assert self.recent is not None
        theirs = self.recent.since(a.req.table, self.side.other.value, since)
        if not theirs:
            return set()
        kidx = a.plan.key_index
        return {nk for nk, raw in zip(p.keys, p.read.rows)
                if tuple(normalize(raw[i]) for i in kidx) in theirs}

    def _remember(self, ev: RowChange) -> None:
        key = self._keys[ev.table]
        seen = self._seen.get(ev.table)
        if seen is None:
            seen = self._seen[ev.table] = []
        for image in (ev.before, ev.after):
            if image and all(k in image for k in key):
                if len(key) == 1:
                    v = image[key[0]]
                    seen.append((v if type(v) is int else normalize(v),))  # int: its own form
                else:
                    seen.append(tuple([normalize(image[k]) for k in key]))
                self._seen_n += 1
        if self._seen_n >= REMEMBER_BATCH:
            self._record_seen()

    def _record_seen(self) -> None:
        assert self.recent is not None
        for source_table, keys in self._seen.items():
            if keys:
                self.recent.record_many(self._both[source_table], self.side.value, keys)
                keys.clear()
        self._seen_n = 0

    def _audit(self, a: _Active, req: Request, counts: ChunkCounts, p: Prepared) -> dict:
        rows, n = p.read.rows, p.read.range_rows
        kidx = a.plan.key_index
        name = a.target.tt.name

        def key(i: int) -> list[Any]:
            return [name, to_jsonable([rows[i][j] for j in kidx])]

        # the key range copied (first, last), then keys read again (at most 20 shown)
        sample = [key(0), key(n - 1)] if n else []
        sample += [key(i) for i in range(n, min(len(rows), n + 20))]
        return {
            "direction": self.direction,
            "source_position": f"backfill:{req.request_id}:{p.seq}",
            "source_xid": f"backfill:{req.request_id}",
            "source_commit_ts": p.read.read_at,
            "tables": {name: counts.copied},
            "sample_keys": sample,
            "rows_applied": counts.written,
            "rows_dead_lettered": counts.dead,
            "conflicts": counts.conflicts,
            "outcome": "backfill",
        }


def _after(a: Position, b: Position) -> bool:
    if isinstance(a, PgPosition) and isinstance(b, PgPosition):
        return a.lsn > b.lsn
    if isinstance(a, BinlogPosition) and isinstance(b, BinlogPosition):
        return a > b
    return False
