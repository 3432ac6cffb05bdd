"""connectors.mysql.introspect against a real MariaDB server (and its pure helpers)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pymysql
import pytest

from bridge.devservers import MariaDBServer
from bridge.errors import SetupError
from bridge.model import BinlogPosition
from bridge.schema import Family
from connectors.mysql import introspect

pytestmark = pytest.mark.integration


def _connect(dsn: str) -> pymysql.connections.Connection:
    p = urlsplit(dsn)
    return pymysql.connect(host=p.hostname, port=p.port, user=p.username, password="",
                           database=p.path.lstrip("/"), autocommit=True, charset="utf8mb4")


@pytest.fixture
def conn(mes_db):
    c = _connect(mes_db)
    yield c
    c.close()


ALL_TYPES = r"""
CREATE TABLE all_types (
  id_a INT NOT NULL,
  id_b VARCHAR(10) NOT NULL,
  ti TINYINT, ti_u TINYINT UNSIGNED, flag TINYINT(1) NOT NULL DEFAULT 0,
  si SMALLINT, mi MEDIUMINT UNSIGNED, i INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  y YEAR,
  dec1 DECIMAL(65,30), dec2 NUMERIC(12,3),
  f FLOAT, d DOUBLE,
  c CHAR(36) CHARACTER SET utf8mb4, v3 VARCHAR(20) CHARACTER SET utf8mb3, v4 VARCHAR(255),
  tx TEXT, ltx LONGTEXT,
  bn BINARY(16), vb VARBINARY(300), bl BLOB, lbl LONGBLOB,
  dt DATETIME, dt6 DATETIME(6), ts3 TIMESTAMP(3) NULL, dte DATE, tm TIME, tm6 TIME(6),
  j JSON, lt_plain LONGTEXT,
  e ENUM('a','b''c','d\\e','f,g','x)y') NOT NULL,
  st SET('p','q'),
  u UUID,
  b BIT(3),
  gv INT AS (id_a * 2) VIRTUAL,
  gs INT AS (id_a * 3) STORED,
  created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id_b, id_a)
)
"""


class TestLoadTable:
    def test_maps_every_type_family_and_bound(self, conn) -> None:
        """Each MariaDB column type becomes the documented family with its bounds."""
        with conn.cursor() as cur:
            cur.execute(ALL_TYPES)
        db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
        info = introspect.load_table(conn, db, "all_types")
        assert info is not None
        c = info.columns
        assert info.side == "mes" and info.schema == db and info.name == "all_types"
        assert info.primary_key == ("id_b", "id_a")
        assert list(c)[:3] == ["id_a", "id_b", "ti"]  # ordinal order

        assert (c["ti"].family, c["ti"].int_bits, c["ti"].unsigned) == (Family.INT, 8, False)
        assert (c["ti_u"].int_bits, c["ti_u"].unsigned) == (8, True)
        assert c["flag"].bool_like and not c["ti"].bool_like and not c["flag"].nullable
        assert [c[n].int_bits for n in ("si", "mi", "i", "bi", "bu")] == [16, 24, 32, 64, 64]
        assert [c[n].unsigned for n in ("si", "mi", "i", "bi", "bu")] == [False, True, True, False, True]
        assert (c["y"].family, c["y"].int_bits) == (Family.INT, 16)
        assert (c["dec1"].family, c["dec1"].precision, c["dec1"].scale) == (Family.DECIMAL, 65, 30)
        assert (c["dec2"].precision, c["dec2"].scale) == (12, 3)
        assert (c["f"].family, c["f"].float_bits, c["d"].float_bits) == (Family.FLOAT, 32, 64)

        assert (c["c"].family, c["c"].max_length, c["c"].fixed_length, c["c"].charset) == (
            Family.TEXT, 36, True, "utf8mb4")
        assert (c["v3"].max_length, c["v3"].fixed_length, c["v3"].charset) == (20, False, "utf8mb3")
        assert c["v4"].max_length == 255
        assert (c["tx"].family, c["tx"].max_length) == (Family.TEXT, None)
        assert (c["ltx"].family, c["lt_plain"].family) == (Family.TEXT, Family.TEXT)

        assert (c["bn"].family, c["bn"].max_length, c["bn"].fixed_length) == (Family.BYTES, 16, True)
        assert (c["vb"].max_length, c["vb"].fixed_length) == (300, False)
        assert (c["bl"].family, c["bl"].max_length) == (Family.BYTES, 65535)
        assert c["lbl"].max_length == 4294967295

        assert (c["dt"].family, c["dt"].fsp) == (Family.TIMESTAMP, 0)
        assert (c["dt6"].family, c["dt6"].fsp) == (Family.TIMESTAMP, 6)
        assert (c["ts3"].family, c["ts3"].fsp) == (Family.TIMESTAMPTZ, 3)
        assert c["dte"].family == Family.DATE
        assert (c["tm"].family, c["tm"].fsp, c["tm6"].fsp) == (Family.TIME, 0, 6)

        assert c["j"].family == Family.JSON  # MariaDB: LONGTEXT + CHECK json_valid(j)
        assert (c["e"].family, c["e"].enum_values) == (
            Family.ENUM, ("a", "b'c", "d\\e", "f,g", "x)y"))
        assert c["st"].family == Family.OTHER
        assert c["u"].family == Family.UUID
        assert c["b"].family == Family.OTHER

        assert c["gv"].generated and c["gs"].generated
        assert not c["created"].generated  # DEFAULT CURRENT_TIMESTAMP is not generation
        assert not any(c[n].generated for n in ("id_a", "j", "e"))
        assert c["id_a"].nullable is False and c["ti"].nullable is True
        assert c["bu"].db_type == "bigint(20) unsigned"

    def test_missing_table_and_view_are_none(self, conn) -> None:
        """A table that does not exist, or a view, describes as None."""
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE base (id INT PRIMARY KEY)")
            cur.execute("CREATE VIEW v AS SELECT id FROM base")
        db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
        assert introspect.load_table(conn, db, "nope") is None
        assert introspect.load_table(conn, db, "v") is None
        assert introspect.load_table(conn, "no_such_db", "base") is None

    def test_names_are_bound_parameters(self, conn) -> None:
        """Quotes and backquotes in names are data, not SQL."""
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE `we'ird``name` (`co'l` INT PRIMARY KEY, `j``x` JSON)")
        db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
        info = introspect.load_table(conn, db, "we'ird`name")
        assert info is not None
        assert info.primary_key == ("co'l",)
        assert info.columns["j`x"].family == Family.JSON

    def test_json_check_on_another_column_does_not_count(self, conn) -> None:
        """Only a json_valid() check on the column itself makes a LONGTEXT a JSON column."""
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE jt (id INT PRIMARY KEY, a LONGTEXT, b LONGTEXT, "
                        "CONSTRAINT chk CHECK (json_valid(b) AND a IS NOT NULL))")
        db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
        info = introspect.load_table(conn, db, "jt")
        assert info is not None
        assert info.columns["a"].family == Family.TEXT
        assert info.columns["b"].family == Family.TEXT


class TestParseEnumValues:
    @pytest.mark.parametrize(
        ("column_type", "values"),
        [
            ("enum('a','b')", ("a", "b")),
            ("enum('it''s','x')", ("it's", "x")),
            ("enum('back\\\\slash')", ("back\\slash",)),
            ("enum('a,b','c)d','')", ("a,b", "c)d", "")),
            ("ENUM('Ä','😀')", ("Ä", "😀")),
            ("set('p','q')", ("p", "q")),
        ],
    )
    def test_parses_information_schema_spelling(self, column_type: str, values: tuple[str, ...]) -> None:
        """Quotes are doubled and backslashes escaped inside COLUMN_TYPE."""
        assert introspect.parse_enum_values(column_type) == values

    @pytest.mark.parametrize("bad", ["int(11)", "enum('a'", "enum(a)"])
    def test_rejects_non_enum_text(self, bad: str) -> None:
        """Malformed definitions raise ValueError instead of yielding wrong members."""
        with pytest.raises(ValueError):
            introspect.parse_enum_values(bad)


class TestServerSettings:
    def test_harness_server_is_fit(self, conn) -> None:
        """The dev server (ROW, FULL, FULL) has no binlog problems."""
        settings = introspect.server_settings(conn)
        assert settings["log_bin"] == "ON"
        assert settings["binlog_format"] == "ROW"
        assert settings["binlog_row_image"] == "FULL"
        assert settings["binlog_row_metadata"] == "FULL"
        assert settings["server_id"] == 1
        assert settings["is_mariadb"] is True
        assert "MariaDB" in settings["version"]
        assert settings["gtid_current_pos"] is not None
        assert introspect.check_binlog_settings(conn) == []

    def test_current_position_matches_server(self, conn, mariadb_server) -> None:
        """current_position is SHOW MASTER STATUS plus the GTID state at that point."""
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE pos_t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO pos_t VALUES (1)")
        pos = introspect.current_position(conn)
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            file, offset = cur.fetchone()[:2]
            cur.execute("SELECT @@gtid_binlog_pos")
            (gtid,) = cur.fetchone()
        assert pos == BinlogPosition(file, offset, gtid)
        assert introspect.gtid_state_at(conn, file, offset) == gtid

    def test_flags_minimal_metadata_and_statement_format(self) -> None:
        """A server started with binlog_row_metadata=MINIMAL and MIXED format is refused,
        each problem naming its fix."""
        with MariaDBServer(settings={"binlog_row_metadata": "MINIMAL", "binlog_format": "MIXED",
                                     "binlog_row_image": "NOBLOB"}) as server:
            conn = server.connect(None)
            try:
                problems = introspect.check_binlog_settings(conn)
            finally:
                conn.close()
        text = "\n".join(problems)
        assert len(problems) == 3, text
        assert "binlog_row_metadata is MINIMAL" in text
        assert "SET GLOBAL binlog_row_metadata=FULL and add binlog_row_metadata=FULL to the server config" in text
        assert "binlog_format is MIXED" in text and "SET GLOBAL binlog_format=ROW" in text
        assert "binlog_row_image is NOBLOB" in text
        assert all(" - fix: " in p for p in problems)

    def test_binlog_off_is_a_setup_error(self) -> None:
        """Without log_bin, the settings check says so and current_position refuses."""
        with MariaDBServer(settings={"log-bin": None, "skip-log-bin": ""}) as server:
            conn = server.connect(None)
            try:
                problems = introspect.check_binlog_settings(conn)
                with pytest.raises(SetupError, match="binary logging is off"):
                    introspect.current_position(conn)
            finally:
                conn.close()
        assert any(p.startswith("binary logging is off") for p in problems)


class TestBinlogProblems:
    def test_compression_partial_json_and_old_servers(self) -> None:
        """Settings that make decoding silently wrong are flagged (pure check)."""
        base = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                "binlog_row_metadata": "FULL", "server_id": 1}
        assert introspect.binlog_problems(base) == []
        assert "log_bin_compress" in introspect.binlog_problems({**base, "log_bin_compress": "ON"})[0]
        assert "binlog_transaction_compression" in introspect.binlog_problems(
            {**base, "binlog_transaction_compression": "ON"})[0]
        assert "PARTIAL_JSON" in introspect.binlog_problems(
            {**base, "binlog_row_value_options": "PARTIAL_JSON"})[0]
        assert "does not exist" in introspect.binlog_problems({**base, "binlog_row_metadata": None})[0]
        assert "server_id is 0" in introspect.binlog_problems({**base, "server_id": 0})[0]
