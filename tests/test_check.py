"""`check` against real servers: each setting, key, replica identity, privilege and mapping
problem is found and printed with its fix, the CLI exits non-zero on any, a clean config
prints OK and exits 0, and `run` refuses to start on a server without logical decoding."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.check import Problem, run_checks
from bridge.config import parse_config
from tests.bridgeenv import ROOT, BridgeEnv, to_toml

pytestmark = pytest.mark.integration

# --- a clean schema -------------------------------------------------------------------------
CLEAN_CRM = ["CREATE TABLE parts (id bigint PRIMARY KEY, v integer)",
             "ALTER TABLE parts REPLICA IDENTITY FULL"]
CLEAN_MES = ["CREATE TABLE parts (id BIGINT PRIMARY KEY, v INT)"]
CLEAN_TABLES = [{"crm": "public.parts", "mes": "parts", "direction": "both", "key": ["id"],
                 "columns": {"id": "id", "v": "v"}}]

# --- a schema with one problem per table -----------------------------------------------------
BAD_CRM = [
    "CREATE TABLE nopk_c (id bigint NOT NULL, v integer)",  # no PK on the CRM
    "ALTER TABLE nopk_c REPLICA IDENTITY FULL",
    "CREATE TABLE nopk_m (id bigint PRIMARY KEY, v integer)",  # no PK on the MES
    "ALTER TABLE nopk_m REPLICA IDENTITY FULL",
    "CREATE TABLE ri_default (id bigint PRIMARY KEY, v integer)",  # REPLICA IDENTITY DEFAULT
    "CREATE TABLE ghost (id bigint PRIMARY KEY, v integer, c3 integer)",  # mapped columns missing
    "ALTER TABLE ghost REPLICA IDENTITY FULL",
]
BAD_MES = [
    "CREATE TABLE nopk_c (id BIGINT PRIMARY KEY, v INT)",
    "CREATE TABLE nopk_m (id BIGINT NOT NULL, v INT)",
    "CREATE TABLE ri_default (id BIGINT PRIMARY KEY, v INT)",
    "CREATE TABLE ghost (id BIGINT PRIMARY KEY, v INT, c2 INT)",
]
BAD_TABLES = [
    {"crm": "public.nopk_c", "mes": "nopk_c", "direction": "crm_to_mes", "key": ["id"],
     "columns": {"id": "id", "v": "v"}},
    {"crm": "public.nopk_m", "mes": "nopk_m", "direction": "mes_to_crm", "key": ["id"],
     "columns": {"id": "id", "v": "v"}},
    {"crm": "public.ri_default", "mes": "ri_default", "direction": "both", "key": ["id"],
     "columns": {"id": "id", "v": "v"}},
    {"crm": "public.ghost", "mes": "ghost", "direction": "both", "key": ["id"],
     "columns": {"id": "id", "v": "v", "crm_ghost": "c2", "c3": "mes_ghost"}},
]


def find(problems: list[Problem], where: str, *words: str) -> Problem:
    """The problem reported at `where` (a prefix) whose text holds every word."""
    for p in problems:
        if p.where.startswith(where) and all(w.lower() in p.problem.lower() for w in words):
            assert p.fix.strip(), f"problem without a fix: {p}"
            return p
    listing = "\n".join(f"  [{p.where}] {p.problem} -> {p.fix}" for p in problems)
    raise AssertionError(f"no problem at {where!r} mentioning {words}; reported:\n{listing}")


def cli(command: str, env: BridgeEnv, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", command, "--config", str(env.config_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)


def use_users(env: BridgeEnv, pg_user: str | None = None, my_user: str | None = None) -> None:
    """Point the env's config (object and file) at other database accounts."""
    if pg_user:
        env.raw["crm"]["dsn"] = env.pg.dsn(env.crm_db, user=pg_user)
    if my_user:
        env.raw["mes"]["dsn"] = env.my.dsn(env.mes_db, user=my_user)
    env.config = parse_config(env.raw)
    env.config_path.write_text(to_toml(env.raw))


