"""Identifier quoting for MySQL/MariaDB through SQLAlchemy's MySQL dialect preparer.

Values are always bound parameters (PyMySQL escapes them); identifiers always go through
`quote()`; nothing is concatenated raw.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.dialects import mysql

_preparer = mysql.dialect().identifier_preparer


@lru_cache(maxsize=4096)
def quote(name: str) -> str:
    """`name` quoted as a MySQL identifier (backticks, embedded backticks doubled)."""
    return _preparer.quote_identifier(name)


def qualified(database: str, table: str) -> str:
    return f"{quote(database)}.{quote(table)}"


def column_list(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(quote(n) for n in names)


def placeholders(n: int) -> str:
    return "(" + ", ".join(["%s"] * n) + ")"
