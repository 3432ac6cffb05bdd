"""Backfill requests and their progress, as stored in `backfill_progress`. Pure."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bridge.model import Side
from bridge.rowjson import from_jsonable, to_jsonable
from bridge.schema import ColumnInfo

DEFAULT_CHUNK_ROWS = 16384
MAX_CHUNK_ROWS = 100_000


class Status(enum.StrEnum):
    PENDING = "pending"  # registered, not picked up by a direction yet
    RUNNING = "running"  # chunks are being copied
    DONE = "done"
    FAILED = "failed"  # stopped with `error`; a rerun resumes from `last_key`

    @property
    def finished(self) -> bool:
        return self in (Status.DONE, Status.FAILED)


class BackfillError(Exception):
    """A request cannot run (bad table, direction, key range...). The message names the fix."""


@dataclass(frozen=True)
class Request:
    """One table's backfill in one direction. Keys are lists of JSON-able key values in the
    SOURCE table's key-column order (`bridge.rowjson`)."""

    table: str  # the CRM table name of the mapping ("public.orders"): the request's identity
    direction: str  # "crm_to_mes" | "mes_to_crm"
    request_id: str
    status: Status
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    key_min: list[Any] | None = None  # inclusive lower bound, None = from the start
    key_max: list[Any] | None = None  # inclusive upper bound, None = to the end
    last_key: list[Any] | None = None  # last key copied; None = nothing yet
    rows_estimate: int | None = None
    rows_copied: int = 0
    rows_skipped: int = 0  # chunk rows left to the stream (changed while the chunk was in flight)
    chunks: int = 0
    dead_letters: int = 0
    conflicts: int = 0
    error: str | None = None
    requested_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def source(self) -> Side:
        return Side.CRM if self.direction == "crm_to_mes" else Side.MES

    def advanced(self, last_key: list[Any] | None, counts: ChunkCounts, done: bool) -> Request:
        """The request after one more chunk (what the progress row will hold)."""
        return replace(
            self,
            status=Status.DONE if done else Status.RUNNING,
            last_key=last_key,
            rows_copied=self.rows_copied + counts.copied,
            rows_skipped=self.rows_skipped + counts.skipped,
            chunks=self.chunks + 1,
            dead_letters=self.dead_letters + counts.dead,
            conflicts=self.conflicts + counts.conflicts,
            error=None,
        )


@dataclass
class ChunkCounts:
    """What one chunk did."""

    read: int = 0  # rows the SELECT returned (range and re-read keys)
    copied: int = 0  # rows now on the target as the chunk had them (written or already equal)
    written: int = 0  # rows inserted or updated
    skipped: int = 0  # left to the stream
    dead: int = 0  # dead-lettered
    conflicts: int = 0  # conflicts recorded (insert_exists...)


PROGRESS_COLUMNS = (
    "table_name", "direction", "request_id", "status", "key_min", "key_max", "last_key",
    "chunk_rows", "rows_estimate", "rows_copied", "rows_skipped", "chunks", "dead_letters",
    "conflicts", "error", "requested_at", "started_at", "updated_at", "finished_at",
)


def request_from_row(row: Sequence[Any]) -> Request:
    """A `Request` from a `backfill_progress` row selected as PROGRESS_COLUMNS."""
    r = dict(zip(PROGRESS_COLUMNS, row))
    return Request(
        table=r["table_name"], direction=r["direction"], request_id=r["request_id"],
        status=Status(r["status"]), chunk_rows=int(r["chunk_rows"]),
        key_min=_loads(r["key_min"]), key_max=_loads(r["key_max"]), last_key=_loads(r["last_key"]),
        rows_estimate=r["rows_estimate"], rows_copied=int(r["rows_copied"]),
        rows_skipped=int(r["rows_skipped"]), chunks=int(r["chunks"]),
        dead_letters=int(r["dead_letters"]), conflicts=int(r["conflicts"]), error=r["error"],
        requested_at=r["requested_at"], started_at=r["started_at"], updated_at=r["updated_at"],
        finished_at=r["finished_at"],
    )


def _loads(text: str | None) -> list[Any] | None:
    return None if text is None else json.loads(text)


def dumps_key(values: list[Any] | None) -> str | None:
    return None if values is None else json.dumps(values, ensure_ascii=False)


# --- keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCodec:
    """Key values <-> their JSON form, for one table's key columns (source side)."""

    columns: tuple[str, ...]
    infos: tuple[ColumnInfo, ...] = field(repr=False)

    def to_json(self, values: Sequence[Any]) -> list[Any]:
        return [to_jsonable(v) for v in values]

    def from_json(self, values: Sequence[Any]) -> tuple[Any, ...]:
        if len(values) != len(self.columns):
            raise BackfillError(
                f"key {values!r} has {len(values)} value(s); the key is {list(self.columns)}")
        return tuple(from_jsonable(v, ci) for v, ci in zip(values, self.infos))

    def parse_cli(self, text: str) -> list[Any]:
        """A key bound from the command line: a JSON array, or one bare value for a
        single-column key ("42", "abc")."""
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if not isinstance(value, list):
            value = [value]
        self.from_json(value)  # validates the count and the values
        return value
