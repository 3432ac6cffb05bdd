"""Source load: committed transactions of a fixed size, written while the bridge is stopped.

PostgreSQL: one COPY per transaction (1-row transactions: one INSERT each). MariaDB: one
multi-row INSERT per transaction (PyMySQL splits it at 1 MB). Updates: one UPDATE per row
(pipelined on PostgreSQL). How the load is written does not change what the bridge reads:
one row change per row, grouped by source transaction.

Every load ends with a one-row "sentinel" transaction (id SENTINEL): its arrival on the
target marks the end of the drain, and the read limit stops at it.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

from psycopg import sql

from bench import rows as R
from bench.env import Env
from bench.schema import Table

SENTINEL = 10**15


def _chunks(it: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for r in it:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def pg_insert(env: Env, table: Table, rows: Iterable[tuple], tx_rows: int) -> int:
    n = 0
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name), cols)
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table.name), cols, sql.SQL(", ").join([sql.Placeholder()] * len(table.columns)))
    with env.crm() as conn:
        for batch in _chunks(rows, tx_rows):
            with conn.cursor() as cur:
                if len(batch) == 1:
                    cur.execute(insert, batch[0])
                else:
                    with cur.copy(copy) as cp:
                        for r in batch:
                            cp.write_row(r)
            conn.commit()
            n += len(batch)
    return n


def mes_insert(env: Env, table: Table, rows: Iterable[tuple], tx_rows: int) -> int:
    n = 0
    query = (f"INSERT INTO `{table.name}` ({', '.join(f'`{c}`' for c in table.columns)}) "
             f"VALUES ({', '.join(['%s'] * len(table.columns))})")
    conn = env.mes()
    try:
        with conn.cursor() as cur:
            for batch in _chunks(rows, tx_rows):
                conn.begin()
                if len(batch) == 1:
                    cur.execute(query, R.for_mes(batch[0]))
                else:
                    cur.executemany(query, [R.for_mes(r) for r in batch])
                conn.commit()
                n += len(batch)
    finally:
        conn.close()
    return n


def insert(env: Env, side: str, table: Table, rows: Iterable[tuple], tx_rows: int) -> int:
    return (pg_insert if side == "crm" else mes_insert)(env, table, rows, tx_rows)


def base_rows(env: Env, table: Table, count: int, seed: int) -> list[tuple]:
    """Rows present on BOTH sides before the bridge's slot exists (for update loads)."""
    rows = list(R.generate(table, 1, count, seed))
    pg_insert(env, table, rows, 10_000)
    mes_insert(env, table, rows, 10_000)
    return rows


def update(env: Env, side: str, table: Table, base: list[tuple], tx_rows: int, seed: int) -> int:
    """One UPDATE of a few columns per base row, in transactions of `tx_rows`."""
    rng = random.Random(f"{seed}:update:{table.name}")
    cols = R.update_columns(table)
    new = [R.updated(table, r, rng) for r in base]
    params = [R.update_values(table, r) for r in new]
    n = 0
    if side == "crm":
        query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            sql.Identifier(table.name),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols))
        with env.crm() as conn:
            for batch in _chunks(params, tx_rows):
                with conn.cursor() as cur:
                    cur.executemany(query, batch)
                conn.commit()
                n += len(batch)
    else:
        query = (f"UPDATE `{table.name}` SET {', '.join(f'`{c}` = %s' for c in cols)} "
                 "WHERE id = %s")
        conn = env.mes()
        try:
            with conn.cursor() as cur:
                for batch in _chunks(params, tx_rows):
                    conn.begin()
                    cur.executemany(query, [R.for_mes(p) for p in batch])
                    conn.commit()
                    n += len(batch)
        finally:
            conn.close()
    return n


def sentinel(env: Env, side: str, table: Table, seed: int) -> None:
    insert(env, side, table, R.generate(table, SENTINEL, 1, seed), 1)


def wait_sentinel(env: Env, side: str, table: Table, timeout: float, poll: float = 0.02,
                  alive=None) -> float:
    """Poll the TARGET (`side` is the target) until the sentinel row is visible; returns
    the wall-clock time it was first seen."""
    import time

    deadline = time.monotonic() + timeout
    if side == "mes":
        conn = env.mes(autocommit=True)
        q = f"SELECT 1 FROM `{table.name}` WHERE id = {SENTINEL}"
        try:
            with conn.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute(q)
                    if cur.fetchone():
                        return time.time()
                    if alive:
                        alive()
                    time.sleep(poll)
        finally:
            conn.close()
    else:
        with env.crm(autocommit=True) as conn:
            q = sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(table.name))
            while time.monotonic() < deadline:
                if conn.execute(q, (SENTINEL,)).fetchone():
                    return time.time()
                if alive:
                    alive()
                time.sleep(poll)
    raise TimeoutError(f"sentinel row not on the {side} after {timeout}s")
