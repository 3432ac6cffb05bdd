"""Read-ahead: a worker thread prepares the next chunks of the active request while the
direction's thread writes the current one.

Preparing a chunk: open its window (registered with the `WindowHub`, so the stream thread
records every change it handles from now on), write the LOW mark, read the chunk, convert
its rows (mapping + types: the CPU-heavy part), queue it, write the HIGH mark. The stream
thread completes chunks in queue order when their HIGH marks arrive (`Prefetcher.pop`).

At most `depth` chunks are prepared and not yet completed; each has its own window, so
overlapping windows are fine. A crash loses the prepared chunks (they are read again) but
writes none of them: progress only moves when a chunk is written.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bridge.backfill.convert import DeadRow, RowConverter
from bridge.backfill.source import ChunkRead, ChunkSource, ReadPlan
from bridge.backfill.window import NormKey, Window, key_normalizer
from bridge.model import Position, RowChange

log = structlog.get_logger("bridge.backfill")

RECENT_XIDS = 20_000


class WindowHub:
    """Open windows and recently delivered transaction ids, shared by the stream thread
    (which records into them) and the read-ahead worker (which opens windows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: list[Window] = []
        self._xids: deque[str] = deque()
        self._xid_set: set[str] = set()

    def open(self, window: Window) -> None:
        with self._lock:
            self._windows.append(window)

    def close(self, window: Window) -> None:
        with self._lock:
            if window in self._windows:
                self._windows.remove(window)

    def observe(self, ev: RowChange) -> None:
        with self._lock:
            for w in self._windows:
                if w.table == ev.table:
                    w.observe(ev)

    def delivered(self, xid: str) -> None:
        with self._lock:
            self._xids.append(xid)
            self._xid_set.add(xid)
            if len(self._xids) > RECENT_XIDS:
                self._xid_set.discard(self._xids.popleft())

    def any_delivered(self, xids: frozenset[int]) -> bool:
        with self._lock:
            return any(str(x) in self._xid_set for x in xids)


@dataclass
class Item:
    """One chunk row: its key (normal form), the row as read, and as converted."""

    nk: NormKey
    raw: tuple
    converted: tuple | DeadRow


@dataclass
class Prepared:
    """A chunk read and converted, waiting for its HIGH mark. Row i of the chunk is
    `read.rows[i]` (as read), `keys[i]` (its source key, normal form) and `converted[i]`
    (target values, or its DeadRow): parallel lists, no object per row."""

    seq: int
    high: str
    read: ChunkRead
    window: Window
    keys: list[NormKey]
    converted: list[tuple | DeadRow]
    dead: int  # how many of `converted` are DeadRows
    last_key: tuple | None  # last key of the key range in this chunk (None: no range rows)
    exhausted: bool  # no range rows after this chunk
    read_seconds: float
    upper: Position | None = None  # a source position after the HIGH mark's commit
    started: float = 0.0  # when the HIGH mark was written
    warned: bool = False

    @property
    def items(self) -> list[Item]:
        """The rows as `Item`s (for inspection; the hot paths use the lists)."""
        return [Item(nk, r, c) for nk, r, c in zip(self.keys, self.read.rows, self.converted)]


class Prefetcher(threading.Thread):
    """Prepares the chunks of one request, `depth` ahead. Errors stop it; `error` holds them."""

    def __init__(self, *, hub: WindowHub, src: ChunkSource, plan: ReadPlan, conv: RowConverter,
                 direction: str, table: str, token: str, chunk_rows: int,
                 after: tuple | None, inclusive: bool, upto: tuple | None,
                 check_race: bool, depth: int = 2, clock: Callable[[], float] = time.monotonic):
        super().__init__(name=f"backfill-{direction}", daemon=True)
        self.hub, self.src, self.plan, self.conv = hub, src, plan, conv
        self.direction, self.table, self.token = direction, table, token
        self.chunk_rows, self.depth, self.check_race = chunk_rows, depth, check_race
        self.after, self.inclusive, self.upto = after, inclusive, upto
        self.range_done = False
        self.seq = 0
        self._clock = clock
        self._norm = key_normalizer(plan.key_index, plan.key_infos)
        self._cond = threading.Condition()
        self._queue: deque[Prepared] = deque()
        self._recheck: dict[NormKey, tuple] = {}
        self._preparing = False
        self._stopping = False
        self.error: BaseException | None = None

    # --- the stream thread's side ---------------------------------------------------------
    def oldest(self) -> Prepared | None:
        with self._cond:
            return self._queue[0] if self._queue else None

    def pop(self, high: str) -> Prepared | None:
        """The chunk whose HIGH mark this is (chunks complete in order)."""
        with self._cond:
            if not self._queue or self._queue[0].high != high:
                return None
            prepared = self._queue.popleft()
            self._cond.notify_all()
            return prepared

    def recheck(self, keys: dict[NormKey, tuple]) -> None:
        """Keys to read again with the next chunk."""
        if keys:
            with self._cond:
                self._recheck.update(keys)
                self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """The range is read, nothing is pending or prepared."""
        with self._cond:
            return (self.range_done and not self._recheck and not self._preparing
                    and not self._queue)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=60)
        with self._cond:
            for p in self._queue:
                self.hub.close(p.window)
            self._queue.clear()

    # --- the worker -------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (
                        len(self._queue) < self.depth and (not self.range_done or self._recheck)):
                    self._cond.wait(0.5)
                if self._stopping:
                    return
                keys, self._recheck = self._recheck, {}
                self._preparing = True
            try:
                self._prepare(keys)
            except BaseException as exc:  # handed to the stream thread, which classifies it
                with self._cond:
                    self.error = exc
                    self._preparing = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._preparing = False
                self._cond.notify_all()

    def _prepare(self, recheck: dict[NormKey, tuple]) -> None:
        self.seq += 1
        stem = f"{self.token}:{self.seq}"
        plan = self.plan
        window = Window(plan.table, plan.key, plan.key_infos, clock=self._clock)
        self.hub.open(window)  # the window opens before LOW: a superset of what DBLog needs
        try:
            self.src.write_mark(self.direction, f"{stem}:low", self.table)
            limit = 0 if self.range_done else self.chunk_rows
            # one row more than the chunk: a full chunk then tells whether the range goes on
            read = self.src.read_chunk(plan, self.after, self.inclusive, self.upto,
                                       limit + 1 if limit else 0, list(recheck.values()))
        except BaseException:
            self.hub.close(window)
            raise
        exhausted = read.range_rows <= limit
        if not exhausted:
            del read.rows[limit]
            read.range_rows = limit
        if self.check_race and read.in_progress and self.hub.any_delivered(read.in_progress):
            # PostgreSQL: a transaction the stream already delivered was not yet visible to
            # the snapshot: its change may be missing from the chunk. Read it again.
            self.hub.close(window)
            with self._cond:
                self._recheck.update(recheck)
            log.info("backfill_chunk_reread", table=self.table, reason="snapshot race")
            return
        kidx = plan.key_index
        converted, dead = self.conv.convert_all(read.rows)
        keys = list(map(self._norm, read.rows))
        last = tuple(read.rows[read.range_rows - 1][i] for i in kidx) if read.range_rows else None
        if last is not None:
            self.after, self.inclusive = last, False
        self.range_done = self.range_done or exhausted
        prepared = Prepared(self.seq, f"{stem}:high", read, window, keys, converted, dead, last,
                            exhausted, self._clock() - window.opened)
        with self._cond:
            self._queue.append(prepared)  # queued before HIGH exists: its arrival finds it
        try:
            prepared.upper = self.src.write_mark(self.direction, prepared.high, self.table)
        finally:
            prepared.started = self._clock()
        log.debug("backfill_chunk_read", table=self.table, seq=self.seq, rows=len(read.rows),
                  range_rows=read.range_rows, rechecked=len(recheck), dead=dead)

