"""Conflicts for people: the column-by-column diff of a record, and the HTML report.

Pure: records in, text out; no database access. `column_diff` is shared by
`bridge conflicts show` (rich table) and the report. `render_report` writes one
self-contained HTML page: inline CSS, an inline SVG chart, no script, nothing fetched from
the network. Every value is escaped with `html.escape`.

Diff semantics: four versions of the row, in the record's target column names:
incoming before -> incoming after (what the source changed), target as found (what the
target held: changed concurrently), result (what the decision left on the target). A cell
is *changed* when it differs from the version it follows: after vs before, found vs before
(vs after when there is no before-image), result vs found (vs after when nothing was found).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from conflict.store import StoredConflict

VERSIONS: tuple[tuple[str, str], ...] = (
    ("incoming_before", "incoming before"),
    ("incoming_after", "incoming after"),
    ("target_found", "target as found"),
    ("result", "result"),
)
DECISION = ("decision", "DBA decision")  # shown once a DBA decided (resolution.rows)
_BASES: dict[str, tuple[str, ...]] = {
    "incoming_before": (),
    "incoming_after": ("incoming_before",),
    "target_found": ("incoming_before", "incoming_after"),
    "result": ("target_found", "incoming_after"),
    "decision": ("result", "target_found"),
}
ABSENT = "—"


# --- the diff ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One version's value of one column."""

    text: str
    present: bool  # the version has a row and that row has the column
    changed: bool  # differs from the version it follows (see module docstring)


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One column across the four versions."""

    column: str
    disputed: bool  # named in the record's `columns`
    differs: bool  # the present, sent values do not all agree
    cells: tuple[Cell, ...]  # in `versions(rec)` order


def value_text(value: Any) -> str:
    """A stored JSON value as people read it (NULL, (not sent), plain text, JSON)."""
    if value is None:
        return "NULL"
    if isinstance(value, dict) and value.get("$unchanged"):
        return "(not sent)"
    if isinstance(value, dict) and "$invalid" in value:
        return f"(invalid: {value['$invalid']})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _is_sent(row: dict[str, Any] | None, column: str) -> bool:
    if row is None or column not in row:
        return False
    value = row[column]
    return not (isinstance(value, dict) and value.get("$unchanged"))


def _changed(rows: dict[str, dict[str, Any] | None], version: str, column: str) -> bool:
    if not _is_sent(rows[version], column):
        return False
    for base in _BASES[version]:
        if _is_sent(rows.get(base), column):
            return rows[base][column] != rows[version][column]  # type: ignore[index]
    return False


def decided_row(rec: StoredConflict) -> dict[str, Any] | None:
    """The row a DBA decision left on the record's side (from its resolution), if any."""
    rows = (rec.resolution or {}).get("rows")
    return rows.get(rec.side.value) if isinstance(rows, dict) else None


def versions(rec: StoredConflict) -> tuple[tuple[str, str], ...]:
    """The versions shown for a record: the four rows, plus the DBA's once decided."""
    has_decision = isinstance((rec.resolution or {}).get("rows"), dict)
    return (*VERSIONS, DECISION) if has_decision else VERSIONS


def version_rows(rec: StoredConflict) -> dict[str, dict[str, Any] | None]:
    rows = {v: getattr(rec, v) for v, _ in VERSIONS}
    rows["decision"] = decided_row(rec)
    return rows


def diff_columns(rec: StoredConflict, order: Sequence[str] = ()) -> list[str]:
    """Key columns first, then `order` (e.g. the mapping's), then any other column in order
    of first appearance."""
    rows = version_rows(rec)
    present: dict[str, None] = {}
    for version, _ in versions(rec):
        present.update(dict.fromkeys(rows[version] or {}))
    seen: dict[str, None] = dict.fromkeys(rec.row_key)
    seen.update(dict.fromkeys(c for c in order if c in present))
    seen.update(present)
    return list(seen)


