"""`bridge conflicts ...`: the DBA's view of the conflict log.

  list     filter both sides' records, merged in time order (table, JSON or CSV)
  show     one record: details and the column-by-column diff of its row versions
           (incoming before/after, target as found, result, and the DBA decision once made)
  resolve  apply a decision (--take crm|mes or --set col=value) to both sides; record it
  report   a self-contained HTML report

Ids are `crm-<n>` (stored on the CRM: MES->CRM changes) and `mes-<n>` (stored on the MES:
CRM->MES changes); a bare number is accepted when only one side has it. Exit codes: 0 ok,
1 error (unknown id, server unreachable, decision refused), 2 bad usage or invalid config.
`bridge.cli` calls `register(main)` to add the group.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bridge.config import Config, ConfigError, Rule, load_config
from bridge.mapping import Mapping
from bridge.model import Side
from conflict.report import (
    ReportInfo,
    column_diff,
    key_text,
    render_report,
    row_states,
    versions,
)
from conflict.store import (
    TYPES,
    BadDecision,
    Choice,
    ConflictFilter,
    ConflictLogMissing,
    ConflictRef,
    OverrideBusy,
    PartialOverride,
    StoredConflict,
    UnknownConflict,
    open_log,
    override,
    parse_ref,
    table_names,
)

CSV_FIELDS = ("id", "side", "number", "created_at", "direction", "target_table", "row_key",
              "conflict_type", "rule", "winner", "columns", "status", "resolved_by",
              "resolved_at", "source_position", "source_commit_ts", "target_commit_ts",
              "incoming_before", "incoming_after", "target_found", "result", "resolution")
LIST_TYPES = (*TYPES, "queued")  # the engine records a queued change with type `queued`
LIST_RULES = (*get_args(Rule), "ownership")
_CHANGED_STYLE = {"incoming_after": "black on yellow", "target_found": "black on magenta",
                  "result": "black on green", "decision": "black on green"}
_STATUS_STYLE = {"parked": "bold red", "queued": "red", "overridden": "cyan",
                 "superseded": "dim", "resolved": "green"}


# --- shared plumbing ---------------------------------------------------------------------


class IsoTime(click.ParamType):
    """An ISO 8601 date or time; without an offset it is UTC."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            t = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-03-01 or 2026-03-01T12:00Z)",
                      param, ctx)
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t


class ConflictId(click.ParamType):
    """`crm-12`, `mes-7` or a bare number."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> ConflictRef | int:
        if isinstance(value, (ConflictRef, int)):
            return value
        try:
            return parse_ref(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    required=True, help="TOML config file (see examples/bridge.toml).")


def load(path: Path) -> Config:
    """The validated config, or exit 2 with every problem listed."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Known failures become one-line messages and exit code 1."""
    import psycopg
    import pymysql

    try:
        yield
    except (UnknownConflict, ConflictLogMissing, BadDecision, OverrideBusy, PartialOverride) as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:  # e.g. a password_env that is not set
        click.echo(str(exc), err=True)
        sys.exit(2)
    except psycopg.errors.LockNotAvailable:
        raise click.ClickException("the row stayed locked on the CRM (a long transaction or an "
                                   "apply batch); nothing was changed, try again") from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"CRM (PostgreSQL): {str(exc).strip()}") from None
    except pymysql.err.OperationalError as exc:
        raise click.ClickException(f"MES (MySQL/MariaDB): {exc.args[-1]}") from None


