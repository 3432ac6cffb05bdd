"""Streaming fidelity, both directions, against real servers: every mapped type, NULLs,
100 KB TOASTed values (updated and untouched), updates, deletes, primary-key changes,
TRUNCATE, and no echo."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = pytest.mark.integration

CRM = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    """CREATE TABLE all_types (
        id bigint PRIMARY KEY,
        c_small smallint, c_int integer, c_big bigint, c_ubig numeric(20,0),
        c_num numeric(30,10), c_real real, c_double double precision, c_bool boolean,
        c_text text, c_varchar varchar(50), c_char char(5),
        c_tstz timestamptz, c_ts timestamp, c_date date, c_time time,
        c_jsonb jsonb, c_json json, c_uuid uuid, c_bytea bytea, c_enum mood, c_note text)""",
    "ALTER TABLE all_types REPLICA IDENTITY FULL",
]
MES = [
    """CREATE TABLE all_types (
        id BIGINT PRIMARY KEY,
        c_small SMALLINT, c_int INT, c_big BIGINT, c_ubig BIGINT UNSIGNED,
        c_num DECIMAL(30,10), c_real FLOAT, c_double DOUBLE, c_bool TINYINT(1),
        c_text LONGTEXT, c_varchar VARCHAR(50), c_char CHAR(5),
        c_tstz DATETIME(6), c_ts DATETIME(6), c_date DATE, c_time TIME(6),
        c_jsonb JSON, c_json JSON, c_uuid CHAR(36), c_bytea LONGBLOB,
        c_enum ENUM('sad','ok','happy'), c_note TEXT, mes_only VARCHAR(10) DEFAULT 'keep'
    ) DEFAULT CHARSET=utf8mb4""",
]
COLS = ["id", "c_small", "c_int", "c_big", "c_ubig", "c_num", "c_real", "c_double", "c_bool",
        "c_text", "c_varchar", "c_char", "c_tstz", "c_ts", "c_date", "c_time", "c_jsonb",
        "c_json", "c_uuid", "c_bytea", "c_enum", "c_note"]
TABLES = [{"crm": "public.all_types", "mes": "all_types", "direction": "both", "key": ["id"],
           "columns": {c: c for c in COLS}}]

BIG = "x" * 50_000 + "🙂" * 10 + "y" * 50_000  # ~100 KB, TOASTed on the CRM


def canon(v):
    """Driver values from either side in one comparable form (independent of bridge code)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, time):
        return timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, (dict, list)):  # JSON documents (MES JSON text is parsed by mes_rows)
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, str):
        return v.rstrip(" ") if len(v) <= 5 else v
    return v


def crm_rows(env):
    rows = env.crm(f"SELECT {', '.join(COLS)} FROM all_types ORDER BY id")
    return [tuple(canon(v) for v in r) for r in rows]


def mes_rows(env):
    rows = env.mes(f"SELECT {', '.join(COLS)} FROM all_types ORDER BY id")
    json_cols = {COLS.index("c_jsonb"), COLS.index("c_json")}
    return [tuple(canon(json.loads(v) if i in json_cols and isinstance(v, str) else v)
                  for i, v in enumerate(r)) for r in rows]


ROW_FULL = dict(
    c_small=-32768, c_int=2147483647, c_big=-9223372036854775808, c_ubig=Decimal("18446744073709551615"),
    c_num=Decimal("12345678901234567890.0123456789"), c_real=1.5, c_double=-2.718281828459045,
    c_bool=True, c_text=BIG, c_varchar="Grüße ✓ 🙂", c_char="ab",
    c_tstz=datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=timezone.utc),
    c_ts=datetime(1999, 12, 31, 23, 59, 59, 999999), c_date=date(2024, 2, 29),
    c_time=time(23, 59, 59, 999999),
    c_jsonb={"a": [1, 2.50, {"b": None}], "unicode": "ü🙂", "big": 12345678901234567890},
    c_json=[{"z": 1, "a": "x"}], c_uuid=uuid.UUID("12345678-1234-5678-9abc-def012345678"),
    c_bytea=b"\x00\x01\xffbinary", c_enum="happy", c_note="first",
)


def insert_crm(env, id_, **vals):
    from psycopg.types.json import Json, Jsonb

    cols = ["id", *vals]
    params = [id_] + [Jsonb(v) if c == "c_jsonb" else Json(v) if c == "c_json" else v
                      for c, v in vals.items()]
    env.crm(f"INSERT INTO all_types ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})", params)


