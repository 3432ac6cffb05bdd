"""`bridge conflicts list/show/resolve` against real state tables on real servers.

Conflict records are written directly with PgTarget/MysqlTarget.insert_conflict, shaped like
`Resolver.record` rows, so these tests do not depend on the conflict engine. Rows of the
sample schema (CRM sales_orders <-> MES work_orders, status value map) are set up to differ
on the two sides, then resolved through the CLI and compared by querying both databases.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
import structlog
from click.testing import CliRunner, Result

from bridge.connect import make_target
from bridge.model import Side
from bridge.sample import CRM_SCHEMA, MES_SCHEMA
from conflict.cli import conflicts, register
from conflict.store import admin_origin_name, parse_ref
from tests.bridgeenv import BridgeEnv, wait_until

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
STATUS_TO_MES = {"confirmed": "RELEASED", "in_production": "RUNNING", "shipped": "DONE"}
CRM_COLS = "id, customer_id, status::text, quantity, produced_qty, due_date, finished_at, notes, updated_at"
MES_COLS = "crm_order_id, crm_customer_id, state, planned_qty, produced_qty, due_date, finished_at, notes, updated_at"


# --- helpers (also used by tests/test_report.py) ----------------------------------------------


def add_conflict(env: BridgeEnv, side: Side, **fields: Any) -> str:
    """Insert one conflict record on `side` through the target's insert_conflict; returns its
    id as people see it (`crm-N` / `mes-N`). `fields` override a parked update_differs."""
    target = make_target(env.config, side)
    target.connect()
    try:
        target.begin()
        number = target.insert_conflict(conflict_record(env, side, **fields))
        target.commit()
    finally:
        target.close()
    return f"{side.value}-{number}"


def conflict_record(env: BridgeEnv, side: Side, order: int = 1, **fields: Any) -> dict[str, Any]:
    """A `Resolver.record`-shaped row for sales order `order` detected on `side`."""
    if side is Side.MES:
        key = {"crm_order_id": order}
        before = {"crm_order_id": order, "planned_qty": 10, "state": "RELEASED"}
        after = {"crm_order_id": order, "planned_qty": 11, "state": "RELEASED"}
        found = {"crm_order_id": order, "planned_qty": 12, "state": "RUNNING"}
        table, direction = f"{env.mes_db}.work_orders", "crm_to_mes"
    else:
        key = {"id": order}
        before = {"id": order, "quantity": 10, "status": "confirmed", "notes": {"$unchanged": True}}
        after = {"id": order, "quantity": 12, "status": "in_production", "notes": {"$unchanged": True}}
        found = {"id": order, "quantity": 11, "status": "confirmed", "notes": '{"x": "<b>&"}'}
        table, direction = "public.sales_orders", "mes_to_crm"
    record = {
        "created_at": T0, "direction": direction, "target_table": table, "row_key": key,
        "conflict_type": "update_differs", "rule": "manual", "winner": "parked",
        "columns": [next(iter(c for c in after if c not in key))], "incoming_before": before,
        "incoming_after": after, "target_found": found, "result": found,
        "source_position": "pg:0/16B3F28" if side is Side.MES else "binlog:mariadb-bin.000001:4711",
        "source_commit_ts": T0 - timedelta(seconds=2), "target_commit_ts": T0 - timedelta(seconds=1),
        "status": "parked",
    }
    record.update(fields)
    return record


def cli(env: BridgeEnv, *args: str, code: int = 0) -> Result:
    """Run `conflicts <args> --config <env>`; assert the exit code."""
    result = CliRunner().invoke(conflicts, [*args, "--config", str(env.config_path)])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def listed(env: BridgeEnv, *args: str) -> list[dict[str, Any]]:
    return json.loads(cli(env, "list", "--format", "json", *args).stdout)


def ids(env: BridgeEnv, *args: str) -> list[str]:
    return [r["id"] for r in listed(env, *args)]


def record_of(env: BridgeEnv, ref: str) -> dict[str, Any]:
    return next(r for r in listed(env) if r["id"] == ref)


def _canon(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, str) and v[:1] in "{[":
        return json.loads(v)
    return v


def crm_order(env: BridgeEnv, order: int) -> tuple | None:
    """The CRM row in MES terms (status value-mapped), canonical values."""
    rows = env.crm(f"SELECT {CRM_COLS} FROM sales_orders WHERE id = %s", (order,))
    if not rows:
        return None
    row = list(rows[0])
    row[2] = STATUS_TO_MES.get(row[2], row[2])
    return tuple(_canon(v) for v in row)


def mes_order(env: BridgeEnv, order: int) -> tuple | None:
    rows = env.mes(f"SELECT {MES_COLS} FROM work_orders WHERE crm_order_id = %s", (order,))
    return tuple(_canon(v) for v in rows[0]) if rows else None


def seed_order(env: BridgeEnv, side: Side, order: int, status: str, qty: int, produced: int,
               due: date | None, notes: dict | None, updated: datetime) -> None:
    """Write a sales order straight into one side (CRM status names; mapped for the MES)."""
    if side is Side.CRM:
        env.crm("INSERT INTO sales_orders (id, customer_id, status, quantity, produced_qty, due_date, "
                "notes, updated_at) VALUES (%s, 1, %s, %s, %s, %s, %s, %s)",
                (order, status, qty, produced, due, json.dumps(notes) if notes else None, updated))
    else:
        env.mes("INSERT INTO work_orders (crm_order_id, crm_customer_id, state, planned_qty, "
                "produced_qty, due_date, notes, updated_at, machine) VALUES (%s, 1, %s, %s, %s, %s, %s, %s, 'M7')",
                (order, STATUS_TO_MES.get(status, status), qty, produced, due,
                 json.dumps(notes) if notes else None, updated.replace(tzinfo=None)))


def seed_rows(env: BridgeEnv) -> None:
    """Orders 1-3 differ between the sides, 4 exists only on the MES, 5 only on the CRM,
    6 is equal on both."""
    env.crm("INSERT INTO customers (id, name) VALUES (1, 'Acme')")
    env.mes("INSERT INTO customers (crm_customer_id, name) VALUES (1, 'Acme')")
    t1, t2 = T0 - timedelta(minutes=5), T0 - timedelta(minutes=3)
    for order in (1, 2, 3):
        seed_order(env, Side.CRM, order, "confirmed", 10, 0, date(2026, 4, 1), {"prio": 1}, t1)
        seed_order(env, Side.MES, order, "in_production", 12, 5, date(2026, 4, 2), {"prio": 2.5}, t2)
    seed_order(env, Side.MES, 4, "in_production", 4, 4, None, None, t2)
    seed_order(env, Side.CRM, 5, "draft", 5, 0, None, {"new": True}, t1)
    for side in (Side.CRM, Side.MES):  # order 6: equal on both sides, for probes
        seed_order(env, side, 6, "confirmed", 6, 0, date(2026, 6, 6), {"p": 6}, t1)


def close_env(env: BridgeEnv) -> None:
    """Close the env and drop its replication origins: they are server-wide and each one
    used holds one of the server's max_replication_slots origin states."""
    try:
        env.close()
    finally:
        for name in (env.config.origin_name, admin_origin_name(env.config)):
            env.crm("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                    "WHERE roname = %s", (name,))


@pytest.fixture
def env(pg_server, mariadb_server, tmp_path):
    """Sample schema, rows that differ, state tables created; no daemon running."""
    e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_SCHEMA, MES_SCHEMA)
    try:
        seed_rows(e)
        e.setup()
        yield e
    finally:
        close_env(e)


