"""Read table shapes, server settings and binlog positions from a MySQL/MariaDB server.

Every query uses bound parameters; nothing here writes. Functions take an open PyMySQL
connection (any cursor class) and never close it.

Type mapping (information_schema.COLUMNS -> `bridge.schema.ColumnInfo`):

| MySQL / MariaDB                          | Family      | details                                   |
|------------------------------------------|-------------|-------------------------------------------|
| TINYINT/SMALLINT/MEDIUMINT/INT/BIGINT    | INT         | int_bits 8/16/24/32/64, unsigned          |
| TINYINT(1)                               | INT         | bool_like=True                            |
| YEAR                                     | INT         | int_bits 16 (values 0, 1901..2155)        |
| DECIMAL(p,s) / NUMERIC                   | DECIMAL     | precision, scale                          |
| FLOAT / DOUBLE (REAL)                    | FLOAT       | float_bits 32 / 64                        |
| CHAR(n) / VARCHAR(n)                     | TEXT        | max_length n chars, fixed_length for CHAR |
| TINYTEXT/TEXT/MEDIUMTEXT/LONGTEXT        | TEXT        | max_length None (the limit is in bytes)   |
| BINARY(n)/VARBINARY(n)/...BLOB           | BYTES       | max_length in bytes, fixed for BINARY     |
| DATETIME(fsp)                            | TIMESTAMP   | fsp                                       |
| TIMESTAMP(fsp)                           | TIMESTAMPTZ | fsp (UTC-stored)                          |
| DATE / TIME(fsp)                         | DATE / TIME |                                           |
| JSON (MySQL), LONGTEXT CHECK json_valid  | JSON        | MariaDB's JSON alias                      |
| ENUM('a',...)                            | ENUM        | enum_values parsed from COLUMN_TYPE       |
| UUID (MariaDB >= 10.7)                   | UUID        |                                           |
| anything else (SET, BIT, geometry, ...)  | OTHER       |                                           |

TEXT-type limits are byte limits (65535 for TEXT whatever the charset) which `ColumnInfo`
cannot express as characters: they are reported as unbounded (max_length None).
"""

from __future__ import annotations

import re
from typing import Any

import pymysql
from pymysql.cursors import DictCursor

from bridge.errors import SetupError
from bridge.model import BinlogPosition
from bridge.schema import ColumnInfo, Family, TableInfo

__all__ = [
    "load_table",
    "server_settings",
    "check_binlog_settings",
    "current_position",
    "gtid_state_at",
    "is_mariadb",
    "parse_enum_values",
]

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_TEXT_TYPES = {"char", "varchar"}
_LONG_TEXT_TYPES = {"tinytext", "text", "mediumtext", "longtext"}
_BYTES_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_GENERATED_RE = re.compile(r"\b(VIRTUAL|STORED|PERSISTENT)\b", re.IGNORECASE)
_JSON_CHECK_RE = re.compile(r"^\s*json_valid\s*\(\s*`((?:[^`]|``)+)`\s*\)\s*$", re.IGNORECASE)

_COLUMNS_SQL = """
    SELECT COLUMN_NAME, IS_NULLABLE, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH,
           NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_SET_NAME, EXTRA
      FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
     ORDER BY ORDINAL_POSITION
"""
_TABLE_SQL = """
    SELECT TABLE_TYPE FROM information_schema.TABLES
     WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
"""
_PK_SQL = """
    SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
     WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'
     ORDER BY ORDINAL_POSITION
"""
_MARIADB_CHECKS_SQL = """
    SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
     WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s
"""

# Variables read by server_settings(); absent ones (older servers, the other flavour) are None.
_SETTING_NAMES = (
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "server_id",
    "version",
    "gtid_current_pos",  # MariaDB
    "gtid_binlog_pos",  # MariaDB
    "log_bin_compress",  # MariaDB: compressed events cannot be decoded
    "binlog_transaction_compression",  # MySQL >= 8.0.20
    "binlog_row_value_options",  # MySQL: PARTIAL_JSON sends JSON diffs, not values
    "gtid_mode",  # MySQL
)


