"""verify / verify --repair (issue 4): pure comparison rules, then drift found and repaired on
real servers, with boundary values, without echo while the bridge streams."""

from __future__ import annotations

import json
import time
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.config import parse_config
from bridge.mapping import Mapping
from bridge.model import Side
from bridge.schema import ColumnInfo, Family, TableInfo
from bridge.verify.compare import row_diffs, same_value
from bridge.verify.plan import ColumnPair, plan_table, render_kind
from bridge.verify.repair import winner
from tests.bridgeenv import BridgeEnv, wait_until

# =========================================================================================
# pure
# =========================================================================================


def _ci(name: str, family: Family, db_type: str, **kw: Any) -> ColumnInfo:
    return ColumnInfo(name, family, db_type, **kw)


class TestRenderKind:
    def test_pairs_rendered_alike_on_both_servers(self) -> None:
        """Only type pairs both servers print identically are checksummed server-side."""
        big = _ci("a", Family.INT, "bigint", int_bits=64)
        num = _ci("a", Family.DECIMAL, "numeric(20,0)", precision=20, scale=0)
        assert render_kind(big, big) == "int"
        assert render_kind(num, _ci("a", Family.INT, "bigint unsigned", int_bits=64, unsigned=True)) == "decimal"
        assert render_kind(_ci("b", Family.BOOL, "boolean"),
                           _ci("b", Family.INT, "tinyint(1)", int_bits=8, bool_like=True)) == "bool"
        assert render_kind(_ci("t", Family.TIMESTAMPTZ, "timestamptz"),
                           _ci("t", Family.TIMESTAMP, "datetime(6)")) == "timestamp"
        assert render_kind(_ci("u", Family.UUID, "uuid"), _ci("u", Family.TEXT, "char(36)")) == "text"
        assert render_kind(_ci("j", Family.JSON, "jsonb"), _ci("j", Family.JSON, "json")) is None
        assert render_kind(_ci("f", Family.FLOAT, "double precision"), _ci("f", Family.FLOAT, "double")) is None


class TestSameValue:
    def _pair(self, c: ColumnInfo, m: ColumnInfo, vmap: dict | None = None) -> ColumnPair:
        return ColumnPair(c.name, m.name, c, m, render_kind(c, m), vmap)

    def test_equal_data_in_unlike_types(self) -> None:
        """JSON text vs objects, bool vs TINYINT(1), aware vs naive UTC, decimals by value."""
        j = self._pair(_ci("j", Family.JSON, "jsonb"), _ci("j", Family.JSON, "longtext"))
        assert same_value(j, '{"b": 1, "a": [1.50]}', '{"a":[1.5],"b":1}')
        assert not same_value(j, '{"a": 1}', '{"a": 2}')
        b = self._pair(_ci("b", Family.BOOL, "boolean"),
                       _ci("b", Family.INT, "tinyint(1)", int_bits=8, bool_like=True))
        assert same_value(b, True, 1) and not same_value(b, False, 1)
        t = self._pair(_ci("t", Family.TIMESTAMPTZ, "timestamptz"), _ci("t", Family.TIMESTAMP, "datetime(6)"))
        aware = datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
        assert same_value(t, aware, aware.replace(tzinfo=None))
        assert not same_value(t, aware, aware.replace(tzinfo=None, microsecond=2))
        d = self._pair(_ci("d", Family.DECIMAL, "numeric"), _ci("d", Family.DECIMAL, "decimal(65,30)"))
        assert same_value(d, Decimal("1.5"), Decimal("1.500000"))
        assert same_value(d, None, None) and not same_value(d, None, Decimal(0))

    def test_value_maps_compare_in_crm_terms(self) -> None:
        """A mapped status ('confirmed' <-> 'RELEASED') is equal across sides."""
        s = self._pair(_ci("s", Family.TEXT, "text"), _ci("s", Family.TEXT, "varchar(20)"),
                       {"RELEASED": "confirmed"})
        assert same_value(s, "confirmed", "RELEASED") and not same_value(s, "draft", "RELEASED")


def _config(direction: str = "both", conflict: dict | None = None):
    return parse_config({
        "bridge": {"name": "t"}, "crm": {"dsn": "postgresql://u@h/crm"},
        "mes": {"dsn": "mysql://u@h/mes", "server_id": 9},
        "tables": [{"crm": "public.o", "mes": "o", "key": ["id"], "direction": direction,
                    "columns": {"id": "oid", "name": "name", "status": "state"},
                    **({"conflict": conflict} if conflict else {})}]})