pytestmark = pytest.mark.integration


class _LazyStderr:
    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def logs_to_stderr():
    """Log lines of a bridge running in a thread go to stderr, never into the stdout a
    CliRunner captures (structlog's default prints to whatever sys.stdout is)."""
    from bridge.logs import configure

    saved = structlog.get_config()
    configure("info", stream=_LazyStderr())  # type: ignore[arg-type]
    yield
    structlog.configure(**saved)


# --- list ------------------------------------------------------------------------------------


class TestList:
    @pytest.fixture
    def refs(self, env):
        """A spread of records over both sides, tables, types, rules, times and statuses."""
        return {
            "mes_parked": add_conflict(env, Side.MES, order=1),
            "crm_parked": add_conflict(env, Side.CRM, order=1, created_at=T0 + timedelta(minutes=1)),
            "mes_queued": add_conflict(env, Side.MES, order=1, status="queued", created_at=T0 + timedelta(minutes=2)),
            "customers": add_conflict(
                env, Side.MES, created_at=T0 - timedelta(days=2), target_table=f"{env.mes_db}.customers",
                row_key={"crm_customer_id": 1}, conflict_type="insert_exists", rule="apply_source",
                winner="crm", status="resolved", columns=["name"],
                incoming_before=None, incoming_after={"crm_customer_id": 1, "name": "Acme AG"},
                target_found={"crm_customer_id": 1, "name": "Acme"},
                result={"crm_customer_id": 1, "name": "Acme AG"}),
            "crm_deleted": add_conflict(
                env, Side.CRM, order=9, created_at=T0 - timedelta(days=1), conflict_type="delete_missing",
                rule="last_writer_wins (delete wins)", winner="none", status="resolved", incoming_after=None,
                target_found=None, result=None),
        }

    def test_all_records_merge_both_sides_in_time_order(self, env, refs):
        """Without filters every record of both sides is listed, oldest first."""
        assert ids(env) == [refs[k] for k in ("customers", "crm_deleted", "mes_parked",
                                              "crm_parked", "mes_queued")]

    def test_filters(self, env, refs):
        """--table (any name of a bridged table), --type, --rule, --since/--until and
        --unresolved each narrow the list."""
        orders = {refs["mes_parked"], refs["crm_parked"], refs["mes_queued"], refs["crm_deleted"]}
        assert set(ids(env, "--table", "sales_orders")) == orders
        assert set(ids(env, "--table", "work_orders")) == orders
        assert set(ids(env, "--table", f"{env.mes_db}.work_orders")) == orders
        assert ids(env, "--table", "customers") == [refs["customers"]]
        assert ids(env, "--type", "delete_missing") == [refs["crm_deleted"]]
        assert ids(env, "--rule", "manual") == [refs["mes_parked"], refs["crm_parked"], refs["mes_queued"]]
        assert ids(env, "--rule", "last_writer_wins") == [refs["crm_deleted"]]  # labelled rule
        assert ids(env, "--rule", "delta") == []
        assert ids(env, "--since", "2026-03-01", "--until", "2026-03-02T10:01:00Z") == [
            refs["crm_deleted"], refs["mes_parked"]]
        assert ids(env, "--since", "2026-03-02T11:00:30+01:00") == [refs["crm_parked"], refs["mes_queued"]]
        assert ids(env, "--unresolved") == [refs["mes_parked"], refs["crm_parked"], refs["mes_queued"]]
        assert ids(env, "--unresolved", "--table", "customers") == []

    def test_json_parses_back_to_the_records(self, env, refs):
        """--format json gives every field, JSON columns as objects, times in ISO 8601."""
        rec = record_of(env, refs["crm_parked"])
        assert rec["side"] == "crm" and rec["direction"] == "mes_to_crm"
        assert rec["row_key"] == {"id": 1}
        assert rec["incoming_before"]["notes"] == {"$unchanged": True}
        assert rec["target_found"]["notes"] == '{"x": "<b>&"}'
        assert datetime.fromisoformat(rec["created_at"]) == T0 + timedelta(minutes=1)
        assert rec["source_position"] == "binlog:mariadb-bin.000001:4711"
        assert (rec["status"], rec["resolved_by"], rec["resolution"]) == ("parked", None, None)

    def test_csv_parses_back(self, env, refs):
        """--format csv has a header and one line per record; JSON columns are JSON text."""
        rows = list(csv.DictReader(io.StringIO(cli(env, "list", "--format", "csv").stdout)))
        assert [r["id"] for r in rows] == ids(env)
        by_id = {r["id"]: r for r in rows}
        assert json.loads(by_id[refs["customers"]]["row_key"]) == {"crm_customer_id": 1}
        assert json.loads(by_id[refs["customers"]]["columns"]) == ["name"]
        assert by_id[refs["crm_deleted"]]["result"] == ""
        assert datetime.fromisoformat(by_id[refs["mes_queued"]]["created_at"]) == T0 + timedelta(minutes=2)

    def test_table_format(self, env, refs):
        """The default format is a table naming every record, its table, type and status."""
        out = cli(env, "list").stdout
        assert "5 conflict(s), 3 unresolved" in out
        for ref in refs.values():
            assert ref in out
        assert "insert_exists" in out and "queued" in out and "customers" in out

    def test_empty_log(self, env):
        """No records: an empty JSON list and a table saying so."""
        assert listed(env) == []
        assert "0 conflict(s)" in cli(env, "list").stdout


