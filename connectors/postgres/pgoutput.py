"""Pure decoder for the pgoutput logical replication protocol, version 1.

Bytes of one pgoutput message in (the payload of one XLogData 'w' frame), one decoded
message object out. No I/O: the reader feeds it, the tests feed it hand-built bytes.

Handled: Begin (B), Commit (C), Origin (O), Relation (R), Type (Y), Insert (I), Update (U),
Delete (D), Truncate (T). Logical decoding messages (M) are ignored (`decode` returns None).
Streaming messages (S, E, c, A) belong to protocol 2 and are rejected.

Tuple values arrive in text format and are loaded by the column's type OID with psycopg's
own text loaders, so values match what a normal psycopg query returns:

* ``'n'`` -> None, ``'u'`` (unchanged TOASTed value, *not sent*) -> `bridge.model.UNCHANGED`,
  ``'t'`` -> the loaded Python value.
* json/jsonb load with ``json.loads(..., parse_float=Decimal)`` so no number loses digits.
* Types outside `LOADED_TYPE_OIDS` (enums, domains, arrays, intervals, custom types) -> str,
  which is what `bridge.schema.Family.OTHER` / ENUM expect.
* A value the loader rejects (timestamp/date 'infinity', time '24:00:00', years BC) becomes
  `bridge.model.InvalidValue(text, reason)`: never raised, never dropped.

The replication session must render values the way these loaders read them:
``client_encoding=UTF8``, ``TimeZone=UTC``, ``DateStyle=ISO``, ``extra_float_digits`` > 0
(`connectors.postgres.reader` sets them at connect time).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Union

import psycopg
from psycopg import abc, pq
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.postgres import adapters as _global_adapters
from psycopg.types.string import TextLoader

from bridge.errors import Fatal
from bridge.model import UNCHANGED, InvalidValue, JsonText, Row

__all__ = [
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "LOADED_TYPE_OIDS",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "ProtocolError",
    "Relation",
    "Truncate",
    "TypeInfo",
    "Update",
    "pg_timestamp",
]

Loader = Callable[[bytes], Any]

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)

# Built-in types whose psycopg text loader gives the value the bridge's type families want.
# Everything else is passed on as str (see the module docstring).
LOADED_TYPE_OIDS: frozenset[int] = frozenset(
    {
        16,  # bool
        17,  # bytea
        18,  # "char"
        19,  # name
        20,  # int8
        21,  # int2
        23,  # int4
        25,  # text
        114,  # json
        700,  # float4
        701,  # float8
        1042,  # bpchar
        1043,  # varchar
        1082,  # date
        1083,  # time
        1114,  # timestamp
        1184,  # timestamptz
        1700,  # numeric
        2950,  # uuid
        3802,  # jsonb
    }
)
_TEXT_OID = 25

# Errors a loader raises for a value it cannot represent (psycopg.DataError for dates out of
# Python's range, ValueError incl. UnicodeDecodeError/JSONDecodeError, ArithmeticError).
_LOAD_ERRORS = (psycopg.DataError, ValueError, ArithmeticError)

_KEY_FLAG = 1  # LOGICALREP_IS_REPLICA_IDENTITY in a Relation column's flags
_T, _N, _U, _B = ord("t"), ord("n"), ord("u"), ord("b")
_NEW = ord("N")

_BEGIN = struct.Struct("!QqI")  # final lsn, commit time, xid
_COMMIT = struct.Struct("!BQQq")  # flags, commit lsn, end lsn, commit time
_ORIGIN_LSN = struct.Struct("!Q")
_INT32 = struct.Struct("!I")
_INT16 = struct.Struct("!h")
_COLUMN_TAIL = struct.Struct("!Ii")  # type oid, typmod
_TRUNCATE_HEAD = struct.Struct("!IB")  # relation count, option bits


class ProtocolError(Fatal):
    """A pgoutput message is malformed or refers to an unknown relation: a bug or a
    protocol mismatch, never something a retry fixes."""


def pg_timestamp(micros: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware UTC datetime."""
    return PG_EPOCH + timedelta(microseconds=micros)


