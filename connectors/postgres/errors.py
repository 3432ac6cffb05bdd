"""Classify psycopg errors by SQLSTATE class, never by message text."""

from __future__ import annotations

import enum

import psycopg


class Action(enum.Enum):
    RECONNECT = "reconnect"  # connection lost / server restarting: back off, reconnect, resume
    RETRY_TXN = "retry_txn"  # deadlock, serialization failure, concurrent key insert: redo the txn
    DEAD_LETTER = "dead_letter"  # the row's data cannot be stored: dead-letter it, go on
    STOP = "stop"  # needs a human: privilege, missing table/column, config


def classify(exc: BaseException) -> Action:
    if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
        return Action.RECONNECT
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(("08", "57P", "53")):  # connection, admin shutdown, resources
        return Action.RECONNECT
    if state in ("40001", "40P01", "55P03", "23505"):
        return Action.RETRY_TXN
    if state.startswith("22") or state in ("23502", "23503", "23514"):
        # data exception, NOT NULL, FK or CHECK violation: this row cannot be stored
        return Action.DEAD_LETTER
    if isinstance(exc, (psycopg.InterfaceError,)):
        return Action.RECONNECT
    return Action.STOP