# --- show and ids -----------------------------------------------------------------------------


class TestShow:
    def test_diff_of_the_four_versions(self, env):
        """show prints the record's facts and one line per column with all four versions,
        changed cells marked."""
        ref = add_conflict(env, Side.MES, order=1, resolved_by=None)
        out = cli(env, "show", ref).stdout
        for text in (ref, f"{env.mes_db}.work_orders", "crm_order_id=1", "update_differs",
                     "manual", "parked", "pg:0/16B3F28", "2026-03-02 09:59:58",
                     "incoming before", "incoming after", "target as found", "result"):
            assert text in out, text
        line = next(ln for ln in out.splitlines() if "planned_qty" in ln and "│" in ln)
        assert "planned_qty *" in line  # disputed
        assert [c.strip() for c in line.split("│")[2:6]] == ["10", "≠ 11", "≠ 12", "12"]
        state = next(ln for ln in out.splitlines() if "state" in ln and "│" in ln)
        assert "≠ RUNNING" in state

    def test_unsent_values_and_missing_rows(self, env):
        """Unsent (TOASTed) values show as (not sent); a missing row is marked as such."""
        ref = add_conflict(env, Side.CRM, order=1, result=None, conflict_type="delete_differs")
        out = cli(env, "show", ref).stdout
        assert "(not sent)" in out and "(no row)" in out

    def test_ids(self, env):
        """Ids are crm-N/mes-N (any case); a bare number works when only one side has it;
        an unknown or ambiguous id is a clear error (exit 1), a malformed one a usage error."""
        mes1 = add_conflict(env, Side.MES)
        mes2 = add_conflict(env, Side.MES, order=2)
        crm1 = add_conflict(env, Side.CRM)
        assert (mes1, mes2, crm1) == ("mes-1", "mes-2", "crm-1")
        assert "crm_order_id=2" in cli(env, "show", "2").stdout
        assert "crm_order_id=2" in cli(env, "show", "MES-2").stdout
        err = cli(env, "show", "1", code=1).output
        assert "exists on both sides" in err and "crm-1" in err and "mes-1" in err
        assert "no conflict mes-99" in cli(env, "show", "mes-99", code=1).output
        assert "neither the CRM nor the MES" in cli(env, "show", "77", code=1).output
        assert "not a conflict id" in cli(env, "show", "x-1", code=2).output
        assert parse_ref(" crm-7 ") == parse_ref("CRM-7")


