"""Text and text-like families: TEXT, BYTES, UUID, ENUM, OTHER.

Lengths are counted the way the target counts them (characters for CHAR/VARCHAR, bytes for
MySQL TEXT/BLOB types and binary strings); characters the target's character set cannot
hold are refused, never replaced by '?'.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from bridge.schema import ColumnInfo, Family
from bridge.types.base import Converter, Normalizer, refuse, show, wrong_type

_UUID = uuid.UUID

# --- which characters a column can hold --------------------------------------------------

_SURROGATES = "\ud800-\udfff"
_BMP_ONLY = frozenset({"utf8", "utf8mb3", "ucs2"})


def _latin1_class() -> str:
    """MySQL's latin1 is Windows-1252 plus the five bytes cp1252 leaves undefined."""
    chars = []
    for b in range(0x80, 0x100):
        try:
            chars.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(b))
    return "".join(re.escape(c) for c in chars)


_PG_BAD = re.compile(f"[\x00{_SURROGATES}]")
_ANY_BAD = re.compile(f"[{_SURROGATES}]")
_BMP_BAD = re.compile(f"[{_SURROGATES}\U00010000-\U0010ffff]")
_ASCII_BAD = re.compile("[^\x00-\x7f]")
_LATIN1_BAD = re.compile(f"[^\x00-\x7f{_latin1_class()}]")

_PATTERNS: dict[str | None, re.Pattern[str]] = {None: _ANY_BAD}


def _mysql_pattern(charset: str | None) -> re.Pattern[str]:
    pattern = _PATTERNS.get(charset)
    if pattern is None:
        cs = (charset or "").lower()
        if cs in _BMP_ONLY:
            pattern = _BMP_BAD
        elif cs in ("ascii", "us-ascii"):
            pattern = _ASCII_BAD
        elif cs == "latin1":
            pattern = _LATIN1_BAD
        else:  # utf8mb4, utf16, utf32, binary or unknown: every valid character
            pattern = _ANY_BAD
        _PATTERNS[charset] = pattern
    return pattern


def _bad_char(col: ColumnInfo, ch: str, to_mes: bool) -> Exception:
    code = ord(ch)
    if code == 0:
        return refuse(col, "text contains NUL (\\x00), which PostgreSQL text cannot hold")
    if 0xD800 <= code <= 0xDFFF:
        return refuse(col, f"lone surrogate U+{code:04X} is not a valid character")
    charset = col.charset or "the column's character set"
    if code > 0xFFFF:
        return refuse(col, f"4-byte character U+{code:04X} cannot be stored in {charset} column")
    return refuse(col, f"character U+{code:04X} ({ch}) cannot be stored in {charset} column")


def check_chars(text: str, col: ColumnInfo, to_mes: bool) -> None:
    """Refuse characters the target cannot hold: NUL on PostgreSQL, lone surrogates
    anywhere, 4-byte characters in utf8mb3, non-Latin-1 in latin1, non-ASCII in ascii."""
    if text.isascii():
        if not to_mes and "\x00" in text:
            raise _bad_char(col, "\x00", to_mes)
        return
    m = (_mysql_pattern(col.charset) if to_mes else _PG_BAD).search(text)
    if m is not None:
        raise _bad_char(col, m.group(), to_mes)


# --- MySQL TEXT/BLOB types count bytes ---------------------------------------------------

_BYTE_CAP = {
    "tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295,
    "tinyblob": 255, "blob": 65535, "mediumblob": 16777215, "longblob": 4294967295,
}  # fmt: skip
_BASE: dict[str, str] = {}


def base_type(db_type: str) -> str:
    """'varchar(10) character set utf8mb3' -> 'varchar' (cached)."""
    base = _BASE.get(db_type)
    if base is None:
        base = db_type.lower().replace("(", " ").split(" ", 1)[0].strip()
        _BASE[db_type] = base
    return base


def _encoded_length(text: str, charset: str | None) -> int:
    cs = (charset or "utf8mb4").lower()
    if cs in ("latin1", "ascii", "binary"):
        return len(text)
    if cs == "ucs2":
        return 2 * len(text)
    if cs.startswith("utf16"):
        return len(text.encode("utf-16-le"))
    if cs == "utf32":
        return 4 * len(text)
    return len(text.encode("utf-8"))


def text_type_name(col: ColumnInfo, to_mes: bool) -> str:
    base = base_type(col.db_type)
    n = col.max_length
    if to_mes:
        if base in _BYTE_CAP:
            return base.upper()
        if n is not None:
            return f"{'CHAR' if col.fixed_length else 'VARCHAR'}({n})"
        return col.db_type.upper() or "TEXT"
    if n is not None:
        return f"{'char' if col.fixed_length else 'varchar'}({n})"
    return col.db_type or "text"


