"""Writing a chunk into the target, inside the direction's open target transaction.

Per chunk: dead-letter the rows that did not convert. If the target holds no row in the
chunk's key range, insert them all in one bulk statement (`_insert_fresh`; it falls back to
the general path on any duplicate key). Otherwise: lock the chunk's keys the target holds
(keys only); bulk-insert the absent rows (`bridge.backfill.sink`); rows already there (or
inserted meanwhile by someone else) go through the table's conflict rule as an INSERT of the
source row ("insert_exists"), exactly as a streamed insert would. Data errors the target
raises fall back to row-by-row writes and dead-letter only the refused rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from bridge.apply import TargetTable
from bridge.backfill.convert import DeadRow, RowConverter
from bridge.backfill.model import ChunkCounts
from bridge.backfill.sink import ChunkSink
from bridge.backfill.window import norm_key
from bridge.model import Op, Side
from bridge.rowjson import to_jsonable
from conflict.ops import Delete, Incoming, Insert, Update, WriteOp
from connectors.postgres.errors import Action

log = structlog.get_logger("bridge.backfill")


@dataclass
class ChunkTarget:
    """Where a request's chunks go."""

    tt: TargetTable
    conv: RowConverter
    source_table: str
    request_id: str


class ChunkWriter:
    """Writes chunks for one direction. Runs on the direction's thread only."""

    def __init__(self, direction: str, source: Side, target: Any, sink: ChunkSink,
                 classify: Callable[[BaseException], Action]):
        self.direction = direction
        self.source = source
        self.target = target
        self.sink = sink
        self._classify = classify

    def write(self, applier: Any, ct: ChunkTarget, rows: list[tuple], dead: list[DeadRow],
              counts: ChunkCounts, position: str, read_at: datetime | None) -> None:
        """Write converted `rows`; dead-letter `dead`. Adds to `counts`."""
        for d in dead:
            self.dead_letter(ct, d, position)
        counts.dead += len(dead)
        if not rows:
            return
        if self._insert_fresh(ct, rows):
            counts.written += len(rows)
            counts.copied += len(rows)
            return
        tt, conv = ct.tt, ct.conv
        key_infos = [conv.infos[i] for i in conv.key_index]
        keys = [conv.key_of(r) for r in rows]
        nkeys = [norm_key(k, key_infos) for k in keys]
        held = self.sink.lock_keys(tt.name, tt.key, keys, key_infos)  # keys only: cheap
        wanted = keys if held is None else [k for k, nk in zip(keys, nkeys) if nk in held]
        current = {norm_key(k, key_infos): row for k, row in
                   self.target.fetch_for_update(tt.name, tt.columns, tt.key, wanted).items()}
        absent = [r for r, nk in zip(rows, nkeys) if nk not in current]
        present = [r for r, nk in zip(rows, nkeys) if nk in current]
        inserted, again = self._insert_absent(ct, absent, counts, position)
        if again:  # inserted by someone else since the lock (PostgreSQL): lock and decide
            got = self.target.fetch_for_update(tt.name, tt.columns, tt.key,
                                               [conv.key_of(r) for r in again])
            current.update({norm_key(k, key_infos): row for k, row in got.items()})
            present += again
        counts.written += inserted
        counts.copied += inserted
        self._resolve(applier, ct, present, current, key_infos, counts, position, read_at)

    def held_keys(self, ct: ChunkTarget, keys: list[tuple]) -> set[tuple]:
        """Which of `keys` (target values) the target holds, locked; in normal form."""
        key_infos = [ct.conv.infos[i] for i in ct.conv.key_index]
        held = self.sink.lock_keys(ct.tt.name, ct.tt.key, keys, key_infos)
        if held is None:
            held = {norm_key(k, key_infos) for k in
                    self.target.fetch_for_update(ct.tt.name, ct.tt.key, ct.tt.key, keys)}
        return held

    # --- the fast path: a key range the target does not hold -----------------------------
    def _insert_fresh(self, ct: ChunkTarget, rows: list[tuple]) -> bool:
        """When the target holds no row in the chunk's key range, insert all rows at once:
        no lock read, no conflict rule (a row absent from the target is simply inserted, as
        the general path would). True when done; False when nothing was written and the
        general path must run: the range holds rows, or the insert met a duplicate key
        (a row inserted meanwhile, or another unique value) or refused a value, and was
        rolled back to its savepoint.

        Correct whatever the probe says: it is only a guess of which path is cheaper. What
        makes the rows absent is the target's unique key itself: an INSERT/COPY that
        succeeded found none of its keys there, and one that did not changed nothing.
        """
        tt, conv = ct.tt, ct.conv
        bounds = _key_bounds(rows, conv.key_index)
        if bounds is None or self.sink.holds_any(tt.name, tt.key, *bounds):
            return False
        self.target.savepoint()
        try:
            self.sink.insert_all(tt.name, conv.columns, rows)
        except Exception as exc:
            if not (self.sink.is_duplicate(exc) or self._classify(exc) is Action.DEAD_LETTER):
                raise
            self.target.rollback_savepoint()
            log.debug("backfill_fast_path_declined", table=tt.name, reason=str(exc)[:200])
            return False
        self.target.release_savepoint()
        return True

    # --- absent rows ----------------------------------------------------------------------
    def _insert_absent(self, ct: ChunkTarget, rows: list[tuple], counts: ChunkCounts,
                       position: str) -> tuple[int, list[tuple]]:
        """Bulk insert; (rows inserted, rows found present). Data errors: row by row."""
        if not rows:
            return 0, []
        tt, conv = ct.tt, ct.conv
        self.target.savepoint()
        try:
            not_in = self.sink.insert_new(tt.name, conv.columns, tt.key, rows, conv.infos)
        except Exception as exc:
            if self._classify(exc) is not Action.DEAD_LETTER:
                raise
            self.target.rollback_savepoint()
            return self._insert_one_by_one(ct, rows, counts, position)
        self.target.release_savepoint()
        again = [rows[i] for i in not_in]
        return len(rows) - len(again), again

    def _insert_one_by_one(self, ct: ChunkTarget, rows: list[tuple], counts: ChunkCounts,
                           position: str) -> tuple[int, list[tuple]]:
        tt, conv = ct.tt, ct.conv
        inserted, again = 0, []
        for row in rows:
            self.target.savepoint()
            try:
                self.target.insert_rows(tt.name, conv.columns, [row])
            except Exception as exc:
                action = self._classify(exc)
                if action is Action.DEAD_LETTER:
                    self.target.rollback_savepoint()
                    self.dead_letter(ct, DeadRow(dict(zip(conv.columns, row)),
                                                 dict(zip(tt.key, conv.key_of(row))),
                                                 f"target refused the row: {exc}"), position)
                    counts.dead += 1
                    continue
                if action is Action.RETRY_TXN:  # duplicate key: it is there now
                    self.target.rollback_savepoint()
                    again.append(row)
                    continue
                raise
            self.target.release_savepoint()
            inserted += 1
        return inserted, again

    # --- rows the target holds: the conflict rule ---------------------------------------------
    def _resolve(self, applier: Any, ct: ChunkTarget, rows: list[tuple], current: dict,
                 key_infos: list, counts: ChunkCounts, position: str,
                 read_at: datetime | None) -> None:
        if not rows:
            return
        tt, conv = ct.tt, ct.conv
        resolver = applier.resolver
        raw_keys = [conv.key_of(r) for r in rows]
        commit_ts: dict = {}
        if getattr(applier, "track_target_commit_ts", False):
            commit_ts = {norm_key(k, key_infos): ts for k, ts in
                         self.target.commit_times(tt.name, tt.key, raw_keys).items()}
        lookup = getattr(applier, "target_times", None)
        planned: list[tuple[Incoming, WriteOp]] = []
        for row, key in zip(rows, raw_keys):
            nk = norm_key(key, key_infos)
            found = current.get(nk)
            after = dict(zip(conv.columns, row))
            if found is None:  # not inserted, yet not there: another unique value collides
                self.dead_letter(ct, DeadRow(after, dict(zip(tt.key, key)),
                                             "not inserted: the target holds another row with "
                                             "the same value in a unique column"), position)
                counts.dead += 1
                continue
            found_key = tuple(found[k] for k in tt.key)
            inc = Incoming(op=Op.INSERT, source=self.source, table=tt.name, before=None,
                           after=after, old_key=found_key, new_key=found_key, commit_ts=read_at,
                           position=position)
            target_ts: Any = commit_ts.get(nk)
            if target_ts is None and lookup is not None:
                target_ts = _Once(lambda k=found_key: lookup(tt.name, k))
            decision = resolver.decide(inc, found, tt, target_ts)
            resolved_ts = target_ts.value if isinstance(target_ts, _Once) else target_ts
            for rec in decision.conflicts:
                resolver.record(self.target, self.direction, tt, inc, rec, None, found, resolved_ts)
                counts.conflicts += 1
            if decision.writeback:
                applier.writebacks.append((tt, inc, decision.writeback))
            counts.copied += 1
            for op in decision.ops:
                planned.append((inc, op))
        self._execute(ct, planned, counts, position)

    def _execute(self, ct: ChunkTarget, planned: list[tuple[Incoming, WriteOp]],
                 counts: ChunkCounts, position: str) -> None:
        if not planned:
            return
        self.target.savepoint()
        try:
            for _, op in planned:
                self._one(ct, op)
        except Exception as exc:
            if self._classify(exc) is not Action.DEAD_LETTER:
                raise
            self.target.rollback_savepoint()
            for inc, op in planned:
                self.target.savepoint()
                try:
                    self._one(ct, op)
                except Exception as exc2:
                    if self._classify(exc2) is not Action.DEAD_LETTER:
                        raise
                    self.target.rollback_savepoint()
                    self.dead_letter(ct, DeadRow(inc.after or {}, dict(zip(ct.tt.key, inc.new_key)),
                                                 f"target refused the row: {exc2}"), position)
                    counts.dead += 1
                    counts.copied -= 1
                    continue
                self.target.release_savepoint()
                counts.written += 1
            return
        self.target.release_savepoint()
        counts.written += len(planned)

    def _one(self, ct: ChunkTarget, op: WriteOp) -> None:
        tt = ct.tt
        if isinstance(op, Insert):
            cols = [c for c in tt.columns if c in op.row]
            self.target.insert_rows(tt.name, cols, [tuple(op.row[c] for c in cols)])
        elif isinstance(op, Update):
            if op.values:
                cols = list(op.values)
                self.target.update_rows(tt.name, cols, tt.key,
                                        [tuple(op.values.values()) + tuple(op.key)])
        elif isinstance(op, Delete):
            self.target.delete_rows(tt.name, tt.key, [op.key])

    # --- bookkeeping ----------------------------------------------------------------------------
    def dead_letter(self, ct: ChunkTarget, d: DeadRow, position: str) -> None:
        record = {
            "direction": self.direction,
            "source_position": position,
            "source_xid": f"backfill:{ct.request_id}",
            "source_table": ct.source_table,
            "target_table": ct.tt.name,
            "op": Op.INSERT.value,
            "row_key": to_jsonable(d.key),
            "row_data": to_jsonable(d.row),
            "reason": d.reason,
        }
        self.target.insert_dead_letter(record)
        log.warning("dead_letter", **{k: v for k, v in record.items() if k != "row_data"})


def _key_bounds(rows: list[tuple], key_index: list[int]) -> tuple[tuple, tuple] | None:
    """(lowest, highest) target key of `rows` by Python's ordering, or None when the keys do
    not compare (NULL, mixed types). Only a guess of the target's order (collations may
    differ): `_insert_fresh` stays correct either way."""
    try:
        if len(key_index) == 1:
            (k,) = key_index
            values = [r[k] for r in rows]
            low, high = (min(values),), (max(values),)
        else:
            keys = [tuple(r[i] for i in key_index) for r in rows]
            low, high = min(keys), max(keys)
    except TypeError:
        return None
    if any(v is None for v in low) or any(v is None for v in high):
        return None
    return low, high


class _Once:
    """A target commit time looked up only if a rule asks for it (the lookup may wait)."""

    def __init__(self, fn: Callable[[], Any]):
        self._fn, self.done, self.value = fn, False, None

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self._fn(), True
        return self.value