# --- resolve ----------------------------------------------------------------------------------


def status_of(env: BridgeEnv, ref: str) -> tuple[str, str | None]:
    rec = record_of(env, ref)
    return rec["status"], rec["resolved_by"]


class TestResolve:
    def test_take_crm(self, env):
        """--take crm writes the CRM row to the MES (mapped columns only), supersedes every
        parked/queued record of that row on both sides and records who decided."""
        chosen = add_conflict(env, Side.MES, order=1)
        other_side = add_conflict(env, Side.CRM, order=1)
        queued = add_conflict(env, Side.MES, order=1, status="queued")
        decided = add_conflict(env, Side.MES, order=1, status="resolved", rule="crm_wins", winner="crm")
        unrelated = add_conflict(env, Side.MES, order=2)
        assert crm_order(env, 1) != mes_order(env, 1)

        out = cli(env, "resolve", chosen, "--take", "crm", "--by", "alice").stdout
        assert f"{chosen}: overridden by alice" in out
        assert crm_order(env, 1) == mes_order(env, 1)
        assert mes_order(env, 1)[2:5] == ("RELEASED", 10, 0)
        assert env.mes("SELECT machine FROM work_orders WHERE crm_order_id = 1") == [("M7",)]  # unmapped

        assert status_of(env, chosen) == ("overridden", "alice")
        assert status_of(env, other_side) == ("superseded", "alice")
        assert status_of(env, queued) == ("superseded", "alice")
        assert status_of(env, decided) == ("resolved", None)
        assert status_of(env, unrelated) == ("parked", None)
        rec = record_of(env, chosen)
        assert rec["resolution"]["decision"] == {"take": "crm"}
        assert rec["resolution"]["previous_status"] == "parked"
        assert sorted(rec["resolution"]["superseded"]) == sorted([other_side, queued])
        assert rec["resolution"]["writes"]["crm"] == "none"
        assert rec["resolution"]["writes"]["mes"].startswith("update (")
        assert datetime.fromisoformat(rec["resolved_at"]) > datetime.now(UTC) - timedelta(minutes=5)
        assert record_of(env, other_side)["resolution"]["superseded_by"] == chosen
        shown = cli(env, "show", chosen).stdout
        assert "DBA decision" in shown and "alice" in shown
        line = next(ln for ln in shown.splitlines() if "planned_qty" in ln and "│" in ln)
        assert [c.strip() for c in line.split("│")[2:7]] == ["10", "≠ 11", "≠ 12", "12", "≠ 10"]

    def test_take_mes(self, env):
        """--take mes writes the MES row to the CRM (value map applied in reverse)."""
        chosen = add_conflict(env, Side.CRM, order=2)
        cli(env, "resolve", chosen, "--take", "mes", "--by", "bob")
        assert crm_order(env, 2) == mes_order(env, 2)
        assert env.crm("SELECT status::text, quantity, produced_qty FROM sales_orders WHERE id = 2") == [
            ("in_production", 12, 5)]
        assert status_of(env, chosen) == ("overridden", "bob")

    def test_set_on_a_mes_record(self, env):
        """--set with MES column names starts from the MES row and writes the result to both
        sides; NULL sets NULL; JSON and enum values are read by the column's type."""
        chosen = add_conflict(env, Side.MES, order=3)
        cli(env, "resolve", chosen, "--set", "planned_qty=20", "--set", "state=DONE",
            "--set", "due_date=NULL", "--set", 'notes={"a": 1.50}', "--by", "carol")
        assert crm_order(env, 3) == mes_order(env, 3)
        assert mes_order(env, 3)[2:6] == ("DONE", 20, 5, None)  # produced_qty 5 from the MES row
        assert env.crm("SELECT status::text, notes FROM sales_orders WHERE id = 3") == [("shipped", {"a": 1.5})]
        rec = record_of(env, chosen)
        assert rec["resolution"]["decision"] == {"set": {"planned_qty": "20", "state": "DONE",
                                                         "due_date": "NULL", "notes": '{"a": 1.50}'}}
        assert rec["resolution"]["base"] == "mes row"

    def test_set_on_a_crm_record(self, env):
        """--set on a CRM record uses CRM names and starts from the CRM row."""
        chosen = add_conflict(env, Side.CRM, order=1)
        cli(env, "resolve", chosen, "--set", "quantity=7", "--set", "due_date=2026-05-05")
        assert crm_order(env, 1) == mes_order(env, 1)
        assert mes_order(env, 1)[2:6] == ("RELEASED", 7, 0, date(2026, 5, 5))

    def test_take_a_missing_row_deletes_and_inserts(self, env):
        """Taking the side without the row deletes it on the other; taking the side with the
        row inserts it on the other."""
        deleted = add_conflict(env, Side.MES, order=4, conflict_type="delete_differs")
        cli(env, "resolve", deleted, "--take", "crm")
        assert crm_order(env, 4) is None and mes_order(env, 4) is None
        inserted = add_conflict(env, Side.CRM, order=5, conflict_type="update_missing")
        cli(env, "resolve", inserted, "--take", "crm")
        assert crm_order(env, 5) is not None and crm_order(env, 5) == mes_order(env, 5)
        assert "insert" in record_of(env, inserted)["resolution"]["writes"]["mes"]

    def test_refusals_change_nothing(self, env):
        """A bad decision is refused with a clear message and nothing is written or marked."""
        chosen = add_conflict(env, Side.MES, order=1)
        before = (crm_order(env, 1), mes_order(env, 1))
        assert "not a mapped column" in cli(env, "resolve", chosen, "--set", "machine=X", code=1).output
        assert "--set planned_qty=lots: not a" in cli(
            env, "resolve", chosen, "--set", "planned_qty=lots", code=1).output
        assert "is not a value of" in cli(env, "resolve", chosen, "--set", "state=nope", code=1).output
        assert "key and generated" in cli(env, "resolve", chosen, "--set", "crm_order_id=9", code=1).output
        assert "exactly one of" in cli(env, "resolve", chosen, code=2).output
        assert "exactly one of" in cli(env, "resolve", chosen, "--take", "crm", "--set", "a=1", code=2).output
        assert "COLUMN=VALUE" in cli(env, "resolve", chosen, "--set", "planned_qty", code=2).output
        assert "no conflict mes-42" in cli(env, "resolve", "mes-42", "--take", "crm", code=1).output
        assert (crm_order(env, 1), mes_order(env, 1)) == before
        assert status_of(env, chosen) == ("parked", None)

    def test_locked_row_gives_up(self, env, monkeypatch):
        """A row locked by another transaction makes resolve give up after the lock wait
        limit with nothing changed on either side; once released, it goes through."""
        import conflict.store

        monkeypatch.setattr(conflict.store, "LOCK_WAIT_SECONDS", 1)
        chosen = add_conflict(env, Side.MES, order=1)
        before = (crm_order(env, 1), mes_order(env, 1))
        with psycopg.connect(env.pg.dsn(env.crm_db)) as holder:
            holder.execute("SELECT 1 FROM sales_orders WHERE id = 1 FOR UPDATE")
            assert "stayed locked on the CRM" in cli(env, "resolve", chosen, "--take", "mes", code=1).output
        assert (crm_order(env, 1), mes_order(env, 1)) == before
        assert status_of(env, chosen) == ("parked", None)
        cli(env, "resolve", chosen, "--take", "mes")
        assert crm_order(env, 1) == mes_order(env, 1)

    def test_busy_admin_origin(self, env):
        """While another session holds the admin origin, resolve says so and writes nothing."""
        chosen = add_conflict(env, Side.MES, order=1)
        cli(env, "resolve", chosen, "--take", "crm")  # creates the admin origin
        other = add_conflict(env, Side.MES, order=2)
        with psycopg.connect(env.pg.dsn(env.crm_db), autocommit=True) as holder:
            holder.execute("SELECT pg_replication_origin_session_setup(%s)", (admin_origin_name(env.config),))
            assert "is in use: another `conflicts resolve`" in cli(
                env, "resolve", other, "--take", "crm", code=1).output
        assert status_of(env, other) == ("parked", None)