# --- decoded messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    """B: start of a committed transaction; `final_lsn` is its commit LSN."""

    final_lsn: int
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """C: end of the transaction. `commit_lsn` equals Begin's `final_lsn`; `end_lsn` is the
    end of the commit record (the value to report as flushed)."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """O: the transaction was replayed by a replication-origin session (`name`)."""

    origin_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a Relation message."""

    name: str
    type_oid: int
    typmod: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """R: a table's published columns. `replica_identity` is 'd', 'n', 'f' or 'i'.

    Under REPLICA IDENTITY FULL the server flags *every* column as key.
    """

    relid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]
    # (name, loader) per column, in column order: the decoding hot path; not part of equality
    fields: tuple[tuple[str, Loader], ...] = field(default=(), compare=False, repr=False)

    @property
    def qualified(self) -> str:
        """"schema.table" as used in `bridge.model.RowChange.table`."""
        return f"{self.namespace}.{self.name}"

    @property
    def key_names(self) -> tuple[str, ...]:
        """Columns flagged as part of the replica identity."""
        return tuple(c.name for c in self.columns if c.is_key)


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """Y: a non-built-in type used by a later Relation (enum, domain, composite...)."""

    oid: int
    namespace: str
    name: str


@dataclass(slots=True)
class Insert:
    """I: a new row."""

    relation: Relation
    new: Row


@dataclass(slots=True)
class Update:
    """U: `old_kind` is 'O' (full old row, REPLICA IDENTITY FULL), 'K' (old key; the other
    columns are None) or None (no old tuple sent). `new` may hold UNCHANGED values."""

    relation: Relation
    old_kind: str | None
    old: Row | None
    new: Row


@dataclass(slots=True)
class Delete:
    """D: `old_kind` 'O' (full row) or 'K' (key columns; the others None)."""

    relation: Relation
    old_kind: str
    old: Row


@dataclass(frozen=True, slots=True)
class Truncate:
    """T: the relations truncated together by one statement."""

    relations: tuple[Relation, ...]
    cascade: bool
    restart_identity: bool


Message = Union[Begin, Commit, Origin, Relation, TypeInfo, Insert, Update, Delete, Truncate]


# --- value loading -------------------------------------------------------------------------


def _build_transformer() -> abc.Transformer:
    """A connection-less transformer with psycopg's default loaders, json with Decimal."""
    adapters = AdaptersMap(_global_adapters)
    # json/jsonb stay raw JSON text: a document that is a bare string ("abc") must not turn into
    # the Python str abc, which would read back as different JSON. Converters parse the text.
    adapters.register_loader("json", TextLoader)
    adapters.register_loader("jsonb", TextLoader)
    return Transformer(adapters)


_JSON_OIDS = frozenset((114, 3802))  # json, jsonb


def _load_json(raw: bytes) -> JsonText:
    """json/jsonb as raw text, marked as validated by PostgreSQL (see JsonText)."""
    return JsonText(str(raw, "utf-8"))


def _invalid(raw: bytes, exc: Exception) -> InvalidValue:
    text = raw.decode("utf-8", "backslashreplace")
    if text in ("infinity", "-infinity"):
        return InvalidValue(text, f"{text} has no MySQL/MariaDB equivalent (PostgreSQL-only value)")
    return InvalidValue(text, f"PostgreSQL value {text!r} cannot be represented: {exc}")


# --- the decoder ---------------------------------------------------------------------------