def _plan(direction: str = "both", conflict: dict | None = None):
    tm = Mapping.from_config(_config(direction, conflict)).tables[0]
    text = _ci("x", Family.TEXT, "text")
    crm = TableInfo("crm", "public", "o", {"id": _ci("id", Family.INT, "bigint", int_bits=64),
                                           "name": text, "status": text})
    mes = TableInfo("mes", "mes", "o", {"oid": _ci("oid", Family.INT, "bigint", int_bits=64),
                                        "name": text, "state": text})
    return plan_table(tm, crm, mes)


class TestRowDiffs:
    def test_missing_extra_and_column_diffs(self) -> None:
        """One-way tables: missing on the target, extra on the target, differing columns."""
        plan = _plan("crm_to_mes")
        crm = [(1, "a", "x"), (2, "b", "y"), (3, "c", "z")]
        mes = [(2, "b", "Y"), (3, "c", "z"), (4, "d", "w")]
        diffs = {d.key["id"]: d for d in row_diffs(plan, crm, mes)}
        assert (diffs[1].kind, diffs[1].only_on) == ("missing", Side.CRM)
        assert (diffs[4].kind, diffs[4].only_on) == ("extra", Side.MES)
        assert diffs[2].kind == "differs" and diffs[2].columns == {"status": {"crm": "y", "mes": "Y"}}
        assert 3 not in diffs

    def test_both_ways_tables_have_no_extra_rows(self) -> None:
        """In a `both` table a row on one side only is missing on the other."""
        diffs = row_diffs(_plan("both"), [], [(4, "d", "w")])
        assert [(d.kind, d.only_on) for d in diffs] == [("missing", Side.MES)]


class TestWinner:
    def test_owner_then_fixed_rule_then_direction_then_priority(self) -> None:
        """Repairs follow ownership, fixed-winner rules, the direction, then priority."""
        plan = _plan("both", {"owners": {"status": "mes"}, "columns": {"name": "crm_wins"},
                              "priority": "mes"})
        assert winner(plan, "status") is Side.MES and winner(plan, "name") is Side.CRM
        assert winner(_plan("both", {"priority": "mes"}), "name") is Side.MES
        assert winner(_plan("crm_to_mes"), "name") is Side.CRM
        assert winner(_plan("mes_to_crm", {"owner": "crm"}), "name") is Side.CRM


# =========================================================================================
# integration
# =========================================================================================

BIG = Decimal("99999999999999999999999999999999999.999999999999999999999999999999")  # (65,30) max
CRM = [
    """CREATE TABLE drift (id bigint PRIMARY KEY, big numeric(65,30), at timestamptz,
        label text, payload jsonb, qty integer, ok boolean)""",
    "ALTER TABLE drift REPLICA IDENTITY FULL",
    """CREATE TABLE pair (id int PRIMARY KEY, name text, status text, score double precision)""",
    "ALTER TABLE pair REPLICA IDENTITY FULL",
]
MES = [
    """CREATE TABLE drift (id BIGINT PRIMARY KEY, big DECIMAL(65,30), at DATETIME(6),
        label VARCHAR(100), payload JSON, qty INT, ok TINYINT(1)) DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE pair (id INT PRIMARY KEY, name VARCHAR(50), status VARCHAR(20), score DOUBLE)
        DEFAULT CHARSET=utf8mb4""",
]
TABLES = [
    {"crm": "public.drift", "mes": "drift", "direction": "crm_to_mes", "key": ["id"],
     "columns": {c: c for c in ("id", "big", "at", "label", "payload", "qty", "ok")}},
    {"crm": "public.pair", "mes": "pair", "direction": "both", "key": ["id"],
     "columns": {c: c for c in ("id", "name", "status", "score")},
     "conflict": {"owners": {"status": "mes"}, "priority": "crm"}},
]
LABEL = "Grüße 🙂 漢字 " + unicodedata.normalize("NFD", "é")  # e + combining acute
AT = datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC)


@pytest.fixture
def env(pg_server, mariadb_server, tmp_path):
    from bridge.backfill.runner import attach
    from bridge.daemon import Daemon

    e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM, MES, tables=TABLES)
    e.setup()
    e.daemon = Daemon(e.config)
    attach(e.daemon)
    import threading

    e.thread = threading.Thread(target=e.daemon.run, kwargs={"install_signals": False}, daemon=True)
    e.thread.start()
    yield e
    e.close()


