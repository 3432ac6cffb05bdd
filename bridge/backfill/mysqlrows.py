"""The rows of a MySQL/MariaDB text-protocol result set, read at about a third of PyMySQL's
per-row cost, with PyMySQL's exact values.

PyMySQL reads a row in five Python calls (cursor, result, packet framing, packet object,
field loop) and one method call per field. For the backfill's chunk SELECTs, `read_rows`
frames the row packets itself on the connection's buffered socket file and splits each one
with a parser compiled for the result (`row_parser`: the result's own (encoding, converter)
pairs, applied as PyMySQL applies them). The end of the result (EOF packet) and an error
packet are handed back to PyMySQL's own code, so warnings, `has_next` and server errors are
PyMySQL's. A lost connection raises PyMySQL's OperationalError (CR_SERVER_LOST) after closing
the connection, as PyMySQL does, and leaves the result finished, so that closing the cursor
does not read from the closed connection.

Where this PyMySQL lacks the internals relied on (`fits()`), callers use PyMySQL's own path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pymysql import err
from pymysql.constants import CR
from pymysql.protocol import MysqlPacket

MAX_PACKET_LEN = 0xFFFFFF  # a payload this long continues in the next packet

Parser = Callable[[bytes], tuple]


def row_parser(converters: Sequence[tuple[str | None, Any]]) -> Parser:
    """PyMySQL's `MySQLResult._read_row_from_packet` for one result, as one function of the
    packet's payload: each field a length-encoded string (0xFB NULL; 0xFC/0xFD/0xFE: 2/3/8-byte
    length), decoded with the result's (encoding, converter) pairs exactly as PyMySQL does."""
    convs = tuple(converters)

    def parse(data: bytes) -> tuple:
        pos = 0
        size = len(data)
        row: list[Any] = []
        append = row.append
        for encoding, converter in convs:
            if pos >= size:
                break  # no more columns in this row (as PyMySQL: its IndexError)
            n = data[pos]
            if n < 251:
                pos += 1
                end = pos + n
            elif n == 251:
                append(None)
                pos += 1
                continue
            elif n == 252:
                end = pos + 3 + int.from_bytes(data[pos + 1:pos + 3], "little")
                pos += 3
            elif n == 253:
                end = pos + 4 + int.from_bytes(data[pos + 1:pos + 4], "little")
                pos += 4
            else:
                end = pos + 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
                pos += 9
            value: Any = data[pos:end]
            pos = end
            if encoding is not None:
                value = value.decode(encoding)
            if converter is not None:
                value = converter(value)
            append(value)
        return tuple(row)

    return parse


def read_rows(conn: Any, result: Any, parse: Parser) -> list[tuple]:
    """Every remaining row of `result`, an unbuffered (SSCursor) result just executed on
    `conn`; afterwards the result is finished as PyMySQL finishes it."""
    if conn._current_timeout != conn._read_timeout:  # as Connection._read_packet
        conn._sock.settimeout(conn._read_timeout)
        conn._current_timeout = conn._read_timeout
    read = conn._rfile.read
    seq = conn._next_seq_id
    rows: list[tuple] = []
    append = rows.append
    try:
        while True:
            data, seq = _packet(conn, read, seq)
            if len(data) == MAX_PACKET_LEN:
                data, seq = _continued(conn, read, data, seq)
            first = data[0]
            if (first == 0xFE and len(data) < 9) or first == 0xFF:
                conn._next_seq_id = seq
                _finish(result, MysqlPacket(data, conn.encoding))
                return rows
            append(parse(data))
    except OSError as exc:
        conn._force_close()
        result.unbuffered_active = False
        raise err.OperationalError(
            CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})") from exc
    except err.MySQLError:
        # the connection is closed (or the result ended in an error): nothing more to read,
        # so closing the cursor must not try (it would fail on the closed connection and
        # hide this error)
        result.unbuffered_active = False
        raise


def _packet(conn: Any, read: Callable[[int], bytes], seq: int) -> tuple[bytes, int]:
    """One packet's payload, and the next sequence number."""
    header = read(4)
    if len(header) < 4:
        raise _lost(conn)
    if header[3] != seq:
        raise _out_of_sequence(conn, header[3], seq)
    n = header[0] | header[1] << 8 | header[2] << 16
    data = read(n)
    if len(data) < n:
        raise _lost(conn)
    return data, (seq + 1) & 0xFF


def _continued(conn: Any, read: Callable[[int], bytes], first: bytes, seq: int) -> tuple[bytes, int]:
    """A payload of MAX_PACKET_LEN bytes goes on in the following packets."""
    parts = [first]
    part = first
    while len(part) == MAX_PACKET_LEN:
        part, seq = _packet(conn, read, seq)
        parts.append(part)
    return b"".join(parts), seq


def _finish(result: Any, packet: MysqlPacket) -> None:
    """The result's last packet: an error (raised as PyMySQL raises it) or its EOF."""
    result.unbuffered_active = False
    if packet.is_error_packet():
        packet.raise_for_error()
    result._check_packet_is_eof(packet)  # warning count, has_next
    result.connection = None
    result.rows = None


def _lost(conn: Any) -> err.OperationalError:
    conn._force_close()
    return err.OperationalError(CR.CR_SERVER_LOST, "Lost connection to MySQL server during query")


def _out_of_sequence(conn: Any, got: int, expected: int) -> err.MySQLError:
    conn._force_close()
    if got == 0:  # MariaDB sends its shutdown error with sequence number 0
        return err.OperationalError(CR.CR_SERVER_LOST, "Lost connection to MySQL server during query")
    return err.InternalError(f"Packet sequence number wrong - got {got} expected {expected}")


def fits() -> bool:
    """This PyMySQL has the internals `read_rows` and `row_parser` stand in for."""
    from pymysql.connections import Connection, MySQLResult

    return (callable(getattr(MySQLResult, "_read_row_from_packet", None))
            and callable(getattr(MySQLResult, "_check_packet_is_eof", None))
            and callable(getattr(Connection, "_force_close", None))
            and hasattr(MysqlPacket, "raise_for_error")
            and "_rfile" in getattr(Connection, "connect").__code__.co_names
            and "_next_seq_id" in getattr(Connection, "_read_packet").__code__.co_names
            and "_current_timeout" in getattr(Connection, "_read_packet").__code__.co_names)


FITS = fits()
