"""Verify reports as text (for people) and JSON (`--format json`)."""

from __future__ import annotations

import json
from typing import Any

from bridge.verify.model import Difference, Report


def _diff_dict(d: Difference) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": d.kind, "key": d.key}
    if d.only_on is not None:
        out["only_on"] = d.only_on.value
    if d.columns:
        out["columns"] = d.columns
    return out


def as_dict(report: Report) -> dict[str, Any]:
    return {
        "clean": report.clean_after,
        "differences": report.differences,
        "repair": report.repair,
        "tables": [{
            "table": t.table, "mes_table": t.mes_table, "direction": t.direction,
            "rows": t.rows, "ranges": t.ranges, "seconds": t.seconds,
            "server_columns": t.server_columns, "client_columns": t.client_columns,
            "differences": [_diff_dict(d) for d in t.differences],
            "repairs": [{"key": r.key, "side": r.side.value, "action": r.action,
                         "columns": r.columns, **({"reason": r.reason} if r.reason else {})}
                        for r in t.repairs],
            "remaining": t.remaining,
        } for t in report.tables],
    }


def render_json(report: Report) -> str:
    return json.dumps(as_dict(report), ensure_ascii=False, indent=2, default=str)


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in key.items())


def render_text(report: Report) -> str:
    lines: list[str] = []
    for t in report.tables:
        rows = " / ".join(f"{side} {n:,}" for side, n in t.rows.items())
        lines.append(f"{t.table} <-> {t.mes_table} ({t.direction}): {rows} rows, "
                     f"{len(t.differences)} difference(s), {t.ranges} range(s), {t.seconds:.1f}s")
        for d in t.differences:
            if d.kind == "differs":
                lines.append(f"  differs  {_key_text(d.key)}")
                for col, v in d.columns.items():
                    lines.append(f"      {col}: crm={v['crm']!r}  mes={v['mes']!r}")
            else:
                other = d.only_on.other.value if d.only_on else "?"
                what = "missing on" if d.kind == "missing" else "extra on"
                side = other if d.kind == "missing" else (d.only_on.value if d.only_on else "?")
                lines.append(f"  {d.kind:8s} {_key_text(d.key)}  ({what} {side})")
        for r in t.repairs:
            cols = f" [{', '.join(r.columns)}]" if r.columns and r.action == "update" else ""
            why = f": {r.reason}" if r.reason else ""
            lines.append(f"  repair   {_key_text(r.key)}  {r.action} on {r.side.value}{cols}{why}")
        if report.repair and t.differences:
            lines.append(f"  after repair: {t.remaining} difference(s) left")
    total = report.differences
    if report.repair:
        lines.append("verify: OK after repair" if report.clean_after
                     else "verify: differences remain after repair")
    else:
        lines.append("verify: OK - both sides hold the same rows" if total == 0
                     else f"verify: {total} difference(s)")
    return "\n".join(lines)