# --- tables --------------------------------------------------------------------------------


def load_table(conn: pymysql.connections.Connection, database: str, table: str) -> TableInfo | None:
    """Describe `database`.`table`, or None if no such base table exists (views count as
    missing: they have no binlog of their own)."""
    with conn.cursor(DictCursor) as cur:
        cur.execute(_TABLE_SQL, (database, table))
        found = cur.fetchone()
        if found is None or found["TABLE_TYPE"] not in ("BASE TABLE", "SYSTEM VERSIONED"):
            return None
        cur.execute(_COLUMNS_SQL, (database, table))
        rows = cur.fetchall()
        cur.execute(_PK_SQL, (database, table))
        primary_key = tuple(r["COLUMN_NAME"] for r in cur.fetchall())
    json_columns = _mariadb_json_columns(conn, database, table) if is_mariadb(conn) else set()
    columns = {r["COLUMN_NAME"]: _column_info(r, r["COLUMN_NAME"] in json_columns) for r in rows}
    return TableInfo(side="mes", schema=database, name=table, columns=columns, primary_key=primary_key)


def _mariadb_json_columns(conn: pymysql.connections.Connection, database: str, table: str) -> set[str]:
    """Columns declared JSON on MariaDB: LONGTEXT plus a `json_valid(col)` CHECK constraint."""
    with conn.cursor(DictCursor) as cur:
        cur.execute(_MARIADB_CHECKS_SQL, (database, table))
        clauses = [r["CHECK_CLAUSE"] for r in cur.fetchall()]
    out = set()
    for clause in clauses:
        m = _JSON_CHECK_RE.match(clause or "")
        if m:
            out.add(m.group(1).replace("``", "`"))
    return out


def _column_info(row: dict[str, Any], is_json: bool) -> ColumnInfo:
    """One information_schema.COLUMNS row as a ColumnInfo."""
    data_type = str(row["DATA_TYPE"]).lower()
    column_type = str(row["COLUMN_TYPE"])
    common: dict[str, Any] = {
        "name": row["COLUMN_NAME"],
        "db_type": column_type,
        "nullable": row["IS_NULLABLE"] == "YES",
        "generated": bool(_GENERATED_RE.search(row["EXTRA"] or "")),
    }
    if is_json or data_type == "json":
        return ColumnInfo(family=Family.JSON, charset=_charset(row), **common)
    return ColumnInfo(**common, **_type_details(data_type, column_type, row))


def _type_details(data_type: str, column_type: str, row: dict[str, Any]) -> dict[str, Any]:
    """Family and bounds for one column (everything but name/nullability/generation)."""
    lowered = column_type.lower()
    if data_type in _INT_BITS:
        return {
            "family": Family.INT,
            "int_bits": _INT_BITS[data_type],
            "unsigned": "unsigned" in lowered,
            "bool_like": lowered.startswith("tinyint(1)"),
        }
    if data_type == "year":
        return {"family": Family.INT, "int_bits": 16}
    if data_type in ("decimal", "numeric"):
        return {"family": Family.DECIMAL, "precision": _int(row["NUMERIC_PRECISION"]),
                "scale": _int(row["NUMERIC_SCALE"]), "unsigned": "unsigned" in lowered}
    if data_type == "float":
        return {"family": Family.FLOAT, "float_bits": 32, "unsigned": "unsigned" in lowered}
    if data_type in ("double", "real", "double precision"):
        return {"family": Family.FLOAT, "float_bits": 64, "unsigned": "unsigned" in lowered}
    if data_type in _TEXT_TYPES:
        return {"family": Family.TEXT, "max_length": _int(row["CHARACTER_MAXIMUM_LENGTH"]),
                "fixed_length": data_type == "char", "charset": _charset(row)}
    if data_type in _LONG_TEXT_TYPES:
        return {"family": Family.TEXT, "max_length": None, "charset": _charset(row)}
    if data_type in _BYTES_TYPES:
        return {"family": Family.BYTES, "max_length": _int(row["CHARACTER_MAXIMUM_LENGTH"]),
                "fixed_length": data_type == "binary"}
    if data_type == "datetime":
        return {"family": Family.TIMESTAMP, "fsp": _int(row["DATETIME_PRECISION"]) or 0}
    if data_type == "timestamp":
        return {"family": Family.TIMESTAMPTZ, "fsp": _int(row["DATETIME_PRECISION"]) or 0}
    if data_type == "time":
        return {"family": Family.TIME, "fsp": _int(row["DATETIME_PRECISION"]) or 0}
    if data_type == "date":
        return {"family": Family.DATE}
    if data_type == "enum":
        return {"family": Family.ENUM, "enum_values": parse_enum_values(column_type),
                "charset": _charset(row)}
    if data_type == "uuid":
        return {"family": Family.UUID}
    return {"family": Family.OTHER, "charset": _charset(row)}


