"""Tests of bridge.devservers against real private PostgreSQL and MariaDB servers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bridge import devservers
from bridge.devservers import MariaDBServer, PostgresServer, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    return devservers._pid_alive(pid)


def test_free_port_is_unique_and_not_a_system_port() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert not ports & {3306, 5432}


def test_postgres_crash_keeps_committed_rows() -> None:
    with PostgresServer() as pg:
        assert pg.query("SHOW wal_level") == [("logical",)]
        assert pg.query("SHOW max_replication_slots") == [("20",)]
        assert pg.query("SHOW fsync") == [("on",)]
        assert pg.dsn("crm") == f"postgresql://postgres@127.0.0.1:{pg.port}/crm"
        pg.create_database("crm")
        pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'kept')", dbname="crm")
        pg.query("SELECT * FROM pg_create_logical_replication_slot('s1', 'pgoutput')", dbname="crm")
        open_txn = pg.connect("crm", autocommit=False)
        open_txn.execute("INSERT INTO t VALUES (2, 'never committed')")

        port, pid = pg.port, pg.pid
        assert pid is not None
        children = devservers._child_pids(pid)
        assert children  # checkpointer, walwriter, our backend, ...
        pg.kill()
        assert not pg.running and pg.pid is None
        assert not _alive(pid) and not any(_alive(c) for c in children)
        open_txn.close()

        pg.start()
        assert pg.port == port
        assert pg.query("SELECT id, v FROM t ORDER BY id", dbname="crm") == [(1, "kept")]
        assert pg.query("SELECT slot_name FROM pg_replication_slots") == [("s1",)]

        pg.execute("INSERT INTO t VALUES (3, 'after crash')", dbname="crm")
        pg.restart(mode="immediate")
        pg.restart()  # fast
        assert pg.query("SELECT id FROM t ORDER BY id", dbname="crm") == [(1,), (3,)]
        base_dir, pid = pg.base_dir, pg.pid
    assert pid is not None and not _alive(pid)
    assert not base_dir.exists()


def test_mariadb_crash_keeps_committed_rows() -> None:
    with MariaDBServer(server_id=5) as my:
        variables = dict(my.query("SHOW VARIABLES WHERE Variable_name IN ('binlog_row_metadata', "
                                  "'binlog_format', 'binlog_row_image', 'log_bin', 'server_id', "
                                  "'sync_binlog', 'innodb_flush_log_at_trx_commit', 'time_zone')"))
        assert variables == {
            "binlog_row_metadata": "FULL",
            "binlog_format": "ROW",
            "binlog_row_image": "FULL",
            "log_bin": "ON",
            "server_id": "5",
            "sync_binlog": "1",
            "innodb_flush_log_at_trx_commit": "1",
            "time_zone": "+00:00",
        }
        assert my.query("SELECT CURRENT_USER()") == [("root@127.0.0.1",)]  # TCP, no password
        assert my.dsn("mes") == f"mysql://root@127.0.0.1:{my.port}/mes"
        my.create_database("mes")
        my.execute("CREATE TABLE t (id int PRIMARY KEY, v varchar(40)); INSERT INTO t VALUES (1, 'kept')", "mes")
        open_txn = my.connect("mes", autocommit=False)
        with open_txn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (2, 'never committed')")

        port, pid = my.port, my.pid
        assert pid is not None
        my.kill()
        assert not my.running and not _alive(pid)
        open_txn.close()

        my.start()
        assert my.port == port
        assert my.query("SELECT id, v FROM t ORDER BY id", "mes") == [(1, "kept")]
        my.execute("INSERT INTO t VALUES (3, 'after crash')", "mes")
        my.restart(mode="immediate")
        my.restart()  # clean shutdown
        assert my.query("SELECT id FROM t ORDER BY id", "mes") == [(1,), (3,)]
        base_dir = my.base_dir
    assert not base_dir.exists()


def test_settings_override_and_parallel_instances() -> None:
    pg_replica = PostgresServer(settings={"wal_level": "replica"})
    pg_logical = PostgresServer()
    my_minimal = MariaDBServer(server_id=2, settings={"binlog_row_metadata": "MINIMAL"})
    my_full = MariaDBServer(server_id=3)
    servers = [pg_replica, pg_logical, my_minimal, my_full]
    try:
        # First starts (initdb / install-db) at the same time, as parallel test runs do.
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.start(), servers))
        assert len({server.port for server in servers}) == 4
        assert pg_replica.query("SHOW wal_level") == [("replica",)]
        assert pg_logical.query("SHOW wal_level") == [("logical",)]
        assert my_minimal.query("SHOW VARIABLES LIKE 'binlog_row_metadata'") == [("binlog_row_metadata", "MINIMAL")]
        assert my_full.query("SHOW VARIABLES LIKE 'binlog_row_metadata'") == [("binlog_row_metadata", "FULL")]
        assert my_minimal.query("SELECT @@server_id") == [(2,)]

        # settings are re-applied on every start
        pg_replica.settings["wal_level"] = "logical"
        pg_replica.restart()
        assert pg_replica.query("SHOW wal_level") == [("logical",)]
        my_minimal.settings["binlog-row-metadata"] = "FULL"  # '-' or '_' both work
        my_minimal.restart()
        assert my_minimal.query("SELECT @@binlog_row_metadata") == [("FULL",)]
    finally:
        for server in servers:
            server.cleanup()
    assert not any(server.running or server.base_dir.exists() for server in servers)


def test_start_failure_raises_with_log_tail() -> None:
    pg = PostgresServer(settings={"shared_buffers": "plenty"})
    with pytest.raises(RuntimeError, match=r"(?s)exited with code.*shared_buffers"):
        pg.start()
    assert not pg.running
    pg.cleanup()
    assert not pg.base_dir.exists()

    my = MariaDBServer(settings={"no-such-option": "1"})
    with pytest.raises(RuntimeError, match=r"(?s)exited with code.*no-such-option"):
        with my:
            pass
    assert not my.base_dir.exists()  # __enter__ cleans up after a failed start

    with pytest.raises(ValueError):
        PostgresServer(settings={"port": "5432"})


def test_port_taken_before_first_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]

        # An explicit port that is taken is an error ...
        pg = PostgresServer(port=busy)
        try:
            with pytest.raises(RuntimeError, match="port in use"):
                pg.start()
        finally:
            pg.cleanup()

        # ... a port the harness chose is replaced by another one on the first start.
        ports = iter([busy])
        real_free_port = devservers.free_port
        monkeypatch.setattr(devservers, "free_port", lambda: next(ports, None) or real_free_port())
        with PostgresServer() as pg:
            assert pg.port != busy
            assert pg.query("SELECT 1") == [(1,)]


def test_caller_base_dir_is_kept_and_reused() -> None:
    base = Path(tempfile.mkdtemp(prefix="bridge-test-"))
    base.chmod(0o755)  # the postgres OS user must be able to traverse it when we are root
    try:
        with PostgresServer(base) as pg:
            pg.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)")
        assert (base / "data" / "PG_VERSION").exists()
        with PostgresServer(base) as pg:  # new instance, new port, same data
            assert pg.query("SELECT id FROM kept") == [(42,)]
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data dir to the postgres user")
def test_unreachable_base_dir_is_a_clear_error(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    pg = PostgresServer(private / "pg")
    try:
        with pytest.raises(RuntimeError, match="cannot reach"):
            pg.start()
    finally:
        pg.cleanup()


def test_atexit_stops_servers_of_a_crashed_process() -> None:
    script = textwrap.dedent(
        """
        import json
        from bridge.devservers import MariaDBServer, PostgresServer
        pg, my = PostgresServer(), MariaDBServer()
        pg.start(); my.start()
        print(json.dumps({"pids": [pg.pid, my.pid], "dirs": [str(pg.base_dir), str(my.base_dir)]}), flush=True)
        raise SystemExit("simulated crash without cleanup")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert not any(_alive(pid) for pid in info["pids"])
    assert not any(Path(d).exists() for d in info["dirs"])
