"""The conflict rules: pure decisions, no I/O.

Detection compares the incoming before-image with the current target row on mapped columns
(after type conversion; JSON semantically, decimals numerically, timestamps exactly).

Resolution works per column, so that both directions reach the same decision for the same
pair of concurrent changes and the two databases converge:
- columns only the source changed are applied; columns only the target changed are kept;
- a column both changed ("disputed") goes to its owner if it has one, else to its rule;
- `last_writer_wins` and `manual` (table rules) treat the row as one unit: the newer change
  wins every changed column (by the version column, else source commit timestamps; ties and
  unknown times go to the priority side);
- `column_merge` resolves disputed columns by last-writer-wins and merges the rest;
- `delta` adds the source's change to the target value (counters);
- `crm_wins` / `mes_wins` fixed winners; `apply_source` / `keep_target` always take the
  incoming / the existing value (convergent only when one side writes the table);
- a source change to a column the target side owns is an `ownership_violation`: not applied,
  recorded, and the owner's value is written back to the source (`Decision.writeback`).
A delete racing an update (delete_differs on one side, update_missing on the other) has no
time on the side where the row is gone, so the only decision both sides can share is: the delete
wins, whatever the rule (`manual` parks it). Keys are assumed not to be reused after a delete.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from bridge.model import UNCHANGED, Op, Row, Side
from bridge.types import normalize, values_equal
from conflict.ops import ConflictRecord, Decision, Delete, Incoming, Insert, Update
from conflict.policy import Policy


def sent(row: Row | None) -> dict[str, Any]:
    """Columns of a row whose value was actually sent (not UNCHANGED). The row itself when
    every value was sent (the common case: no copy), so the result must not be mutated."""
    if not row:
        return {}
    if UNCHANGED not in row.values():  # identity first, then == (no type equals UNCHANGED)
        return row
    return {c: v for c, v in row.items() if v is not UNCHANGED}


def _eq(policy: Policy, col: str, a: Any, b: Any) -> bool:
    return values_equal(a, b, policy.colinfo.get(col))


def _comparable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Decimal(str(v))
    return v


def newer_side(inc: Incoming, current: Row, policy: Policy, target_ts: datetime | None) -> tuple[Side, str]:
    """Who wrote last: (side, basis). Same answer in both directions for one pair of changes."""
    S, T = inc.source, inc.source.other
    if policy.version_column:
        sv = sent(inc.after).get(policy.version_column)
        tv = current.get(policy.version_column)
        basis = f"version column {policy.version_column}"
    else:
        sv, tv = inc.commit_ts, target_ts() if callable(target_ts) else target_ts
        basis = "commit timestamps"
    if sv is None or tv is None:
        return policy.priority, f"{basis} unknown: priority side"
    try:
        a, b = _comparable(normalize(sv, policy.colinfo.get(policy.version_column or ""))), _comparable(
            normalize(tv, policy.colinfo.get(policy.version_column or "")))
        if a > b:
            return S, basis
        if a < b:
            return T, basis
    except TypeError:
        return policy.priority, f"{basis} not comparable: priority side"
    return policy.priority, f"{basis} tie: priority side"


# rules that decide a conflicting row as one unit (the winner's version of every changed column)
_ROW_LEVEL = {"last_writer_wins", "crm_wins", "mes_wins", "apply_source", "keep_target"}


def _fixed_winner(rule: str, inc: Incoming, policy: Policy) -> Side | None:
    if rule == "crm_wins":
        return Side.CRM
    if rule == "mes_wins":
        return Side.MES
    if rule == "apply_source":
        return inc.source
    if rule == "keep_target":
        return inc.source.other
    return None


def _winner_name(sides: set[Side]) -> str:
    if len(sides) == 1:
        return next(iter(sides)).value
    return "merged" if sides else "none"


# --- the decision ------------------------------------------------------------------------------
def decide(inc: Incoming, current: Row | None, policy: Policy, *,
           target_ts: datetime | None = None, parked: bool = False) -> Decision:
    """What to write on the target for `inc`, given the locked current target row."""
    if parked:
        rec = ConflictRecord("queued", policy.rule, "parked", [], current, parked=True)
        return Decision([], current, [rec], parked=True)
    if inc.op is Op.INSERT:
        return _insert(inc, current, policy, target_ts)
    if inc.op is Op.UPDATE:
        return _update(inc, current, policy, target_ts)
    if inc.op is Op.DELETE:
        return _delete(inc, current, policy)
    return Decision([], current)


def _park(kind: str, policy: Policy, columns: list[str], current: Row | None) -> Decision:
    rec = ConflictRecord(kind, "manual", "parked", columns, current, parked=True)
    return Decision([], current, [rec], parked=True)


def _is_manual(policy: Policy, columns: list[str]) -> bool:
    return policy.rule == "manual" or any(policy.rule_for(c) == "manual" for c in columns)


def _insert(inc: Incoming, current: Row | None, policy: Policy, target_ts) -> Decision:
    A = sent(inc.after)
    if current is None:
        return Decision([Insert(A)], dict(A))
    diff = [c for c in A if c in current and not _eq(policy, c, A[c], current[c])]
    if not diff:
        return Decision([], current)  # the same row already there (replay, backfill)
    if _is_manual(policy, diff):
        return _park("insert_exists", policy, diff, current)
    # both sides created the row: every differing column is disputed; counters (delta) count
    # on both sides, so they are summed even when the two values happen to be equal
    deltas = [c for c in A if c in current and c not in diff and policy.rule_for(c) == "delta"]
    disputed = diff + deltas
    return _resolve_columns("insert_exists", inc, current, policy, target_ts,
                            changed_src=disputed, changed_tgt=disputed, before={})


def _update(inc: Incoming, current: Row | None, policy: Policy, target_ts) -> Decision:
    A, B = sent(inc.after), sent(inc.before)
    S = inc.source
    if current is None:
        rule = policy.rule
        if rule == "manual":
            return _park("update_missing", policy, [], None)
        # the row is gone on the target: a delete beats a concurrent update
        rec = ConflictRecord("update_missing", f"{rule} (delete wins)", S.other.value, [], None)
        return Decision([], None, [rec])
    changed_src = [c for c in A if c not in B or not _eq(policy, c, A[c], B[c])]
    changed_tgt = [c for c in B if c in current and not _eq(policy, c, B[c], current[c])]
    if changed_tgt and _is_manual(policy, sorted(set(changed_src) | set(changed_tgt))):
        return _park("update_differs", policy, changed_tgt, current)
    return _resolve_columns("update_differs", inc, current, policy, target_ts,
                            changed_src=changed_src, changed_tgt=changed_tgt, before=B)


def _delete(inc: Incoming, current: Row | None, policy: Policy) -> Decision:
    if current is None:
        return Decision([], None, [ConflictRecord("delete_missing", policy.rule, "none", [], None)])
    B = sent(inc.before)
    changed_tgt = [c for c in B if c in current and not _eq(policy, c, B[c], current[c])]
    if not changed_tgt:
        return Decision([Delete(inc.old_key)], None)
    if policy.rule == "manual":
        return _park("delete_differs", policy, changed_tgt, current)
    # a delete beats a concurrent update (the other side skips the update: update_missing)
    rec = ConflictRecord("delete_differs", f"{policy.rule} (delete wins)", inc.source.value, changed_tgt, None)
    return Decision([Delete(inc.old_key)], None, [rec])


def _resolve_columns(kind: str, inc: Incoming, current: Row, policy: Policy, target_ts,
                     changed_src: list[str], changed_tgt: list[str], before: Row) -> Decision:
    S, T = inc.source, inc.source.other
    A = sent(inc.after)
    disputed = [c for c in changed_src if c in changed_tgt]
    conflict = bool(changed_tgt)
    row_winner: Side | None = None
    basis = ""
    row_level = policy.rule in _ROW_LEVEL
    if conflict and policy.rule == "last_writer_wins":
        row_winner, basis = newer_side(inc, current, policy, target_ts)
    elif conflict and row_level:
        row_winner = _fixed_winner(policy.rule, inc, policy)

    updates: dict[str, Any] = {}
    sides: set[Side] = set()
    violations: list[str] = []
    rule_used = policy.rule

    def take(col: str, value: Any, side: Side) -> None:
        updates[col] = value
        sides.add(side)

    # columns the source changed
    for c in changed_src:
        owner = policy.owner_of(c)
        if owner is T:
            if not _eq(policy, c, A[c], current.get(c)):
                violations.append(c)  # source touched what the target side owns: write back
            sides.add(T)
            continue
        if owner is S:
            take(c, A[c], S)
            continue
        if c not in changed_tgt:
            if policy.rule_for(c) == "delta" and c in before:
                take(c, _delta(current[c], A[c], before[c]), S)
            elif row_winner is T and row_level:
                sides.add(T)  # row-level rule: the target's row stands whole
            else:
                take(c, A[c], S)
            continue
        # disputed column
        rule = policy.rule_for(c)
        if rule == "delta" and (c in before or kind == "insert_exists"):
            # both counted: the source's change on top of the target (a new row counts from 0)
            take(c, _delta(current[c], A[c], before.get(c, 0)), S)
            sides.add(T)
            rule_used = "delta" if policy.rule != "delta" else rule_used
            continue
        winner = _fixed_winner(rule, inc, policy)
        if winner is None:
            if row_winner is None:
                row_winner, basis = newer_side(inc, current, policy, target_ts)
            winner = row_winner
        if winner is S:
            take(c, A[c], S)
        else:
            sides.add(T)
    # columns only the target changed: row-level LWW source win reverts them; an owner that
    # is the source reverts the target's change to a source-owned column
    for c in changed_tgt:
        if c in changed_src or c not in A:
            continue
        owner = policy.owner_of(c)
        if owner is S or (owner is None and row_winner is S and row_level
                          and policy.rule_for(c) != "delta"):
            take(c, A[c], S)

    if any(c not in updates for c in changed_tgt):
        sides.add(T)  # some of the target's own changes stand
    result = {**current, **updates}
    if inc.old_key != inc.new_key:  # key change: the source's new key always moves the row
        for k, v in zip(policy.key, inc.new_key):
            updates[k] = v
            result[k] = v
    ops = [Update(inc.old_key, updates)] if updates else []
    conflicts: list[ConflictRecord] = []
    if conflict:
        owned = [c for c in disputed if policy.owner_of(c) is not None]
        rule_label = "ownership" if owned and len(owned) == len(disputed) and disputed else rule_used
        if basis:
            rule_label = f"{rule_label} ({basis})"
        conflicts.append(ConflictRecord(kind, rule_label, _winner_name(sides), sorted(set(changed_tgt) | set(disputed)), result))
    writeback: dict[str, tuple[Any, Any]] = {}
    if violations:
        conflicts.append(ConflictRecord("ownership_violation", "ownership", T.value, violations, result))
        writeback = {c: (A[c], current[c]) for c in violations}  # (source value now, owner's value)
    return Decision(ops, result, conflicts, writeback=writeback)


def _delta(target_value: Any, after: Any, before: Any) -> Any:
    if target_value is None or after is None or before is None:
        return after
    return target_value + (after - before)