def parse_enum_values(column_type: str) -> tuple[str, ...]:
    """The members of `enum('a','b''c','d\\\\e')` as information_schema spells them.

    Inside the quotes a quote is doubled ('') and a backslash is doubled (\\\\); other
    backslash escapes (\\' \\n \\t \\0 ...) are undone too. Raises ValueError on text that
    is not an ENUM/SET definition.
    """
    m = re.match(r"^\s*(?:enum|set)\s*\(", column_type, re.IGNORECASE)
    if not m or not column_type.rstrip().endswith(")"):
        raise ValueError(f"not an ENUM/SET column type: {column_type!r}")
    body = column_type[m.end() : column_type.rstrip().rindex(")")]
    values: list[str] = []
    i = 0
    while i < len(body):
        if body[i] in " ,":
            i += 1
            continue
        if body[i] != "'":
            raise ValueError(f"unexpected {body[i]!r} in {column_type!r}")
        value, i = _read_quoted(body, i + 1, column_type)
        values.append(value)
    return tuple(values)


_BACKSLASH_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "Z": "\x1a"}


def _read_quoted(body: str, i: int, whole: str) -> tuple[str, int]:
    """Read a single-quoted SQL string starting after its opening quote; returns the
    unescaped text and the index after the closing quote."""
    out: list[str] = []
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_BACKSLASH_ESCAPES.get(nxt, nxt))
            i += 2
        elif ch == "'" and body[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        elif ch == "'":
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ValueError(f"unterminated quoted value in {whole!r}")


def _charset(row: dict[str, Any]) -> str | None:
    name = row.get("CHARACTER_SET_NAME")
    if name is None:
        return None
    name = str(name).lower()
    return "utf8mb3" if name == "utf8" else name  # "utf8" is utf8mb3 on every version


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# --- server --------------------------------------------------------------------------------


def is_mariadb(conn: pymysql.connections.Connection) -> bool:
    """True if the server is MariaDB (from the handshake's version string)."""
    return "mariadb" in conn.get_server_info().lower()


def server_settings(conn: pymysql.connections.Connection) -> dict[str, Any]:
    """Global settings that matter to the binlog reader, lower-case keys. Values are the
    server's strings (server_id an int); a variable the server does not have is None."""
    placeholders = ", ".join(["%s"] * len(_SETTING_NAMES))
    with conn.cursor() as cur:
        cur.execute(
            f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})", _SETTING_NAMES
        )
        found = {str(name).lower(): value for name, value in cur.fetchall()}
    out: dict[str, Any] = {name: found.get(name) for name in _SETTING_NAMES}
    if out["server_id"] is not None:
        out["server_id"] = int(out["server_id"])
    out["is_mariadb"] = is_mariadb(conn)
    if not out["is_mariadb"]:
        out.pop("gtid_current_pos")
        out.pop("gtid_binlog_pos")
    return out


def check_binlog_settings(conn: pymysql.connections.Connection) -> list[str]:
    """Problems that make binlog capture impossible or silently wrong, each as
    "<problem> - fix: <what to do>". Empty when the server is fit for the reader."""
    return binlog_problems(server_settings(conn))


