"""Unit tests of the pure pgoutput decoder and the reader's ChangeAssembler (no server).

Messages are built by hand, byte for byte, as PostgreSQL 15's pgoutput (proto_version 1)
writes them.
"""

from __future__ import annotations

import struct
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.model import UNCHANGED, Idle, InvalidValue, JsonText, Op, PgPosition, RowChange, Side, TxBegin, TxCommit
from connectors.postgres.pgoutput import (
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    Origin,
    PgOutputDecoder,
    ProtocolError,
    Relation,
    Truncate,
    TypeInfo,
    Update,
    pg_timestamp,
)
from connectors.postgres.reader import ChangeAssembler

UTC = timezone.utc

# --- message builders ------------------------------------------------------------------------


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int = 7, micros: int = 0) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, micros, xid)


def commit(commit_lsn: int, end_lsn: int, micros: int = 0) -> bytes:
    return b"C" + struct.pack("!BQQq", 0, commit_lsn, end_lsn, micros)


def origin(name: str, lsn: int = 0x10) -> bytes:
    return b"O" + struct.pack("!Q", lsn) + _s(name)


def relation(relid: int, namespace: str, name: str, columns: list[tuple[str, int, bool]],
             identity: str = "d") -> bytes:
    out = b"R" + struct.pack("!I", relid) + _s(namespace) + _s(name) + identity.encode()
    out += struct.pack("!h", len(columns))
    for col, oid, key in columns:
        out += bytes([1 if key else 0]) + _s(col) + struct.pack("!Ii", oid, -1)
    return out


def type_msg(oid: int, namespace: str, name: str) -> bytes:
    return b"Y" + struct.pack("!I", oid) + _s(namespace) + _s(name)


def tup(*values: bytes | str | None) -> bytes:
    """TupleData: None -> 'n', 'u' marker via the UNCHANGED object, text otherwise."""
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += b"t" + struct.pack("!I", len(raw)) + raw
    return out


def insert(relid: int, *values) -> bytes:
    return b"I" + struct.pack("!I", relid) + b"N" + tup(*values)


def update(relid: int, new: tuple, old: tuple | None = None, kind: str = "O") -> bytes:
    out = b"U" + struct.pack("!I", relid)
    if old is not None:
        out += kind.encode() + tup(*old)
    return out + b"N" + tup(*new)


def delete(relid: int, old: tuple, kind: str = "K") -> bytes:
    return b"D" + struct.pack("!I", relid) + kind.encode() + tup(*old)


def truncate(relids: list[int], options: int = 0) -> bytes:
    return b"T" + struct.pack("!IB", len(relids), options) + struct.pack(f"!{len(relids)}I", *relids)


def logical_message() -> bytes:
    return b"M" + b"\x01" + struct.pack("!Q", 5) + _s("prefix") + struct.pack("!I", 3) + b"abc"