def _verify(env: BridgeEnv, *args: str) -> tuple[int, str]:
    from bridge.cli_load import verify

    res = CliRunner().invoke(verify, ["--config", str(env.config_path), "--settle", "0.3", *args])
    return res.exit_code, res.stdout


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def _drifted_on_mes(env: BridgeEnv, sql: str, params: Any = None) -> None:
    """Change the MES without the bridge streaming it: first write on the echo marker."""
    from bridge.connect import make_target

    t = make_target(env.config, Side.MES)
    t.connect()
    try:
        t.begin()
        t.write_state("test_drift", "x")
        with t.conn.cursor() as cur:
            cur.execute(sql, params)
        t.commit()
    finally:
        t.close()


def _drifted_on_crm(env: BridgeEnv, sql: str, params: Any = None) -> None:
    """Change the CRM without the bridge streaming it: a session with a replication origin."""
    import psycopg

    with psycopg.connect(env.pg.dsn(env.crm_db), autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_replication_origin WHERE roname = 'test_drift'").fetchone() is None:
            c.execute("SELECT pg_replication_origin_create('test_drift')")
        c.execute("SELECT pg_replication_origin_session_setup('test_drift')")
        c.execute(sql, params)
        c.execute("SELECT pg_replication_origin_session_reset()")


def _applied(env: BridgeEnv) -> tuple[int, int]:
    """Transactions the streams applied (audit records with outcome applied...)."""
    crm = env.crm(f"SELECT count(*) FROM {env.config.state_schema}.audit WHERE outcome LIKE 'applied%%'")
    mes = env.mes(f"SELECT COUNT(*) FROM {env.config.state_prefix}audit WHERE outcome LIKE 'applied%%'")
    return crm[0][0], mes[0][0]


@pytest.mark.integration
def test_drift_is_found_and_repaired_with_boundary_values(env) -> None:
    """Missing, extra and changed rows and boundary values (max DECIMAL(65,30), a microsecond,
    a combining character) are reported with a column diff; --repair makes the sides equal,
    audited; a second verify is clean."""
    from psycopg.types.json import Jsonb

    rows = [(i, BIG if i == 1 else Decimal(i) / 3, AT, LABEL if i == 2 else f"row {i}",
             Jsonb({"i": i, "tags": ["x", i]}), i, i % 2 == 0) for i in range(1, 41)]
    for r in rows:
        env.crm("INSERT INTO drift VALUES (%s, %s, %s, %s, %s, %s, %s)", r)
    wait_until(lambda: env.mes("SELECT COUNT(*) FROM drift") == [(40,)], what="rows streamed")
    code, out = _verify(env)
    assert code == 0, out

    env.mes("DELETE FROM drift WHERE id = 5")  # missing on the MES
    env.mes("INSERT INTO drift (id, label) VALUES (99, 'only on mes')")  # extra on the MES
    env.mes("UPDATE drift SET qty = 1000 WHERE id = 7")  # a changed value
    env.mes("UPDATE drift SET big = big - 0.000000000000000000000000000001 WHERE id = 1")
    env.mes("UPDATE drift SET at = '2038-01-19 03:14:07.999998' WHERE id = 3")
    env.mes("UPDATE drift SET label = %s WHERE id = 2", (unicodedata.normalize("NFC", LABEL),))

    code, out = _verify(env, "--format", "json", "--table", "drift")
    assert code == 1
    report = _json(out)
    diffs = {d["key"]["id"]: d for d in report["tables"][0]["differences"]}
    assert set(diffs) == {1, 2, 3, 5, 7, 99}
    assert (diffs[5]["kind"], diffs[5]["only_on"]) == ("missing", "crm")
    assert (diffs[99]["kind"], diffs[99]["only_on"]) == ("extra", "mes")
    assert diffs[7]["columns"] == {"qty": {"crm": 7, "mes": 1000}}
    assert diffs[1]["columns"]["big"] == {"crm": str(BIG), "mes": str(BIG)[:-1] + "8"}
    assert set(diffs[3]["columns"]) == {"at"} and set(diffs[2]["columns"]) == {"label"}
    assert "payload" in report["tables"][0]["client_columns"]
    assert "big" in report["tables"][0]["server_columns"]

    code, out = _verify(env, "--repair", "--table", "drift")
    assert code == 0, out
    assert "delete on mes" in out and "insert on mes" in out
    code, out = _verify(env, "--table", "drift")
    assert code == 0, out
    assert env.mes("SELECT label FROM drift WHERE id = 2") == [(LABEL,)]
    assert env.mes("SELECT big FROM drift WHERE id = 1") == [(BIG,)]
    repairs = env.mes(f"SELECT source_xid FROM {env.config.state_prefix}audit WHERE outcome = 'repair' "
                      "ORDER BY id")
    assert sorted(r[0] for r in repairs) == ["delete", "insert", "update", "update", "update", "update"]


@pytest.mark.integration
def test_repair_of_a_both_ways_table_follows_owner_and_priority_without_echo(env) -> None:
    """Drift hidden from the streams on either side: the owner (status: MES) and the priority
    side (CRM) win, missing rows are copied both ways, and no repair is streamed back."""
    for i in range(1, 21):
        env.crm("INSERT INTO pair VALUES (%s, %s, 'new', %s)", (i, f"n{i}", i / 3))
    wait_until(lambda: env.mes("SELECT COUNT(*) FROM pair") == [(20,)], what="rows streamed")
    _drifted_on_mes(env, "UPDATE pair SET status = 'RUNNING', name = 'mes name' WHERE id = 3")
    _drifted_on_mes(env, "INSERT INTO pair VALUES (50, 'mes only', 'x', 0.5)")
    _drifted_on_crm(env, "INSERT INTO pair VALUES (60, 'crm only', 'y', 0.25)")
    _drifted_on_crm(env, "UPDATE pair SET score = 1.0 / 7 WHERE id = 4")
    time.sleep(1.0)  # nothing of that is streamed

    code, out = _verify(env, "--format", "json", "--table", "pair")
    assert code == 1
    diffs = {d["key"]["id"]: d for d in _json(out)["tables"][0]["differences"]}
    assert set(diffs) == {3, 4, 50, 60}
    assert set(diffs[3]["columns"]) == {"name", "status"}

    before = _applied(env)
    code, out = _verify(env, "--repair", "--table", "pair")
    assert code == 0, out
    assert env.crm("SELECT name, status FROM pair WHERE id = 3") == [("n3", "RUNNING")]
    assert env.mes("SELECT name, status FROM pair WHERE id = 3") == [("n3", "RUNNING")]
    assert env.crm("SELECT name FROM pair WHERE id = 50") == [("mes only",)]
    assert env.mes("SELECT name FROM pair WHERE id = 60") == [("crm only",)]
    time.sleep(2.0)  # an echo would arrive by now
    assert _applied(env) == before, "a repair was streamed to the other side"
    code, out = _verify(env)
    assert code == 0, out
    crm_audit = env.crm(f"SELECT count(*) FROM {env.config.state_schema}.audit WHERE outcome = 'repair'")
    mes_audit = env.mes(f"SELECT COUNT(*) FROM {env.config.state_prefix}audit WHERE outcome = 'repair'")
    assert crm_audit[0][0] + mes_audit[0][0] == 5  # status to CRM, name to MES, 2 inserts, score to MES


@pytest.mark.integration
def test_many_ranges_narrow_down_to_the_rows(pg_server, mariadb_server, tmp_path) -> None:
    """With small ranges the checksums narrow 20k rows down to the few that differ."""
    crm = ["CREATE TABLE n (id bigint PRIMARY KEY, v text, at timestamp)"]
    mes = ["CREATE TABLE n (id BIGINT PRIMARY KEY, v TEXT, at DATETIME(6)) DEFAULT CHARSET=utf8mb4"]
    tables = [{"crm": "public.n", "mes": "n", "direction": "crm_to_mes", "key": ["id"],
               "columns": {"id": "id", "v": "v", "at": "at"}}]
    e = BridgeEnv(pg_server, mariadb_server, tmp_path, crm, mes, tables=tables)
    try:
        e.crm("INSERT INTO n SELECT g, 'v' || g, '2024-01-01'::timestamp + g * interval '1 microsecond' "
              "FROM generate_series(1, 20000) g")
        e.mes("INSERT INTO n SELECT seq, CONCAT('v', seq), TIMESTAMPADD(MICROSECOND, seq, '2024-01-01') "
              "FROM seq_1_to_20000")
        e.mes("UPDATE n SET v = 'changed' WHERE id IN (777, 15001)")
        from bridge.verify.run import run_verify

        report = run_verify(e.config, range_rows=1000, settle=0)
        t = report.tables[0]
        assert sorted(d.key["id"] for d in t.differences) == [777, 15001]
        assert t.client_columns == [] and t.rows == {"crm": 20000, "mes": 20000}
        assert 20 < t.ranges < 120  # 21 top ranges + two narrowed branches, not 20k rows
    finally:
        e.close()
