"""`check`: verify settings, privileges, keys, replica identity and the mapping against the
live schemas. Every problem names its fix. Nothing is changed."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
import pymysql
from psycopg import sql

from bridge.config import Config
from bridge.connect import mysql_connect, mysql_params, pg_connect
from bridge.errors import SetupError
from bridge.mapping import Mapping, TableMapping
from bridge.model import Side
from bridge.schema import Family, TableInfo
from connectors.mysql import introspect as my_intro
from connectors.postgres import introspect as pg_intro


@dataclass(frozen=True)
class Problem:
    where: str  # "crm", "mes", "crm public.orders", ...
    problem: str
    fix: str


_COMPATIBLE = {
    Family.INT: {Family.INT, Family.DECIMAL, Family.BOOL},
    Family.DECIMAL: {Family.DECIMAL, Family.INT},
    Family.FLOAT: {Family.FLOAT},
    Family.BOOL: {Family.INT, Family.BOOL},
    Family.TEXT: {Family.TEXT, Family.ENUM, Family.UUID, Family.JSON, Family.OTHER},
    Family.ENUM: {Family.ENUM, Family.TEXT},
    Family.TIMESTAMP: {Family.TIMESTAMP, Family.TIMESTAMPTZ},
    Family.TIMESTAMPTZ: {Family.TIMESTAMP, Family.TIMESTAMPTZ},
    Family.DATE: {Family.DATE},
    Family.TIME: {Family.TIME},
    Family.JSON: {Family.JSON, Family.TEXT},
    Family.UUID: {Family.TEXT, Family.UUID},
    Family.BYTES: {Family.BYTES},
    Family.OTHER: {Family.OTHER, Family.TEXT},
}


def run_checks(config: Config) -> list[Problem]:
    mapping = Mapping.from_config(config)
    problems: list[Problem] = []
    crm_tables: dict[str, TableInfo | None] = {}
    mes_tables: dict[str, TableInfo | None] = {}
    try:
        with pg_connect(config) as pg:
            problems += _check_pg(config, mapping, pg, crm_tables)
    except psycopg.OperationalError as exc:
        problems.append(Problem("crm", f"cannot connect: {_first_line(exc)}",
                                "check crm.dsn, the password source and that PostgreSQL is reachable"))
    try:
        with mysql_connect(config) as my:
            problems += _check_mysql(config, mapping, my, mes_tables)
    except pymysql.err.OperationalError as exc:
        problems.append(Problem("mes", f"cannot connect: {exc.args[-1]}",
                                "check mes.dsn, the password source and that MySQL/MariaDB is reachable"))
    for tm in mapping.tables:
        crm, mes = crm_tables.get(tm.crm_table), mes_tables.get(tm.mes_table)
        if crm and mes:
            problems += _check_types(tm, crm, mes)
    return problems


def preflight(config: Config) -> None:
    """Refuse to start when any check fails."""
    problems = run_checks(config)
    if problems:
        text = "\n".join(f"  - [{p.where}] {p.problem}\n    fix: {p.fix}" for p in problems)
        raise SetupError(f"refusing to start, {len(problems)} problem(s):\n{text}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- PostgreSQL ----------------------------------------------------------------------------
def _check_pg(config: Config, mapping: Mapping, pg: psycopg.Connection,
              tables: dict[str, TableInfo | None]) -> list[Problem]:
    out: list[Problem] = []
    settings = pg_intro.server_settings(pg)
    if settings.get("wal_level") != "logical":
        out.append(Problem("crm", f"wal_level is {settings.get('wal_level')!r}, logical decoding needs 'logical'",
                           "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"))
    for name in ("max_replication_slots", "max_wal_senders"):
        if int(settings.get(name) or 0) < 1:
            out.append(Problem("crm", f"{name} is 0", f"ALTER SYSTEM SET {name} = 10; then restart PostgreSQL"))
    out += _check_capacity(config, pg, int(settings.get("max_replication_slots") or 0))
    user = pg.execute("SELECT current_user").fetchone()[0]
    super_, repl = pg.execute(
        "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
    if not (super_ or repl):
        out.append(Problem("crm", f"role {user} lacks the REPLICATION attribute (the reader needs it)",
                           f'ALTER ROLE "{user}" REPLICATION;'))
    if not super_:
        for fn in ("pg_replication_origin_session_setup(text)", "pg_replication_origin_progress(text, boolean)",
                   "pg_replication_origin_session_reset()"):
            ok = pg.execute("SELECT has_function_privilege(%s, 'EXECUTE')", (fn,)).fetchone()[0]
            if not ok:
                out.append(Problem("crm", f"role {user} cannot execute {fn} (echo suppression needs it)",
                                   f'GRANT EXECUTE ON FUNCTION {fn} TO "{user}";'))
    track = pg.execute("SELECT current_setting('track_commit_timestamp')").fetchone()[0]
    for tm in mapping.tables:
        c = tm.spec.conflict
        if (tm.spec.direction == "both" and c.rule in ("last_writer_wins", "column_merge")
                and not (c.crm_version_column or c.mes_version_column) and track != "on"):
            out.append(Problem(f"crm {tm.crm_table}",
                               f"{c.rule} without a version column needs row commit times, but "
                               "track_commit_timestamp is off: conflicts would go to the priority side",
                               "ALTER SYSTEM SET track_commit_timestamp = on; then restart PostgreSQL "
                               "(or set crm_version_column/mes_version_column in [tables.conflict])"))
    for tm in mapping.tables:
        info = pg_intro.load_table(pg, tm.crm_table)
        tables[tm.crm_table] = info
        where = f"crm {tm.crm_table}"
        if info is None:
            out.append(Problem(where, "table does not exist (or is not visible to the bridge's role)",
                               "create it, fix the name in [[tables]] crm, or GRANT USAGE on its schema"))
            continue
        out += _check_table(where, tm, Side.CRM, info)
        if tm.flows_from(Side.CRM) and info.replica_identity != "f":
            out.append(Problem(where, "REPLICA IDENTITY is not FULL: updates and deletes would carry no "
                                      "before-image, so conflicts could not be detected",
                               f"ALTER TABLE {_pg_name(tm.crm_table)} REPLICA IDENTITY FULL;"))
        privs = ["SELECT"] + (["INSERT", "UPDATE", "DELETE"] if tm.flows_from(Side.MES) else [])
        for priv in privs:
            ok = pg.execute("SELECT has_table_privilege(%s, %s)", (_pg_name(tm.crm_table), priv)).fetchone()[0]
            if not ok:
                out.append(Problem(where, f"role {user} lacks {priv} on the table",
                                   f'GRANT {priv} ON {_pg_name(tm.crm_table)} TO "{user}";'))
    return out


def _check_capacity(config: Config, pg: psycopg.Connection, cap: int) -> list[Problem]:
    """max_replication_slots sizes two server-wide arrays: logical slots (the bridge needs
    one) and the progress slots of replication origins (each of its origins takes one once
    used). When full, the bridge cannot start streaming or applying."""
    out: list[Problem] = []
    if cap < 1:
        return out
    others, ours = pg.execute(
        "SELECT count(*) FILTER (WHERE slot_name <> %s), count(*) FILTER (WHERE slot_name = %s) "
        "FROM pg_replication_slots", (config.slot_name, config.slot_name)).fetchone()
    if not ours and others >= cap:
        out.append(Problem(
            "crm", f"no free replication slot: {others} of max_replication_slots={cap} are taken",
            "drop slots nobody uses (see pg_replication_slots) with pg_drop_replication_slot(name), "
            f"or ALTER SYSTEM SET max_replication_slots = {others + 10}; then restart PostgreSQL"))
    origins = [config.origin_name, config.admin_origin_name]
    try:
        taken = pg.execute("SELECT count(*) FROM pg_replication_origin_status "
                           "WHERE external_id <> ALL(%s)", (origins,)).fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        return out  # only superusers and pg_read_all_stats may look: the bridge will find out
    if taken + len(origins) > cap:
        out.append(Problem(
            "crm", f"no room for the bridge's {len(origins)} replication origins: {taken} of "
                   f"max_replication_slots={cap} origin progress slots are taken by other origins",
            "drop origins nobody uses (see pg_replication_origin_status) with "
            f"pg_replication_origin_drop(name), or ALTER SYSTEM SET max_replication_slots = "
            f"{taken + len(origins) + 10}; then restart PostgreSQL"))
    return out


def _pg_name(qualified: str) -> str:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name).as_string(None)


# --- MySQL / MariaDB -----------------------------------------------------------------------
_GRANT_RE = re.compile(r"^GRANT (.+?) ON (\S+) TO ", re.I)


def _grants(my) -> list[tuple[set[str], str]]:
    with my.cursor() as cur:
        cur.execute("SHOW GRANTS FOR CURRENT_USER()")
        out = []
        for (line,) in cur.fetchall():
            m = _GRANT_RE.match(line)
            if m:
                privs = {p.strip().upper() for p in m.group(1).split(",")}
                out.append((privs, m.group(2).replace("`", "")))
        return out


def _has(grants: list[tuple[set[str], str]], priv: str, db: str | None = None, table: str | None = None) -> bool:
    scopes = {"*.*"}
    if db:
        scopes.add(f"{db}.*")
        if table:
            scopes.add(f"{db}.{table}")
    for privs, scope in grants:
        if scope in scopes and (priv in privs or "ALL PRIVILEGES" in privs or "ALL" in privs):
            return True
        if priv == "REPLICATION SLAVE" and scope == "*.*" and "REPLICATION REPLICA" in privs:
            return True
    return False


def _check_mysql(config: Config, mapping: Mapping, my, tables: dict[str, TableInfo | None]) -> list[Problem]:
    out: list[Problem] = []
    for text in my_intro.check_binlog_settings(my):
        problem, _, fix = text.partition(" - fix: ")
        out.append(Problem("mes", problem, fix or "see the README's server settings"))
    settings = my_intro.server_settings(my)
    if str(settings.get("server_id")) == str(config.mes.server_id):
        out.append(Problem("mes", f"mes.server_id {config.mes.server_id} equals the server's own server_id",
                           "choose a server_id unused by the server and its replicas"))
    params = mysql_params(config)
    db = params["database"]
    grants = _grants(my)
    user = params["user"]
    if not _has(grants, "REPLICATION SLAVE"):
        out.append(Problem("mes", f"user {user} lacks REPLICATION SLAVE (needed to read the binlog)",
                           f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%';"))
    if not (_has(grants, "BINLOG MONITOR") or _has(grants, "REPLICATION CLIENT") or _has(grants, "SUPER")):
        out.append(Problem("mes", f"user {user} lacks BINLOG MONITOR / REPLICATION CLIENT (needed to read the binlog position)",
                           f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'%';  -- MySQL: GRANT REPLICATION CLIENT"))
    for priv in ("CREATE",):
        if not _has(grants, priv, db):
            out.append(Problem("mes", f"user {user} lacks {priv} on {db} (state tables {config.state_prefix}*)",
                               f"GRANT CREATE ON `{db}`.* TO '{user}'@'%';"))
    for tm in mapping.tables:
        _, _, name = tm.mes_table.partition(".")
        info = my_intro.load_table(my, db, name)
        tables[tm.mes_table] = info
        where = f"mes {tm.mes_table}"
        if info is None:
            out.append(Problem(where, "table does not exist", "create it or fix the name in [[tables]] mes"))
            continue
        out += _check_table(where, tm, Side.MES, info)
        privs = ["SELECT"] + (["INSERT", "UPDATE", "DELETE"] if tm.flows_from(Side.CRM) else [])
        for priv in privs:
            if not _has(grants, priv, db, name):
                out.append(Problem(where, f"user {user} lacks {priv} on the table",
                                   f"GRANT {priv} ON `{db}`.`{name}` TO '{user}'@'%';"))
    return out


# --- both ----------------------------------------------------------------------------------
def _check_table(where: str, tm: TableMapping, side: Side, info: TableInfo) -> list[Problem]:
    out = []
    if not info.primary_key:
        out.append(Problem(where, "table has no primary key: rows cannot be matched across the bridge",
                           "add a PRIMARY KEY (the [[tables]] key columns)"))
    for col in tm.columns(side):
        if col not in info.columns:
            out.append(Problem(where, f"mapped column {col!r} does not exist",
                               f"fix [tables.columns] for {tm.crm_table} or add the column"))
    key = tm.keys[side]
    if info.primary_key and set(info.primary_key) != set(key):
        out.append(Problem(where, f"configured key {list(key)} differs from the primary key {list(info.primary_key)}",
                           "set key in [[tables]] to the primary key columns"))
    return out


def _check_types(tm: TableMapping, crm: TableInfo, mes: TableInfo) -> list[Problem]:
    out = []
    for crm_col, mes_col in tm.names[Side.CRM].items():
        a, b = crm.columns.get(crm_col), mes.columns.get(mes_col)
        if a is None or b is None:
            continue
        if b.family not in _COMPATIBLE.get(a.family, set()):
            out.append(Problem(f"{tm.crm_table}.{crm_col} <-> {tm.mes_table}.{mes_col}",
                               f"types do not match: {a.db_type} vs {b.db_type}",
                               "map compatible types (see docs/TYPES.md) or change one column"))
        if tm.flows_from(Side.MES) and a.generated:
            out.append(Problem(f"crm {tm.crm_table}.{crm_col}", "generated column is mapped as a target",
                               "remove it from [tables.columns] (generated columns are never written)"))
        if tm.flows_from(Side.CRM) and b.generated:
            out.append(Problem(f"mes {tm.mes_table}.{mes_col}", "generated column is mapped as a target",
                               "remove it from [tables.columns] (generated columns are never written)"))
    return out