@pytest.fixture
def env(pg_server, mariadb_server, tmp_path):
    e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM, MES, tables=TABLES)
    e.start()
    yield e
    e.close()


def test_every_type_and_operation_both_ways(env):
    """Rows written on either side arrive exactly; updates, TOAST, PK changes, deletes, truncate."""
    # CRM -> MES: full row, all-NULL row
    insert_crm(env, 1, **ROW_FULL)
    insert_crm(env, 2)
    wait_until(lambda: len(mes_rows(env)) == 2, what="CRM inserts on MES")
    assert mes_rows(env) == crm_rows(env)

    # MES -> CRM: full row and NULL row
    env.mes(
        "INSERT INTO all_types (id, c_small, c_int, c_big, c_ubig, c_num, c_real, c_double, c_bool,"
        " c_text, c_varchar, c_char, c_tstz, c_ts, c_date, c_time, c_jsonb, c_json, c_uuid, c_bytea,"
        " c_enum, c_note) VALUES (10, 7, -1, 9223372036854775807, 0, -0.0000000001, -0.25, 1e300, 0,"
        " %s, 'x', 'abcde', '2038-01-19 03:14:07.000001', '1000-01-01 00:00:00', '9999-12-31',"
        " '00:00:00.000001', '{\"k\": [1.10, true, null]}', '\"str\"', %s, %s, 'sad', 'mes')",
        (BIG, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", b"\x00" * 3),
    )
    env.mes("INSERT INTO all_types (id) VALUES (11)")
    wait_until(lambda: len(crm_rows(env)) == 4, what="MES inserts on CRM")
    assert crm_rows(env) == mes_rows(env)

    # update that leaves the TOASTed c_text alone, from the CRM
    env.crm("UPDATE all_types SET c_note = 'second', c_int = 5 WHERE id = 1")
    wait_until(lambda: env.mes("SELECT c_note FROM all_types WHERE id = 1") == [("second",)])
    assert env.mes("SELECT c_text FROM all_types WHERE id = 1") == [(BIG,)]
    # update of the TOASTed value itself
    env.crm("UPDATE all_types SET c_text = %s WHERE id = 1", (BIG[::-1],))
    wait_until(lambda: env.mes("SELECT c_text FROM all_types WHERE id = 1") == [(BIG[::-1],)])
    # set values to NULL and back from the MES
    env.mes("UPDATE all_types SET c_num = NULL, c_jsonb = NULL, c_note = 'm2' WHERE id = 10")
    wait_until(lambda: env.crm("SELECT c_note FROM all_types WHERE id = 10") == [("m2",)])
    assert crm_rows(env) == mes_rows(env)

    # primary-key changes both ways; the MES-only column survives a CRM-side key change
    env.crm("UPDATE all_types SET id = 100 WHERE id = 1")
    wait_until(lambda: env.mes("SELECT id, mes_only FROM all_types WHERE id IN (1, 100)") == [(100, "keep")])
    env.mes("UPDATE all_types SET id = 110 WHERE id = 10")
    wait_until(lambda: env.crm("SELECT id FROM all_types WHERE id IN (10, 110)") == [(110,)])
    assert crm_rows(env) == mes_rows(env)

    # deletes both ways
    env.crm("DELETE FROM all_types WHERE id = 2")
    env.mes("DELETE FROM all_types WHERE id = 11")
    wait_until(lambda: len(mes_rows(env)) == 2 and len(crm_rows(env)) == 2, what="deletes")
    assert crm_rows(env) == mes_rows(env)

    # no echo: every applied transaction came from the other side, none bounced back
    audit_mes = env.mes(f"SELECT COUNT(*) FROM {env.config.state_prefix}audit")[0][0]
    audit_crm = env.crm(f"SELECT COUNT(*) FROM {env.config.state_schema}.audit")[0][0]
    assert (audit_mes, audit_crm) == (6, 5)

    # TRUNCATE on the CRM empties the MES table
    env.crm("TRUNCATE all_types")
    wait_until(lambda: mes_rows(env) == [], what="truncate on MES")
    assert env.crm(f"SELECT count(*) FROM {env.config.state_schema}.dead_letters")[0][0] == 0
