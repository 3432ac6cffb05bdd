"""Apply source transactions to a target, generically over the ChangeTarget protocol.

Per target transaction: write the source position first (the MySQL echo marker), then for each
source change: map columns, convert values to the target's types (unrepresentable values go to
the dead-letter table), batch consecutive changes of one table, lock and read the current target
rows of the batch, let the conflict layer decide, and write the resulting operations grouped
into multi-row statements. Source order is kept, so foreign keys hold as they did on the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime
from typing import Any, Callable

import structlog

from bridge.errors import SetupError, Unrepresentable
from bridge.mapping import Mapping, TableMapping
from bridge.model import UNCHANGED, InvalidValue, Op, RowChange, Side, TxBegin, TxCommit
from bridge.rowjson import to_jsonable
from bridge.schema import TableInfo
from bridge.types.fast import compile_converter
from conflict.ops import Decision, Delete, Incoming, Insert, Update, WriteOp
from conflict.resolve import Resolver
from connectors.base import ChangeTarget
from connectors.postgres.errors import Action

log = structlog.get_logger("bridge.apply")

MAX_SAMPLE_KEYS = 20


def direction_name(source: Side) -> str:
    return f"{source.value}_to_{source.other.value}"


@dataclass
class TargetTable:
    """A bridged table as seen from one direction's target."""

    mapping: TableMapping
    info: TableInfo
    name: str  # qualified target table
    key: list[str]  # target key columns
    columns: list[str]  # mapped, writable target columns
    colinfo: dict[str, Any]
    # source column -> (target column, value map or None, compiled converter or None (a
    # generated target column: never written), target ColumnInfo); built once per session
    plan: dict[str, tuple[str, dict | None, Any, Any]] = field(default_factory=dict)
    # the target writer's row renderer (MySQL INSERT text), used ahead of time by precompute
    render: Callable[[tuple], str | None] | None = None
    # `plan` as {source column: (target column, compiled converter)} when no column has a
    # value map and none is generated (the usual table): the after image's one-pass path
    simple: dict[str, tuple[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.plan and all(vmap is None and fn is not None for _, vmap, fn, _ in self.plan.values()):
            self.simple = {src: (tcol, fn) for src, (tcol, _, fn, _) in self.plan.items()}


@dataclass
class TxStats:
    xid: str = ""
    commit_ts: datetime | None = None
    position: str | None = None  # set at end_tx
    end_commit_ts: datetime | None = None  # the commit event's time, set at end_tx
    tables: dict[str, int] = field(default_factory=dict)
    sample_keys: list[Any] = field(default_factory=list)
    applied: int = 0
    dead: int = 0
    conflicts: int = 0


class Applier:
    """Applies one direction's changes to its target. Not thread-safe: one per direction."""

    def __init__(self, target: ChangeTarget, mapping: Mapping, source: Side, *,
                 batch_rows: int = 2000, resolver: Resolver | None = None,
                 classify: Callable[[BaseException], Action] | None = None):
        self.target = target
        self.mapping = mapping
        self.source = source
        self._target_side = source.other
        self.direction = direction_name(source)
        self.batch_rows = batch_rows
        self.resolver = resolver or Resolver.from_mapping(mapping, target_side=source.other)
        self._classify = classify
        self._tables: dict[str, TargetTable] = {}
        # one batch may hold changes of several source transactions of the group: each change
        # keeps its transaction's stats (counts, dead letters) and position (inc.position)
        self._batch: list[Incoming] = []
        self._batch_tx: list[TxStats] = []
        self._batch_table: TargetTable | None = None
        self._tx = TxStats()
        self._tx_position: str | None = None
        self._group_txs: list[TxStats] = []  # ended source transactions of the open group
        self._pending_audit: list[dict] = []
        self.in_group = False
        # ownership write-backs decided in the open group: (table, change, {col: (src, owner)})
        self.writebacks: list[tuple[TargetTable, Incoming, dict]] = []
        self.parked_tables: list[str] = []
        # last-writer-wins without a version column needs the target row's commit time:
        # from the target itself (PostgreSQL track_commit_timestamp) or from `target_times`
        self.track_target_commit_ts = False
        self.target_times: Callable[[str, tuple], Any] | None = None

    # --- schema ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the target schema of every table flowing this way; refuse on mismatch."""
        self._tables.clear()
        problems: list[str] = []
        to_mes = self._target_side is Side.MES
        for tm in self.mapping.tables:
            if not tm.flows_from(self.source):
                continue
            target_name = tm.table(self.source.other)
            info = self.target.table_info(target_name)
            if info is None:
                problems.append(f"target table {target_name} does not exist")
                continue
            cols = []
            for src_col in tm.columns(self.source):
                tcol = tm.target_column(self.source, src_col)
                ci = info.columns.get(tcol)
                if ci is None:
                    problems.append(f"mapped column {target_name}.{tcol} does not exist")
                elif not ci.generated:
                    cols.append(tcol)
            key = list(tm.keys[self.source.other])
            plan = {}
            for src_col, tcol in tm.names[self.source].items():
                ci = info.columns.get(tcol)
                if ci is not None:
                    plan[src_col] = (tcol, tm.values[self.source].get(src_col),
                                     None if ci.generated else compile_converter(ci, to_mes), ci)
            # rows rendered ahead of time need a writer that takes them (insert_rendered)
            renderer = (getattr(self.target, "row_renderer", None)
                        if hasattr(self.target, "insert_rendered") else None)
            self._tables[tm.table(self.source)] = TargetTable(
                tm, info, target_name, key, cols, info.columns, plan,
                renderer() if renderer is not None else None,
            )
        if problems:
            raise SetupError("; ".join(problems) + " (fix the mapping or the schema, then run `check`)")
        self.parked_tables = [tt.name for tt in self._tables.values()
                              if tt.mapping.spec.conflict.rule == "manual"
                              or "manual" in tt.mapping.spec.conflict.columns.values()]
        needs_ts = any(tt.mapping.spec.conflict.rule in ("last_writer_wins", "column_merge")
                       and not (tt.mapping.spec.conflict.crm_version_column
                                or tt.mapping.spec.conflict.mes_version_column)
                       for tt in self._tables.values())
        self.track_target_commit_ts = needs_ts and self.target.supports_commit_times()

    # --- transaction group ------------------------------------------------------------------
    def begin_group(self, first_position: str | None) -> None:
        """Open a target transaction. The position write comes first (MySQL echo marker)."""
        self.target.begin()
        if first_position is not None:
            self.target.write_state(self.direction, first_position)
        self.in_group = True
        self._pending_audit = []
        self._group_txs = []
        self.writebacks = []
        if self.parked_tables:
            self.resolver.load_parked(self.target, self.parked_tables)

    def begin_tx(self, ev: TxBegin) -> None:
        self._tx = TxStats(xid=ev.xid, commit_ts=ev.commit_ts)
        if ev.position is not None:
            from bridge.model import position_to_text

            self._tx_position = position_to_text(ev.position)

    def add(self, change: RowChange) -> None:
        tt = self._tables.get(change.table)
        if tt is None:
            return  # not bridged in this direction
        if change.op is Op.TRUNCATE:
            self.flush()
            n = self.target.delete_all(tt.name)
            self._count(tt, n, None)
            return
        inc = self._incoming(tt, change)
        if inc is None:
            return
        inc.position = self._tx_position  # as flush-time conflicts and dead letters report it
        if self._batch_table is not tt or len(self._batch) >= self.batch_rows:
            self.flush()
            self._batch_table = tt
        self._batch.append(inc)
        self._batch_tx.append(self._tx)

    def end_tx(self, ev: TxCommit, position: str) -> None:
        """The source transaction ended. Its rows may still wait in the batch: consecutive
        changes of one table are written together across the group's transactions (one lock
        read and one statement for many small transactions); the audit rows are written when
        the group commits, once every row's outcome is known."""
        self._tx_position = position
        self._tx.position = position
        self._tx.end_commit_ts = ev.commit_ts or self._tx.commit_ts
        self._group_txs.append(self._tx)

    def _audit_records(self) -> list[dict]:
        records = []
        for tx in self._group_txs:
            if not (tx.applied or tx.dead or tx.conflicts or tx.tables):
                continue
            records.append({
                "direction": self.direction,
                "source_position": tx.position,
                "source_xid": tx.xid,
                "source_commit_ts": tx.end_commit_ts,
                "tables": tx.tables,
                "sample_keys": tx.sample_keys,
                "rows_applied": tx.applied,
                "rows_dead_lettered": tx.dead,
                "conflicts": tx.conflicts,
                "outcome": "applied" if not tx.dead else "applied_with_dead_letters",
            })
        self._group_txs = []
        return records

    def commit_group(self, position: str) -> list[dict]:
        """Store the last position and commit. Returns the audit records now durable."""
        self.flush()
        records = self._audit_records()
        if records:
            insert_many = getattr(self.target, "insert_audits", None)
            if insert_many is not None:
                insert_many(records)
            else:
                for record in records:
                    self.target.insert_audit(record)
            self._pending_audit.extend(records)
        self.target.write_state(self.direction, position)
        if self._tx.commit_ts is not None:
            self.target.set_commit_time(self._tx.commit_ts)
        self.target.commit()
        self.in_group = False
        done, self._pending_audit = self._pending_audit, []
        return done

    def rollback_group(self) -> None:
        self._batch.clear()
        self._batch_tx.clear()
        self._batch_table = None
        self._pending_audit = []
        self._group_txs = []
        self.writebacks = []
        self.in_group = False
        self.target.rollback()

    # --- conversion ---------------------------------------------------------------------
    def _convert(self, tt: TargetTable, row: dict | None, strict: bool) -> dict | None:
        """Map (rename, value maps, drop unmapped) and convert a source row to the target's
        names and types in one pass. Unrepresentable values raise when `strict`, else become
        InvalidValue (a before image only serves conflict detection)."""
        if row is None:
            return None
        out = {}
        simple = tt.simple
        if strict and simple is not None:
            # the same as the loop below for a table with no value maps and no generated
            # column: an InvalidValue raises from the compiled converter, as below
            for col, value in row.items():
                p = simple.get(col)
                if p is not None:
                    out[p[0]] = value if value is None or value is UNCHANGED else p[1](value)
            return out
        plan = tt.plan
        for col, value in row.items():
            p = plan.get(col)
            if p is None:
                continue  # not mapped
            tcol, vmap, fn, ci = p
            if value is None or value is UNCHANGED:
                if fn is not None:
                    out[tcol] = value
                continue
            if vmap is not None:
                value = vmap.get(value, value)
            if fn is None:
                continue  # a generated target column is never written
            if type(value) is InvalidValue:
                if strict:
                    raise Unrepresentable(ci.name, value.reason)
                out[tcol] = value
                continue
            try:
                out[tcol] = fn(value)
            except Unrepresentable:
                if strict:
                    raise
                out[tcol] = InvalidValue(str(value), "unrepresentable")
        return out

    def precompute(self, change: RowChange) -> None:
        """Map and convert a change for its target ahead of time, in another thread (the
        read-ahead thread, while this one waits on the target), into `change.prepared`: the
        Incoming (rendered for the writer where it can be), or the Unrepresentable to
        dead-letter. Pure and thread-safe: it reads only the tables' plans, fixed once
        `prepare` has run. Anything unexpected is left for `add` to meet in its own thread."""
        tt = self._tables.get(change.table)
        if tt is None or change.op is Op.TRUNCATE:
            return
        try:
            change.prepared = (tt, self._prepare_incoming(tt, change, render=True))
        except Exception:  # noqa: BLE001 - converted again, and raised, in the applying thread
            change.prepared = None

    def _prepare_incoming(self, tt: TargetTable, change: RowChange,
                          render: bool = False) -> Incoming | Unrepresentable | None:
        """The change in target names and values; Unrepresentable for an after image the
        target cannot hold; None when it carries no key. No I/O, no transaction state."""
        try:
            after = self._convert(tt, change.after, strict=True)
        except Unrepresentable as exc:
            return exc
        before = self._convert(tt, change.before, strict=False)
        new_key = tuple([after[k] for k in tt.key]) if after else None
        if before and all(k in before and before[k] is not UNCHANGED for k in tt.key):
            old_key = tuple([before[k] for k in tt.key])
        else:
            old_key = new_key
        if old_key is None:
            return None
        text = None
        if render and tt.render is not None and after is not None and len(after) == len(tt.columns):
            values = tuple([after.get(c, UNCHANGED) for c in tt.columns])
            if UNCHANGED not in values:
                text = tt.render(values)
        return Incoming(change.op, self.source, tt.name, before, after, old_key,
                        new_key or old_key, None, None, text)

    def _incoming(self, tt: TargetTable, change: RowChange) -> Incoming | None:
        pre = change.prepared
        inc = pre[1] if pre is not None and pre[0] is tt else self._prepare_incoming(tt, change)
        if type(inc) is Incoming:
            inc.commit_ts = self._tx.commit_ts
            return inc
        if inc is None:
            self._dead_letter(tt, change, tt.mapping.map_row(self.source, change.before),
                              "change carries no key values", None)
            return None
        tm = tt.mapping
        src = tm.map_row(self.source, change.after) or tm.map_row(self.source, change.before)
        self._dead_letter(tt, change, src, inc.reason, inc.column)  # type: ignore[union-attr]
        return None

    # --- batches --------------------------------------------------------------------------
    def flush(self) -> None:
        tt, batch, txs = self._batch_table, self._batch, self._batch_tx
        if not batch or tt is None:
            return
        self._batch, self._batch_tx, self._batch_table = [], [], None
        tx_of = {id(inc): tx for inc, tx in zip(batch, txs)}
        keys = list(dict.fromkeys([i.old_key for i in batch] + [i.new_key for i in batch]))
        current = self.target.fetch_for_update(tt.name, tt.columns, tt.key, keys)
        planned: list[tuple[Incoming, WriteOp]] = []
        commit_ts = (self.target.commit_times(tt.name, tt.key, keys)
                     if self.track_target_commit_ts else {})
        resolver = self.resolver
        for inc in batch:
            found = current.get(inc.old_key)
            if found is None and inc.op is Op.INSERT and not resolver.parked:
                after = inc.after
                # rendered: every column sent (see _prepare_incoming)
                if inc.rendered is not None or UNCHANGED not in after.values():  # type: ignore[union-attr]
                    # a new row with every value sent: what the rules decide for it in any
                    # policy (conflict.rules._insert with no current row), without the calls
                    current[inc.new_key] = dict(after)  # type: ignore[arg-type]
                    planned.append((inc, Insert(after)))  # type: ignore[arg-type]
                    continue
            target_ts: Any = commit_ts.get(inc.old_key) if found is not None else None
            if target_ts is None and found is not None and self.target_times is not None:
                target_ts = _Lazy(self.target_times, tt.name, inc.old_key)  # only on conflict
            decision: Decision = self.resolver.decide(inc, found, tt, target_ts)
            if isinstance(target_ts, _Lazy):
                target_ts = target_ts.value
            if inc.old_key != inc.new_key and decision.result is not None:
                current.pop(inc.old_key, None)
            if decision.result is None:
                current.pop(inc.new_key, None)
                current.pop(inc.old_key, None)
            else:
                current[inc.new_key] = decision.result
            for rec in decision.conflicts:
                self._record_conflict(tt, inc, rec, found, target_ts, tx_of[id(inc)])
            if decision.writeback:
                self.writebacks.append((tt, inc, decision.writeback))
            for op in decision.ops:
                planned.append((inc, op))
        self._write(tt, planned, tx_of)

    def _write(self, tt: TargetTable, planned: list[tuple[Incoming, WriteOp]],
               tx_of: dict[int, TxStats]) -> None:
        if not planned:
            return
        # an Insert of exactly the incoming row (no conflict changed it) may have its text
        # rendered already (precompute)
        rendered = {id(op): inc.rendered for inc, op in planned
                    if inc.rendered is not None and type(op) is Insert and op.row is inc.after}
        self.target.savepoint()
        try:
            self._execute(tt, [op for _, op in planned], rendered)
        except Exception as exc:  # classified below; anything not a data error propagates
            if self._action(exc) is not Action.DEAD_LETTER:
                raise
            self.target.rollback_savepoint()
            self._write_one_by_one(tt, planned, tx_of)
            return
        self.target.release_savepoint()
        for inc, _ in planned:
            self._count(tt, 1, inc.new_key, tx_of[id(inc)])

    def _write_one_by_one(self, tt: TargetTable, planned: list[tuple[Incoming, WriteOp]],
                          tx_of: dict[int, TxStats]) -> None:
        for inc, op in planned:
            self.target.savepoint()
            try:
                self._execute(tt, [op])
            except Exception as exc:
                if self._action(exc) is not Action.DEAD_LETTER:
                    raise
                self.target.rollback_savepoint()
                row = inc.after if inc.after is not None else inc.before
                self._dead_letter_incoming(tt, inc, row, f"target refused the row: {exc}",
                                           tx_of[id(inc)])
                continue
            self.target.release_savepoint()
            self._count(tt, 1, inc.new_key, tx_of[id(inc)])

    def _action(self, exc: BaseException) -> Action:
        if self._classify is None:
            return Action.STOP
        return self._classify(exc)

    def _execute(self, tt: TargetTable, ops: list[WriteOp],
                 rendered: dict[int, str] | None = None) -> None:
        """Run ops in order, grouping consecutive ops of one shape into one driver call.
        `rendered`: pre-rendered insert texts by id(op), in `tt.columns` order."""
        i = 0
        while i < len(ops):
            op = ops[i]
            j = i + 1
            if rendered and id(op) in rendered:
                # rendered ahead of time: every column of tt.columns sent, none UNCHANGED
                while j < len(ops) and id(ops[j]) in rendered:
                    j += 1
                self.target.insert_rendered(  # type: ignore[attr-defined]
                    tt.name, tt.columns, [rendered[id(o)] for o in ops[i:j]])
            elif isinstance(op, Insert):
                cols = [c for c in tt.columns if c in op.row and op.row[c] is not UNCHANGED]
                colset = set(cols)
                while j < len(ops) and isinstance(ops[j], Insert) and _same_cols(ops[j].row, colset):
                    j += 1
                get = itemgetter(*cols) if len(cols) > 1 else (lambda r, c=cols[0]: (r[c],))
                rows = [get(o.row) for o in ops[i:j]]  # type: ignore[union-attr]
                self.target.insert_rows(tt.name, cols, rows)
            elif isinstance(op, Update):
                while j < len(ops) and isinstance(ops[j], Update):
                    j += 1
                for cols, group in _update_groups(ops[i:j], tt.key):  # type: ignore[arg-type]
                    rows = [tuple(o.values.values()) + tuple(o.key) for o in group]
                    if cols:
                        self.target.update_rows(tt.name, list(cols), tt.key, rows)
            else:
                while j < len(ops) and isinstance(ops[j], Delete):
                    j += 1
                self.target.delete_rows(tt.name, tt.key, [o.key for o in ops[i:j]])  # type: ignore[union-attr]
            i = j

    # --- bookkeeping ----------------------------------------------------------------------
    def _count(self, tt: TargetTable, n: int, key: tuple | None, tx: TxStats | None = None) -> None:
        tx = tx or self._tx
        tx.applied += n
        tx.tables[tt.name] = tx.tables.get(tt.name, 0) + n
        if key is not None and len(tx.sample_keys) < MAX_SAMPLE_KEYS:
            tx.sample_keys.append([tt.name, to_jsonable(list(key))])

    def _dead_letter(self, tt: TargetTable, change: RowChange, row: dict | None,
                     reason: str, column: str | None) -> None:
        key = {k: (row or {}).get(k) for k in tt.key}
        self._store_dead_letter(tt, change.op, key, row, f"column {column}: {reason}" if column else reason)

    def _dead_letter_incoming(self, tt: TargetTable, inc: Incoming, row: dict | None,
                              reason: str, tx: TxStats) -> None:
        self._store_dead_letter(tt, inc.op, dict(zip(tt.key, inc.new_key)), row, reason,
                                tx, inc.position)

    def _store_dead_letter(self, tt: TargetTable, op: Op, key: dict, row: dict | None,
                           reason: str, tx: TxStats | None = None,
                           position: str | None = None) -> None:
        if tx is None:
            tx, position = self._tx, self._tx_position
        tx.dead += 1
        record = {
            "direction": self.direction,
            "source_position": position,
            "source_xid": tx.xid,
            "source_table": tt.mapping.table(self.source),
            "target_table": tt.name,
            "op": op.value,
            "row_key": to_jsonable(key),
            "row_data": to_jsonable(row) if row is not None else None,
            "reason": reason,
        }
        self.target.insert_dead_letter(record)
        log.warning("dead_letter", **{k: v for k, v in record.items() if k != "row_data"})

    def _record_conflict(self, tt: TargetTable, inc: Incoming, rec: Any, found: dict | None,
                         target_ts: Any, tx: TxStats) -> None:
        tx.conflicts += 1
        inc.position = inc.position or self._tx_position
        self.resolver.record(self.target, self.direction, tt, inc, rec, tx, found, target_ts)


def _update_groups(run: list[Update], key: list[str]) -> list[tuple[tuple, list[Update]]]:
    """A run of consecutive updates as (columns set, updates) groups, one statement each.

    Updates of distinct rows that leave the key alone commute, so when every row of the run
    is distinct and no key changes, updates setting the same columns are grouped wherever
    they are in the run (the columns a decision sets vary from row to row, and runs of equal
    shape are short). Otherwise: consecutive updates of one shape, in order."""
    keyset = set(key)
    if len({u.key for u in run}) == len(run) and not any(keyset.intersection(u.values) for u in run):
        groups: dict[tuple, list[Update]] = {}
        for u in run:
            groups.setdefault(tuple(u.values), []).append(u)
        return list(groups.items())
    out: list[tuple[tuple, list[Update]]] = []
    for u in run:
        cols = tuple(u.values)
        if out and out[-1][0] == cols:
            out[-1][1].append(u)
        else:
            out.append((cols, [u]))
    return out


def _same_cols(row: dict, colset: set[str]) -> bool:
    """The row's written (not UNCHANGED) columns are exactly `colset`."""
    if row.keys() == colset:
        return not any(v is UNCHANGED for v in row.values())
    return {c for c, v in row.items() if v is not UNCHANGED} == colset


class _Lazy:
    """A target commit time looked up only if a rule asks for it (it may wait on a reader)."""

    __slots__ = ("_fn", "_args", "_done", "value")

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._fn, self._args, self._done, self.value = fn, args, False, None

    def __call__(self) -> Any:
        if not self._done:
            self.value, self._done = self._fn(*self._args), True
        return self.value
