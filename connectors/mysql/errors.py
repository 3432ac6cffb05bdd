"""Classify PyMySQL errors by server/client error code, never by message text."""

from __future__ import annotations

import pymysql

from connectors.postgres.errors import Action

_RECONNECT = {2003, 2006, 2013, 2055, 1053, 1927, 4031, 1159, 1161}
_RETRY = {1205, 1213, 1062, 1020, 1614}
_DEAD_LETTER = {
    1048,  # column cannot be null
    1264,  # out of range
    1265,  # data truncated
    1292,  # incorrect datetime value
    1366,  # incorrect string value (charset)
    1406,  # data too long
    1367,  # illegal value
    3140,  # invalid JSON text
    4025,  # CHECK constraint failed (MariaDB)
    3819,  # CHECK constraint violated (MySQL)
    1452,  # FK: parent missing
    1451,  # FK: child exists
}


def classify(exc: BaseException) -> Action:
    if isinstance(exc, (pymysql.err.InterfaceError, ConnectionError, BrokenPipeError)):
        return Action.RECONNECT
    code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else None
    if code in _RECONNECT:
        return Action.RECONNECT
    if code in _RETRY:
        return Action.RETRY_TXN
    if code in _DEAD_LETTER:
        return Action.DEAD_LETTER
    return Action.STOP