def column_diff(rec: StoredConflict, order: Sequence[str] = ()) -> list[DiffLine]:
    """The record's row versions side by side, one line per column (cells in `versions`
    order)."""
    rows = version_rows(rec)
    shown = versions(rec)
    lines = []
    for col in diff_columns(rec, order):
        cells = tuple(
            Cell(value_text(rows[v][col]) if _present(rows[v], col) else ABSENT,  # type: ignore[index]
                 _present(rows[v], col), _changed(rows, v, col))
            for v, _ in shown)
        sent = {json.dumps(rows[v][col], sort_keys=True) for v, _ in shown if _is_sent(rows[v], col)}  # type: ignore[index]
        lines.append(DiffLine(col, col in rec.columns, len(sent) > 1, cells))
    return lines


def _present(row: dict[str, Any] | None, column: str) -> bool:
    return row is not None and column in row


def row_states(rec: StoredConflict) -> list[str]:
    """Per shown version: 'row' or 'no row' (a delete's after-image, a missing row)."""
    rows = version_rows(rec)
    return ["row" if rows[v] is not None else "no row" for v, _ in versions(rec)]


# --- summaries ---------------------------------------------------------------------------


def ordered(records: Iterable[StoredConflict]) -> list[StoredConflict]:
    """Unresolved (parked, queued) first, each group oldest first."""
    return sorted(records, key=lambda r: (not r.is_open, r.created_at, r.ref))


def counts(records: Sequence[StoredConflict], attr: str) -> list[tuple[str, int, int]]:
    """(value, total, unresolved) per distinct value of `attr`, most frequent first."""
    total = Counter(getattr(r, attr) for r in records)
    open_ = Counter(getattr(r, attr) for r in records if r.is_open)
    return [(k, n, open_[k]) for k, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    total: int
    unresolved: int


def time_buckets(records: Sequence[StoredConflict]) -> tuple[str, list[Bucket]]:
    """Counts per hour (span up to 72 h) or per day, gaps included, oldest first."""
    if not records:
        return "hour", []
    times = [r.created_at.astimezone(UTC) for r in records]
    first, last = min(times), max(times)
    unit = "hour" if last - first <= timedelta(hours=72) else "day"
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)

    def floor(t: datetime) -> datetime:
        t = t.replace(minute=0, second=0, microsecond=0)
        return t if unit == "hour" else t.replace(hour=0)

    total = Counter(floor(t) for t in times)
    open_ = Counter(floor(t) for t, r in zip(times, records) if r.is_open)
    out, t = [], floor(first)
    while t <= floor(last):
        out.append(Bucket(t, total[t], open_[t]))
        t += step
    return unit, out


# --- HTML --------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else ABSENT


def anchor(rec: StoredConflict) -> str:
    return f"conflict-{rec.ref}"


def key_text(rec: StoredConflict) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in rec.row_key.items())


_CSS = """
:root { --fg:#1d2430; --muted:#5b6577; --line:#d8dde6; --bg:#f6f7f9; --card:#fff;
  --open:#c2410c; --done:#2563eb; --src:#fde68a; --tgt:#f5d0fe; --res:#bbf7d0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; padding: 24px 32px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 0; }
.muted { color: var(--muted); }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 130px; }
.card b { display: block; font-size: 24px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; }
.grid > div { min-width: 0; overflow-x: auto; }
table { border-collapse: collapse; background: var(--card); width: 100%; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.val { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  white-space: pre-wrap; word-break: break-word; max-width: 360px; }
td.absent { color: #9aa3b2; }
.chg-incoming_after { background: var(--src); } .chg-target_found { background: var(--tgt); }
.chg-result, .chg-decision { background: var(--res); }
.lg-open { background: var(--open); color: #fff; } .lg-done { background: var(--done); color: #fff; }
tr.disputed th { color: var(--open); }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; border: 1px solid; }
.st-parked, .st-queued { color: var(--open); border-color: var(--open); }
.st-resolved, .st-overridden, .st-superseded { color: var(--done); border-color: var(--done); }
section.conflict { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; margin: 14px 0; }
section.conflict.open { border-left: 5px solid var(--open); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-word; }
.legend span { display: inline-block; padding: 0 8px; margin-right: 8px; border-radius: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
@media print { body { background: #fff; } section.conflict { break-inside: avoid; } }
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """An HTML table; `rows` cells are already-escaped HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _count_table(title: str, rows: list[tuple[str, int, int]], test_id: str) -> str:
    cells = [(esc(k), str(n), str(u)) for k, n, u in rows]
    return (f'<div data-testid="{esc(test_id)}"><h3>{esc(title)}</h3>'
            + _table([title.removeprefix("By ").capitalize(), "conflicts", "unresolved"], cells, {1, 2})
            + "</div>")


