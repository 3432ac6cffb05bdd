"""Fast decoding of binlog row images into bridge rows (pure: bytes in, rows out).

python-mysql-replication decodes row values one attribute lookup and one method call per
byte group; on a 12-column table that is most of the MES reader's time. This module
decodes the same bytes with a decoder compiled once per table map: one small function (or
a `struct` unpacker) per column, chosen from the column's type and metadata, applied in a
tight loop. The library still parses each event's header; this module takes over where the
row images start.

The values are exactly those `connectors.mysql.reader` produced from the library's decoded
rows after its repairs (see the reader's module docstring: zero dates as `InvalidValue`,
YEAR 0000 as 0, negative fractional TIME corrected, BINARY(n) re-padded, TIMESTAMP in UTC,
SET as text, ...). Where the library raises on a value (an impossible DATE, an unknown ENUM
index, undecodable text), the decoder raises the same exception class.

`compile_table` raises `Unsupported` for tables with a column this module does not decode
(MySQL binary JSON, pre-5.6 temporal types, ENUM/SET with the binary character set, ...);
the reader then keeps the library's decoding for that table.

Row image layout (WRITE/UPDATE/DELETE_ROWS events, v1 and v2 alike after the header)
-------------------------------------------------------------------------------------
After the event's post-header, column count and "columns present" bitmap(s) (parsed by the
library), the body is a sequence of images, each:

* a NULL bitmap: one bit per *present* column (bit i of byte i//8, LSB first), ceil(n/8)
  bytes for n present columns;
* the values of the present, non-NULL columns, in column order, each in its column type's
  binary form (little-endian integers; big-endian temporal and DECIMAL forms, see below).

UPDATE events hold (before, after) image pairs, with a present bitmap for each side. The
event ends with a 4-byte CRC32 when binlog checksums are on (the caller passes the end).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

# the charset -> Python codec table the library decodes strings with
from pymysql.charset import charset_by_name

from bridge.model import UNCHANGED, InvalidValue, Op, Row

__all__ = [
    "ZERO_REASON",
    "TableDecoder",
    "Unsupported",
    "binary_value",
    "compile_table",
    "fix_negative_time",
    "zero_datetime_text",
]

# MySQL column type codes as they appear in a TABLE_MAP event (mysql/field_types.h).
TINY, SHORT, LONG, FLOAT, DOUBLE = 1, 2, 3, 4, 5
TIMESTAMP, LONGLONG, INT24, DATE, TIME, DATETIME, YEAR = 7, 8, 9, 10, 11, 12, 13
VARCHAR, BIT, TIMESTAMP2, DATETIME2, TIME2 = 15, 16, 17, 18, 19
JSON, NEWDECIMAL, ENUM, SET, BLOB, STRING, GEOMETRY = 245, 246, 247, 248, 252, 254, 255

ZERO_REASON = (
    "zero date (or a date with a zero/invalid month or day, e.g. 2020-00-10: the binlog "
    "decoder reports them alike)"
)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_SECOND = timedelta(seconds=1)
_ZERO_TIMEDELTA = timedelta(0)


class Unsupported(Exception):
    """The table has a column this module does not decode; use the library's decoding."""


# =========================================================================================
# Value repairs shared with the library path (the reader's `_TablePlan` uses these too)
# =========================================================================================


def zero_datetime_text(fsp: int) -> str:
    """The zero DATETIME/TIMESTAMP text for `fsp` fractional digits."""
    return "0000-00-00 00:00:00" + ("." + "0" * fsp if fsp else "")


def binary_value(value: Any, width: int) -> Any:
    """Binary-charset strings: the library returns an empty one as str '' (it "decodes" with
    the non-existent codec 'binary', which Python skips for empty input), and BINARY(n)
    values arrive without their trailing 0x00 bytes (the binlog strips them)."""
    if isinstance(value, str):
        value = value.encode("latin-1")  # only '' occurs; latin-1 keeps any byte anyway
    return value.ljust(width, b"\x00") if width else value


