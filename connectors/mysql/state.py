"""The bridge's state tables on the MES (MySQL/MariaDB): `<name>_bridge_*` in the MES database.

`<prefix>state` is also the echo marker: the writer updates it first in every applied
transaction, and the binlog reader drops transactions whose first row event is on it.
"""

from __future__ import annotations

from connectors.mysql.sqltext import quote

_TABLES = {
    "state": """
        direction   VARCHAR(32) NOT NULL PRIMARY KEY,
        position    VARCHAR(512) NOT NULL,
        updated_at  DATETIME(6) NOT NULL
    """,
    "dead_letters": """
        id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        direction       VARCHAR(32) NOT NULL,
        source_position VARCHAR(512),
        source_xid      VARCHAR(128),
        source_table    VARCHAR(256) NOT NULL,
        target_table    VARCHAR(256) NOT NULL,
        op              VARCHAR(16) NOT NULL,
        row_key         LONGTEXT,
        row_data        LONGTEXT,
        reason          TEXT NOT NULL
    """,
    "audit": """
        id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        created_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        direction          VARCHAR(32) NOT NULL,
        source_position    VARCHAR(512) NOT NULL,
        source_xid         VARCHAR(128),
        source_commit_ts   DATETIME(6),
        tables             LONGTEXT NOT NULL,
        sample_keys        LONGTEXT NOT NULL,
        rows_applied       INT NOT NULL,
        rows_dead_lettered INT NOT NULL,
        conflicts          INT NOT NULL,
        outcome            VARCHAR(32) NOT NULL
    """,
    "conflicts": """
        id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        created_at        DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        direction         VARCHAR(32) NOT NULL,
        target_table      VARCHAR(256) NOT NULL,
        row_key           LONGTEXT NOT NULL,
        conflict_type     VARCHAR(64) NOT NULL,
        rule              VARCHAR(200) NOT NULL,
        winner            VARCHAR(16) NOT NULL,
        columns           LONGTEXT,
        incoming_before   LONGTEXT,
        incoming_after    LONGTEXT,
        target_found      LONGTEXT,
        result            LONGTEXT,
        source_position   VARCHAR(512),
        source_commit_ts  DATETIME(6),
        target_commit_ts  DATETIME(6),
        status            VARCHAR(16) NOT NULL,
        resolved_by       VARCHAR(128),
        resolved_at       DATETIME(6),
        resolution        LONGTEXT,
        KEY conflicts_status_idx (status, target_table(64))
    """,
    # --- backfill (issue 4; bridge/backfill) ---------------------------------------------
    # Backfill requests and progress (TARGET side), advanced with each chunk's rows.
    "backfill_progress": """
        table_name    VARCHAR(256) NOT NULL,
        direction     VARCHAR(32) NOT NULL,
        request_id    VARCHAR(64) NOT NULL,
        status        VARCHAR(16) NOT NULL,
        key_min       LONGTEXT,
        key_max       LONGTEXT,
        last_key      LONGTEXT,
        chunk_rows    INT NOT NULL,
        rows_estimate BIGINT,
        rows_copied   BIGINT NOT NULL DEFAULT 0,
        rows_skipped  BIGINT NOT NULL DEFAULT 0,
        chunks        INT NOT NULL DEFAULT 0,
        dead_letters  BIGINT NOT NULL DEFAULT 0,
        conflicts     BIGINT NOT NULL DEFAULT 0,
        error         TEXT,
        requested_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        started_at    DATETIME(6),
        updated_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        finished_at   DATETIME(6),
        PRIMARY KEY (table_name, direction)
    """,
    # DBLog low/high watermarks (SOURCE side). The binlog reader yields this table's rows
    # (and no other bridge table's) so the MES->CRM direction sees its marks in the stream.
    "backfill_marks": """
        direction   VARCHAR(32) NOT NULL PRIMARY KEY,
        mark        VARCHAR(128) NOT NULL,
        table_name  VARCHAR(256),
        updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
    """,
}


def state_table(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def create_state_tables(conn, prefix: str) -> None:
    """Create the state tables if missing (idempotent). `conn` is a PyMySQL connection
    whose current database is the MES database."""
    with conn.cursor() as cur:
        for name, body in _TABLES.items():
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(state_table(prefix, name))} ({body}) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            )
    conn.commit()
