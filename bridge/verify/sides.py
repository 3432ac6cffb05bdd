"""Range checksums, keys and rows, read from one side (plain read-only SQL sessions).

Ranges are half-open key intervals [lo, hi) compared in binary key order (PostgreSQL
`COLLATE "C"`, MySQL `CAST(... AS BINARY)` for textual keys), so both servers put every key
into the same range. `lo`/`hi` None means unbounded.

Row text per column, identical on both servers for equal values of a `kind` (bridge.verify.plan):
NULL -> chr(30); a value the server cannot render -> chr(29); columns joined with chr(31).
Row hash: the first 60 bits of md5(row text), summed per range (exact: numeric / DECIMAL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from psycopg import sql
from psycopg.types.string import TextLoader

from bridge.config import Config
from bridge.connect import mysql_connect, pg_connect
from bridge.model import Side
from bridge.schema import Family, TableInfo
from bridge.verify.plan import ColumnPair, TablePlan
from connectors.mysql import introspect as mysql_introspect
from connectors.mysql.sqltext import quote
from connectors.postgres import introspect as pg_introspect

Key = tuple[Any, ...]
Range = tuple[Key | None, Key | None]

_TEXT_KEYS = frozenset({Family.TEXT, Family.ENUM, Family.UUID})


class SideReader(Protocol):
    side: Side

    def table_info(self, table: str) -> TableInfo | None: ...
    def boundaries(self, plan: TablePlan, step: int) -> list[Key]: ...
    def checksum(self, plan: TablePlan, rng: Range) -> tuple[int, int]: ...
    def keys(self, plan: TablePlan, rng: Range) -> list[Key]: ...
    def rows(self, plan: TablePlan, rng: Range, pairs: Sequence[ColumnPair]) -> list[tuple]: ...
    def rows_by_keys(self, plan: TablePlan, keys: Sequence[Key],
                     pairs: Sequence[ColumnPair]) -> list[tuple]: ...
    def close(self) -> None: ...


def open_side(config: Config, side: Side) -> SideReader:
    return PgSide(config) if side is Side.CRM else MysqlSide(config)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_table(name: str) -> sql.Identifier:
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table)


class PgSide:
    side = Side.CRM

    def __init__(self, config: Config):
        self.conn = pg_connect(config, autocommit=True)
        self.conn.adapters.register_loader("json", TextLoader)
        self.conn.adapters.register_loader("jsonb", TextLoader)

    def close(self) -> None:
        self.conn.close()

    def table_info(self, table: str) -> TableInfo | None:
        return pg_introspect.load_table(self.conn, table)

    # -- expressions -----------------------------------------------------------------------
    @staticmethod
    def _key_expr(p: ColumnPair) -> sql.Composable:
        ident = sql.Identifier(p.crm)
        if p.crm_info.family in _TEXT_KEYS:
            return sql.SQL("({}::text COLLATE {})").format(ident, sql.Identifier("C"))
        return ident

    def _key_tuple(self, plan: TablePlan) -> sql.Composable:
        return sql.SQL(", ").join(self._key_expr(p) for p in plan.key)

    def _where(self, plan: TablePlan, rng: Range) -> tuple[sql.Composable, list[Any]]:
        parts: list[sql.Composable] = []
        params: list[Any] = []
        ph = sql.SQL(", ").join([sql.Placeholder()] * len(plan.key))
        for bound, op in ((rng[0], ">="), (rng[1], "<")):
            if bound is not None:
                parts.append(sql.SQL("({}) {} ({})").format(self._key_tuple(plan), sql.SQL(op), ph))
                params += [_pg_text_key(p, v) for p, v in zip(plan.key, bound)]
        if not parts:
            return sql.SQL(""), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params

    @staticmethod
    def _render(p: ColumnPair) -> sql.Composable:
        c = sql.Identifier(p.crm)
        fam = p.crm_info.family
        kind = p.kind
        if kind == "bool":
            body = sql.SQL("CASE WHEN {} THEN '1' ELSE '0' END").format(c)
        elif kind == "decimal" and fam is Family.DECIMAL:
            body = sql.SQL("trim_scale({})::text").format(c)
        elif kind == "timestamp":
            body = sql.SQL("to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')").format(c)
        elif kind == "date":
            body = sql.SQL("to_char({}, 'YYYY-MM-DD')").format(c)
        elif kind == "time":
            body = sql.SQL("to_char({}, 'HH24:MI:SS.US')").format(c)
        elif kind == "bytes":
            body = sql.SQL("encode({}, 'hex')").format(c)
        else:  # int, decimal of an integer column, text
            body = sql.SQL("{}::text").format(c)
        return sql.SQL("CASE WHEN {} IS NULL THEN chr(30) ELSE COALESCE({}, chr(29)) END").format(c, body)

    def _select(self, pairs: Sequence[ColumnPair]) -> sql.Composable:
        out = []
        for p in pairs:
            ident = sql.Identifier(p.crm)
            out.append(sql.SQL("{}::text").format(ident) if p.crm_info.family is Family.OTHER else ident)
        return sql.SQL(", ").join(out)

    # -- queries -----------------------------------------------------------------------------
    def boundaries(self, plan: TablePlan, step: int) -> list[Key]:
        keys = sql.SQL(", ").join(sql.Identifier(p.crm) for p in plan.key)
        out: list[Key] = []
        last: Key | None = None
        while True:
            where, params = self._where(plan, (None, None))
            if last is not None:
                ph = sql.SQL(", ").join([sql.Placeholder()] * len(plan.key))
                where = sql.SQL(" WHERE ({}) > ({})").format(self._key_tuple(plan), ph)
                params = [_pg_text_key(p, v) for p, v in zip(plan.key, last)]
            query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT 1 OFFSET {}").format(
                keys, _pg_table(plan.table(Side.CRM)), where, self._key_tuple(plan),
                sql.Literal(step if last is None else step - 1))
            row = self.conn.execute(query, params).fetchone()
            if row is None:
                return out
            last = tuple(row)
            out.append(last)

    def checksum(self, plan: TablePlan, rng: Range) -> tuple[int, int]:
        text = sql.SQL("concat_ws(chr(31), {})").format(
            sql.SQL(", ").join(self._render(p) for p in plan.server)) if plan.server else sql.SQL("''")
        where, params = self._where(plan, rng)
        query = sql.SQL(
            "SELECT count(*), COALESCE(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0) "
            "FROM {}{}").format(text, _pg_table(plan.table(Side.CRM)), where)
        count, total = self.conn.execute(query, params).fetchone()
        return int(count), int(total)

    def keys(self, plan: TablePlan, rng: Range) -> list[Key]:
        return [tuple(r) for r in self.rows(plan, rng, plan.key)]

    def rows(self, plan: TablePlan, rng: Range, pairs: Sequence[ColumnPair]) -> list[tuple]:
        where, params = self._where(plan, rng)
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}").format(
            self._select(pairs), _pg_table(plan.table(Side.CRM)), where, self._key_tuple(plan))
        return self.conn.execute(query, params).fetchall()

    def rows_by_keys(self, plan: TablePlan, keys: Sequence[Key],
                     pairs: Sequence[ColumnPair]) -> list[tuple]:
        out: list[tuple] = []
        cols = sql.SQL(", ").join(sql.Identifier(p.crm) for p in plan.key)
        one = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(plan.key)))
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN ({})").format(
                self._select(pairs), _pg_table(plan.table(Side.CRM)), cols,
                sql.SQL(", ").join([one] * len(part)))
            out += self.conn.execute(query, [v for k in part for v in k]).fetchall()
        return out


def _pg_text_key(p: ColumnPair, value: Any) -> Any:
    return str(value) if p.crm_info.family in _TEXT_KEYS and value is not None else value


# --- MySQL / MariaDB ---------------------------------------------------------------------------


class MysqlSide:
    side = Side.MES

    def __init__(self, config: Config):
        self.conn = mysql_connect(config, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def table_info(self, table: str) -> TableInfo | None:
        db, _, name = table.partition(".")
        return mysql_introspect.load_table(self.conn, db, name)

    def _query(self, query: str, params: Sequence[Any]) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, tuple(params))  # always a tuple: '%%' in the text means '%'
            return list(cur.fetchall())

    def _table(self, plan: TablePlan) -> str:
        db, _, name = plan.table(Side.MES).partition(".")
        return f"{quote(db)}.{quote(name)}"

    @staticmethod
    def _key_expr(p: ColumnPair) -> str:
        if p.mes_info.family in _TEXT_KEYS:
            return f"CAST({quote(p.mes)} AS BINARY)"
        return quote(p.mes)

    def _order(self, plan: TablePlan) -> str:
        return ", ".join(self._key_expr(p) for p in plan.key)

    def _cond(self, plan: TablePlan, bound: Key, op: str) -> tuple[str, list[Any]]:
        """(k1, k2) op (v1, v2) expanded for the range optimizer; op is '>=', '<' or '>'."""
        exprs = [self._key_expr(p) for p in plan.key]
        strict = op[0]
        parts, params = [], []
        for i in range(len(exprs)):
            eq = [f"{e} = %s" for e in exprs[:i]]
            parts.append("(" + " AND ".join([*eq, f"{exprs[i]} {strict} %s"]) + ")")
            params += list(bound[: i + 1])
        if op == ">=":
            parts.append("(" + " AND ".join(f"{e} = %s" for e in exprs) + ")")
            params += list(bound)
        return "(" + " OR ".join(parts) + ")", params

    def _where(self, plan: TablePlan, rng: Range) -> tuple[str, list[Any]]:
        parts, params = [], []
        for bound, op in ((rng[0], ">="), (rng[1], "<")):
            if bound is not None:
                cond, p = self._cond(plan, bound, op)
                parts.append(cond)
                params += p
        return (" WHERE " + " AND ".join(parts) if parts else ""), params

    @staticmethod
    def _render(p: ColumnPair) -> str:
        c = quote(p.mes)
        fam = p.mes_info.family
        kind = p.kind
        if kind == "bool":
            body = f"CASE WHEN {c} <> 0 THEN '1' ELSE '0' END"
        elif kind == "decimal" and fam is Family.DECIMAL:
            s = f"CAST({c} AS CHAR)"
            body = (f"CASE WHEN INSTR({s}, '.') > 0 THEN "
                    f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})) ELSE {s} END")
        elif kind == "timestamp":
            body = f"DATE_FORMAT({c}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')"
        elif kind == "date":
            body = f"DATE_FORMAT({c}, '%%Y-%%m-%%d')"
        elif kind == "time":
            body = f"TIME_FORMAT({c}, '%%H:%%i:%%s.%%f')"
        elif kind == "bytes":
            body = f"LOWER(HEX({c}))"
        elif kind == "text":
            body = f"CONVERT({c} USING utf8mb4)"
        else:  # int, decimal of an integer column
            body = f"CAST({c} AS CHAR)"
        return (f"CASE WHEN {c} IS NULL THEN CHAR(30 USING utf8mb4) "
                f"ELSE COALESCE(CONVERT({body} USING utf8mb4), CHAR(29 USING utf8mb4)) END")

    # -- queries -----------------------------------------------------------------------------
    def boundaries(self, plan: TablePlan, step: int) -> list[Key]:
        keys = ", ".join(quote(p.mes) for p in plan.key)
        out: list[Key] = []
        last: Key | None = None
        while True:
            if last is None:
                where, params, offset = "", [], step
            else:
                cond, params = self._cond(plan, last, ">")
                where, offset = f" WHERE {cond}", step - 1
            rows = self._query(f"SELECT {keys} FROM {self._table(plan)}{where} "
                               f"ORDER BY {self._order(plan)} LIMIT 1 OFFSET {int(offset)}", params)
            if not rows:
                return out
            last = tuple(rows[0])
            out.append(last)

    def checksum(self, plan: TablePlan, rng: Range) -> tuple[int, int]:
        text = ("CONCAT_WS(CHAR(31 USING utf8mb4), " + ", ".join(self._render(p) for p in plan.server)
                + ")") if plan.server else "''"
        where, params = self._where(plan, rng)
        rows = self._query(
            f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(MD5({text}), 1, 15), 16, 10) "
            f"AS UNSIGNED)), 0) FROM {self._table(plan)}{where}", params)
        return int(rows[0][0]), int(rows[0][1])

    def keys(self, plan: TablePlan, rng: Range) -> list[Key]:
        return [tuple(r) for r in self.rows(plan, rng, plan.key)]

    def rows(self, plan: TablePlan, rng: Range, pairs: Sequence[ColumnPair]) -> list[tuple]:
        where, params = self._where(plan, rng)
        cols = ", ".join(quote(p.mes) for p in pairs)
        return self._query(f"SELECT {cols} FROM {self._table(plan)}{where} "
                           f"ORDER BY {self._order(plan)}", params)

    def rows_by_keys(self, plan: TablePlan, keys: Sequence[Key],
                     pairs: Sequence[ColumnPair]) -> list[tuple]:
        out: list[tuple] = []
        cols = ", ".join(quote(p.mes) for p in pairs)
        kcols = ", ".join(quote(p.mes) for p in plan.key)
        one = "(" + ", ".join(["%s"] * len(plan.key)) + ")"
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            out += self._query(f"SELECT {cols} FROM {self._table(plan)} WHERE ({kcols}) IN "
                               f"({', '.join([one] * len(part))})", [v for k in part for v in k])
        return out
