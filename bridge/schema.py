"""Live-schema descriptions shared by the connectors (which introspect) and the pure core
(which converts values against them). Pure: no driver imports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Family(enum.StrEnum):
    """Type families. One converter per family (see bridge/types)."""

    INT = "int"  # smallint/int/bigint, TINYINT..BIGINT [UNSIGNED]
    DECIMAL = "decimal"  # numeric / DECIMAL
    FLOAT = "float"  # real, double / FLOAT, DOUBLE
    BOOL = "bool"  # PostgreSQL boolean (MySQL booleans are TINYINT(1): INT with bool_like)
    TEXT = "text"  # text, varchar, char / CHAR, VARCHAR, TEXT
    BYTES = "bytes"  # bytea / BLOB, BINARY, VARBINARY
    TIMESTAMP = "timestamp"  # timestamp without time zone / DATETIME
    TIMESTAMPTZ = "timestamptz"  # timestamptz / MySQL TIMESTAMP (UTC-stored)
    DATE = "date"
    TIME = "time"
    JSON = "json"  # json, jsonb / JSON (MariaDB: LONGTEXT CHECK json_valid)
    UUID = "uuid"  # uuid (MySQL side uses CHAR(36): TEXT)
    ENUM = "enum"  # PostgreSQL enum type / MySQL ENUM
    OTHER = "other"  # anything else: passed through as text, compared as text


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    family: Family
    db_type: str  # as the server names it, e.g. "numeric(12,3)", "bigint unsigned"
    nullable: bool = True
    # INT
    int_bits: int | None = None  # 8, 16, 24, 32, 64
    unsigned: bool = False
    bool_like: bool = False  # MySQL TINYINT(1)
    # DECIMAL (None = unbounded PostgreSQL numeric)
    precision: int | None = None
    scale: int | None = None
    # FLOAT
    float_bits: int | None = None  # 32 or 64
    # TEXT / BYTES (None = unbounded); lengths in characters for text, bytes for binary
    max_length: int | None = None
    fixed_length: bool = False  # CHAR(n) / BINARY(n): padded
    charset: str | None = None  # MySQL: utf8mb3 cannot hold 4-byte characters
    # TIMESTAMP/TIMESTAMPTZ/TIME: fractional-second digits (0..6)
    fsp: int = 6
    # ENUM
    enum_values: tuple[str, ...] = ()
    # never written on the target
    generated: bool = False


@dataclass(frozen=True, slots=True)
class TableInfo:
    side: str  # "crm" | "mes"
    schema: str  # PostgreSQL schema or MySQL database
    name: str
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    replica_identity: str | None = None  # PostgreSQL: d, n, f, i

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"