def console() -> Console:
    """Rich output on stdout: terminal width on a terminal, wide lines in a pipe."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""


class _LazyStderr:
    """Whatever sys.stderr is at write time (test runners swap and close it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# --- the group ---------------------------------------------------------------------------


@click.group("conflicts")
def conflicts() -> None:
    """Review the conflict log of both sides and override outcomes."""


def register(main: click.Group) -> None:
    """Add the `conflicts` group to the bridge's CLI."""
    main.add_command(conflicts)


# --- list --------------------------------------------------------------------------------


def _filter(cfg: Config, table: str | None, ctype: str | None, rule: str | None,
            since: datetime | None, until: datetime | None, unresolved: bool) -> ConflictFilter:
    tables = table_names(Mapping.from_config(cfg), table) if table else ()
    return ConflictFilter(tables, ctype, rule, since, until, unresolved)


def list_table(records: Sequence[StoredConflict]) -> Table:
    """The records as a rich table."""
    unresolved = sum(r.is_open for r in records)
    table = Table(title=f"{len(records)} conflict(s), {unresolved} unresolved", title_justify="left")
    for name in ("id", "time (UTC)", "table", "key", "type", "rule", "winner", "columns", "status"):
        table.add_column(name, no_wrap=name in ("id", "time (UTC)"))
    for r in records:
        table.add_row(str(r.ref), fmt_time(r.created_at), r.target_table, key_text(r),
                      r.conflict_type, r.rule, r.winner, ", ".join(r.columns),
                      Text(r.status, style=_STATUS_STYLE.get(r.status, "")))
    return table


def csv_row(record: StoredConflict) -> dict[str, str]:
    """One CSV line: JSON columns as compact JSON text, NULL as empty."""
    out = {}
    for name, value in record.to_dict().items():
        if value is None:
            out[name] = ""
        elif isinstance(value, (dict, list)):
            out[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            out[name] = str(value)
    return out


def emit(records: Sequence[StoredConflict], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_row(r) for r in records)
        click.echo(buf.getvalue(), nl=False)
    else:
        console().print(list_table(records))


@conflicts.command("list")
@config_option
@click.option("--table", help="Bridged table by any of its names (both directions), or a target table.")
@click.option("--type", "ctype", type=click.Choice(LIST_TYPES),
              help="Conflict type (`queued`: a later change waiting behind a parked one).")
@click.option("--rule", type=click.Choice(LIST_RULES),
              help="Rule that decided it (also matches labels such as `last_writer_wins (delete wins)`).")
@click.option("--since", type=IsoTime(), help="Detected at or after this time (UTC unless an offset is given).")
@click.option("--until", type=IsoTime(), help="Detected before this time.")
@click.option("--unresolved", is_flag=True, help="Only parked and queued records.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def list_cmd(config_path: Path, table: str | None, ctype: str | None, rule: str | None,
             since: datetime | None, until: datetime | None, unresolved: bool, fmt: str) -> None:
    """List conflict records of both sides, oldest first."""
    cfg = load(config_path)
    flt = _filter(cfg, table, ctype, rule, since, until, unresolved)
    with clear_errors(), open_log(cfg) as log:
        records = log.list(flt)
    emit(records, fmt)


# --- show --------------------------------------------------------------------------------


def details_table(r: StoredConflict) -> Table:
    """Everything about a record except its rows."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    items = [
        ("id", str(r.ref)), ("table", r.target_table), ("key", key_text(r)),
        ("direction", r.direction), ("type", r.conflict_type), ("rule", r.rule),
        ("winner", r.winner), ("disputed columns", ", ".join(r.columns) or "-"),
        ("status", r.status), ("detected", fmt_time(r.created_at)),
        ("source position", r.source_position or "-"),
        ("source commit", fmt_time(r.source_commit_ts) or "-"),
        ("target commit", fmt_time(r.target_commit_ts) or "-"),
        ("resolved by", r.resolved_by or "-"), ("resolved at", fmt_time(r.resolved_at) or "-"),
    ]
    if r.resolution:
        items.append(("resolution", json.dumps(r.resolution, ensure_ascii=False, sort_keys=True)))
    for k, v in items:
        grid.add_row(k, v)
    return grid


def column_order(mapping: Mapping, table: str, side: Side) -> tuple[str, ...]:
    """The mapping's column order for a record's target table (empty if not bridged)."""
    tm = mapping.for_source(side, table)
    return tm.columns(side) if tm is not None else ()


def diff_rich(r: StoredConflict, plain: bool, order: Sequence[str] = ()) -> Table:
    """The column diff; changed cells coloured (and marked `≠` when there is no colour)."""
    table = Table(title="column diff (target column names; * = disputed)", title_justify="left")
    table.add_column("column", style="bold")
    shown = versions(r)
    for (_, label), state in zip(shown, row_states(r)):
        table.add_column(f"{label}\n({state})")
    for line in column_diff(r, order):
        cells: list[Text] = []
        for (version, _), cell in zip(shown, line.cells):
            text = ("≠ " if plain and cell.changed else "") + cell.text
            style = _CHANGED_STYLE.get(version, "") if cell.changed else ("dim" if not cell.present else "")
            cells.append(Text(text, style=style))
        name = line.column + (" *" if line.disputed else "")
        table.add_row(Text(name, style="red" if line.disputed else ""), *cells)
    return table


@conflicts.command("show")
@click.argument("conflict_id", type=ConflictId())
@config_option
def show_cmd(conflict_id: ConflictRef | int, config_path: Path) -> None:
    """Show one conflict record with a side-by-side diff of its row versions."""
    cfg = load(config_path)
    with clear_errors(), open_log(cfg) as log:
        record = log.find(conflict_id)
    out = console()
    out.print(details_table(record))
    out.print()
    order = column_order(Mapping.from_config(cfg), record.target_table, record.side)
    out.print(diff_rich(record, plain=out.color_system is None, order=order))


# --- resolve -----------------------------------------------------------------------------


def parse_assignments(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`col=value` options as pairs (the value may contain `=`)."""
    out = []
    for item in values:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise click.BadParameter(f"{item!r}: expected COLUMN=VALUE", param_hint="--set")
        out.append((col.strip(), value))
    return tuple(out)


def default_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in this environment
        return "unknown"


@conflicts.command("resolve")
@click.argument("conflict_id", type=ConflictId())
@config_option
@click.option("--take", type=click.Choice(["crm", "mes"]),
              help="Make both sides hold this side's current row.")
@click.option("--set", "sets", multiple=True, metavar="COLUMN=VALUE",
              help="Set a column (target-table names of the record; NULL for SQL NULL); repeatable.")
@click.option("--by", help="Who decided (default: the OS user).")
def resolve_cmd(conflict_id: ConflictRef | int, config_path: Path, take: str | None,
                sets: tuple[str, ...], by: str | None) -> None:
    """Apply a decision to both sides so they converge, and record it.

    --take crm|mes copies that side's current row (mapped columns) to the other side.
    --set starts from the current row on the side storing the record (its target), sets the
    columns, and writes the row to both sides. Parked/queued records of the row on both
    sides become `superseded`; this record becomes `overridden`."""
    if (take is None) == (not sets):
        raise click.UsageError("give exactly one of --take crm|mes or --set COLUMN=VALUE")
    cfg = load(config_path)
    from bridge.logs import configure

    configure(cfg.logging.level, stream=_LazyStderr(), pretty=sys.stderr.isatty())  # type: ignore[arg-type]
    choice = Choice(Side(take) if take else None, parse_assignments(sets))
    with clear_errors():
        outcome = override(cfg, conflict_id, choice, by or default_user())
    what = f"took the {take.upper()} row" if take else f"set {', '.join(c for c, _ in choice.sets)}"
    click.echo(f"{outcome.record.ref}: overridden by {outcome.by} at {fmt_time(outcome.at)} UTC "
               f"({what}; started from the {outcome.base})")
    for side in (Side.CRM, Side.MES):
        click.echo(f"  {side.value.upper()}: {outcome.writes[side].describe()}")
    superseded = ", ".join(str(r) for r in outcome.superseded) or "none"
    click.echo(f"  superseded: {superseded}")


# --- report ------------------------------------------------------------------------------


@conflicts.command("report")
@config_option
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="HTML file to write.")
@click.option("--since", type=IsoTime(), help="Detected at or after this time.")
@click.option("--until", type=IsoTime(), help="Detected before this time.")
def report_cmd(config_path: Path, out_path: Path, since: datetime | None, until: datetime | None) -> None:
    """Write a self-contained HTML report of the conflicts for DBAs."""
    cfg = load(config_path)
    with clear_errors(), open_log(cfg) as log:
        records = log.list(ConflictFilter(since=since, until=until))
    mapping = Mapping.from_config(cfg)
    orders = {tm.table(side): tm.columns(side) for tm in mapping.tables for side in Side}
    info = ReportInfo(cfg.bridge.name, datetime.now(UTC), since, until, orders)
    out_path.write_text(render_report(records, info), encoding="utf-8")
    unresolved = sum(r.is_open for r in records)
    click.echo(f"wrote {out_path}: {len(records)} conflict(s), {unresolved} unresolved")
