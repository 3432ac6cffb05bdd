"""The two physical limits each bridge figure is compared with, measured in the same run.

* Read limit: the source's change stream decoded alone, no apply: the project's own
  `PgChangeSource` (own slot, same publication, created with the bridge's) or
  `BinlogChangeSource` (own server_id, same start position) consumed in a loop until the
  sentinel transaction. Timed from the start of the stream (connection included, as for the
  bridge) to the sentinel's commit.
* Write limit: the same rows written straight into a scratch copy of the target table by the
  target's fastest bulk path: COPY on PostgreSQL (10,000 rows per COPY and commit), multi-row
  INSERT on MariaDB (1,000 rows per statement, commit every 10,000; literals rendered by the
  MES writer's `sql_literal`, about twice as fast as PyMySQL's executemany). Rendering the
  rows is timed: any client has to. For update loads:
  COPY into a temporary table + UPDATE ... FROM (PostgreSQL), multi-row INSERT ... ON DUPLICATE
  KEY UPDATE (MariaDB), into a scratch table holding the original rows.
"""

from __future__ import annotations

import time
from typing import Sequence

from psycopg import sql

from bench import rows as R
from bench.env import Env
from bench.load import SENTINEL, _chunks, mes_insert, pg_insert
from bench.schema import Table
from bridge.model import RowChange, TxCommit, position_from_text


def create_read_slot(env: Env) -> str:
    """A second slot at the bridge's start point: the read limit consumes it alone."""
    slot = f"{env.name}_read"
    with env.crm(autocommit=True) as c:
        c.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return slot


def _drain(source, table: Table) -> tuple[int, float]:
    t0 = time.time()
    n = 0
    done = False
    try:
        for ev in source.events():
            if type(ev) is RowChange:
                n += 1
                row = ev.after if ev.after is not None else ev.before
                if row is not None and row.get("id") == SENTINEL and ev.table.endswith(table.name):
                    done = True
            elif done and type(ev) is TxCommit:
                break
    finally:
        source.close()
    return n, time.time() - t0


def read_pg(env: Env, slot: str, table: Table) -> tuple[int, float]:
    from bridge.connect import pg_conninfo
    from connectors.postgres.reader import PgChangeSource

    uri, password = pg_conninfo(env.config)
    source = PgChangeSource(uri, password, slot, env.config.publication_name, None)
    try:
        return _drain(source, table)
    finally:
        with env.crm(autocommit=True) as c:
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def read_binlog(env: Env, table: Table) -> tuple[int, float]:
    from bridge.connect import mysql_params
    from connectors.mysql.reader import BinlogChangeSource

    with env.crm(autocommit=True) as c:
        text = c.execute(sql.SQL("SELECT position FROM {} WHERE direction = 'mes_to_crm'").format(
            sql.Identifier(env.config.state_schema, "state"))).fetchone()[0]
    p = mysql_params(env.config)
    source = BinlogChangeSource(
        p["host"], p["port"], p["user"], p["password"], p["database"],
        server_id=env.server_id + 50_000, resume=position_from_text(text),  # type: ignore[arg-type]
        marker_table=f"{env.config.state_prefix}state", tables={table.name})
    return _drain(source, table)


def read(env: Env, source_side: str, table: Table, slot: str | None) -> tuple[int, float]:
    if source_side == "crm":
        assert slot is not None
        return read_pg(env, slot, table)
    return read_binlog(env, table)


# --- write limits ---------------------------------------------------------------------------


def _scratch(env: Env, target_side: str, table: Table) -> str:
    name = f"{table.name}_limit"
    if target_side == "mes":
        conn = env.mes(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
                cur.execute(f"CREATE TABLE `{name}` LIKE `{table.name}`")
        finally:
            conn.close()
    else:
        with env.crm(autocommit=True) as c:
            c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            c.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(name), sql.Identifier(table.name)))
    return name


def write_insert(env: Env, target_side: str, table: Table, rows: Sequence[tuple]) -> float:
    """Seconds to bulk-insert `rows` (CRM form) into a scratch copy of the target table."""
    name = _scratch(env, target_side, table)
    cols = table.columns
    if target_side == "mes":
        from connectors.mysql.writer import sql_literal

        params = [R.for_mes(r) for r in rows]
        prefix = f"INSERT INTO `{name}` ({', '.join(f'`{c}`' for c in cols)}) VALUES "
        conn = env.mes()
        try:
            literal = sql_literal(conn)  # the fastest way to render literals this suite has
            with conn.cursor() as cur:
                t0 = time.perf_counter()
                for chunk in _chunks(params, 10_000):
                    for part in _chunks(chunk, 1000):
                        cur.execute(prefix + ",".join(
                            ["(" + ",".join(map(literal, r)) + ")" for r in part]))
                    conn.commit()
                return time.perf_counter() - t0
        finally:
            conn.close()
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols)))
    with env.crm() as conn:
        t0 = time.perf_counter()
        for chunk in _chunks(rows, 10_000):
            with conn.cursor() as cur, cur.copy(copy) as cp:
                for r in chunk:
                    cp.write_row(r)
            conn.commit()
        return time.perf_counter() - t0


def write_update(env: Env, target_side: str, table: Table, base: Sequence[tuple],
                 new: Sequence[tuple]) -> float:
    """Seconds to bulk-update a scratch copy holding `base` to the values of `new`."""
    name = _scratch(env, target_side, table)
    cols = table.columns
    upd = R.update_columns(table)
    if target_side == "mes":
        from connectors.mysql.writer import sql_literal

        _insert_mes(env, name, table, base)
        params = [R.for_mes(r) for r in new]
        prefix = f"INSERT INTO `{name}` ({', '.join(f'`{c}`' for c in cols)}) VALUES "
        suffix = " ON DUPLICATE KEY UPDATE " + ", ".join(f"`{c}` = VALUES(`{c}`)" for c in upd)
        conn = env.mes()
        try:
            literal = sql_literal(conn)
            with conn.cursor() as cur:
                t0 = time.perf_counter()
                for chunk in _chunks(params, 10_000):
                    for part in _chunks(chunk, 1000):
                        cur.execute(prefix + ",".join(
                            ["(" + ",".join(map(literal, r)) + ")" for r in part]) + suffix)
                    conn.commit()
                return time.perf_counter() - t0
        finally:
            conn.close()
    _insert_pg(env, name, table, base)
    ident = sql.Identifier(name)
    with env.crm() as conn:
        t0 = time.perf_counter()
        for chunk in _chunks(new, 10_000):
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE TEMP TABLE bench_upd (LIKE {}) ON COMMIT DROP").format(ident))
                with cur.copy(sql.SQL("COPY bench_upd ({}) FROM STDIN").format(
                        sql.SQL(", ").join(map(sql.Identifier, cols)))) as cp:
                    for r in chunk:
                        cp.write_row(r)
                cur.execute(sql.SQL("UPDATE {} AS t SET {} FROM bench_upd AS u WHERE t.id = u.id").format(
                    ident, sql.SQL(", ").join(
                        sql.SQL("{} = u.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in upd)))
            conn.commit()
        return time.perf_counter() - t0


def _insert_mes(env: Env, name: str, table: Table, rows: Sequence[tuple]) -> None:
    scratch = Table(name, table.columns, (), (), table.version_column)
    mes_insert(env, scratch, rows, 10_000)


def _insert_pg(env: Env, name: str, table: Table, rows: Sequence[tuple]) -> None:
    scratch = Table(name, table.columns, (), (), table.version_column)
    pg_insert(env, scratch, rows, 10_000)