def _as_text(value: Any, col: ColumnInfo, to_mes: bool) -> str:
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (e.g. a StrEnum member): its characters
    if isinstance(value, _UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"bytes are not valid UTF-8 text ({exc.reason} at byte {exc.start})"
            raise refuse(col, reason) from None
    raise wrong_type(col, value, text_type_name(col, to_mes))


def to_text(value: Any, col: ColumnInfo, to_mes: bool) -> str:
    if type(value) is not str:
        value = _as_text(value, col, to_mes)
    if col.fixed_length:
        # CHAR(n): trailing spaces are padding on both sides (PostgreSQL pads, MySQL strips).
        value = value.rstrip(" ")
    check_chars(value, col, to_mes)
    n = col.max_length
    if n is not None and len(value) > n:
        raise refuse(col, f"{len(value)} characters do not fit {text_type_name(col, to_mes)}")
    if to_mes:
        cap = _BYTE_CAP.get(base_type(col.db_type))
        if cap is not None and len(value) > cap // 4:
            size = _encoded_length(value, col.charset)
            if size > cap:
                name = text_type_name(col, to_mes)
                raise refuse(col, f"{size} bytes do not fit {name} (at most {cap} bytes)")
    return value


# --- binary strings ----------------------------------------------------------------------


def bytes_type_name(col: ColumnInfo, to_mes: bool) -> str:
    if not to_mes:
        return "bytea"
    base = base_type(col.db_type)
    n = col.max_length
    if col.fixed_length:
        return f"BINARY({n})"
    if base in _BYTE_CAP:
        return base.upper()
    if n is not None:
        return f"VARBINARY({n})"
    return col.db_type.upper() or "BLOB"


def _as_bytes(value: Any, col: ColumnInfo, to_mes: bool) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, _UUID):
        return value.bytes
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad_char(col, value[exc.start], to_mes) from None
    raise wrong_type(col, value, bytes_type_name(col, to_mes))


def to_bytes(value: Any, col: ColumnInfo, to_mes: bool) -> bytes:
    b = value if type(value) is bytes else _as_bytes(value, col, to_mes)
    n = col.max_length
    if n is not None:
        if len(b) > n:
            raise refuse(col, f"{len(b)} bytes do not fit {bytes_type_name(col, to_mes)}")
        if to_mes and col.fixed_length and len(b) < n:
            raise refuse(
                col,
                f"{len(b)} bytes would be padded with zero bytes to {bytes_type_name(col, to_mes)} "
                "and read back different",
            )
    if to_mes:
        cap = _BYTE_CAP.get(base_type(col.db_type))
        if cap is not None and len(b) > cap:
            raise refuse(col, f"{len(b)} bytes do not fit {bytes_type_name(col, to_mes)}")
    return b


# --- uuid, enum, other -------------------------------------------------------------------


def to_uuid(value: Any, col: ColumnInfo, to_mes: bool) -> str:
    if type(value) is _UUID:
        return str(value)
    if isinstance(value, str):
        try:
            return str(_UUID(value))
        except ValueError:
            raise refuse(col, f"{show(value)} is not a UUID") from None
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:
        return str(_UUID(bytes=bytes(value)))
    if isinstance(value, _UUID):
        return str(value)
    raise wrong_type(col, value, "uuid")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def enum_type_name(col: ColumnInfo, to_mes: bool) -> str:
    values = col.enum_values
    shown = ",".join(_quote(v) for v in values[:12]) + (",..." if len(values) > 12 else "")
    if to_mes:
        return f"ENUM({shown})"
    return f"enum {col.db_type} ({shown})"


def to_enum(value: Any, col: ColumnInfo, to_mes: bool) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise wrong_type(col, value, enum_type_name(col, to_mes))
        value = str.__str__(value)
    values = col.enum_values
    if values:
        if value not in values:
            raise refuse(col, f"{show(value)} is not a value of {enum_type_name(col, to_mes)}")
    else:  # labels unknown: at least keep to what the column can hold
        check_chars(value, col, to_mes)
    return value


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _other_text(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def to_other(value: Any, col: ColumnInfo, to_mes: bool) -> Any:
    t = type(value)
    if t is str:
        text = value
    elif t is bytes or t is bytearray or t is memoryview:
        return bytes(value)
    elif isinstance(value, _CONTAINERS):
        raise refuse(
            col, f"a {t.__name__} value has no text form {col.db_type or 'the column'} can parse"
        )
    elif isinstance(value, str):
        text = str.__str__(value)
    else:
        text = _other_text(value)
    check_chars(text, col, to_mes)
    return text


# --- normal forms ------------------------------------------------------------------------


def _normal_text(value: Any, col: ColumnInfo) -> Any:
    if type(value) is not str:
        if isinstance(value, str):
            value = str.__str__(value)
        elif isinstance(value, _UUID):
            value = str(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return bytes(value)
        else:
            return value
    return value.rstrip(" ") if col.fixed_length else value


def normal_bytes(value: Any, col: ColumnInfo | None = None) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, _UUID):
        return value.bytes
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            return value
    return value


def normal_uuid(value: Any, col: ColumnInfo | None = None) -> Any:
    if isinstance(value, _UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(_UUID(value))
        except ValueError:
            return value
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:
        return str(_UUID(bytes=bytes(value)))
    return value


def _normal_enum(value: Any, col: ColumnInfo) -> Any:
    return str.__str__(value) if isinstance(value, str) else value


def _normal_other(value: Any, col: ColumnInfo) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, _CONTAINERS):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return _other_text(value)


TO_TARGET: dict[Family, Converter] = {
    Family.TEXT: to_text,
    Family.BYTES: to_bytes,
    Family.UUID: to_uuid,
    Family.ENUM: to_enum,
    Family.OTHER: to_other,
}

NORMALIZE: dict[Family, Normalizer] = {
    Family.TEXT: _normal_text,
    Family.BYTES: normal_bytes,
    Family.UUID: normal_uuid,
    Family.ENUM: _normal_enum,
    Family.OTHER: _normal_other,
}
