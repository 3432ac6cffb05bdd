"""Dead letters against real servers: a value the target cannot hold parks its row in the
target's dead-letter table with a reason naming the column and the problem, and the rows
after it, in the same and in later transactions, still arrive. Both directions.

One bridge carries both scenarios (a module fixture); each test checks one outcome."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pymysql
import pytest

from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = pytest.mark.integration

CRM_SCHEMA = [
    # CRM -> MES: the CRM columns are wider than the MES ones
    "CREATE TABLE to_mes (id bigint PRIMARY KEY, code varchar(50), amount numeric(12,2), at timestamp)",
    "ALTER TABLE to_mes REPLICA IDENTITY FULL",
    # MES -> CRM: the MES columns are wider than the CRM ones
    ("CREATE TABLE to_crm (id bigint PRIMARY KEY, code varchar(10), amount numeric(5,2), born date,"
     " at timestamp)"),
]
MES_SCHEMA = [
    "CREATE TABLE to_mes (id BIGINT PRIMARY KEY, code VARCHAR(10), amount DECIMAL(5,2), at DATETIME(6))",
    ("CREATE TABLE to_crm (id BIGINT PRIMARY KEY, code VARCHAR(50), amount DECIMAL(12,2), born DATE,"
     " at DATETIME)"),
]
TABLES = [
    {"crm": "public.to_mes", "mes": "to_mes", "direction": "crm_to_mes", "key": ["id"],
     "columns": {"id": "id", "code": "code", "amount": "amount", "at": "at"}},
    {"crm": "public.to_crm", "mes": "to_crm", "direction": "mes_to_crm", "key": ["id"],
     "columns": {"id": "id", "code": "code", "amount": "amount", "born": "born", "at": "at"}},
]
LONG = "more than ten characters"

# row id -> (column at fault, words of which the reason must contain one)
CRM_FAULTS = {1: ("code", ("characters", "too long")), 2: ("code", ("characters", "too long")),
              3: ("amount", ("digits", "out of range")), 4: ("at", ("infinity",))}
MES_FAULTS = {2: ("code", ("characters", "too long")), 3: ("amount", ("digits", "out of range")),
              4: ("born", ("zero date",)), 5: ("at", ("zero date",))}


def _write_crm(env: BridgeEnv) -> None:
    env.crm(f"""BEGIN;
        INSERT INTO to_mes VALUES (1, 'ok', 1.50, '2024-01-01 10:00:00');
        INSERT INTO to_mes VALUES (2, '{LONG}', 1, NULL);
        INSERT INTO to_mes VALUES (3, 'big', 12345.67, NULL);
        INSERT INTO to_mes VALUES (4, 'inf', 2, 'infinity');
        INSERT INTO to_mes VALUES (5, 'after', 999.99, '2024-01-02 00:00:00.5');
        COMMIT""")
    env.crm(f"""BEGIN;
        INSERT INTO to_mes VALUES (6, 'next tx', -999.99, NULL);
        UPDATE to_mes SET code = '{LONG}' WHERE id = 1;
        INSERT INTO to_mes VALUES (7, 'last', 0, NULL);
        COMMIT""")


def _write_mes(env: BridgeEnv) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root", database=env.mes_db,
                           autocommit=True, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # this MES session may store zero dates
            cur.execute("BEGIN")
            for sql in (
                "INSERT INTO to_crm VALUES (1, 'ok', 1.5, '2024-02-29', '2024-01-01 10:00:00')",
                f"INSERT INTO to_crm VALUES (2, '{LONG}', 1, NULL, NULL)",
                "INSERT INTO to_crm VALUES (3, 'big', 12345.67, NULL, NULL)",
                "INSERT INTO to_crm VALUES (4, 'zero', 2, '0000-00-00', NULL)",
                "INSERT INTO to_crm VALUES (5, 'zero ts', 3, NULL, '0000-00-00 00:00:00')",
                "INSERT INTO to_crm VALUES (6, 'after', -999.99, '1999-12-31', NULL)",
            ):
                cur.execute(sql)
            cur.execute("COMMIT")
            cur.execute("INSERT INTO to_crm VALUES (7, 'next tx', 0, NULL, NULL)")
    finally:
        conn.close()


def _dead_letters(env: BridgeEnv, target: str) -> dict[int, dict]:
    """Dead letters on `target`, by row id."""
    if target == "mes":
        rows = env.mes(f"SELECT row_key, reason, op, source_table FROM {env.config.state_prefix}dead_letters")
    else:
        rows = env.crm(f"SELECT row_key::text, reason, op, source_table FROM "
                       f"{env.config.state_schema}.dead_letters")
    return {json.loads(key)["id"]: {"reason": reason, "op": op, "table": table}
            for key, reason, op, table in rows}


@pytest.fixture(scope="module")
def outcome(pg_server, mariadb_server, tmp_path_factory):
    env = BridgeEnv(pg_server, mariadb_server, tmp_path_factory.mktemp("dead"), CRM_SCHEMA,
                    MES_SCHEMA, tables=TABLES)
    try:
        env.start()
        _write_crm(env)
        _write_mes(env)
        wait_until(lambda: env.mes("SELECT count(*) FROM to_mes WHERE id = 7") == [(1,)]
                   and env.crm("SELECT count(*) FROM to_crm WHERE id = 7") == [(1,)],
                   what="the last rows on both sides")
        yield {
            "mes_rows": env.mes("SELECT id, code, amount, at FROM to_mes ORDER BY id"),
            "crm_rows": env.crm("SELECT id, code, amount, born, at FROM to_crm ORDER BY id"),
            "on_mes": _dead_letters(env, "mes"),
            "on_crm": _dead_letters(env, "crm"),
            "mes_db": env.mes_db,
        }
        env.stop()
    finally:
        env.close()


def test_crm_rows_after_a_dead_letter_arrive(outcome):
    """CRM rows next to and after unstorable ones, in the same and a later transaction, arrive."""
    assert list(outcome["mes_rows"]) == [
        (1, "ok", Decimal("1.50"), datetime(2024, 1, 1, 10)),
        (5, "after", Decimal("999.99"), datetime(2024, 1, 2, 0, 0, 0, 500000)),
        (6, "next tx", Decimal("-999.99"), None),
        (7, "last", Decimal("0.00"), None),
    ]


def test_crm_values_the_mes_cannot_hold_are_dead_lettered(outcome):
    """Too long text, a too big numeric and 'infinity' each park their row, saying what is wrong."""
    letters = outcome["on_mes"]
    assert sorted(letters) == sorted(CRM_FAULTS)
    assert letters[1]["op"] == "update" and letters[2]["op"] == "insert"
    for row_id, (_, words) in CRM_FAULTS.items():
        reason = letters[row_id]["reason"].lower()
        assert any(w in reason for w in words), f"row {row_id}: {reason!r} lacks {words}"
        assert letters[row_id]["table"] == "public.to_mes"


def test_mes_rows_after_a_dead_letter_arrive(outcome):
    """MES rows next to and after unstorable ones, in the same and a later transaction, arrive."""
    assert outcome["crm_rows"] == [
        (1, "ok", Decimal("1.50"), date(2024, 2, 29), datetime(2024, 1, 1, 10)),
        (6, "after", Decimal("-999.99"), date(1999, 12, 31), None),
        (7, "next tx", Decimal("0.00"), None, None),
    ]


def test_mes_values_the_crm_cannot_hold_are_dead_lettered(outcome):
    """Too long text, a too big decimal and zero dates each park their row, saying what is wrong."""
    letters = outcome["on_crm"]
    assert sorted(letters) == sorted(MES_FAULTS)
    for row_id, (_, words) in MES_FAULTS.items():
        reason = letters[row_id]["reason"].lower()
        assert any(w in reason for w in words), f"row {row_id}: {reason!r} lacks {words}"
        assert letters[row_id]["table"] == f"{outcome['mes_db']}.to_crm"


def test_dead_letter_reasons_name_the_column(outcome):
    """Each dead letter's reason names the column whose value the target cannot hold."""
    missing = []
    for letters, faults in ((outcome["on_mes"], CRM_FAULTS), (outcome["on_crm"], MES_FAULTS)):
        for row_id, (column, _) in faults.items():
            reason = letters.get(row_id, {}).get("reason", "")
            if f"column {column}" not in reason and f"'{column}'" not in reason:
                missing.append((row_id, column, reason))
    assert not missing, f"reasons without their column: {missing}"