def audit_counts(env: BridgeEnv) -> tuple[int, int]:
    crm = env.crm(f'SELECT count(*) FROM "{env.config.state_schema}".audit')[0][0]
    mes = env.mes(f"SELECT count(*) FROM `{env.config.state_prefix}audit`")[0][0]
    return crm, mes


def test_running_bridge_does_not_echo_resolve_writes(env):
    """With the bridge running, resolve writes on both sides (marker-first MES transaction,
    admin-origin CRM transaction) are not carried back: the audit tables grow only by the
    ordinary probe changes made afterwards, and the resolved rows stay equal."""
    take_crm = add_conflict(env, Side.MES, order=1)
    take_mes = add_conflict(env, Side.CRM, order=2)
    set_both = add_conflict(env, Side.MES, order=3)
    env.start()
    probe(env, "first")
    baseline = audit_counts(env)

    cli(env, "resolve", take_crm, "--take", "crm", "--by", "dba")
    cli(env, "resolve", take_mes, "--take", "mes", "--by", "dba")
    cli(env, "resolve", set_both, "--set", "planned_qty=33", "--by", "dba")
    for order in (1, 2, 3):
        assert crm_order(env, order) == mes_order(env, order)

    probe(env, "second")  # both readers have moved past the resolve transactions
    assert audit_counts(env) == (baseline[0] + 1, baseline[1] + 1), "a resolve write bounced"
    for order in (1, 2, 3):
        assert crm_order(env, order) == mes_order(env, order)
    assert mes_order(env, 3)[3] == 33
    assert [status_of(env, r) for r in (take_crm, take_mes, set_both)] == [("overridden", "dba")] * 3
    env.stop()


