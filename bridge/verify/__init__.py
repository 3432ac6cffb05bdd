"""`bridge verify [--repair]`: compare the mapped rows of both sides, find the differing
rows, and optionally make the sides equal.

How (see `compare`):
1. The key space of a table is cut into ranges of ~10,000 rows (boundaries walked on the
   bigger side, in binary key order so both servers agree on range membership).
2. For each range each server computes `count(*)` and the sum of a 60-bit slice of the MD5 of
   a canonical text of every mapped column (`plan`, `sides`). Equal values render identical
   text on both servers for integers, booleans, decimals (trailing zeros trimmed), text,
   enums, uuids, timestamps/dates/times (ISO, microseconds, UTC) and binary (hex).
3. Columns whose canonical text cannot be produced identically by both servers (floating
   point, JSON, value-mapped columns, other types) are compared on the client: per range,
   key and those columns are fetched from both sides, normalized with
   `bridge.types.normalize` and hashed.
4. A range whose checksums differ is split 16 ways until it holds at most `leaf_rows` rows;
   those rows are fetched from both sides and compared value by value (normalized), giving
   missing rows, extra rows, and differing columns.
5. Differences are read again after `settle` seconds: changes still in flight in the stream
   are not reported.

`--repair` (`repair`) writes the winning side's values through the bridge's writers without
echo, and records each change in the audit table and the audit log.
"""
