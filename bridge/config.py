"""Configuration: a TOML file validated by pydantic before any I/O.

Secrets never appear in repr/str/logs: DSNs are stored without their password, which comes
from the DSN itself (discouraged), an environment variable, or a file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class ConfigError(Exception):
    """The configuration is invalid. The message names each problem and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Database(_Strict):
    dsn: str = Field(description="postgresql://user@host:port/db or mysql://user@host:port/db")
    password_env: str | None = Field(None, description="environment variable holding the password")
    password_file: Path | None = Field(None, description="file holding the password")
    connect_timeout: float = Field(10.0, gt=0)

    # The password found in the DSN is moved here so the DSN can be printed.
    dsn_password: SecretStr | None = Field(None, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _split_password(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("dsn"), str):
            parts = urlsplit(data["dsn"])
            if parts.password is not None:
                data = dict(data)
                data["dsn_password"] = unquote(parts.password)
                netloc = parts.hostname or ""
                if parts.username:
                    netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
                if parts.port:
                    netloc += f":{parts.port}"
                data["dsn"] = urlunsplit(parts._replace(netloc=netloc))
        return data

    def password(self) -> str | None:
        """The password, resolved at connect time (env var, file, then DSN)."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"environment variable {self.password_env} (password_env) is not set"
                )
            return value
        if self.password_file:
            try:
                return self.password_file.read_text().rstrip("\n")
            except OSError as exc:
                raise ConfigError(f"cannot read password_file {self.password_file}: {exc}") from exc
        return self.dsn_password.get_secret_value() if self.dsn_password else None

    def parts(self) -> dict[str, object]:
        """host, port, user, database from the DSN (no password)."""
        p = urlsplit(self.dsn)
        return {
            "host": p.hostname or "127.0.0.1",
            "port": p.port,
            "user": unquote(p.username) if p.username else None,
            "database": p.path.lstrip("/") or None,
        }


class Crm(Database):
    @field_validator("dsn")
    @classmethod
    def _pg_scheme(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("postgresql", "postgres"):
            raise ValueError("crm.dsn must start with postgresql://")
        if not urlsplit(v).path.lstrip("/"):
            raise ValueError("crm.dsn must name the database: postgresql://user@host:5432/crm")
        return v


class Mes(Database):
    server_id: int = Field(
        description="replication server_id of the binlog reader; unique among replicas",
        ge=1,
        le=4294967295,
    )
    heartbeat_seconds: float = Field(1.0, gt=0, le=60)

    @field_validator("dsn")
    @classmethod
    def _mysql_scheme(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("mysql", "mariadb"):
            raise ValueError("mes.dsn must start with mysql:// (or mariadb://)")
        if not urlsplit(v).path.lstrip("/"):
            raise ValueError("mes.dsn must name the database: mysql://user@host:3306/mes")
        return v


class ColumnSpec(_Strict):
    mes: str
    values: dict[str, str] = Field(default_factory=dict, description="CRM value = MES value")

    @field_validator("values")
    @classmethod
    def _bijective(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for crm_value, mes_value in v.items():
            if mes_value in seen:
                raise ValueError(
                    f"value map is not one-to-one: {seen[mes_value]!r} and {crm_value!r} "
                    f"both map to {mes_value!r}; the reverse direction would be ambiguous"
                )
            seen[mes_value] = crm_value
        return v


Rule = Literal[
    "last_writer_wins",
    "crm_wins",
    "mes_wins",
    "keep_target",
    "apply_source",
    "column_merge",
    "delta",
    "manual",
]


class ConflictSpec(_Strict):
    rule: Rule = "last_writer_wins"
    owner: Literal["crm", "mes"] | None = Field(
        None, description="side that owns every mapped column unless `columns` says otherwise"
    )
    owners: dict[str, Literal["crm", "mes"]] = Field(
        default_factory=dict, description="per-column owner (CRM column names)"
    )
    columns: dict[str, Rule] = Field(default_factory=dict, description="per-column rule override")
    crm_version_column: str | None = Field(
        None, description="CRM timestamp/version column ordering writes for last_writer_wins"
    )
    mes_version_column: str | None = None
    priority: Literal["crm", "mes"] = Field("crm", description="side that wins exact ties")


class TableSpec(_Strict):
    crm: str = Field(description='CRM table, "schema.table" (schema defaults to public)')
    mes: str = Field(description="MES table in the MES database")
    direction: Literal["both", "crm_to_mes", "mes_to_crm"] = "both"
    key: list[str] = Field(min_length=1, description="key columns, CRM names")
    columns: dict[str, Annotated[str | ColumnSpec, Field(union_mode="left_to_right")]]
    conflict: ConflictSpec = Field(default_factory=ConflictSpec)

    @field_validator("crm")
    @classmethod
    def _crm_name(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) == 1:
            parts = ["public", *parts]
        if len(parts) != 2 or not all(IDENT_RE.match(p) for p in parts):
            raise ValueError(f"crm table {v!r} must be schema.table with plain identifiers")
        return ".".join(parts)

    @field_validator("mes")
    @classmethod
    def _mes_name(cls, v: str) -> str:
        if not IDENT_RE.match(v):
            raise ValueError(f"mes table {v!r} must be a plain table name")
        return v

    @model_validator(mode="after")
    def _check_columns(self) -> "TableSpec":
        if not self.columns:
            raise ValueError(f"table {self.crm}: [tables.columns] maps no column")
        for col in self.columns:
            if not IDENT_RE.match(col):
                raise ValueError(f"table {self.crm}: column {col!r} is not a plain identifier")
        mes_names = [c if isinstance(c, str) else c.mes for c in self.columns.values()]
        for name in mes_names:
            if not IDENT_RE.match(name):
                raise ValueError(f"table {self.crm}: MES column {name!r} is not a plain identifier")
        dupes = {n for n in mes_names if mes_names.count(n) > 1}
        if dupes:
            raise ValueError(f"table {self.crm}: MES columns mapped twice: {sorted(dupes)}")
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(
                f"table {self.crm}: key column(s) {missing} are not in [tables.columns]; "
                "map every key column"
            )
        c = self.conflict
        for col in [*c.owners, *c.columns]:
            if col not in self.columns:
                raise ValueError(f"table {self.crm}: conflict setting names unmapped column {col!r}")
        for col, rule in c.columns.items():
            if rule in ("column_merge",):
                raise ValueError(f"table {self.crm}: column_merge is a table rule, not per column")
        if c.crm_version_column and c.crm_version_column not in self.columns:
            raise ValueError(f"table {self.crm}: crm_version_column must be a mapped column")
        if c.mes_version_column and c.mes_version_column not in {
            (v if isinstance(v, str) else v.mes) for v in self.columns.values()
        }:
            raise ValueError(f"table {self.crm}: mes_version_column must be a mapped MES column")
        return self


class BridgeSection(_Strict):
    name: str = Field(description="prefixes slot, publication, origin and state tables")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("bridge.name must match [a-z][a-z0-9_]{0,30}")
        return v


class Apply(_Strict):
    batch_rows: int = Field(2000, ge=1, le=100_000, description="rows per statement batch")
    max_group_transactions: int = Field(
        50, ge=1, description="source transactions grouped into one target transaction"
    )
    retry_max_seconds: float = Field(30.0, gt=0, description="backoff ceiling on outages")


class Metrics(_Strict):
    port: int | None = Field(None, ge=1, le=65535, description="Prometheus /metrics port")
    host: str = "127.0.0.1"


class Logging(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    audit_file: Path | None = Field(None, description="extra copy of the audit lines (JSON lines); all log lines always go to stderr")


class Config(_Strict):
    bridge: BridgeSection
    crm: Crm
    mes: Mes
    tables: list[TableSpec] = Field(min_length=1)
    apply: Apply = Field(default_factory=Apply)
    metrics: Metrics = Field(default_factory=Metrics)
    logging: Logging = Field(default_factory=Logging)

    @model_validator(mode="after")
    def _unique_tables(self) -> "Config":
        for attr in ("crm", "mes"):
            names = [getattr(t, attr) for t in self.tables]
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise ValueError(f"{attr} table(s) bridged twice: {sorted(dupes)}")
        return self

    # derived names ------------------------------------------------------------------------
    @property
    def slot_name(self) -> str:
        return f"{self.bridge.name}_bridge"

    @property
    def publication_name(self) -> str:
        return f"{self.bridge.name}_bridge"

    @property
    def origin_name(self) -> str:
        return f"{self.bridge.name}_bridge"

    @property
    def admin_origin_name(self) -> str:
        """Origin of admin writes (conflict resolution, write-backs, repair)."""
        return f"{self.bridge.name}_bridge_admin"

    @property
    def state_schema(self) -> str:
        """PostgreSQL schema holding the bridge's state tables."""
        return f"{self.bridge.name}_bridge"

    @property
    def state_prefix(self) -> str:
        """MySQL table-name prefix of the bridge's state tables (in the MES database)."""
        return f"{self.bridge.name}_bridge_"


def _format_validation_error(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling against the README's config reference)"
        elif err["type"] == "missing":
            msg = "required setting is missing"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file. Raises ConfigError with every problem listed."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, str(path))


def parse_config(raw: dict, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None