ALL_TYPES = [
    ("c_int2", 21, b"-32768", -32768),
    ("c_int4", 23, b"2147483647", 2147483647),
    ("c_int8", 20, b"-9223372036854775808", -9223372036854775808),
    ("c_numeric", 1700, b"12345678901234567890.123456789", Decimal("12345678901234567890.123456789")),
    ("c_float4", 700, b"1.5", 1.5),
    ("c_float8", 701, b"-2.25e+100", -2.25e100),
    ("c_bool", 16, b"t", True),
    ("c_text", 25, "grüße 😀".encode(), "grüße 😀"),
    ("c_varchar", 1043, b"abc", "abc"),
    ("c_bpchar", 1042, b"ab ", "ab "),
    ("c_timestamp", 1114, b"2024-02-29 23:59:59.999999", datetime(2024, 2, 29, 23, 59, 59, 999999)),
    ("c_timestamptz", 1184, b"2024-01-02 03:04:05.5+00", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
    ("c_date", 1082, b"0001-01-01", date(1, 1, 1)),
    ("c_time", 1083, b"13:14:15.000001", time(13, 14, 15, 1)),
    ("c_bytea", 17, b"\\x00ff10", b"\x00\xff\x10"),
    ("c_uuid", 2950, b"12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    # raw JSON text, marked as validated by the server
    ("c_json", 114, b'{"a": 1.10, "b": [1, 2.5e3]}', JsonText('{"a": 1.10, "b": [1, 2.5e3]}')),
    ("c_jsonb", 3802, b'"just a string"', JsonText('"just a string"')),  # a bare JSON string stays JSON
    ("c_enum", 91234, b"happy", "happy"),  # a user enum: unknown OID
    ("c_interval", 1186, b"1 day 02:00:00", "1 day 02:00:00"),  # not a bridge family: text
    ("c_int4_array", 1007, b"{1,2,3}", "{1,2,3}"),  # arrays travel as text too
]


def _decoder_with(relid: int = 1, columns=None, identity: str = "d") -> PgOutputDecoder:
    decoder = PgOutputDecoder()
    decoder.decode(relation(relid, "public", "t", columns or [("id", 23, True), ("v", 25, False)], identity))
    return decoder


# --- decoder -------------------------------------------------------------------------------


class TestFraming:
    def test_begin(self) -> None:
        """Begin carries the commit LSN, the commit time as aware UTC and the xid."""
        msg = PgOutputDecoder().decode(begin(0x1_0000_0010, xid=4242, micros=1_500_000))
        assert msg == Begin(0x1_0000_0010, datetime(2000, 1, 1, 0, 0, 1, 500000, tzinfo=UTC), 4242)

    def test_commit(self) -> None:
        """Commit carries commit LSN, end LSN and time."""
        msg = PgOutputDecoder().decode(commit(100, 180, micros=-1))
        assert msg == Commit(0, 100, 180, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))

    def test_origin(self) -> None:
        """Origin carries the origin name and its LSN."""
        assert PgOutputDecoder().decode(origin("bridge_mes", 77)) == Origin(77, "bridge_mes")

    def test_pg_timestamp_is_utc(self) -> None:
        """Protocol timestamps count microseconds from 2000-01-01 UTC."""
        assert pg_timestamp(86_400_000_000) == datetime(2000, 1, 2, tzinfo=UTC)

    def test_offset(self) -> None:
        """A message can be decoded in place inside an XLogData frame."""
        frame = b"w" + bytes(24) + commit(5, 6)
        assert PgOutputDecoder().decode(frame, 25) == Commit(0, 5, 6, pg_timestamp(0))

    def test_logical_message_ignored(self) -> None:
        """M messages decode to None."""
        assert PgOutputDecoder().decode(logical_message()) is None


class TestRelationAndType:
    def test_relation_cached(self) -> None:
        """A Relation message is returned and cached with its key flags."""
        decoder = PgOutputDecoder()
        rel = decoder.decode(relation(16384, "crm", "orders", [("id", 20, True), ("note", 25, False)], "f"))
        assert isinstance(rel, Relation)
        assert rel.qualified == "crm.orders"
        assert rel.replica_identity == "f"
        assert rel.columns == (Column("id", 20, -1, True), Column("note", 25, -1, False))
        assert rel.key_names == ("id",)
        assert decoder.relation(16384) is rel

    def test_empty_namespace_is_pg_catalog(self) -> None:
        """An empty namespace in R means pg_catalog."""
        rel = PgOutputDecoder().decode(relation(1, "", "x", [("a", 23, False)]))
        assert rel.qualified == "pg_catalog.x"

    def test_relation_replaced_after_schema_change(self) -> None:
        """A second Relation for the same OID replaces the cached column list."""
        decoder = _decoder_with()
        decoder.decode(relation(1, "public", "t", [("id", 23, True), ("v", 25, False), ("w", 20, False)]))
        msg = decoder.decode(insert(1, "1", "a", "5"))
        assert msg.new == {"id": 1, "v": "a", "w": 5}

    def test_type(self) -> None:
        """Y messages are returned and remembered."""
        decoder = PgOutputDecoder()
        assert decoder.decode(type_msg(91234, "crm", "mood")) == TypeInfo(91234, "crm", "mood")
        assert decoder.type_info(91234) == TypeInfo(91234, "crm", "mood")
        assert decoder.type_info(1) is None


class TestValues:
    def test_every_type_loads_exactly(self) -> None:
        """Text values load into exact Python values by type OID; unknown OIDs give str."""
        decoder = _decoder_with(columns=[(name, oid, False) for name, oid, _, _ in ALL_TYPES])
        msg = decoder.decode(insert(1, *[raw for _, _, raw, _ in ALL_TYPES]))
        assert isinstance(msg, Insert)
        for name, _, _, expected in ALL_TYPES:
            assert msg.new[name] == expected, name
            assert type(msg.new[name]) is type(expected), name

    def test_timestamptz_is_aware_utc(self) -> None:
        """timestamptz gives an aware UTC datetime; timestamp a naive one."""
        decoder = _decoder_with(columns=[("a", 1184, False), ("b", 1114, False)])
        new = decoder.decode(insert(1, "2024-06-01 12:00:00+00", "2024-06-01 12:00:00")).new
        assert new["a"].utcoffset() == timedelta(0)
        assert new["b"].tzinfo is None

    def test_json_numbers_keep_every_digit(self) -> None:
        """json/jsonb arrive as the server's JSON text, so no number loses a digit."""
        decoder = _decoder_with(columns=[("j", 3802, False)])
        new = decoder.decode(insert(1, '{"p": 0.30000000000000000001}')).new
        assert new["j"] == '{"p": 0.30000000000000000001}'

    def test_null_and_unchanged_differ(self) -> None:
        """'n' is None; 'u' is UNCHANGED and never None."""
        decoder = _decoder_with()
        msg = decoder.decode(update(1, new=("1", UNCHANGED)))
        assert msg.new["v"] is UNCHANGED
        msg = decoder.decode(update(1, new=("1", None)))
        assert msg.new["v"] is None

    @pytest.mark.parametrize(
        ("oid", "text"),
        [
            (1114, "infinity"),
            (1114, "-infinity"),
            (1184, "infinity"),
            (1184, "-infinity"),
            (1082, "infinity"),
            (1082, "-infinity"),
            (1082, "0044-03-15 BC"),
            (1083, "24:00:00"),
        ],
    )
    def test_unloadable_value_is_invalid_value(self, oid: int, text: str) -> None:
        """A value Python cannot hold becomes InvalidValue(text, reason), the row is kept."""
        decoder = _decoder_with(columns=[("id", 23, True), ("x", oid, False)])
        msg = decoder.decode(insert(1, "1", text))
        assert msg.new["id"] == 1
        value = msg.new["x"]
        assert isinstance(value, InvalidValue)
        assert value.text == text
        assert value.reason

    def test_numeric_specials_load(self) -> None:
        """numeric NaN and Infinity are valid Decimals, not InvalidValue."""
        decoder = _decoder_with(columns=[("a", 1700, False), ("b", 1700, False)])
        new = decoder.decode(insert(1, "NaN", "-Infinity")).new
        assert new["a"].is_nan()
        assert new["b"] == Decimal("-Infinity")

    def test_json_is_not_parsed_by_the_decoder(self) -> None:
        """JSON text is passed on untouched; the type converters parse and validate it."""
        decoder = _decoder_with(columns=[("j", 114, False)])
        assert decoder.decode(insert(1, "{nope")).new["j"] == "{nope"

    @given(
        st.integers(-(2**63), 2**63 - 1),
        st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.binary(max_size=64),
    )
    def test_round_trip(self, i: int, s: str, d: Decimal, b: bytes) -> None:
        """Any int8/text/numeric/bytea text rendering decodes back to the same value."""
        decoder = _decoder_with(columns=[("i", 20, False), ("s", 25, False), ("d", 1700, False), ("b", 17, False)])
        new = decoder.decode(insert(1, str(i), s, format(d, "f"), "\\x" + b.hex())).new
        assert new == {"i": i, "s": s, "d": d, "b": b}


class TestRowMessages:
    def test_insert(self) -> None:
        """Insert gives the relation and the new row."""
        msg = _decoder_with().decode(insert(1, "5", "hello"))
        assert isinstance(msg, Insert)
        assert msg.relation.qualified == "public.t"
        assert msg.new == {"id": 5, "v": "hello"}

    def test_update_without_old(self) -> None:
        """An Update without old tuple has old_kind None."""
        msg = _decoder_with().decode(update(1, new=("5", "x")))
        assert msg == Update(msg.relation, None, None, {"id": 5, "v": "x"})

    def test_update_with_full_old(self) -> None:
        """An 'O' old tuple is decoded in full."""
        msg = _decoder_with(identity="f").decode(update(1, new=("5", UNCHANGED), old=("5", "big"), kind="O"))
        assert (msg.old_kind, msg.old, msg.new) == ("O", {"id": 5, "v": "big"}, {"id": 5, "v": UNCHANGED})

    def test_update_with_key(self) -> None:
        """A 'K' old tuple has the key and NULL for the rest."""
        msg = _decoder_with().decode(update(1, new=("6", "x"), old=("5", None), kind="K"))
        assert (msg.old_kind, msg.old) == ("K", {"id": 5, "v": None})

    def test_delete(self) -> None:
        """Delete carries 'K' or 'O' and the old tuple."""
        msg = _decoder_with().decode(delete(1, ("5", None), kind="K"))
        assert isinstance(msg, Delete)
        assert (msg.old_kind, msg.old) == ("K", {"id": 5, "v": None})

    def test_truncate(self) -> None:
        """Truncate lists every relation and the CASCADE / RESTART IDENTITY bits."""
        decoder = _decoder_with()
        decoder.decode(relation(2, "public", "u", [("id", 23, True)]))
        msg = decoder.decode(truncate([1, 2], options=3))
        assert isinstance(msg, Truncate)
        assert [r.qualified for r in msg.relations] == ["public.t", "public.u"]
        assert msg.cascade and msg.restart_identity


class TestMalformed:
    def test_unknown_relation(self) -> None:
        """A row for a relation never described is a ProtocolError."""
        with pytest.raises(ProtocolError, match="relation 9"):
            PgOutputDecoder().decode(insert(9, "1"))

    def test_unknown_tag(self) -> None:
        """Streaming (protocol 2) and unknown tags are rejected."""
        with pytest.raises(ProtocolError, match="'S'"):
            PgOutputDecoder().decode(b"S\x00\x00\x00\x01\x01")

    def test_truncated_message(self) -> None:
        """A cut-off message is a ProtocolError, not an IndexError."""
        with pytest.raises(ProtocolError):
            _decoder_with().decode(insert(1, "1", "hello")[:-3])
        with pytest.raises(ProtocolError):
            PgOutputDecoder().decode(begin(1)[:5])
        with pytest.raises(ProtocolError):
            PgOutputDecoder().decode(b"")

    def test_unterminated_string(self) -> None:
        """A Relation message cut inside a name is a ProtocolError."""
        with pytest.raises(ProtocolError):
            PgOutputDecoder().decode(relation(1, "public", "t", [("id", 23, True)])[:12])

    def test_column_count_mismatch(self) -> None:
        """A tuple with a different column count than its relation is rejected."""
        with pytest.raises(ProtocolError, match="columns"):
            _decoder_with().decode(insert(1, "1"))

    def test_binary_value_rejected(self) -> None:
        """Binary tuple values ('b') are not requested and rejected."""
        raw = b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!h", 2) + b"b" + struct.pack("!I", 1) + b"\x01n"
        with pytest.raises(ProtocolError, match="binary"):
            _decoder_with().decode(raw)


# --- assembler -------------------------------------------------------------------------------

REL = relation(1, "public", "t", [("id", 23, True), ("v", 25, False)])
REL_FULL = relation(2, "crm", "f", [("id", 23, True), ("v", 25, True), ("w", 25, True)], identity="f")


def feed_all(assembler: ChangeAssembler, *messages: bytes) -> list:
    out: list = []
    for message in messages:
        out.extend(assembler.feed(message))
    return out


class TestAssemblerTransactions:
    def test_transaction_events(self) -> None:
        """B, R, I, C become TxBegin, RowChange, TxCommit with the commit LSN as position."""
        events = feed_all(
            ChangeAssembler(), begin(0x500, xid=9, micros=0), REL, insert(1, "1", "a"), commit(0x500, 0x530)
        )
        assert events == [
            TxBegin(Side.CRM, "9", pg_timestamp(0), PgPosition(0x500)),
            RowChange(Op.INSERT, "public.t", None, {"id": 1, "v": "a"}, {"id": 1}),
            TxCommit(Side.CRM, "9", PgPosition(0x500), pg_timestamp(0)),
        ]

    def test_begin_is_held_until_next_message(self) -> None:
        """Nothing is emitted for a Begin alone: an Origin may follow."""
        assembler = ChangeAssembler()
        assert list(assembler.feed(begin(0x500))) == []
        assert assembler.in_transaction

    def test_end_lsn_tracked(self) -> None:
        """The END lsn of each commit is kept until forgotten."""
        assembler = ChangeAssembler()
        feed_all(assembler, REL, begin(0x500), insert(1, "1", "a"), commit(0x500, 0x530))
        feed_all(assembler, begin(0x600), insert(1, "2", "a"), commit(0x600, 0x630))
        assert (assembler.end_lsn(0x500), assembler.end_lsn(0x600)) == (0x530, 0x630)
        assembler.forget_through(0x500)
        assert (assembler.end_lsn(0x500), assembler.end_lsn(0x600)) == (None, 0x630)
        assert not assembler.in_transaction

    def test_origin_transaction_dropped(self) -> None:
        """A transaction with an Origin is dropped and ends in Idle(commit LSN)."""
        assembler = ChangeAssembler()
        feed_all(assembler, REL)
        events = feed_all(assembler, begin(0x700), origin("bridge"), insert(1, "1", "echo"), commit(0x700, 0x720))
        assert events == [Idle(PgPosition(0x700))]
        assert assembler.end_lsn(0x700) == 0x720

    def test_dropped_rows_are_not_decoded(self) -> None:
        """Rows of a dropped transaction are skipped unread (even for unknown relations)."""
        events = feed_all(ChangeAssembler(), begin(0x700), origin("bridge"), insert(99, "x"), commit(0x700, 0x720))
        assert events == [Idle(PgPosition(0x700))]

    def test_relation_inside_dropped_transaction_is_cached(self) -> None:
        """A Relation sent inside a dropped transaction still serves later transactions."""
        assembler = ChangeAssembler()
        feed_all(assembler, begin(0x700), origin("bridge"), REL, insert(1, "1", "a"), commit(0x700, 0x720))
        events = feed_all(assembler, begin(0x800), insert(1, "2", "b"), commit(0x800, 0x820))
        assert events[1].after == {"id": 2, "v": "b"}

    def test_only_own_origin_dropped(self) -> None:
        """With own_origin, transactions of other origins are delivered."""
        assembler = ChangeAssembler(own_origin="bridge")
        events = feed_all(assembler, REL, begin(0x700), origin("other"), insert(1, "1", "a"), commit(0x700, 0x720))
        assert [type(e) for e in events] == [TxBegin, RowChange, TxCommit]
        events = feed_all(assembler, begin(0x800), origin("bridge"), insert(1, "1", "a"), commit(0x800, 0x820))
        assert events == [Idle(PgPosition(0x800))]

    def test_resume_skips_applied(self) -> None:
        """Transactions with commit LSN <= resume are dropped; later ones delivered."""
        assembler = ChangeAssembler(resume_lsn=0x600)
        feed_all(assembler, REL)
        assert feed_all(assembler, begin(0x500), insert(1, "1", "a"), commit(0x500, 0x520)) == [Idle(PgPosition(0x500))]
        assert feed_all(assembler, begin(0x600), insert(1, "2", "a"), commit(0x600, 0x620)) == [Idle(PgPosition(0x600))]
        events = feed_all(assembler, begin(0x601), insert(1, "3", "a"), commit(0x601, 0x620))
        assert [type(e) for e in events] == [TxBegin, RowChange, TxCommit]

    def test_commit_mismatch(self) -> None:
        """A Commit whose LSN differs from its Begin is a ProtocolError."""
        with pytest.raises(ProtocolError):
            feed_all(ChangeAssembler(), REL, begin(0x500), insert(1, "1", "a"), commit(0x501, 0x530))

    def test_row_outside_transaction(self) -> None:
        """A row message outside Begin/Commit is a ProtocolError."""
        with pytest.raises(ProtocolError):
            feed_all(ChangeAssembler(), REL, insert(1, "1", "a"))


class TestAssemblerRows:
    def _one(self, assembler: ChangeAssembler, *messages: bytes) -> RowChange:
        events = feed_all(assembler, begin(0x900), *messages, commit(0x900, 0x920))
        rows = [e for e in events if isinstance(e, RowChange)]
        assert len(rows) == 1
        return rows[0]

    def test_update_default_identity(self) -> None:
        """Without old tuple: before None, 'u' columns stay UNCHANGED (not None)."""
        change = self._one(ChangeAssembler(), REL, update(1, new=("1", UNCHANGED)))
        assert change.before is None
        assert change.after["v"] is UNCHANGED
        assert change.key == {"id": 1}

    def test_update_full_fills_unchanged(self) -> None:
        """Under FULL identity, 'u' new columns are filled from the old tuple."""
        change = self._one(
            ChangeAssembler(), REL_FULL,
            update(2, new=("1", "new", UNCHANGED), old=("1", "old", "toasted"), kind="O"),
        )
        assert change.before == {"id": 1, "v": "old", "w": "toasted"}
        assert change.after == {"id": 1, "v": "new", "w": "toasted"}

    def test_full_identity_key_is_primary_key(self) -> None:
        """The server flags every FULL column as key; the known primary key is used instead."""
        assembler = ChangeAssembler(primary_keys={"crm.f": ["id"]})
        change = self._one(assembler, REL_FULL, insert(2, "1", "a", "b"))
        assert change.key == {"id": 1}
        change = self._one(ChangeAssembler(), REL_FULL, insert(2, "1", "a", "b"))
        assert change.key == {"id": 1, "v": "a", "w": "b"}

    def test_pk_change(self) -> None:
        """A key change: before has only the old key, key is the new key."""
        change = self._one(ChangeAssembler(), REL, update(1, new=("2", "x"), old=("1", None), kind="K"))
        assert change.before == {"id": 1}
        assert change.after == {"id": 2, "v": "x"}
        assert change.key == {"id": 2}

    def test_delete_key_only(self) -> None:
        """A 'K' delete: before holds the key columns only, after is None."""
        change = self._one(ChangeAssembler(), REL, delete(1, ("1", None), kind="K"))
        assert (change.op, change.before, change.after, change.key) == (Op.DELETE, {"id": 1}, None, {"id": 1})

    def test_delete_full(self) -> None:
        """An 'O' delete carries the whole row."""
        change = self._one(ChangeAssembler(), REL_FULL, delete(2, ("1", "a", "b"), kind="O"))
        assert change.before == {"id": 1, "v": "a", "w": "b"}

    def test_truncate_one_change_per_relation(self) -> None:
        """TRUNCATE of two tables gives two TRUNCATE changes without rows."""
        events = feed_all(ChangeAssembler(), REL, REL_FULL, begin(0x900), truncate([1, 2]), commit(0x900, 0x920))
        rows = [e for e in events if isinstance(e, RowChange)]
        assert [(r.op, r.table, r.before, r.after) for r in rows] == [
            (Op.TRUNCATE, "public.t", None, None),
            (Op.TRUNCATE, "crm.f", None, None),
        ]