def probe(env: BridgeEnv, name: str) -> None:
    """One ordinary change each way (order 6 is equal on both sides); wait until applied."""
    env.crm("UPDATE customers SET name = %s WHERE id = 1", (name,))
    env.mes("UPDATE work_orders SET machine = %s, produced_qty = produced_qty + 1 "
            "WHERE crm_order_id = 6", (name,))
    wait_until(lambda: env.mes("SELECT name FROM customers WHERE crm_customer_id = 1") == [(name,)],
               what=f"{name} CRM probe on the MES")
    wait_until(lambda: crm_order(env, 6) == mes_order(env, 6), what=f"{name} MES probe on the CRM")


def test_register_adds_the_group():
    """register() adds `conflicts` to a click group (bridge.cli calls it)."""
    import click

    @click.group()
    def main() -> None:
        pass

    register(main)
    result = CliRunner().invoke(main, ["conflicts", "--help"])
    assert result.exit_code == 0 and "resolve" in result.output


# --- the manual path end to end: parked by the engine, resolved through the CLI ---------------


def unresolved(env: BridgeEnv) -> list[dict[str, Any]]:
    return listed(env, "--unresolved")


@pytest.fixture
def manual_env(pg_server, mariadb_server, tmp_path):
    """The sample schema with rule `manual` on sales_orders <-> work_orders."""
    from bridge.sample import sample_tables

    e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_SCHEMA, MES_SCHEMA,
                  tables=sample_tables(conflict={"rule": "manual"}))
    try:
        seed_rows(e)
        yield e
    finally:
        close_env(e)