def fix_negative_time(value: timedelta) -> timedelta:
    """The library decodes a negative TIME(fsp) with a fraction as ``-(hms + 1s - frac)``
    instead of ``-(hms + frac)``; its result L has L.microseconds == frac, so the true value
    is L + 1s - 2*frac. Non-negative values and whole seconds are decoded correctly."""
    if value < _ZERO_TIMEDELTA and value.microseconds:
        return value + _ONE_SECOND - timedelta(microseconds=2 * value.microseconds)
    return value


# =========================================================================================
# Column decoders
# =========================================================================================
#
# A column decoder is (kind, fn, width):
#   _STRUCT: fn is a struct unpack_from; value = fn(data, pos)[0]; the value is width bytes
#   _FIXED:  value = fn(data, pos); the value is width bytes
#   _VAR:    value, pos = fn(data, pos) (length-prefixed values)
# `data` is the event packet (bytes), `pos` the offset of the value.

_STRUCT, _FIXED, _VAR = 0, 1, 2

ColumnDecoder = tuple[int, Callable[..., Any], int]


def _struct(fmt: str) -> ColumnDecoder:
    s = struct.Struct(fmt)
    return _STRUCT, s.unpack_from, s.size


def _int24(unsigned: bool) -> ColumnDecoder:
    signed = not unsigned

    def int24(data: bytes, pos: int) -> int:
        return int.from_bytes(data[pos:pos + 3], "little", signed=signed)

    return _FIXED, int24, 3


def _year() -> ColumnDecoder:
    # One byte: year - 1900, 0 for YEAR 0000 (the library returns 1900 for it; the bridge 0).
    def year(data: bytes, pos: int) -> int:
        v = data[pos]
        return v + 1900 if v else 0

    return _FIXED, year, 1


def _fraction(fsp: int) -> tuple[int, Callable[[bytes, int], int]]:
    """Fractional seconds of TIME2/DATETIME2/TIMESTAMP2: ceil(fsp/2) big-endian bytes
    holding the fraction in units of 10^-(2*ceil(fsp/2)) s. Read *signed*, as the library
    does (valid values are positive; negative TIME keeps its sign in the integer part)."""
    size = (fsp + 1) // 2
    if size == 0:
        return 0, lambda data, pos: 0
    scale = 10 ** (6 - fsp)
    odd = fsp % 2 == 1

    def fraction(data: bytes, pos: int) -> int:
        v = int.from_bytes(data[pos:pos + size], "big", signed=True)
        if odd:
            v = int(v / 10)  # the library's truncation toward zero
        return v * scale

    return size, fraction


def _date() -> ColumnDecoder:
    # 3 bytes little-endian: day (5 bits) | month (4 bits) << 5 | year (15 bits) << 9.
    zero = InvalidValue("0000-00-00", ZERO_REASON)

    def date_(data: bytes, pos: int) -> Any:
        v = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        year, month, day = v >> 9 & 0x7FFF, v >> 5 & 0xF, v & 0x1F
        if not (year and month and day):
            return zero
        return date(year, month, day)  # ValueError for e.g. 2020-02-30, as the library

    return _FIXED, date_, 3