@pytest.fixture(scope="module")
def bad_env(pg_server, mariadb_server, tmp_path_factory):
    env = BridgeEnv(pg_server, mariadb_server, tmp_path_factory.mktemp("bad"), BAD_CRM, BAD_MES,
                    tables=BAD_TABLES)
    yield env
    env.close()


@pytest.fixture(scope="module")
def bad_problems(bad_env):
    return run_checks(bad_env.config)


@pytest.fixture(scope="module")
def replica_pg():
    from bridge.devservers import PostgresServer

    with PostgresServer(settings={"wal_level": "replica"}) as pg:
        yield pg


@pytest.fixture(scope="module")
def replica_env(replica_pg, mariadb_server, tmp_path_factory):
    env = BridgeEnv(replica_pg, mariadb_server, tmp_path_factory.mktemp("replica"), CLEAN_CRM,
                    CLEAN_MES, tables=CLEAN_TABLES)
    yield env
    env.close()


# --- server settings ---------------------------------------------------------------------------
def test_wal_level_replica_is_reported(replica_env):
    """A CRM server without logical decoding is reported with the setting to change."""
    p = find(run_checks(replica_env.config), "crm", "wal_level")
    assert "replica" in p.problem and "wal_level = logical" in p.fix


def test_run_refuses_to_start_on_wal_level_replica(replica_env):
    """`run` exits non-zero before streaming, naming the fix."""
    result = cli("run", replica_env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "wal_level = logical" in output, output[-2000:]
    slots = replica_env.crm("SELECT count(*) FROM pg_replication_slots")
    assert slots == [(0,)], "run created a slot before refusing"


def test_binlog_row_metadata_minimal_is_reported(pg_server, tmp_path):
    """A MES server writing MINIMAL row metadata is reported with the setting to change."""
    from bridge.devservers import MariaDBServer

    with MariaDBServer(server_id=3, settings={"binlog_row_metadata": "MINIMAL"}) as my:
        env = BridgeEnv(pg_server, my, tmp_path, CLEAN_CRM, CLEAN_MES, tables=CLEAN_TABLES)
        try:
            p = find(run_checks(env.config), "mes", "binlog_row_metadata")
            assert "MINIMAL" in p.problem and "binlog_row_metadata=FULL" in p.fix
            result = cli("check", env)
            assert result.returncode == 1 and "binlog_row_metadata" in result.stdout
        finally:
            env.close()


def test_full_replication_slot_arrays_are_reported(mariadb_server, tmp_path):
    """No room for the bridge's slot or origins under max_replication_slots is reported."""
    from bridge.devservers import PostgresServer

    with PostgresServer(settings={"max_replication_slots": "2", "track_commit_timestamp": "on"}) as pg:
        env = BridgeEnv(pg, mariadb_server, tmp_path, CLEAN_CRM, CLEAN_MES, tables=CLEAN_TABLES)
        try:
            assert run_checks(env.config) == []
            for name in ("other_a", "other_b"):  # somebody else's slots and a used origin
                env.crm("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
            env.crm("SELECT pg_replication_origin_create('other_origin')")
            env.crm("SELECT pg_replication_origin_session_setup('other_origin')")
            problems = run_checks(env.config)
            assert "max_replication_slots" in find(problems, "crm", "no free replication slot").fix
            assert "max_replication_slots" in find(problems, "crm", "replication origins").fix
        finally:
            env.close()


# --- keys, replica identity, mapping -------------------------------------------------------------
def test_crm_table_without_primary_key_is_reported(bad_problems):
    """A CRM table without a primary key is reported."""
    p = find(bad_problems, "crm public.nopk_c", "primary key")
    assert "PRIMARY KEY" in p.fix


def test_mes_table_without_primary_key_is_reported(bad_problems, bad_env):
    """A MES table without a primary key is reported."""
    p = find(bad_problems, f"mes {bad_env.mes_db}.nopk_m", "primary key")
    assert "PRIMARY KEY" in p.fix


def test_replica_identity_default_is_reported(bad_problems):
    """A CRM source table with REPLICA IDENTITY DEFAULT is reported with the ALTER TABLE."""
    p = find(bad_problems, "crm public.ri_default", "replica identity")
    assert "REPLICA IDENTITY FULL" in p.fix and "ri_default" in p.fix


def test_missing_mapped_columns_are_reported(bad_problems, bad_env):
    """A mapped column missing on either side is reported, on that side."""
    crm = find(bad_problems, "crm public.ghost", "crm_ghost", "does not exist")
    mes = find(bad_problems, f"mes {bad_env.mes_db}.ghost", "mes_ghost", "does not exist")
    assert crm is not mes and crm.fix.strip() and mes.fix.strip()


def test_check_command_prints_each_problem_with_its_fix(bad_env, bad_problems):
    """`check` prints every problem and its fix, and exits 1."""
    result = cli("check", bad_env)
    assert result.returncode == 1, result.stdout + result.stderr
    for p in bad_problems:
        assert p.problem in result.stdout and p.fix in result.stdout
    assert result.stdout.count("fix:") == len(bad_problems)


# --- privileges -----------------------------------------------------------------------------------
def test_pg_role_without_privileges_is_reported(pg_server, mariadb_server, tmp_path):
    """A CRM role lacking REPLICATION, SELECT and INSERT gets each reported with its GRANT."""
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CLEAN_CRM, CLEAN_MES, tables=CLEAN_TABLES)
    role = f"r_{env.name}"
    try:
        env.crm(f'CREATE ROLE "{role}" LOGIN')  # no REPLICATION, no table privileges
        use_users(env, pg_user=role)
        problems = run_checks(env.config)
        assert f'ALTER ROLE "{role}" REPLICATION' in find(problems, "crm", "REPLICATION").fix
        assert "GRANT SELECT" in find(problems, "crm public.parts", "lacks SELECT").fix
        assert "GRANT INSERT" in find(problems, "crm public.parts", "lacks INSERT").fix
        result = cli("check", env)
        assert result.returncode == 1 and f'ALTER ROLE "{role}" REPLICATION' in result.stdout
    finally:
        env.close()
        env.crm(f'DROP OWNED BY "{role}"')
        env.crm(f'DROP ROLE IF EXISTS "{role}"')


def test_mariadb_user_without_replication_slave_is_reported(pg_server, mariadb_server, tmp_path):
    """A MES user lacking REPLICATION SLAVE gets it reported with its GRANT."""
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CLEAN_CRM, CLEAN_MES, tables=CLEAN_TABLES)
    user = f"u_{env.name}"
    try:
        env.mes(f"CREATE USER '{user}'@'%'")
        env.mes(f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `{env.mes_db}`.* TO '{user}'@'%'")
        env.mes(f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'%'")
        use_users(env, my_user=user)
        problems = run_checks(env.config)
        p = find(problems, "mes", "REPLICATION SLAVE")
        assert "GRANT REPLICATION SLAVE" in p.fix
        assert [q for q in problems if q.where.startswith("mes")] == [p], "only that is missing"
        env.mes(f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%'")
        assert not [q for q in run_checks(env.config) if q.where.startswith("mes")]
    finally:
        env.close()
        env.mes(f"DROP USER IF EXISTS '{user}'@'%'")


# --- a clean config ---------------------------------------------------------------------------------
def test_clean_config_passes(pg_server, mariadb_server, tmp_path):
    """A correct setup has no problems: `check` prints OK and exits 0."""
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CLEAN_CRM, CLEAN_MES, tables=CLEAN_TABLES)
    try:
        assert run_checks(env.config) == []
        result = cli("check", env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout
    finally:
        env.close()
