"""Verify (and repair) the configured tables: the orchestration behind `bridge verify`."""

from __future__ import annotations

import time

import structlog

from bridge.config import Config
from bridge.mapping import Mapping, TableMapping
from bridge.model import Side
from bridge.verify.compare import DEFAULT_RANGE_ROWS, TableComparer, recheck
from bridge.verify.model import Report, TableReport, VerifyError
from bridge.verify.plan import plan_table
from bridge.verify.repair import Repairer
from bridge.verify.sides import SideReader, open_side

log = structlog.get_logger("bridge.verify")


def choose_tables(config: Config, names: list[str] | None) -> list[TableMapping]:
    mapping = Mapping.from_config(config)
    if not names:
        return list(mapping.tables)
    out: list[TableMapping] = []
    for name in names:
        tm = next((t for t in mapping.tables if name in (
            t.crm_table, t.crm_table.split(".", 1)[1], t.spec.mes, t.mes_table)), None)
        if tm is None:
            known = ", ".join(t.crm_table for t in mapping.tables)
            raise VerifyError(f"table {name!r} is not bridged (tables: {known})")
        if tm not in out:
            out.append(tm)
    return out


def run_verify(config: Config, tables: list[str] | None = None, *, repair: bool = False,
               range_rows: int | None = None, settle: float = 2.0) -> Report:
    chosen = choose_tables(config, tables)
    readers: dict[Side, SideReader] = {Side.CRM: open_side(config, Side.CRM)}
    try:
        readers[Side.MES] = open_side(config, Side.MES)
        reports = [verify_table(config, tm, readers, repair=repair,
                                range_rows=range_rows or DEFAULT_RANGE_ROWS, settle=settle)
                   for tm in chosen]
    finally:
        for r in readers.values():
            r.close()
    return Report(reports, repair)


def verify_table(config: Config, tm: TableMapping, readers: dict[Side, SideReader], *,
                 repair: bool, range_rows: int, settle: float) -> TableReport:
    started = time.monotonic()
    crm_info = readers[Side.CRM].table_info(tm.crm_table)
    mes_info = readers[Side.MES].table_info(tm.mes_table)
    if crm_info is None or mes_info is None:
        missing = tm.crm_table if crm_info is None else tm.mes_table
        raise VerifyError(f"table {missing} does not exist")
    plan = plan_table(tm, crm_info, mes_info)
    crm, mes = readers[Side.CRM], readers[Side.MES]
    comparer = TableComparer(plan, crm, mes, range_rows=range_rows)
    found = comparer.run()
    diffs = recheck(plan, crm, mes, found, wait=lambda: time.sleep(settle))
    report = TableReport(
        table=tm.crm_table, mes_table=tm.mes_table, direction=tm.spec.direction,
        rows=comparer.rows, ranges=comparer.ranges,
        server_columns=[p.crm for p in plan.server], client_columns=[p.crm for p in plan.client],
        differences=diffs, remaining=len(diffs))
    if repair and diffs:
        report.repairs = Repairer(config, plan, readers).repair(diffs)
        report.remaining = len(recheck(plan, crm, mes, diffs, wait=lambda: None))
    report.seconds = round(time.monotonic() - started, 3)
    log.info("verify_table", table=tm.crm_table, rows=report.rows, ranges=report.ranges,
             differences=len(diffs), in_flight=len(found) - len(diffs),
             repaired=sum(r.action in ("insert", "update", "delete") for r in report.repairs),
             remaining=report.remaining, seconds=report.seconds)
    return report
