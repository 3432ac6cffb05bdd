"""Backfill: the initial load of existing rows, merged into the running change stream.

DBLog-style (Netflix, 2020), run by each direction's own stream thread (`bridge.pipeline`):

1. A request (table, direction, optional key range, chunk size) is stored on the TARGET side
   in `backfill_progress` (`bridge backfill` writes it; see `bridge.backfill.runner`).
2. Between two source transactions, with no chunk in flight, the direction
   - starts recording the keys of that table changed by stream events (the "window"),
   - writes a LOW watermark row into the SOURCE's `backfill_marks` table,
   - reads the next chunk by primary key with keyset pagination, a plain lock-free SELECT,
   - writes a HIGH watermark row.
3. It goes on consuming the stream. When the HIGH mark arrives (in commit order), every
   change that committed before it has been applied; the chunk rows minus the keys changed
   in the window are written into the target in the current target transaction, and
   `backfill_progress` advances in that same transaction. A crash redoes at most one chunk.

Why a chunk never overwrites a newer streamed change nor loses one: a key changed after the
window opened is left to the stream (its events carry the newer value; they are applied in
order, before and after the chunk). A key not changed in the window had, when the SELECT
read it, the value the stream had already delivered: writing it at the HIGH mark restores
exactly that state. The SELECT must see every transaction the stream delivered before the
window opened: on MariaDB/MySQL the LOW mark's commit guarantees it (the storage engine
commits in binlog order: MariaDB always, MySQL with binlog_order_commits=ON, checked); on
PostgreSQL a transaction can be in the WAL before it is visible, so the chunk's snapshot
is checked against the recently delivered transaction ids and the chunk is re-read if one of
them was still in progress for it.

Modules: `model` (requests, pure), `window` (keys changed in flight, pure), `convert`
(mapping + type conversion, pure), `store` (progress table), `source` (watermarks and chunk
reads), `sink` (bulk writes), `driver` (the stream hook), `runner` + `display` (the CLI side).
"""
