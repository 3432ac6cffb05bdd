"""Micro-benchmark of MES binlog row decoding: µs per row, fast decoder vs the library.

    python -m bench.decode [--rows 20000] [--tx-rows 100] [--table wide|narrow]

Starts a private MariaDB server, inserts the benchmark table's rows (bench.rows, seeded),
then measures on the same binlog events:

* decode only: the row images of every rows event turned into bridge rows, by
  `connectors.mysql.rowdecode` (best of 5 passes) and by the library plus the reader's
  repairs (one pass: the library's decoding consumes the packet);
* the whole reader: `BinlogChangeSource` drained from the start position to the last row,
  with each decoder (connection and event parsing included; no apply).

Prints figures only; not a test.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import row_event as bl_rows

from bench import rows as R
from bench.schema import TABLES, Table
from bridge.devservers import MariaDBServer
from bridge.model import Op, RowChange
from connectors.mysql import introspect
from connectors.mysql.reader import BinlogChangeSource, _images, _rows_body, plan_table
from connectors.mysql.rowdecode import compile_table

_OPS = {bl_rows.WriteRowsEvent: Op.INSERT, bl_rows.UpdateRowsEvent: Op.UPDATE,
        bl_rows.DeleteRowsEvent: Op.DELETE}


def _load(server: MariaDBServer, table: Table, count: int, tx_rows: int) -> Any:
    server.create_database("mes")
    for ddl in table.mes_ddl:
        server.execute(ddl, "mes")
    conn = server.connect("mes")
    try:
        start = introspect.current_position(conn)
        cols = ", ".join(f"`{c}`" for c in table.columns)
        query = f"INSERT INTO `{table.name}` ({cols}) VALUES ({', '.join(['%s'] * len(table.columns))})"
        rows = [R.for_mes(r) for r in R.generate(table, 1, count, seed=42)]
        with conn.cursor() as cur:
            for at in range(0, count, tx_rows):
                conn.begin()
                cur.executemany(query, rows[at:at + tx_rows])
                conn.commit()
    finally:
        conn.close()
    return start


def _events(server: MariaDBServer, start: Any) -> list[Any]:
    """Every rows event from `start` to the end of the binlog (non-blocking read)."""
    stream = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": server.port, "user": "root",
                             "password": "", "charset": "utf8mb4"},
        server_id=4242, resume_stream=True, blocking=False, log_file=start.file,
        log_pos=start.pos, is_mariadb=False, only_schemas=["mes"],
        only_events=[bl_rows.WriteRowsEvent, bl_rows.UpdateRowsEvent, bl_rows.DeleteRowsEvent])
    try:
        return list(stream)
    finally:
        stream.close()


def _decode_only(events: list[Any]) -> tuple[int, float, float]:
    """(rows, fast µs/row, library µs/row)."""
    prepared = []
    for ev in events:
        op = _OPS[type(ev)]
        plan = plan_table(ev.schema, ev.table, ev.columns, ev.primary_key)
        fast = compile_table(ev.columns)
        body = _rows_body(ev)
        assert body is not None
        prepared.append((ev, op, plan, fast, body))
    best = float("inf")
    n = 0
    for _ in range(5):
        n = 0
        t0 = time.perf_counter()
        for ev, op, _plan, fast, (data, pos, end) in prepared:
            n += len(fast.rows(op, data, pos, end, ev.columns_present_bitmap,
                               ev.columns_present_bitmap2 if op is Op.UPDATE else None))
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    m = sum(len(list(_images(ev, op, plan))) for ev, op, plan, _f, _b in prepared)
    library = time.perf_counter() - t0
    assert m == n
    return n, best / n * 1e6, library / n * 1e6


def _drain(server: MariaDBServer, start: Any, count: int, fast: bool) -> float:
    """µs per row for BinlogChangeSource to yield `count` rows (CPU time of this process)."""
    source = BinlogChangeSource("127.0.0.1", server.port, "root", None, "mes", server_id=4343,
                                resume=start, marker_table="bench_bridge_state", fast_rows=fast)
    n = 0
    t0 = time.process_time()
    try:
        for ev in source.events():
            if type(ev) is RowChange:
                n += 1
                if n == count:
                    break
    finally:
        source.close()
    return (time.process_time() - t0) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--tx-rows", type=int, default=100)
    parser.add_argument("--table", choices=sorted(TABLES), default="wide")
    args = parser.parse_args()
    table = TABLES[args.table]
    with MariaDBServer(server_id=1) as server:
        start = _load(server, table, args.rows, args.tx_rows)
        events = _events(server, start)
        n, fast_us, library_us = _decode_only(events)
        print(f"{table.name}: {n:,} rows in {len(events)} rows events")
        print(f"decode only   fast {fast_us:6.2f} µs/row   library {library_us:6.2f} µs/row   "
              f"({library_us / fast_us:.1f}x)")
        reader_fast = min(_drain(server, start, n, True) for _ in range(3))
        reader_library = _drain(server, start, n, False)
        print(f"whole reader  fast {reader_fast:6.2f} µs/row   library {reader_library:6.2f} µs/row   "
              f"(CPU of this process; {1e6 / reader_fast:,.0f} vs {1e6 / reader_library:,.0f} rows/s)")


if __name__ == "__main__":
    main()