def _badge(status: str) -> str:
    return f'<span class="badge st-{esc(status)}">{esc(status)}</span>'


def chart_svg(unit: str, buckets: list[Bucket], width: int = 960, height: int = 220) -> str:
    """An inline SVG bar chart: conflicts per hour/day, unresolved part stacked on top."""
    if not buckets:
        return '<p class="muted">No conflicts in this range.</p>'
    left, bottom, top = 40, 36, 16
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(b.total for b in buckets) or 1
    slot = plot_w / len(buckets)
    bar = max(1.0, slot * 0.8)
    parts = [(f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" '
              f'aria-label="conflicts per {esc(unit)}" data-testid="chart">'),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#9aa3b2"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']
    label_every = max(1, len(buckets) // 12)
    fmt = "%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    for i, b in enumerate(buckets):
        x = left + i * slot + (slot - bar) / 2
        done_h = plot_h * (b.total - b.unresolved) / peak
        open_h = plot_h * b.unresolved / peak
        base = top + plot_h
        tip = f"{b.start.strftime(fmt)}: {b.total} conflict(s), {b.unresolved} unresolved"
        parts.append(f'<g data-count="{b.total}"><title>{esc(tip)}</title>'
                     f'<rect x="{x:.1f}" y="{base - done_h:.1f}" width="{bar:.1f}" height="{done_h:.1f}" fill="#2563eb" class="bar-done"/>'
                     f'<rect x="{x:.1f}" y="{base - done_h - open_h:.1f}" width="{bar:.1f}" height="{open_h:.1f}" fill="#c2410c" class="bar-open"/>')
        if b.total and slot >= 14:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{base - done_h - open_h - 3:.1f}" '
                         f'text-anchor="middle">{b.total}</text>')
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{base + 14}" text-anchor="middle">'
                         f'{esc(b.start.strftime(fmt))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def diff_table(rec: StoredConflict, order: Sequence[str] = ()) -> str:
    """The record's column diff as an HTML table (changed cells coloured by version)."""
    shown = versions(rec)
    head = "<tr><th>column</th>" + "".join(
        f"<th>{esc(label)}<br><small class=\"muted\">{esc(state)}</small></th>"
        for (_, label), state in zip(shown, row_states(rec))) + "</tr>"
    body = []
    for line in column_diff(rec, order):
        cells = []
        for (version, _), cell in zip(shown, line.cells):
            cls = ["val"] + (["absent"] if not cell.present else []) + (
                [f"chg-{version}"] if cell.changed else [])
            cells.append(f'<td class="{" ".join(cls)}">{esc(cell.text)}</td>')
        mark = " *" if line.disputed else ""
        cls = ' class="disputed"' if line.disputed else ""
        body.append(f"<tr{cls}><th>{esc(line.column)}{mark}</th>{''.join(cells)}</tr>")
    return f"<table class=\"diff\"><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _details(rec: StoredConflict) -> str:
    items = [
        ("table", rec.target_table), ("key", key_text(rec)), ("direction", rec.direction),
        ("type", rec.conflict_type), ("rule", rec.rule), ("winner", rec.winner),
        ("disputed columns", ", ".join(rec.columns) or ABSENT),
        ("detected", _fmt_time(rec.created_at)),
        ("source position", rec.source_position or ABSENT),
        ("source commit", _fmt_time(rec.source_commit_ts)),
        ("target commit", _fmt_time(rec.target_commit_ts)),
    ]
    if rec.resolved_by or rec.resolved_at:
        items += [("resolved by", rec.resolved_by or ABSENT), ("resolved at", _fmt_time(rec.resolved_at))]
    if rec.resolution:
        items.append(("resolution", json.dumps(rec.resolution, ensure_ascii=False, sort_keys=True)))
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def _section(rec: StoredConflict, order: Sequence[str]) -> str:
    cls = "conflict open" if rec.is_open else "conflict"
    return (f'<section class="{cls}" id="{esc(anchor(rec))}" data-conflict-id="{esc(rec.ref)}">'
            f"<h3>{esc(rec.ref)} · {esc(rec.conflict_type)} on {esc(rec.target_table)} "
            f"{_badge(rec.status)}</h3>{_details(rec)}{diff_table(rec, order)}</section>")


def _index(records: list[StoredConflict]) -> str:
    rows = [(f'<a href="#{esc(anchor(r))}">{esc(r.ref)}</a>', esc(_fmt_time(r.created_at)),
             esc(r.target_table), esc(key_text(r)), esc(r.conflict_type), esc(r.rule),
             esc(r.winner), _badge(r.status)) for r in records]
    return _table(["id", "time", "table", "key", "type", "rule", "winner", "status"], rows, set())


_LEGEND_CHART = ('<p class="legend"><span class="lg-open">unresolved</span>'
                 '<span class="lg-done">decided</span></p>')
_LEGEND_DIFF = ('<p class="legend"><span class="chg-incoming_after">changed by the source</span>'
                '<span class="chg-target_found">changed on the target</span>'
                '<span class="chg-result">changed by the decision</span> · * disputed column</p>')


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What the page says about itself."""

    bridge: str
    generated_at: datetime
    since: datetime | None = None
    until: datetime | None = None
    column_order: Mapping[str, Sequence[str]] = field(default_factory=dict)  # target table -> columns


def _range_text(info: ReportInfo) -> str:
    if not info.since and not info.until:
        return "all recorded conflicts"
    return f"from {_fmt_time(info.since) if info.since else 'the start'} " \
           f"until {_fmt_time(info.until) if info.until else 'now'}"


def _summary(records: list[StoredConflict]) -> str:
    status = Counter(r.status for r in records)
    unresolved = status["parked"] + status["queued"]
    cards = [("total", len(records), "total"), ("unresolved", unresolved, "unresolved"),
             ("parked", status["parked"], "parked"), ("queued", status["queued"], "queued"),
             ("resolved by rule", status["resolved"], "resolved"),
             ("overridden by a DBA", status["overridden"], "overridden"),
             ("superseded", status["superseded"], "superseded")]
    return '<div class="cards">' + "".join(
        f'<div class="card" data-testid="count-{esc(tid)}"><b>{n}</b>{esc(label)}</div>'
        for label, n, tid in cards) + "</div>"


def render_report(records: Sequence[StoredConflict], info: ReportInfo) -> str:
    """The whole self-contained HTML page."""
    recs = ordered(records)
    unit, buckets = time_buckets(recs)
    open_recs = [r for r in recs if r.is_open]
    title = f"Conflict report: bridge {info.bridge}"
    body = [
        f"<h1>{esc(title)}</h1>",
        (f'<p class="muted">Generated {esc(_fmt_time(info.generated_at))} · '
         f"{esc(_range_text(info))} · ids: crm-N are stored on the CRM (MES→CRM changes), "
         "mes-N on the MES (CRM→MES changes)</p>"),
        _summary(recs),
        f"<h2>Conflicts per {esc(unit)}</h2>",
        _LEGEND_CHART,
        chart_svg(unit, buckets),
        '<h2>Counts</h2><div class="grid">',
        _count_table("By table", counts(recs, "target_table"), "by-table"),
        _count_table("By type", counts(recs, "conflict_type"), "by-type"),
        _count_table("By rule", counts(recs, "rule"), "by-rule"),
        _count_table("By status", counts(recs, "status"), "by-status"),
        "</div>",
        f"<h2>All conflicts ({len(recs)}; {len(open_recs)} unresolved listed first)</h2>",
        _index(recs) if recs else '<p class="muted">None.</p>',
        "<h2>Details</h2>",
        _LEGEND_DIFF,
        *(_section(r, info.column_order.get(r.target_table, ())) for r in recs),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            # nothing may be fetched: no network, no files; only the inline style
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
