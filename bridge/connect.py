"""Build connections, readers and writers from the config. The only place that knows both
the config and the connectors."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bridge.config import Config
from bridge.model import BinlogPosition, PgPosition, Position, Side
from connectors.mysql import writer as mysql_writer
from connectors.mysql.errors import classify as classify_mysql
from connectors.postgres.errors import classify as classify_pg


def pg_conninfo(config: Config) -> tuple[str, str | None]:
    """libpq URI (no password) and the password."""
    p = urlsplit(config.crm.dsn)
    uri = urlunsplit(p._replace(scheme="postgresql"))
    return uri, config.crm.password()


def pg_connect(config: Config, autocommit: bool = True) -> psycopg.Connection:
    uri, password = pg_conninfo(config)
    kwargs: dict[str, Any] = {"options": "-c TimeZone=UTC", "connect_timeout": int(config.crm.connect_timeout)}
    if password is not None:
        kwargs["password"] = password
    return psycopg.connect(uri, autocommit=autocommit, **kwargs)


def mysql_params(config: Config) -> dict[str, Any]:
    parts = config.mes.parts()
    return {
        "host": parts["host"],
        "port": parts["port"] or 3306,
        "user": parts["user"] or "root",
        "password": config.mes.password(),
        "database": parts["database"],
    }


def mysql_connect(config: Config, autocommit: bool = True):
    p = mysql_params(config)
    return mysql_writer.connect(p["host"], p["port"], p["user"], p["password"], p["database"],
                                timeout=config.mes.connect_timeout, autocommit=autocommit)


def make_target(config: Config, side: Side, admin: bool = False):
    """A writer for `side`. `admin` writers (conflict resolution, write-backs, repair) use a
    second replication origin on the CRM, since the daemon's applier holds the first."""
    if side is Side.CRM:
        from connectors.postgres.writer import PgTarget

        uri, password = pg_conninfo(config)
        origin = config.admin_origin_name if admin else config.origin_name
        return PgTarget(uri, password, config.state_schema, origin, config.crm.connect_timeout)
    from connectors.mysql.writer import MysqlTarget

    p = mysql_params(config)
    return MysqlTarget(p["host"], p["port"], p["user"], p["password"], p["database"],
                       config.state_prefix, config.mes.connect_timeout)


def make_source(config: Config, side: Side, resume: Position | None, source_tables: list[str]):
    if side is Side.CRM:
        from connectors.postgres.reader import PgChangeSource

        uri, password = pg_conninfo(config)
        assert resume is None or isinstance(resume, PgPosition)
        return PgChangeSource(uri, password, config.slot_name, config.publication_name, resume)
    from connectors.mysql.reader import BinlogChangeSource

    p = mysql_params(config)
    assert resume is None or isinstance(resume, BinlogPosition)
    return BinlogChangeSource(
        p["host"], p["port"], p["user"], p["password"], p["database"],
        server_id=config.mes.server_id, resume=resume,
        marker_table=f"{config.state_prefix}state",
        heartbeat_seconds=config.mes.heartbeat_seconds,
        tables={t.split(".", 1)[1] for t in source_tables},
    )


def classifier(side: Side):
    """Error classifier for a target side."""
    return classify_pg if side is Side.CRM else classify_mysql


def classify_any(exc: BaseException):
    """Classify an error from either driver."""
    import pymysql

    if isinstance(exc, pymysql.Error):
        return classify_mysql(exc)
    return classify_pg(exc)
