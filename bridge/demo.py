"""`demo`: a live bridge between throwaway local servers, with no config.

Starts a private PostgreSQL (CRM) and MariaDB (MES), creates the sample schemas, runs the
bridge, makes changes on both sides and shows them arriving on the other side.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.logs import configure
from bridge.sample import CRM_SCHEMA, MES_SCHEMA, config_dict, sample_tables

console = Console()


def _table(title: str, columns: list[str], rows: list[tuple]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("NULL" if v is None else str(v) for v in r))
    return t


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def run_demo(seconds: float = 20.0) -> int:
    from bridge.devservers import MariaDBServer, PostgresServer

    workdir = Path(tempfile.mkdtemp(prefix="bridge-demo-"))
    log_file = workdir / "bridge.log"
    console.rule("[bold]crm-mes-bridge demo")
    console.print("Starting throwaway PostgreSQL 15 (CRM) and MariaDB (MES) servers...")
    with PostgresServer(settings={"track_commit_timestamp": "on"}) as pg, MariaDBServer(server_id=1) as my:
        pg.create_database("crm")
        my.create_database("mes")
        for stmt in CRM_SCHEMA:
            pg.execute(stmt, dbname="crm")
        for stmt in MES_SCHEMA:
            my.execute(stmt, dbname="mes")
        console.print(f"  CRM: {pg.dsn('crm')}\n  MES: {my.dsn('mes')}")
        cfg = parse_config(config_dict(
            "demo", pg.dsn("crm"), my.dsn("mes"), server_id=4201,
            tables=sample_tables({"rule": "last_writer_wins", "crm_version_column": "updated_at",
                                  "mes_version_column": "updated_at", "owner": "crm",
                                  "owners": {"status": "mes", "produced_qty": "mes",
                                             "finished_at": "mes"}}),
            logging={"audit_file": str(workdir / "audit.jsonl")},
        ))
        with open(log_file, "w") as fh:
            configure("info", audit_file=workdir / "audit.jsonl", stream=fh)
            from bridge.check import preflight
            from bridge.setup import setup

            preflight(cfg)
            setup(cfg)
            daemon = Daemon(cfg)
            thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
            thread.start()
            console.print(f"Bridge running (logs: {log_file}, audit: {workdir / 'audit.jsonl'})\n")
            try:
                _script(pg, my)
                console.print(f"\nStreaming for {seconds:.0f} more seconds; watch the audit log...")
                time.sleep(seconds)
            finally:
                daemon.stop.set()
                thread.join(timeout=30)
        console.print("Bridge stopped; servers are being removed.")
    console.rule("[bold]demo finished")
    return 0 if not daemon.errors else 1


def _script(pg: Any, my: Any) -> None:
    console.print("[bold]1. The CRM takes a customer and a sales order[/]")
    pg.execute(
        "INSERT INTO customers (id, name, email, country) VALUES (1, 'Acme Tools', 'buy@acme.example', 'DE');"
        "INSERT INTO sales_orders (id, customer_id, status, quantity, due_date, notes) VALUES "
        "(1001, 1, 'confirmed', 250, '2026-12-15', '{\"priority\": \"high\", \"rev\": 1.10}');"
        "INSERT INTO order_lines (id, order_id, sku, quantity, unit_price) VALUES "
        "(1, 1001, 'BRKT-40', 250, 12.40), (2, 1001, 'BOLT-M8', 1000, 0.05)",
        dbname="crm",
    )
    _wait(lambda: bool(my.query("SELECT 1 FROM work_orders WHERE crm_order_id = 1001", dbname="mes")))
    console.print(_table("MES work_orders", ["crm_order_id", "state", "planned_qty", "due_date", "notes"],
                         my.query("SELECT crm_order_id, state, planned_qty, due_date, notes FROM work_orders",
                                  dbname="mes")))
    console.print(_table("MES work_order_lines", ["crm_line_id", "sku", "qty", "unit_price"],
                         my.query("SELECT crm_line_id, sku, qty, unit_price FROM work_order_lines", dbname="mes")))

    console.print("\n[bold]2. The MES starts production and reports quantities[/]")
    my.execute("UPDATE work_orders SET state = 'RUNNING', produced_qty = 120, "
               "updated_at = UTC_TIMESTAMP(6) WHERE crm_order_id = 1001", dbname="mes")
    _wait(lambda: pg.query("SELECT status::text FROM sales_orders WHERE id = 1001", dbname="crm")[0][0]
          == "in_production")
    console.print(_table("CRM sales_orders", ["id", "status", "quantity", "produced_qty", "finished_at"],
                         pg.query("SELECT id, status, quantity, produced_qty, finished_at FROM sales_orders",
                                  dbname="crm")))

    console.print("\n[bold]3. The MES finishes the work order[/]")
    my.execute("UPDATE work_orders SET state = 'DONE', produced_qty = 250, "
               "finished_at = '2026-11-25 14:03:07.123456', updated_at = UTC_TIMESTAMP(6) "
               "WHERE crm_order_id = 1001", dbname="mes")
    _wait(lambda: pg.query("SELECT status::text FROM sales_orders WHERE id = 1001", dbname="crm")[0][0]
          == "shipped")
    console.print(_table("CRM sales_orders", ["id", "status", "produced_qty", "finished_at"],
                         pg.query("SELECT id, status, produced_qty, finished_at FROM sales_orders",
                                  dbname="crm")))

    console.print("\n[bold]4. The CRM changes the ordered quantity; the MES sees it, nothing echoes back[/]")
    pg.execute("UPDATE sales_orders SET quantity = 300, updated_at = now() WHERE id = 1001", dbname="crm")
    _wait(lambda: my.query("SELECT planned_qty FROM work_orders WHERE crm_order_id = 1001",
                           dbname="mes")[0][0] == 300)
    console.print(_table("MES work_orders", ["crm_order_id", "state", "planned_qty", "produced_qty", "finished_at"],
                         my.query("SELECT crm_order_id, state, planned_qty, produced_qty, finished_at "
                                  "FROM work_orders", dbname="mes")))