def test_manual_conflict_is_parked_then_resolved_through_the_cli(manual_env):
    """Concurrent updates of one row under rule `manual` are parked on both sides by the
    running bridge, a later change queues behind them, `resolve --take crm` makes both sides
    identical and unparks the row: later changes flow again in both directions."""
    env = manual_env
    env.start()
    probe(env, "warm-up")
    env.stop()  # both sides change order 6 before the bridge carries either change
    env.crm("UPDATE sales_orders SET quantity = 60 WHERE id = 6")
    env.mes("UPDATE work_orders SET planned_qty = 66, produced_qty = 3 WHERE crm_order_id = 6")
    env.start()

    wait_until(lambda: len(unresolved(env)) == 2, what="the change parked on both sides")
    parked = unresolved(env)
    assert {r["side"] for r in parked} == {"crm", "mes"}
    assert {(r["status"], r["rule"], r["winner"], r["conflict_type"]) for r in parked} == {
        ("parked", "manual", "parked", "update_differs")}
    env.crm("UPDATE sales_orders SET due_date = '2026-07-07' WHERE id = 6")
    queued = wait_until(lambda: [r for r in unresolved(env) if r["status"] == "queued"],
                        what="the later change queued behind the parked one")
    assert queued[0]["side"] == "mes"
    assert mes_order(env, 6)[3:6] == (66, 3, date(2026, 6, 6))  # nothing applied while parked
    assert crm_order(env, 6)[3:6] == (60, 1, date(2026, 7, 7))  # produced 1: the warm-up probe

    mes_parked = next(r["id"] for r in parked if r["side"] == "mes")
    shown = cli(env, "show", mes_parked).stdout
    line = next(ln for ln in shown.splitlines() if "planned_qty" in ln and "│" in ln)
    assert [c.strip() for c in line.split("│")[2:5]] == ["6", "≠ 60", "≠ 66"]

    out = cli(env, "resolve", mes_parked, "--take", "crm", "--by", "dba").stdout
    assert crm_order(env, 6) == mes_order(env, 6)
    assert mes_order(env, 6)[3:6] == (60, 1, date(2026, 7, 7))
    assert unresolved(env) == []
    statuses = sorted((r["status"], r["resolved_by"]) for r in listed(env, "--table", "sales_orders"))
    assert statuses == [("overridden", "dba"), ("superseded", "dba"), ("superseded", "dba")]
    assert "superseded: " in out and queued[0]["id"] in out

    env.crm("UPDATE sales_orders SET quantity = 61 WHERE id = 6")  # no longer parked
    wait_until(lambda: mes_order(env, 6)[3] == 61, what="a later CRM change on the MES")
    env.mes("UPDATE work_orders SET produced_qty = 9 WHERE crm_order_id = 6")
    wait_until(lambda: crm_order(env, 6)[4] == 9, what="a later MES change on the CRM")
    assert crm_order(env, 6) == mes_order(env, 6)
    assert len(listed(env)) == 3  # no new conflict
    env.stop()
