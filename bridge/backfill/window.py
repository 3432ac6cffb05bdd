"""Keys changed in the stream while a chunk is in flight, and recent changes on the other
side of bidirectional tables. Pure (no I/O); `RecentKeys` is thread-safe.

Keys are compared in normal form (`bridge.types.normalize`), so a key decoded from the change
stream and the same key read by a SELECT compare equal (e.g. a MySQL TIMESTAMP: aware UTC
from the binlog, naive UTC from PyMySQL).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bridge.model import UNCHANGED, Op, Row, RowChange
from bridge.schema import ColumnInfo, Family
from bridge.types import normalize

NormKey = tuple[Any, ...]


def norm_key(values: Sequence[Any], infos: Sequence[ColumnInfo | None]) -> NormKey:
    """The comparable form of a key."""
    return tuple(normalize(v, ci) for v, ci in zip(values, infos))


def key_normalizer(index: Sequence[int],
                   infos: Sequence[ColumnInfo | None]) -> Callable[[Sequence[Any]], NormKey]:
    """`row -> norm_key([row[i] for i in index], infos)`, planned once per table.

    The common key (one integer column, not a MySQL TINYINT(1)) skips `normalize`: an `int`
    is its own normal form there. Any other value takes the general path.
    """
    index, infos = tuple(index), tuple(infos)
    if len(index) == 1 and infos[0] is not None and infos[0].family is Family.INT \
            and not infos[0].bool_like:
        (i,), (ci,) = index, infos

        def one_int(row: Sequence[Any]) -> NormKey:
            v = row[i]
            return (v,) if type(v) is int else (normalize(v, ci),)

        return one_int

    def general(row: Sequence[Any]) -> NormKey:
        return tuple(normalize(row[i], ci) for i, ci in zip(index, infos))

    return general


class Window:
    """Keys of one source table changed by stream events since the window opened.

    Opened before the LOW watermark is written, closed when the HIGH watermark arrives.
    `exists` tells, per changed key, whether the row exists after its last change in the
    window (INSERT/UPDATE: yes; DELETE, or the old key of a key change: no). For keys whose
    last change was an UPDATE, `updated` keeps its after-image (None when the change did not
    carry the whole row): the conflict rules skip an UPDATE of a row the target does not hold
    yet, so at HIGH the backfill writes that image for such rows (or reads them again).
    """

    def __init__(self, table: str, key: Sequence[str], infos: Sequence[ColumnInfo | None],
                 clock: Callable[[], float] = time.monotonic):
        self.table = table
        self.key = tuple(key)
        self.infos = tuple(infos)
        self.opened = clock()
        self.exists: dict[NormKey, bool] = {}
        self.updated: dict[NormKey, Row | None] = {}
        self.truncated = False
        self.events = 0

    @property
    def changed(self) -> set[NormKey]:
        return set(self.exists)

    def observe(self, change: RowChange) -> None:
        """Record a stream change of this window's table."""
        self.events += 1
        if change.op is Op.TRUNCATE:
            self.truncated = True
            return
        old = self._key(change.before)
        new = self._key(change.after)
        if old is not None:
            self.exists[old] = False  # deleted, or moved away by a key change
            self.updated.pop(old, None)
        if new is not None:
            self.exists[new] = True
            if change.op is Op.UPDATE:
                after = change.after or {}
                whole = not any(v is UNCHANGED for v in after.values())
                self.updated[new] = dict(after) if whole else None
            else:
                self.updated.pop(new, None)

    def _key(self, image: Row | None) -> NormKey | None:
        if not image:
            return None
        try:
            raw = tuple(image[k] for k in self.key)
        except KeyError:
            return None
        if any(v is UNCHANGED for v in raw):
            return None
        return norm_key(raw, self.infos)


class RecentKeys:
    """Keys of bidirectional tables changed on each side, kept for `horizon` seconds.

    Shared by the two directions of one process: the backfill of a `both` table in direction
    S->T leaves to the streams every key that T's own stream changed recently (that change
    travels T->S and may not have reached S when the chunk was read; writing the chunk would
    overwrite it on T).
    """

    def __init__(self, horizon: float = 60.0, per_table: int = 200_000,
                 clock: Callable[[], float] = time.monotonic):
        self.horizon = horizon
        self.per_table = per_table
        self._clock = clock
        self._lock = threading.Lock()
        self._log: dict[tuple[str, str], deque[tuple[float, NormKey]]] = {}

    def record(self, table: str, side: str, key: NormKey) -> None:
        self.record_many(table, side, (key,))

    def record_many(self, table: str, side: str, keys: Iterable[NormKey]) -> None:
        """Record keys changed now (one clock read and one lock for all)."""
        now = self._clock()
        with self._lock:
            q = self._log.setdefault((table, side), deque(maxlen=self.per_table))
            q.extend([(now, k) for k in keys])
            while q and q[0][0] < now - self.horizon:
                q.popleft()

    def since(self, table: str, side: str, since: float) -> set[NormKey]:
        with self._lock:
            q = self._log.get((table, side))
            return {k for t, k in q if t >= since} if q else set()


def exclude(rows: Iterable[tuple[NormKey, Any]], keys: set[NormKey]) -> tuple[list[Any], int]:
    """Rows whose key is not in `keys`, and how many were left out."""
    kept, skipped = [], 0
    for nk, row in rows:
        if nk in keys:
            skipped += 1
        else:
            kept.append(row)
    return kept, skipped
