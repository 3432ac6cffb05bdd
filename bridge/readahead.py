"""Read ahead: a change source read and decoded in its own thread, a bounded queue ahead of
the direction's thread, which meanwhile applies the previous changes.

Decoding (pgoutput text values, binlog row images) is Python work; applying waits on the
target's round trips and commits. One thread doing both leaves one of them idle at any time;
two threads overlap the waits of one with the work of the other (the GIL is released while a
thread waits on a socket).

What stays exactly as with the source alone:
* order: events are delivered in the order the source yields them, errors after the events
  read before them (the same exception object, raised in the consumer's thread);
* Idle: the source's Idle arrives after every event it followed, so "nothing pending before
  this position" still holds when the consumer sees it; an Idle with more events already
  read behind it is marked `pending` (for the consumer it is no pause: it keeps grouping);
* acknowledge: the sources want it from the thread that iterates them (PgChangeSource sends
  the standby status update on its connection), so `acknowledge` only records the position;
  the reading thread passes it on between two events, and while it waits for queue room.
  The PostgreSQL source yields at least an Idle every idle period, so an acknowledgement is
  passed on within about that time; the last one is passed on before the source is closed;
* close: the reading thread closes the source itself when it stops (never two threads on one
  connection).
* prepare: an optional function run on every RowChange in the reading thread before it is
  queued (the applier converts the row for its target there: `Applier.precompute`), so that
  work too overlaps the applying thread's waits. It must not raise and must only fill
  `RowChange.prepared`.
Memory: at most `max_events` (+ one chunk) decoded events wait in the queue.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any, Callable, Iterator

import structlog

from bridge.model import Event, Idle, Position, RowChange, TxCommit
from connectors.base import ChangeSource

log = structlog.get_logger("bridge.readahead")

_END = object()
_CLOSE_WAIT_SECONDS = 5.0
# A thread whose socket read or write completes must get the GIL back from a thread that is
# decoding; CPython makes the holder let go only every "switch interval" (5 ms by default),
# which would add up to 5 ms to every round trip of the applying thread. Process-wide.
SWITCH_INTERVAL = 0.0005


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


class ReadAhead:
    """`connectors.base.ChangeSource` that runs another one in a thread (see the module doc)."""

    def __init__(self, source: ChangeSource, max_events: int = 4096, chunk: int = 256,
                 prepare: Callable[[RowChange], None] | None = None):
        self.side = source.side
        self.source = source
        self._prepare = prepare
        self._chunk = max(1, chunk)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_events // self._chunk))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ack: Position | None = None
        self._thread: threading.Thread | None = None

    # -- ChangeSource ----------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        if self._thread is not None:
            raise RuntimeError("ReadAhead.events() may run once")
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{threading.current_thread().name}-read")
        self._thread.start()
        get, waiting = self._queue.get, self._queue.qsize
        while True:
            item = get()
            if type(item) is list:
                if item and type(item[-1]) is Idle and waiting():
                    # the source was idle when it read this, but more has been read since:
                    # for the consumer it is a position update, not a pause
                    item[-1].pending = True
                yield from item
            elif item is _END:
                return
            else:
                raise item.exc

    def acknowledge(self, position: Position) -> None:
        with self._lock:
            self._ack = position

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is None:
            self.source.close()
            return
        while True:  # room for the reader's last put, so it sees the stop at once
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        thread.join(_CLOSE_WAIT_SECONDS)
        if thread.is_alive():  # blocked in a read: it closes the source when the read returns
            log.warning("read_ahead_still_reading", seconds=_CLOSE_WAIT_SECONDS)

    # -- the reading thread ----------------------------------------------------------------
    def _pass_ack(self) -> None:
        with self._lock:
            ack, self._ack = self._ack, None
        if ack is not None:
            self.source.acknowledge(ack)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                self._pass_ack()
        return False

    def _run(self) -> None:
        buf: list[Event] = []
        chunk = self._chunk
        prepare = self._prepare
        try:
            for ev in self.source.events():
                buf.append(ev)
                kind = type(ev)
                if kind is RowChange:
                    if prepare is not None:
                        prepare(ev)
                    if len(buf) < chunk:
                        continue
                if kind is TxCommit or (kind is Idle and not ev.pending) or len(buf) >= chunk:
                    if not self._put(buf):
                        return
                    buf = []
                    self._pass_ack()
                    if self._stop.is_set():
                        return
            self._put(buf)
            self._put(_END)
        except BaseException as exc:  # delivered in order, raised in the consumer's thread
            if buf:
                self._put(buf)
            self._put(_Failed(exc))
        finally:
            try:
                self._pass_ack()
            except Exception as exc:  # the connection may be gone; nothing left to tell it
                log.debug("read_ahead_final_ack_failed", error=str(exc))
            try:
                self.source.close()
            except Exception as exc:
                log.debug("read_ahead_source_close_failed", error=str(exc))
