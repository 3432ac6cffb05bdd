"""The backfill's own framing of MySQL result rows (bridge.backfill.mysqlrows): PyMySQL's
values, PyMySQL's errors, on a real server and on hand-made packet streams."""

from __future__ import annotations

import io

import pymysql
import pytest
from pymysql import err
from pymysql.connections import MySQLResult

from bridge.backfill import mysqlrows


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _lenc(value: bytes | None) -> bytes:
    if value is None:
        return b"\xfb"
    assert len(value) < 251
    return bytes([len(value)]) + value


_EOF = b"\xfe\x00\x00\x02\x00"  # no warnings, status AUTOCOMMIT


class _Conn:
    """What `read_rows` touches of a PyMySQL connection, over a byte stream."""

    encoding = "utf8"

    def __init__(self, stream: bytes, seq: int):
        self._rfile = io.BytesIO(stream)
        self._next_seq_id = seq
        self._read_timeout = self._current_timeout = None
        self.closed = False

    def _force_close(self) -> None:
        self.closed = True


def _result(conn: _Conn) -> MySQLResult:
    result = MySQLResult.__new__(MySQLResult)
    result.connection = conn
    result.unbuffered_active = True
    result.warning_count = 0
    result.has_next = False
    result.rows = None
    return result


_PARSE = mysqlrows.row_parser([("utf8", int), ("utf8", None)])


class TestFraming:
    def test_rows_then_eof(self) -> None:
        """Rows up to the EOF packet; the result ends as PyMySQL ends it."""
        stream = (_packet(5, _lenc(b"1") + _lenc(b"a")) + _packet(6, _lenc(b"2") + _lenc(None))
                  + _packet(7, _EOF))
        conn = _Conn(stream, 5)
        result = _result(conn)
        assert mysqlrows.read_rows(conn, result, _PARSE) == [(1, "a"), (2, None)]
        assert conn._next_seq_id == 8 and not result.unbuffered_active and result.connection is None
        assert not conn.closed

    def test_error_packet_raises_the_servers_error(self) -> None:
        """An error packet mid-result raises PyMySQL's exception for the server's code."""
        error = b"\xff" + (1317).to_bytes(2, "little") + b"#70100Query execution was interrupted"
        conn = _Conn(_packet(3, _lenc(b"1") + _lenc(b"a")) + _packet(4, error), 3)
        result = _result(conn)
        with pytest.raises(err.OperationalError) as info:
            mysqlrows.read_rows(conn, result, _PARSE)
        assert info.value.args[0] == 1317 and not result.unbuffered_active

    def test_a_cut_stream_is_a_lost_connection(self) -> None:
        """A stream that ends inside a packet: CR_SERVER_LOST, connection closed."""
        whole = _packet(1, _lenc(b"1") + _lenc(b"abc"))
        conn = _Conn(whole[:-2], 1)
        result = _result(conn)
        with pytest.raises(err.OperationalError) as info:
            mysqlrows.read_rows(conn, result, _PARSE)
        assert info.value.args[0] == 2013 and conn.closed and not result.unbuffered_active

    def test_wrong_sequence_number(self) -> None:
        """A packet out of sequence closes the connection, as PyMySQL does."""
        conn = _Conn(_packet(9, _lenc(b"1") + _lenc(b"a")), 1)
        result = _result(conn)
        with pytest.raises(err.InternalError):
            mysqlrows.read_rows(conn, result, _PARSE)
        assert conn.closed and not result.unbuffered_active

    def test_payload_continued_in_the_next_packets(self) -> None:
        """A row of 16 MiB - 1 bytes or more spans packets; they are joined in order."""
        text = b"x" * (mysqlrows.MAX_PACKET_LEN + 100)
        payload = _lenc(b"7") + b"\xfe" + len(text).to_bytes(8, "little") + text
        first, rest = payload[:mysqlrows.MAX_PACKET_LEN], payload[mysqlrows.MAX_PACKET_LEN:]
        stream = _packet(1, first) + _packet(2, rest) + _packet(3, _EOF)
        conn = _Conn(stream, 1)
        rows = mysqlrows.read_rows(conn, _result(conn), _PARSE)
        assert rows == [(7, text.decode())] and conn._next_seq_id == 4


@pytest.mark.integration
def test_rows_match_pymysql_on_a_real_server(mariadb_server, mes_db) -> None:
    """Against MariaDB: the same rows and types as PyMySQL's own reading, including a 17 MB
    value (a row in several packets), and the connection stays usable afterwards."""
    db = mes_db.rsplit("/", 1)[-1]
    mariadb_server.query("SET GLOBAL max_allowed_packet = 67108864")
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root", database=db,
                           autocommit=True, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE r (id INT PRIMARY KEY, t LONGTEXT, d DECIMAL(20,4), "
                        "ts DATETIME(6), n INT)")
            cur.execute("INSERT INTO r SELECT seq, REPEAT('é', seq % 300), seq / 7, "
                        "'2024-01-01 00:00:00.5' + INTERVAL seq SECOND, NULLIF(seq % 3, 0) "
                        "FROM seq_1_to_3000")
            cur.execute("INSERT INTO r VALUES (5000, REPEAT('y', 17000000), 1, NULL, 1)")
        query = "SELECT id, t, d, ts, n FROM r ORDER BY id"
        with conn.cursor() as cur:
            cur.execute(query)
            want = list(cur.fetchall())
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(query)
            result = cur._result
            got = mysqlrows.read_rows(conn, result, mysqlrows.row_parser(result.converters))
        assert len(got) == 3001 and len(got[-1][1]) == 17_000_000
        assert got == want
        assert [[type(v) for v in r] for r in got] == [[type(v) for v in r] for r in want]
        with conn.cursor() as cur:  # the protocol is in step: the next query works
            cur.execute("SELECT COUNT(*) FROM r")
            assert cur.fetchone()[0] == 3001
    finally:
        conn.close()
        mariadb_server.query("SET GLOBAL max_allowed_packet = DEFAULT")


@pytest.mark.integration
def test_a_connection_killed_mid_result_is_a_lost_connection(mariadb_server, mes_db) -> None:
    """The server kills the connection while rows stream: PyMySQL's OperationalError for a
    lost connection (what the bridge retries after reconnecting), also out of the cursor's
    `with` block, whose close must not fail on the closed connection."""
    db = mes_db.rsplit("/", 1)[-1]
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root", database=db,
                           autocommit=True, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE r (id INT PRIMARY KEY, t MEDIUMTEXT)")
            cur.execute("INSERT INTO r SELECT seq, REPEAT('z', 20000) FROM seq_1_to_3000")
        with pytest.raises(err.OperationalError) as info:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute("SELECT id, t FROM r ORDER BY id")
                result = cur._result
                mariadb_server.query(f"KILL CONNECTION {conn.thread_id()}")
                mysqlrows.read_rows(conn, result, mysqlrows.row_parser(result.converters))
        assert info.value.args[0] in (2013, 1927), info.value  # lost / killed
    finally:
        conn.close()
