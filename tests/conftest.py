"""Shared fixtures: private PostgreSQL and MariaDB servers started by bridge.devservers.

Session-scoped servers are shared; a test that crashes or reconfigures a server must start
its own (`PostgresServer()` / `MariaDBServer()` used as context managers).
"""

from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TZ", "UTC")
    # daemon threads log JSON lines to stderr, never into a command's captured stdout
    from bridge.logs import configure

    configure("info")


@pytest.fixture(scope="session")
def pg_server():
    from bridge.devservers import PostgresServer

    # track_commit_timestamp: last-writer-wins by commit time without version columns
    with PostgresServer(settings={"track_commit_timestamp": "on"}) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server():
    from bridge.devservers import MariaDBServer

    with MariaDBServer(server_id=1) as server:
        yield server


@pytest.fixture
def pg_db(pg_server):
    """A fresh database on the shared PostgreSQL server; returns its DSN."""
    name = f"t{os.getpid()}_{next(_counter)}"
    pg_server.create_database(name)
    yield pg_server.dsn(name)


@pytest.fixture
def mes_db(mariadb_server):
    """A fresh database on the shared MariaDB server; returns its DSN."""
    name = f"t{os.getpid()}_{next(_counter)}"
    mariadb_server.create_database(name)
    yield mariadb_server.dsn(name)
