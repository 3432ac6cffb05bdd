"""`setup`: create what the bridge needs on both servers (idempotent). Run by `setup` and on
every daemon start: state tables, publication, replication origin, slot, and the starting
MES position when none is stored yet."""

from __future__ import annotations

import psycopg
import structlog
from psycopg import sql

from bridge.config import Config
from bridge.connect import mysql_connect, pg_connect
from bridge.errors import SetupError
from bridge.backfill.names import pg_marks_table
from bridge.mapping import Mapping
from bridge.model import Side, position_to_text
from connectors.mysql import introspect as mysql_introspect
from connectors.mysql.state import create_state_tables as create_mysql_state
from connectors.postgres.state import create_state_tables as create_pg_state

log = structlog.get_logger("bridge.setup")


def _pg_table(qualified: str) -> sql.Composable:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def setup(config: Config) -> list[str]:
    """Create missing objects; returns a description of each thing done."""
    done: list[str] = []
    mapping = Mapping.from_config(config)
    crm_sources = mapping.source_tables(Side.CRM)
    if crm_sources:  # backfill hook (issue 4): the CRM watermark table is streamed with the data
        crm_sources = [*crm_sources, pg_marks_table(config)]
    with pg_connect(config) as pg, mysql_connect(config) as my:
        create_pg_state(pg, config.state_schema)
        create_mysql_state(my, config.state_prefix)

        cur = pg.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (config.publication_name,))
        tables = sql.SQL(", ").join(_pg_table(t) for t in crm_sources)
        if cur.fetchone() is None:
            if crm_sources:
                pg.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(config.publication_name), tables))
            else:
                pg.execute(sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(config.publication_name)))
            done.append(f"created publication {config.publication_name}")
        elif crm_sources:
            cur = pg.execute(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
                (config.publication_name,))
            present = {r[0] for r in cur.fetchall()}
            missing = [t for t in crm_sources if t not in present]
            if missing:
                try:
                    pg.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                        sql.Identifier(config.publication_name),
                        sql.SQL(", ").join(_pg_table(t) for t in missing)))
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise SetupError(
                        f"publication {config.publication_name} lacks {missing} and the bridge's role "
                        f"may not add them ({exc.diag.message_primary}); as the tables' owner run: "
                        f"ALTER PUBLICATION {config.publication_name} ADD TABLE {', '.join(missing)};"
                    ) from None
                done.append(f"added {missing} to publication {config.publication_name}")

        for origin in (config.origin_name, config.admin_origin_name):
            cur = pg.execute("SELECT 1 FROM pg_replication_origin WHERE roname = %s", (origin,))
            if cur.fetchone() is None:
                pg.execute("SELECT pg_replication_origin_create(%s)", (origin,))
                done.append(f"created replication origin {origin}")

        cur = pg.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (config.slot_name,))
        if cur.fetchone() is None:
            pg.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (config.slot_name,))
            done.append(f"created logical replication slot {config.slot_name}")

        direction = "mes_to_crm"
        cur = pg.execute(
            sql.SQL("SELECT position FROM {} WHERE direction = %s").format(
                sql.Identifier(config.state_schema, "state")), (direction,))
        if cur.fetchone() is None:
            pos = mysql_introspect.current_position(my)
            pg.execute(
                sql.SQL("INSERT INTO {} (direction, position) VALUES (%s, %s)").format(
                    sql.Identifier(config.state_schema, "state")),
                (direction, position_to_text(pos)))
            done.append(f"MES changes will be read from binlog {pos}")
    for line in done:
        log.info("setup", action=line)
    return done
