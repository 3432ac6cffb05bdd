"""Describe CRM (PostgreSQL) tables and server settings from the system catalogs.

Every query uses bound parameters. Each column becomes a `bridge.schema.ColumnInfo` whose
`Family` matches what `connectors.postgres.pgoutput` decodes for it: types the decoder does
not load natively (domains, arrays, intervals, timetz, ranges, composites...) are OTHER and
travel as text; enums are ENUM with their labels in sort order.
"""

from __future__ import annotations

from typing import Any

import psycopg

from bridge.schema import ColumnInfo, Family, TableInfo

__all__ = ["load_table", "server_settings", "split_table_name"]

_VARHDRSZ = 4
_DEFAULT_FSP = 6

# built-in type name (pg_type.typname) -> (family, extra ColumnInfo fields)
_SIMPLE_TYPES: dict[str, tuple[Family, dict[str, Any]]] = {
    "int2": (Family.INT, {"int_bits": 16}),
    "int4": (Family.INT, {"int_bits": 32}),
    "int8": (Family.INT, {"int_bits": 64}),
    "float4": (Family.FLOAT, {"float_bits": 32}),
    "float8": (Family.FLOAT, {"float_bits": 64}),
    "bool": (Family.BOOL, {}),
    "text": (Family.TEXT, {}),
    "bytea": (Family.BYTES, {}),
    "date": (Family.DATE, {}),
    "json": (Family.JSON, {}),
    "jsonb": (Family.JSON, {}),
    "uuid": (Family.UUID, {}),
}

_TABLE_SQL = """
SELECT c.oid, c.relreplident
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""

_COLUMNS_SQL = """
SELECT a.attname,
       a.attnotnull,
       a.atttypmod,
       a.attgenerated <> '' AS generated,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS db_type,
       t.typname,
       t.typtype,
       tn.nspname = 'pg_catalog' AS builtin,
       CASE WHEN t.typtype = 'e' THEN
           ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e
                 WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
       END AS labels
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""

_SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "server_version_num")
_INT_SETTINGS = frozenset({"max_replication_slots", "max_wal_senders", "server_version_num"})


def split_table_name(table: str) -> tuple[str, str]:
    """"schema.table" -> ("schema", "table"); a bare name is in schema "public"."""
    schema, dot, name = table.partition(".")
    return (schema, name) if dot else ("public", schema)


def load_table(conn: psycopg.Connection[Any], table: str) -> TableInfo | None:
    """Describe `table` ("schema.table"), or None if there is no such table.

    Runs in the caller's transaction (read-only catalog queries); the caller decides
    whether to commit or roll back.
    """
    schema, name = split_table_name(table)
    found = conn.execute(_TABLE_SQL, (schema, name)).fetchone()
    if found is None:
        return None
    relid, replident = found
    columns = {
        row[0]: column_info(*row) for row in conn.execute(_COLUMNS_SQL, (relid,)).fetchall()
    }
    primary_key = tuple(r[0] for r in conn.execute(_PRIMARY_KEY_SQL, (relid,)).fetchall())
    return TableInfo(
        side="crm",
        schema=schema,
        name=name,
        columns=columns,
        primary_key=primary_key,
        replica_identity=replident,
    )


def column_info(
    name: str,
    not_null: bool,
    typmod: int,
    generated: bool,
    db_type: str,
    typname: str,
    typtype: str,
    builtin: bool,
    labels: list[str] | None,
) -> ColumnInfo:
    """One column's description from its catalog facts (pure: no queries)."""
    common: dict[str, Any] = {
        "name": name,
        "db_type": db_type,
        "nullable": not not_null,
        "generated": generated,
    }
    if typtype == "e":
        return ColumnInfo(family=Family.ENUM, enum_values=tuple(labels or ()), **common)
    if typtype != "b" or not builtin:  # domains, composites, ranges, pseudo, extension types
        return ColumnInfo(family=Family.OTHER, **common)
    if typname in _SIMPLE_TYPES:
        family, extra = _SIMPLE_TYPES[typname]
        return ColumnInfo(family=family, **extra, **common)
    if typname == "numeric":
        precision, scale = numeric_bounds(typmod)
        return ColumnInfo(family=Family.DECIMAL, precision=precision, scale=scale, **common)
    if typname in ("varchar", "bpchar"):
        length = typmod - _VARHDRSZ if typmod >= _VARHDRSZ else None
        return ColumnInfo(
            family=Family.TEXT, max_length=length, fixed_length=typname == "bpchar", **common
        )
    if typname in ("timestamp", "timestamptz", "time"):
        family = {"timestamp": Family.TIMESTAMP, "timestamptz": Family.TIMESTAMPTZ}.get(
            typname, Family.TIME
        )
        return ColumnInfo(family=family, fsp=typmod if typmod >= 0 else _DEFAULT_FSP, **common)
    return ColumnInfo(family=Family.OTHER, **common)


def numeric_bounds(typmod: int) -> tuple[int | None, int | None]:
    """(precision, scale) of a numeric typmod; (None, None) when unconstrained.

    PostgreSQL 15 stores the scale as an 11-bit signed number (negative scales round to
    tens, hundreds...).
    """
    if typmod < _VARHDRSZ:
        return None, None
    packed = typmod - _VARHDRSZ
    precision = (packed >> 16) & 0xFFFF
    scale = ((packed & 0x7FF) ^ 1024) - 1024
    return precision, scale


def server_settings(conn: psycopg.Connection[Any]) -> dict[str, str | int]:
    """wal_level, max_replication_slots, max_wal_senders (ints) and server_version_num (int)."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)", (list(_SETTINGS),)
    ).fetchall()
    return {name: int(value) if name in _INT_SETTINGS else value for name, value in rows}
