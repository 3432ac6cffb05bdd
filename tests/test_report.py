"""The HTML conflict report: the pure diff and summaries, escaping, self-containment, and the
page as headless Chromium renders it from real state tables."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.model import Side
from conflict.report import (
    DECISION,
    VERSIONS,
    ReportInfo,
    column_diff,
    counts,
    ordered,
    render_report,
    time_buckets,
    value_text,
    versions,
)
from conflict.store import ConflictRef, StoredConflict

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & <img src="http://example.invalid/x.png">'


def stored(side: Side = Side.MES, number: int = 1, **fields: Any) -> StoredConflict:
    """An in-memory record (as read back from a conflicts table)."""
    values: dict[str, Any] = {
        "created_at": T0, "direction": "crm_to_mes", "target_table": "mes.work_orders",
        "row_key": {"crm_order_id": 1}, "conflict_type": "update_differs", "rule": "manual",
        "winner": "parked", "columns": ["planned_qty"],
        "incoming_before": {"crm_order_id": 1, "planned_qty": 10, "state": "RELEASED", "notes": None},
        "incoming_after": {"crm_order_id": 1, "planned_qty": 11, "state": "RELEASED",
                           "notes": {"$unchanged": True}},
        "target_found": {"crm_order_id": 1, "planned_qty": 12, "state": "RUNNING", "notes": '{"a":1}'},
        "result": {"crm_order_id": 1, "planned_qty": 11, "state": "RUNNING", "notes": '{"a":1}'},
        "source_position": "pg:0/1", "source_commit_ts": T0, "target_commit_ts": None,
        "status": "parked", "resolved_by": None, "resolved_at": None, "resolution": None,
    }
    values.update(fields)
    return StoredConflict(ref=ConflictRef(side, number), **values)


class TestDiff:
    def test_each_version_is_compared_with_the_one_it_follows(self):
        """after vs before, found vs before, result vs found; the disputed column is flagged."""
        lines = {ln.column: ln for ln in column_diff(stored())}
        qty = lines["planned_qty"]
        assert [c.text for c in qty.cells] == ["10", "11", "12", "11"]
        assert [c.changed for c in qty.cells] == [False, True, True, True]
        assert qty.disputed and qty.differs
        state = lines["state"]
        assert [c.changed for c in state.cells] == [False, False, True, False]
        assert not lines["crm_order_id"].differs and not lines["crm_order_id"].disputed

    def test_unsent_values_and_missing_rows(self):
        """A value not sent is shown as such and never counts as a change; a missing row
        leaves its cells absent."""
        lines = {ln.column: ln for ln in column_diff(stored(result=None))}
        notes = lines["notes"]
        assert [c.text for c in notes.cells][:2] == ["NULL", "(not sent)"]
        assert notes.cells[1].changed is False
        assert [c.present for c in lines["planned_qty"].cells] == [True, True, True, False]

    def test_insert_without_before_image(self):
        """Without a before-image the target row is compared with the incoming after-image."""
        rec = stored(incoming_before=None, conflict_type="insert_exists")
        qty = {ln.column: ln for ln in column_diff(rec)}["planned_qty"]
        assert [c.changed for c in qty.cells] == [False, False, True, True]

    def test_decision_column_and_column_order(self):
        """Once a DBA decided, the decided row is a fifth version; `order` sorts columns
        after the key."""
        decided = {"crm_order_id": 1, "planned_qty": 10, "state": "RELEASED", "notes": None}
        rec = stored(status="overridden", resolution={"rows": {"mes": decided, "crm": {"id": 1}}})
        assert versions(rec)[-1] == DECISION and versions(stored()) == VERSIONS
        qty = {ln.column: ln for ln in column_diff(rec)}["planned_qty"]
        assert (qty.cells[-1].text, qty.cells[-1].changed) == ("10", True)
        assert [ln.column for ln in column_diff(rec, order=["state", "planned_qty"])] == [
            "crm_order_id", "state", "planned_qty", "notes"]

    def test_value_text(self):
        """JSON values read the way a DBA expects."""
        assert [value_text(v) for v in (None, True, 3, "x", [1, "a"], {"$invalid": "inf", "reason": "r"})] == [
            "NULL", "true", "3", "x", '[1, "a"]', "(invalid: inf)"]


class TestSummaries:
    def test_unresolved_first(self):
        """Parked and queued records come first, each group oldest first."""
        recs = [stored(number=1, status="resolved", created_at=T0 - timedelta(hours=1)),
                stored(number=2, status="parked", created_at=T0),
                stored(number=3, status="queued", created_at=T0 - timedelta(minutes=1)),
                stored(number=4, status="overridden", created_at=T0 - timedelta(hours=2))]
        assert [r.ref.number for r in ordered(recs)] == [3, 2, 4, 1]

    def test_counts(self):
        """Counts per value with the unresolved share, most frequent first."""
        recs = [stored(number=1), stored(number=2, rule="crm_wins", status="resolved"),
                stored(number=3, rule="crm_wins", status="resolved")]
        assert counts(recs, "rule") == [("crm_wins", 2, 0), ("manual", 1, 1)]

    def test_hourly_buckets_fill_gaps(self):
        """Up to 72 hours: one bucket per hour, empty hours included."""
        recs = [stored(number=1, created_at=T0), stored(number=2, created_at=T0 + timedelta(minutes=5)),
                stored(number=3, created_at=T0 + timedelta(hours=3), status="resolved")]
        unit, buckets = time_buckets(recs)
        assert unit == "hour"
        assert [(b.total, b.unresolved) for b in buckets] == [(2, 2), (0, 0), (0, 0), (1, 0)]

    def test_daily_buckets(self):
        """Longer spans: one bucket per day."""
        recs = [stored(number=1, created_at=T0), stored(number=2, created_at=T0 + timedelta(days=4))]
        unit, buckets = time_buckets(recs)
        assert unit == "day" and len(buckets) == 5 and buckets[0].start.hour == 0


class TestHtml:
    def test_values_are_escaped(self):
        """Table names, keys and row values cannot inject markup."""
        page = render_report([stored(target_table=HOSTILE, result={"crm_order_id": 1, "state": HOSTILE})],
                             ReportInfo("plant1", T0))
        assert "<script" not in page and "<img" not in page
        assert html_escaped(HOSTILE) in page

    def test_self_contained(self):
        """No script, no stylesheet link, no remote or file reference; a CSP forbids loads."""
        page = render_report([stored(number=n) for n in range(1, 4)], ReportInfo("plant1", T0))
        for pattern in (r"<script", r"<link", r"\bsrc=", r"@import", r"url\(", r"https?://", r"<iframe"):
            assert not re.search(pattern, page, re.IGNORECASE), pattern
        assert "Content-Security-Policy" in page and "default-src 'none'" in page

    def test_empty_report(self):
        """An empty log still makes a valid page saying so."""
        page = render_report([], ReportInfo("plant1", T0, since=T0))
        assert "No conflicts in this range." in page and "from 2026-03-02 10:00:00 UTC" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# --- rendered in headless Chromium, from real state tables ------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--hide-scrollbars", "--disable-extensions"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=120, check=True)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes): width, height,
    unfiltered rows, bytes per pixel."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, prev, rows, i = zlib.decompress(idat), width * bpp, bytearray(width * bpp), [], 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        _unfilter(kind, line, prev, bpp)
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    if kind == 2:
        line[:] = bytes((x + y) & 255 for x, y in zip(line, prev))
        return
    for x in range(len(line)) if kind in (1, 3, 4) else ():
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
        if kind == 1:
            line[x] = (line[x] + a) & 255
        elif kind == 3:
            line[x] = (line[x] + (a + b) // 2) & 255
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255


def count_color(rows: list[bytes], bpp: int, rgb: tuple[int, int, int], tolerance: int = 6) -> int:
    n = 0
    for row in rows:
        for x in range(0, len(row), bpp):
            if all(abs(row[x + k] - rgb[k]) <= tolerance for k in range(3)):
                n += 1
    return n


@pytest.mark.integration
def test_report_renders_in_chromium(pg_server, mariadb_server, tmp_path):
    """`conflicts report` over real state tables writes a page that headless Chromium renders
    with every conflict, the counts and the chart, and without running injected markup."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; `make deps` does it)")
    from bridge.sample import CRM_SCHEMA, MES_SCHEMA
    from tests.bridgeenv import BridgeEnv
    from tests.test_conflict_cli import add_conflict, cli, close_env

    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_SCHEMA, MES_SCHEMA)
    try:
        env.setup()
        refs = [
            add_conflict(env, Side.MES, order=1),
            add_conflict(env, Side.CRM, order=1, created_at=T0 + timedelta(hours=2)),
            add_conflict(env, Side.MES, order=2, status="resolved", rule="crm_wins", winner="crm",
                         created_at=T0 - timedelta(hours=3)),
            add_conflict(env, Side.MES, order=3, status="overridden", resolved_by="alice",
                         created_at=T0 - timedelta(hours=1),
                         target_found={"crm_order_id": 3, "planned_qty": 1, "state": HOSTILE}),
            add_conflict(env, Side.CRM, order=4, conflict_type="delete_missing", rule="last_writer_wins",
                         winner="none", status="resolved", result=None, incoming_after=None,
                         created_at=T0 + timedelta(hours=1)),
        ]
        out = tmp_path / "report.html"
        assert "5 conflict(s), 2 unresolved" in cli(env, "report", "--out", str(out)).stdout
    finally:
        close_env(env)

    dom = chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    for ref in refs:
        assert f'data-conflict-id="{ref}"' in dom, ref
    assert re.search(r'data-testid="count-total"><b>5</b>', dom)
    assert re.search(r'data-testid="count-unresolved"><b>2</b>', dom)
    assert "public.sales_orders" in dom and f"{env.mes_db}.work_orders" in dom
    for word in ("update_differs", "delete_missing", "crm_wins", "last_writer_wins", "alice"):
        assert word in dom, word
    by_type = dom[dom.index('data-testid="by-type"'):]
    assert re.search(r"<td>update_differs</td><td class=\"num\">4</td><td class=\"num\">2</td>", by_type)
    sections = re.findall(r'<section class="([^"]+)" id="[^"]+" data-conflict-id="([^"]+)"', dom)
    assert [ref for _, ref in sections][:2] == [refs[0], refs[1]]  # unresolved first
    assert [cls for cls, _ in sections][:2] == ["conflict open"] * 2
    assert "<script" not in dom.lower() and "&lt;script&gt;" in dom  # stayed text
    assert dom.count('class="bar-open"') >= 1 and dom.count("<g data-count=") == 6  # 6 hours

    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1000,760", f"--screenshot={shot}", out.as_uri())
    width, height, rows, bpp = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 760)
    assert count_color(rows, bpp, (0xC2, 0x41, 0x0C)) > 500, "no unresolved bars / badges rendered"
    assert count_color(rows, bpp, (0x25, 0x63, 0xEB)) > 500, "no decided bars rendered"
