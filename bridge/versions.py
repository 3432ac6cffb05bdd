"""Commit times of recently written rows, as one side's reader saw them.

MySQL/MariaDB keeps no per-row commit time. For last-writer-wins without a version column the
MES-side applier must know when the MES row it found was committed: the MES reader (the other
direction's thread) records every row it streams here, and the applier waits until that reader
has read past the server's current binlog position before looking a key up. Both directions then
compare the same two timestamps and reach the same decision.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

from bridge.model import Position
from bridge.types import normalize


def _key(table: str, key: tuple) -> tuple:
    return (table, tuple(normalize(v) for v in key))


class CommitTimes:
    def __init__(self, capacity: int = 500_000):
        self._capacity = capacity
        self._times: OrderedDict[tuple, datetime] = OrderedDict()
        self._position: Position | None = None
        self._cond = threading.Condition()

    def record(self, table: str, key: tuple, ts: datetime | None) -> None:
        if ts is None:
            return
        k = _key(table, key)
        with self._cond:
            self._times[k] = ts
            self._times.move_to_end(k)
            if len(self._times) > self._capacity:
                self._times.popitem(last=False)

    def advance(self, position: Position) -> None:
        with self._cond:
            if self._position is None or _ge(position, self._position):
                self._position = position
                self._cond.notify_all()

    def lookup(self, table: str, key: tuple, *, after: Position | None, timeout: float = 5.0) -> datetime | None:
        """The last commit time seen for the row, once the reader has passed `after`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while after is not None and (self._position is None or not _ge(self._position, after)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._times.get(_key(table, key))


def _ge(a: Any, b: Any) -> bool:
    try:
        return a >= b
    except TypeError:
        return False