def binlog_problems(settings: dict[str, Any]) -> list[str]:
    """`check_binlog_settings` on an already-read settings dict (pure)."""
    problems: list[str] = []

    def need(name: str, wanted: str, fix: str) -> None:
        value = settings.get(name)
        if value is None or str(value).upper() != wanted:
            problems.append(f"{name} is {value if value is not None else 'not supported'}, "
                            f"the binlog reader needs {wanted} - fix: {fix}")

    if str(settings.get("log_bin") or "OFF").upper() not in ("ON", "1"):
        problems.append(
            "binary logging is off (log_bin=OFF) - fix: start the server with log_bin "
            "(e.g. log_bin=mysql-bin in the server config) and restart it; log_bin cannot be "
            "turned on at runtime"
        )
    for name in ("binlog_format", "binlog_row_image", "binlog_row_metadata"):
        wanted = "ROW" if name == "binlog_format" else "FULL"
        if name == "binlog_row_metadata" and settings.get(name) is None:
            problems.append(
                "binlog_row_metadata does not exist on this server - fix: upgrade to "
                "MariaDB >= 10.5 or MySQL >= 8.0.14 (binlog events carry no column names before)"
            )
            continue
        need(name, wanted,
             f"SET GLOBAL {name}={wanted} and add {name}={wanted} to the server config"
             + ("; sessions already connected keep their old value until they reconnect"
                if name != "binlog_row_metadata" else ""))
    if str(settings.get("log_bin_compress") or "OFF").upper() in ("ON", "1"):
        problems.append(
            "log_bin_compress is ON: compressed binlog events cannot be decoded - fix: "
            "SET GLOBAL log_bin_compress=OFF and remove log_bin_compress from the server config"
        )
    if str(settings.get("binlog_transaction_compression") or "OFF").upper() in ("ON", "1"):
        problems.append(
            "binlog_transaction_compression is ON: compressed transactions cannot be decoded - "
            "fix: SET GLOBAL binlog_transaction_compression=OFF and remove it from the server config"
        )
    if "PARTIAL_JSON" in str(settings.get("binlog_row_value_options") or "").upper():
        problems.append(
            "binlog_row_value_options=PARTIAL_JSON logs JSON diffs instead of values - fix: "
            "SET GLOBAL binlog_row_value_options='' and remove it from the server config"
        )
    if settings.get("server_id") == 0:
        problems.append(
            "server_id is 0: the server refuses binlog readers - fix: SET GLOBAL server_id=1 "
            "(any unique non-zero id) and add it to the server config"
        )
    return problems


def current_position(conn: pymysql.connections.Connection) -> BinlogPosition:
    """The server's current binlog end (a transaction boundary), with the GTID state at that
    point when the server can tell (MariaDB: BINLOG_GTID_POS; MySQL: Executed_Gtid_Set).

    Needs BINLOG MONITOR (MariaDB) / REPLICATION CLIENT (MySQL). Raises SetupError when
    binary logging is off.
    """
    with conn.cursor(DictCursor) as cur:
        try:
            cur.execute("SHOW BINARY LOG STATUS")  # MariaDB >= 10.5.2, MySQL >= 8.2
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != 1064:  # parse error: older server
                raise
            cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if row is None:
        raise SetupError(
            "binary logging is off: start the server with log_bin (e.g. log_bin=mysql-bin in "
            "the server config)"
        )
    file, pos = str(row["File"]), int(row["Position"])
    if is_mariadb(conn):
        gtid = gtid_state_at(conn, file, pos) or None
    else:
        gtid = (row.get("Executed_Gtid_Set") or "").replace("\n", "") or None
    return BinlogPosition(file, pos, gtid)


def gtid_state_at(conn: pymysql.connections.Connection, file: str, pos: int) -> str | None:
    """MariaDB: the full multi-domain GTID state at binlog (file, pos), or None when the
    server cannot compute it (file purged, or not a transaction boundary)."""
    with conn.cursor() as cur:
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        row = cur.fetchone()
    if not row or row[0] is None:
        return None
    value = row[0]
    return value.decode() if isinstance(value, bytes) else str(value)  # "" = empty state