def _datetime2(fsp: int) -> ColumnDecoder:
    """DATETIME(fsp), MySQL 5.6+ format: 5 bytes big-endian, then the fraction.

    1 bit sign (always 1) | 17 bits year*13+month | 5 bits day | 5 bits hour | 6 bits minute
    | 6 bits second. Impossible values (zero dates, month 0, day 31 of a 30-day month,
    hour 24...) are InvalidValue with the zero text. Read as one integer with the fraction
    (see _fraction) in its low bytes: one slice, no call, for the common case."""
    frac_size = (fsp + 1) // 2
    size = 5 + frac_size
    frac_bits = 8 * frac_size
    frac_mask = (1 << frac_bits) - 1
    frac_half = 1 << frac_bits >> 1  # fractions are read signed, as the library
    scale = 10 ** (6 - fsp)
    odd = fsp % 2 == 1
    zero = InvalidValue(zero_datetime_text(fsp), ZERO_REASON)

    def datetime2(data: bytes, pos: int) -> Any:
        v = int.from_bytes(data[pos:pos + size], "big")
        micro = v & frac_mask
        v >>= frac_bits
        if micro >= frac_half:
            micro -= frac_half << 1
        if odd:
            micro = int(micro / 10)  # the library's truncation toward zero
        micro *= scale
        ym = v >> 22 & 0x1FFFF
        if 0 <= micro <= 999_999:
            try:
                return datetime(ym // 13, ym % 13, v >> 17 & 0x1F, v >> 12 & 0x1F,
                                v >> 6 & 0x3F, v & 0x3F, micro)
            except ValueError:
                return zero
        # Out-of-range fraction (corrupt data): the library ignores a negative one and
        # fails on one above 999999, after rejecting an impossible date.
        try:
            value = datetime(ym // 13, ym % 13, v >> 17 & 0x1F, v >> 12 & 0x1F, v >> 6 & 0x3F, v & 0x3F)
        except ValueError:
            return zero
        return value.replace(microsecond=micro) if micro > 0 else value

    return _FIXED, datetime2, size


def _timestamp2(fsp: int) -> ColumnDecoder:
    """TIMESTAMP(fsp): 4 bytes big-endian seconds since the epoch (read signed, as the
    library), then the fraction. Aware UTC datetime; the zero TIMESTAMP is InvalidValue."""
    frac_size, fraction = _fraction(fsp)
    zero = InvalidValue(zero_datetime_text(fsp), "zero TIMESTAMP")
    unpack = struct.Struct(">i").unpack_from

    def timestamp2(data: bytes, pos: int) -> Any:
        seconds = unpack(data, pos)[0]
        micro = fraction(data, pos + 4)
        if micro <= 0:  # the library ignores a non-positive fraction
            if seconds == 0:
                return zero
            micro = 0
        elif micro > 999_999:
            raise ValueError(f"TIMESTAMP fraction out of range: {micro}")
        return _EPOCH_UTC + timedelta(seconds=seconds, microseconds=micro)

    return _FIXED, timestamp2, 4 + frac_size


def _time2(fsp: int) -> ColumnDecoder:
    """TIME(fsp), MySQL 5.6+ format: 3 bytes big-endian, then the fraction.

    1 bit sign (1 = non-negative) | 1 bit unused | 10 bits hour | 6 bits minute | 6 bits
    second; negative values are stored as the two's complement of the whole value. Decoded
    with the library's arithmetic, then corrected like the library path (fix_negative_time).
    """
    frac_size, fraction = _fraction(fsp)

    def time2(data: bytes, pos: int) -> timedelta:
        v = int.from_bytes(data[pos:pos + 3], "big", signed=True)
        negative = not (v >> 23 & 1)
        if negative:
            v = -v
        value = timedelta(hours=v >> 12 & 0x3FF, minutes=v >> 6 & 0x3F, seconds=v & 0x3F,
                          microseconds=fraction(data, pos + 3))
        return fix_negative_time(-value if negative else value)  # as the library path

    return _FIXED, time2, 3 + frac_size


# Bytes used by a DECIMAL group of 0..9 digits.
_DIGIT_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _new_decimal(precision: int, scale: int) -> ColumnDecoder:
    """DECIMAL(precision, scale), "new decimal" format.

    Integer and fraction digits are each packed in groups of 9 digits (4 bytes big-endian);
    the leftover leading integer digits and trailing fraction digits take 1-4 bytes
    (_DIGIT_BYTES). The whole is big-endian with the top bit flipped (1 = non-negative);
    a negative number has every bit inverted besides. Decoded as one big integer, then
    split into groups from the right."""
    int_full, int_rest = divmod(precision - scale, 9)
    frac_full, frac_rest = divmod(scale, 9)
    # groups from the least significant: (bits, decimal digits)
    groups: list[tuple[int, int]] = []
    if frac_rest:
        groups.append((8 * _DIGIT_BYTES[frac_rest], frac_rest))
    groups += [(32, 9)] * frac_full
    groups += [(32, 9)] * int_full
    if int_rest:
        groups.append((8 * _DIGIT_BYTES[int_rest], int_rest))
    size = sum(bits for bits, _ in groups) // 8
    if size == 0:
        raise Unsupported(f"DECIMAL({precision},{scale})")
    sign_bit = 1 << (8 * size - 1)
    invert = ((1 << (8 * size)) - 1) ^ sign_bit  # every bit but the sign
    # per group: (bit offset from the right, mask, its weight in the unscaled integer)
    weighted = []
    shift, weight = 0, 1
    for bits, digits in groups:
        weighted.append((shift, (1 << bits) - 1, weight))
        shift += bits
        weight *= 10 ** digits
    parts = tuple(weighted)
    exact = Context(prec=100)  # scaleb rounds to the context's precision; 65 digits fit

    def new_decimal(data: bytes, pos: int) -> Decimal:
        n = int.from_bytes(data[pos:pos + size], "big")
        negative = not n & sign_bit
        # non-negative: clear the (flipped) sign bit; negative: it is 0, invert the others
        n ^= invert if negative else sign_bit
        unscaled = 0
        for at, mask, weight in parts:
            unscaled += (n >> at & mask) * weight
        if negative:
            if not unscaled:  # "-0": the library's text keeps the sign
                return Decimal("-0." + "0" * scale if scale else "-0")
            unscaled = -unscaled
        return Decimal(unscaled).scaleb(-scale, exact)

    return _FIXED, new_decimal, size


def _text(length_size: int, encoding: str | None, pad_to: int) -> ColumnDecoder:
    """A length-prefixed string (VARCHAR/CHAR/BLOB/TEXT/GEOMETRY): `length_size` bytes of
    little-endian length, then the bytes. `encoding` None: bytes (binary charset; BINARY(n)
    padded back to `pad_to` with 0x00)."""
    if encoding is None:
        def binary(data: bytes, pos: int) -> tuple[bytes, int]:
            end = pos + length_size + int.from_bytes(data[pos:pos + length_size], "little")
            return data[pos + length_size:end].ljust(pad_to, b"\x00"), end
        if length_size == 1:
            def binary1(data: bytes, pos: int) -> tuple[bytes, int]:
                end = pos + 1 + data[pos]
                return data[pos + 1:end].ljust(pad_to, b"\x00"), end
            return _VAR, binary1, 0
        return _VAR, binary, 0

    if length_size == 1:
        def text1(data: bytes, pos: int) -> tuple[str, int]:
            end = pos + 1 + data[pos]
            return data[pos + 1:end].decode(encoding), end
        return _VAR, text1, 0

    def text(data: bytes, pos: int) -> tuple[str, int]:
        end = pos + length_size + int.from_bytes(data[pos:pos + length_size], "little")
        return data[pos + length_size:end].decode(encoding), end

    return _VAR, text, 0


def _undecodable_text(length_size: int) -> ColumnDecoder:
    """A character set Python has no codec for (e.g. swe7): the library keeps the bytes
    (its decode raises LookupError, which it catches) - but an empty value is str ''."""
    def raw(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + length_size + int.from_bytes(data[pos:pos + length_size], "little")
        return data[pos + length_size:end] or "", end

    return _VAR, raw, 0


def _enum(size: int, members: Sequence[str]) -> ColumnDecoder:
    # 1 or 2 bytes little-endian: 1-based member index (0 = the '' error value).
    table = tuple(members)  # members[0] is '' (the library prepends it)

    def enum(data: bytes, pos: int) -> str:
        return table[int.from_bytes(data[pos:pos + size], "little")]  # IndexError as the library

    return _FIXED, enum, size


def _set(size: int, members: Sequence[str]) -> ColumnDecoder:
    # 1-8 bytes little-endian bit mask: bit i = member i. Text in definition order.
    bits = tuple((1 << i, m) for i, m in enumerate(members))

    def set_(data: bytes, pos: int) -> str:
        mask = int.from_bytes(data[pos:pos + size], "little")
        return ",".join([m for bit, m in bits if mask & bit])

    return _FIXED, set_, size


def _bit(nbits: int, nbytes: int) -> ColumnDecoder:
    # ceil(n/8) bytes big-endian; text of n '0'/'1' digits, most significant first.
    mask = (1 << nbits) - 1
    spec = f"0{nbits}b"

    def bit(data: bytes, pos: int) -> str:
        return format(int.from_bytes(data[pos:pos + nbytes], "big") & mask, spec)

    return _FIXED, bit, nbytes


def _absent() -> ColumnDecoder:
    """A column not in the image (non-FULL binlog_row_image): UNCHANGED, no bytes."""
    return _FIXED, lambda data, pos: UNCHANGED, 0


# =========================================================================================
# Compiling a table map
# =========================================================================================


def _encoding_of(column: Any) -> str | None:
    """The Python codec the library decodes a character column with; None: keep bytes."""
    charset = column.character_set_name
    if charset is None:
        return "utf-8"  # the library's default when the table map names no charset
    if charset == "binary":
        return None
    found = charset_by_name(charset)
    return found.encoding if found else charset


def _has_codec(encoding: str) -> bool:
    try:
        b"\x00\x00\x00\x00".decode(encoding)
    except LookupError:
        return False
    except UnicodeDecodeError:
        pass
    return True


def _column_decoder(col: Any) -> ColumnDecoder:
    """The decoder of one column (a library `Column`: type plus its metadata attributes)."""
    t = col.type
    unsigned = bool(col.unsigned)
    if t == TINY:
        return _struct("<B" if unsigned else "<b")
    if t == SHORT:
        return _struct("<H" if unsigned else "<h")
    if t == LONG:
        return _struct("<I" if unsigned else "<i")
    if t == LONGLONG:
        return _struct("<Q" if unsigned else "<q")
    if t == INT24:
        return _int24(unsigned)
    if t == FLOAT:
        return _struct("<f")
    if t == DOUBLE:
        return _struct("<d")
    if t == YEAR:
        return _year()
    if t == NEWDECIMAL:
        return _new_decimal(col.precision, col.decimals)
    if t == DATE:
        return _date()
    if t in (DATETIME2, TIMESTAMP2, TIME2) and col.fsp not in range(7):
        raise Unsupported(f"fractional seconds precision {col.fsp}")
    if t == DATETIME2:
        return _datetime2(col.fsp)
    if t == TIMESTAMP2:
        return _timestamp2(col.fsp)
    if t == TIME2:
        return _time2(col.fsp)
    if t in (ENUM, SET):
        if col.character_set_name == "binary":
            raise Unsupported("ENUM/SET with the binary character set")
        members = col.enum_values if t == ENUM else col.set_values
        if not members:
            raise Unsupported("ENUM/SET without member names in the table map")
        if t == ENUM:
            return _enum(col.size, members)
        if len(set(members)) != len(members):
            raise Unsupported("SET with duplicate member names")
        return _set(col.size, members)
    if t == BIT:
        if col.bits <= 0:
            raise Unsupported("BIT(0)")
        return _bit(col.bits, col.bytes)
    if t in (VARCHAR, STRING):
        length_size = 2 if col.max_length > 255 else 1
        encoding = _encoding_of(col)
        if encoding is None:
            return _text(length_size, None, col.max_length if t == STRING else 0)
        return _text(length_size, encoding, 0) if _has_codec(encoding) else _undecodable_text(length_size)
    if t == BLOB:
        encoding = _encoding_of(col)
        if encoding is None:
            return _text(col.length_size, None, 0)
        return _text(col.length_size, encoding, 0) if _has_codec(encoding) else _undecodable_text(col.length_size)
    if t == GEOMETRY:
        return _text(col.length_size, None, 0)  # WKB bytes, never decoded
    names = {JSON: "JSON (MySQL binary JSON)", TIMESTAMP: "TIMESTAMP (pre-5.6 format)",
             TIME: "TIME (pre-5.6 format)", DATETIME: "DATETIME (pre-5.6 format)"}
    raise Unsupported(f"column type {names.get(t, t)}")


def compile_table(columns: Sequence[Any]) -> TableDecoder:
    """The decoder for one table map. `columns`: the library's `Column` objects (type,
    name, unsigned, character_set_name and the type's metadata). Raises Unsupported."""
    decoders = []
    for col in columns:
        try:
            decoders.append(_column_decoder(col))
        except Unsupported as exc:
            raise Unsupported(f"column {col.name!r}: {exc}") from None
    return TableDecoder(tuple(c.name for c in columns), tuple(decoders))


class TableDecoder:
    """Decodes the row images of one table map's rows events."""

    def __init__(self, names: tuple[str, ...], decoders: tuple[ColumnDecoder, ...]) -> None:
        self.names = names
        self._decoders = decoders
        # per "columns present" bitmap: (NULL bitmap bytes, entries), see _layout
        self._layouts: dict[bytes, tuple[int, tuple[tuple[str, int, int, Callable[..., Any], int], ...]]] = {}

    def _layout(self, present: bytes) -> tuple[int, tuple[tuple[str, int, int, Callable[..., Any], int], ...]]:
        """For one "columns present" bitmap: the NULL bitmap's size and, per column,
        (name, its bit in the NULL bitmap read as a little-endian int, kind, fn, width).
        Absent columns decode to UNCHANGED and have no NULL bit."""
        layout = self._layouts.get(present)
        if layout is not None:
            return layout
        entries = []
        null_index = 0
        for i, (name, decoder) in enumerate(zip(self.names, self._decoders)):
            if present[i >> 3] >> (i & 7) & 1:
                entries.append((name, 1 << null_index, *decoder))
                null_index += 1
            else:
                entries.append((name, 0, *_absent()))
        # The NULL bitmap's size counts every set bit of `present`, padding included, as the
        # library does (servers leave the padding clear).
        null_size = (sum(b.bit_count() for b in present) + 7) // 8
        layout = (null_size, tuple(entries))
        self._layouts[present] = layout
        return layout

    def rows(self, op: Op, data: bytes, pos: int, end: int, present: bytes,
             present_after: bytes | None = None) -> list[tuple[Row | None, Row | None]]:
        """(before, after) per row of one rows event whose images span data[pos:end].

        `present` is the event's "columns present" bitmap (of the before image for UPDATE),
        `present_after` the UPDATE after-image's. Raises ValueError on a malformed body."""
        if len(present) * 8 < len(self.names) or (present_after is not None and len(present_after) * 8 < len(self.names)):
            raise ValueError("rows event: columns-present bitmap shorter than the table map")
        image = self._image
        out: list[tuple[Row | None, Row | None]] = []
        if op is Op.UPDATE:
            assert present_after is not None
            first, second = self._layout(present), self._layout(present_after)
            while pos < end:
                before, pos = image(data, pos, first)
                after, pos = image(data, pos, second)
                out.append((before, after))
        else:
            layout = self._layout(present)
            insert = op is Op.INSERT
            while pos < end:
                row, pos = image(data, pos, layout)
                out.append((None, row) if insert else (row, None))
        if pos != end:
            raise ValueError(f"rows event: row images overrun the event body by {pos - end} bytes")
        return out

    @staticmethod
    def _image(data: bytes, pos: int, layout: tuple[int, tuple[Any, ...]]) -> tuple[Row, int]:
        null_size, entries = layout
        nulls = data[pos] if null_size == 1 else int.from_bytes(data[pos:pos + null_size], "little")
        pos += null_size
        row: Row = {}
        for name, null_bit, kind, fn, width in entries:
            if nulls & null_bit:
                row[name] = None
            elif kind == _STRUCT:
                row[name] = fn(data, pos)[0]
                pos += width
            elif kind == _FIXED:
                row[name] = fn(data, pos)
                pos += width
            else:
                row[name], pos = fn(data, pos)
        return row, pos