class PgOutputDecoder:
    """Decodes pgoutput v1 messages and keeps the relation (and type) cache they need.

    One instance per replication stream: Relation messages are sent once per stream (and
    again after a schema change), later row messages refer to them by OID.
    """

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._types: dict[int, TypeInfo] = {}
        self._transformer = _build_transformer()
        self._loaders: dict[int, Loader] = {}
        self._dispatch: dict[int, Callable[[bytes, int], Message | None]] = {
            ord("B"): self._begin,
            ord("C"): self._commit,
            ord("O"): self._origin,
            ord("R"): self._relation,
            ord("Y"): self._type,
            ord("I"): self._insert,
            ord("U"): self._update,
            ord("D"): self._delete,
            ord("T"): self._truncate,
            ord("M"): self._message,
        }

    # -- public --------------------------------------------------------------------------

    def decode(self, data: bytes, offset: int = 0) -> Message | None:
        """Decode the message starting at `data[offset]` (its tag byte).

        Returns None for messages that carry nothing for the bridge (M). Raises
        ProtocolError for an unknown tag, a truncated message or an unknown relation.
        """
        try:
            handler = self._dispatch[data[offset]]
        except IndexError:
            raise ProtocolError("empty pgoutput message") from None
        except KeyError:
            raise ProtocolError(f"unexpected pgoutput message tag {chr(data[offset])!r}") from None
        try:
            return handler(data, offset + 1)
        except (struct.error, IndexError, ValueError) as exc:  # ValueError: no NUL, bad UTF-8
            tag = chr(data[offset])
            raise ProtocolError(f"malformed pgoutput {tag!r} message: {exc}") from exc

    def relation(self, relid: int) -> Relation:
        """The cached Relation for `relid`; ProtocolError if none was received."""
        try:
            return self._relations[relid]
        except KeyError:
            raise ProtocolError(f"row message for relation {relid} before its Relation message") from None

    def type_info(self, oid: int) -> TypeInfo | None:
        """The Type message received for `oid`, if any."""
        return self._types.get(oid)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _string(data: bytes, pos: int) -> tuple[str, int]:
        end = data.index(0, pos)
        return data[pos:end].decode("utf-8"), end + 1

    def _loader(self, type_oid: int) -> Loader:
        """The load callable for a type OID (cached; str for anything not loaded natively)."""
        load = self._loaders.get(type_oid)
        if load is None and type_oid in _JSON_OIDS:
            load = self._loaders[type_oid] = _load_json
        if load is None:
            oid = type_oid if type_oid in LOADED_TYPE_OIDS else _TEXT_OID
            load = self._transformer.get_loader(oid, pq.Format.TEXT).load
            self._loaders[type_oid] = load
        return load

    def _tuple(self, data: bytes, pos: int, rel: Relation) -> tuple[Row, int]:
        """Read TupleData at `pos` for `rel`; return the row and the position after it."""
        (count,) = _INT16.unpack_from(data, pos)
        pos += 2
        fields = rel.fields
        if count != len(fields):
            raise ProtocolError(f"{rel.qualified}: tuple has {count} columns, relation has {len(fields)}")
        unpack_length = _INT32.unpack_from
        row: Row = {}
        for name, load in fields:
            kind = data[pos]
            if kind == _T:
                (length,) = unpack_length(data, pos + 1)
                start = pos + 5
                pos = start + length
                raw = data[start:pos]
                try:
                    row[name] = load(raw)
                except _LOAD_ERRORS as exc:
                    row[name] = _invalid(raw, exc)
            elif kind == _N:
                row[name] = None
                pos += 1
            elif kind == _U:
                row[name] = UNCHANGED
                pos += 1
            else:
                raise ProtocolError(
                    f"{rel.qualified}.{name}: unsupported tuple value kind {chr(kind)!r}"
                    + (" (binary mode is not used by this decoder)" if kind == _B else "")
                )
        if pos > len(data):
            raise ProtocolError(f"{rel.qualified}: tuple data runs past the end of the message")
        return row, pos

    # -- one handler per message type ----------------------------------------------------

    def _begin(self, data: bytes, pos: int) -> Begin:
        final_lsn, ts, xid = _BEGIN.unpack_from(data, pos)
        return Begin(final_lsn, pg_timestamp(ts), xid)

    def _commit(self, data: bytes, pos: int) -> Commit:
        flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(data, pos)
        return Commit(flags, commit_lsn, end_lsn, pg_timestamp(ts))

    def _origin(self, data: bytes, pos: int) -> Origin:
        (lsn,) = _ORIGIN_LSN.unpack_from(data, pos)
        name, _ = self._string(data, pos + 8)
        return Origin(lsn, name)

    def _relation(self, data: bytes, pos: int) -> Relation:
        (relid,) = _INT32.unpack_from(data, pos)
        namespace, pos = self._string(data, pos + 4)
        name, pos = self._string(data, pos)
        identity = chr(data[pos])
        (count,) = _INT16.unpack_from(data, pos + 1)
        pos += 3
        columns = []
        for _ in range(count):
            flags = data[pos]
            col_name, pos = self._string(data, pos + 1)
            type_oid, typmod = _COLUMN_TAIL.unpack_from(data, pos)
            pos += 8
            columns.append(Column(col_name, type_oid, typmod, bool(flags & _KEY_FLAG)))
        rel = Relation(
            relid,
            namespace or "pg_catalog",  # an empty namespace means pg_catalog
            name,
            identity,
            tuple(columns),
            tuple((c.name, self._loader(c.type_oid)) for c in columns),
        )
        self._relations[relid] = rel
        return rel

    def _type(self, data: bytes, pos: int) -> TypeInfo:
        (oid,) = _INT32.unpack_from(data, pos)
        namespace, pos = self._string(data, pos + 4)
        name, _ = self._string(data, pos)
        info = TypeInfo(oid, namespace or "pg_catalog", name)
        self._types[oid] = info
        return info

    def _insert(self, data: bytes, pos: int) -> Insert:
        (relid,) = _INT32.unpack_from(data, pos)
        rel = self._relations.get(relid) or self.relation(relid)
        if data[pos + 4] != _NEW:
            self._expect(data, pos + 4, "N", rel)
        new, _ = self._tuple(data, pos + 5, rel)
        return Insert(rel, new)

    def _update(self, data: bytes, pos: int) -> Update:
        (relid,) = _INT32.unpack_from(data, pos)
        rel = self.relation(relid)
        pos += 4
        old_kind: str | None = None
        old: Row | None = None
        if data[pos] in b"KO":
            old_kind = chr(data[pos])
            old, pos = self._tuple(data, pos + 1, rel)
        self._expect(data, pos, "N", rel)
        new, _ = self._tuple(data, pos + 1, rel)
        return Update(rel, old_kind, old, new)

    def _delete(self, data: bytes, pos: int) -> Delete:
        (relid,) = _INT32.unpack_from(data, pos)
        rel = self.relation(relid)
        pos += 4
        self._expect(data, pos, "KO", rel)
        old_kind = chr(data[pos])
        old, _ = self._tuple(data, pos + 1, rel)
        return Delete(rel, old_kind, old)

    def _truncate(self, data: bytes, pos: int) -> Truncate:
        count, options = _TRUNCATE_HEAD.unpack_from(data, pos)
        pos += 5
        relids = struct.unpack_from(f"!{count}I", data, pos)
        return Truncate(
            tuple(self.relation(r) for r in relids),
            cascade=bool(options & 1),
            restart_identity=bool(options & 2),
        )

    def _message(self, data: bytes, pos: int) -> None:
        """M (pg_logical_emit_message): not used by the bridge."""
        return None

    @staticmethod
    def _expect(data: bytes, pos: int, allowed: str, rel: Relation) -> None:
        if chr(data[pos]) not in allowed:
            raise ProtocolError(
                f"{rel.qualified}: expected tuple marker {allowed!r}, got {chr(data[pos])!r}"
            )
