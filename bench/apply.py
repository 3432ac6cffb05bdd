"""The apply path alone: real decoded changes replayed through the Applier into the target.

    python -m bench.apply [--direction crm_to_mes|mes_to_crm] [--rows 20000] [--tx-rows 100]
                          [--table wide|narrow] [--profile] [--repeat 3] [--precompute]

Method: the rows are committed on the source, the change stream is decoded by the project's
own reader into a list (as the bridge's reader thread would hand them over), then replayed
through `Applier` into the real target in groups as the pipeline forms them (one target
transaction per `max_group_transactions` source transactions). Prints the apply thread's CPU
time per row (`time.thread_time`, robust to other load), wall rows/s, and with `--profile`
the top functions by cProfile. It isolates the apply path from decoding; `python -m bench`
measures the whole bridge.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from bench import limits, load
from bench import rows as R
from bench.env import Env, Servers
from bench.schema import TABLES
from bridge.model import Idle, RowChange, TxBegin, TxCommit, position_to_text


def _capture(env: Env, source: str, table, slot: str | None) -> list:
    events: list = []
    if source == "crm":
        from bridge.connect import pg_conninfo
        from connectors.postgres.reader import PgChangeSource

        uri, password = pg_conninfo(env.config)
        src = PgChangeSource(uri, password, slot, env.config.publication_name, None)
    else:
        from bridge.connect import mysql_params
        from connectors.mysql.reader import BinlogChangeSource
        from bridge.model import position_from_text
        from psycopg import sql

        with env.crm(autocommit=True) as c:
            text = c.execute(sql.SQL("SELECT position FROM {} WHERE direction = 'mes_to_crm'").format(
                sql.Identifier(env.config.state_schema, "state"))).fetchone()[0]
        p = mysql_params(env.config)
        src = BinlogChangeSource(
            p["host"], p["port"], p["user"], p["password"], p["database"],
            server_id=env.server_id + 60_000, resume=position_from_text(text),
            marker_table=f"{env.config.state_prefix}state", tables={table.name})
    done = False
    try:
        for ev in src.events():
            if type(ev) is Idle:
                continue
            events.append(ev)
            if type(ev) is RowChange:
                row = ev.after if ev.after is not None else ev.before
                if row is not None and row.get("id") == load.SENTINEL:
                    done = True
            elif done and type(ev) is TxCommit:
                break
    finally:
        src.close()
    return events


def _replay(env: Env, direction: str, events: list, group_txs: int,
            precompute: bool = False) -> tuple[float, float, int]:
    from bridge.apply import Applier
    from bridge.connect import classifier, make_target
    from bridge.mapping import Mapping
    from bridge.model import Side

    side = Side.CRM if direction == "crm_to_mes" else Side.MES
    target = make_target(env.config, side.other)
    target.connect()
    applier = Applier(target, Mapping.from_config(env.config), side, classify=classifier(side.other),
                      batch_rows=env.config.apply.batch_rows)
    applier.prepare()
    if precompute:  # as the read-ahead thread does: only the applying thread's work is timed
        for ev in events:
            if type(ev) is RowChange:
                ev.prepared = None
                applier.precompute(ev)
    n = 0
    in_group = 0
    last = None
    cpu0, t0 = time.thread_time(), time.perf_counter()
    for ev in events:
        t = type(ev)
        if t is RowChange:
            applier.add(ev)
            n += 1
        elif t is TxBegin:
            if not applier.in_group:
                applier.begin_group(position_to_text(ev.position) if ev.position else None)
            applier.begin_tx(ev)
        elif t is TxCommit:
            last = position_to_text(ev.position)
            applier.end_tx(ev, last)
            in_group += 1
            if in_group >= group_txs:
                applier.commit_group(last)
                in_group = 0
    if applier.in_group and last is not None:
        applier.commit_group(last)
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
    target.close()
    return cpu, wall, n


def _truncate(env: Env, target: str, table) -> None:
    if target == "mes":
        conn = env.mes(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM `{table.name}`")
        finally:
            conn.close()
    else:
        with env.crm(autocommit=True) as c:
            c.execute(f"DELETE FROM {table.name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.apply", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--direction", default="crm_to_mes", choices=["crm_to_mes", "mes_to_crm"])
    p.add_argument("--table", default="wide", choices=sorted(TABLES))
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--tx-rows", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile the last repeat")
    p.add_argument("--precompute", action="store_true",
                   help="convert the rows beforehand, as the read-ahead thread does, and time "
                        "only the applying thread's share")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)
    from bridge.logs import configure

    configure("warning")
    table = TABLES[args.table]
    source, target = ("crm", "mes") if args.direction == "crm_to_mes" else ("mes", "crm")
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp, Servers() as servers:
        env = Env(servers, Path(tmp), tables=(table,))
        try:
            env.setup()
            slot = limits.create_read_slot(env) if source == "crm" else None
            load.insert(env, source, table, R.generate(table, 1, args.rows, 42), args.tx_rows)
            load.sentinel(env, source, table, 42)
            events = _capture(env, source, table, slot)
            group = env.config.apply.max_group_transactions
            print(f"{args.direction} {args.table}: {args.rows:,} rows in {args.tx_rows}-row "
                  f"transactions, {len(events):,} events, groups of {group} transactions")
            for i in range(args.repeat):
                _truncate(env, target, table)
                prof = cProfile.Profile() if args.profile and i == args.repeat - 1 else None
                if prof:
                    prof.enable()
                cpu, wall, n = _replay(env, args.direction, events, group, args.precompute)
                if prof:
                    prof.disable()
                print(f"  run {i + 1}: apply CPU {1e6 * cpu / n:.1f} us/row, "
                      f"wall {n / wall:,.0f} rows/s" + (" (profiled)" if prof else ""))
                if prof:
                    out = io.StringIO()
                    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
                    print(out.getvalue())
        finally:
            if slot:
                with env.crm(autocommit=True) as c:
                    c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            env.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
