"""The bridge's state tables on the CRM (PostgreSQL), in schema `<name>_bridge`."""

from __future__ import annotations

import psycopg
from psycopg import sql

_TABLES = {
    "state": """
        direction   text PRIMARY KEY,
        position    text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    """,
    "dead_letters": """
        id              bigserial PRIMARY KEY,
        created_at      timestamptz NOT NULL DEFAULT now(),
        direction       text NOT NULL,
        source_position text,
        source_xid      text,
        source_table    text NOT NULL,
        target_table    text NOT NULL,
        op              text NOT NULL,
        row_key         jsonb,
        row_data        jsonb,
        reason          text NOT NULL
    """,
    "audit": """
        id               bigserial PRIMARY KEY,
        created_at       timestamptz NOT NULL DEFAULT now(),
        direction        text NOT NULL,
        source_position  text NOT NULL,
        source_xid       text,
        source_commit_ts timestamptz,
        tables           jsonb NOT NULL,
        sample_keys      jsonb NOT NULL,
        rows_applied     integer NOT NULL,
        rows_dead_lettered integer NOT NULL,
        conflicts        integer NOT NULL,
        outcome          text NOT NULL
    """,
    "conflicts": """
        id                bigserial PRIMARY KEY,
        created_at        timestamptz NOT NULL DEFAULT now(),
        direction         text NOT NULL,
        target_table      text NOT NULL,
        row_key           jsonb NOT NULL,
        conflict_type     text NOT NULL,
        rule              text NOT NULL,
        winner            text NOT NULL,
        columns           jsonb,
        incoming_before   jsonb,
        incoming_after    jsonb,
        target_found      jsonb,
        result            jsonb,
        source_position   text,
        source_commit_ts  timestamptz,
        target_commit_ts  timestamptz,
        status            text NOT NULL,
        resolved_by       text,
        resolved_at       timestamptz,
        resolution        jsonb
    """,
    # --- backfill (issue 4; bridge/backfill) ---------------------------------------------
    # Backfill requests and their progress, on the TARGET side of the direction: advanced in
    # the same transaction as the chunk rows it records (resume redoes at most one chunk).
    "backfill_progress": """
        table_name    text NOT NULL,
        direction     text NOT NULL,
        request_id    text NOT NULL,
        status        text NOT NULL,
        key_min       text,
        key_max       text,
        last_key      text,
        chunk_rows    integer NOT NULL,
        rows_estimate bigint,
        rows_copied   bigint NOT NULL DEFAULT 0,
        rows_skipped  bigint NOT NULL DEFAULT 0,
        chunks        integer NOT NULL DEFAULT 0,
        dead_letters  bigint NOT NULL DEFAULT 0,
        conflicts     bigint NOT NULL DEFAULT 0,
        error         text,
        requested_at  timestamptz NOT NULL DEFAULT now(),
        started_at    timestamptz,
        updated_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz,
        PRIMARY KEY (table_name, direction)
    """,
    # DBLog low/high watermarks, on the SOURCE side: one row per direction, updated for each
    # chunk; `setup` adds it to the publication so the reader sees the marks in the stream.
    "backfill_marks": """
        direction   text PRIMARY KEY,
        mark        text NOT NULL,
        table_name  text,
        updated_at  timestamptz NOT NULL DEFAULT now()
    """,
}


def create_state_tables(conn: psycopg.Connection, schema: str) -> None:
    """Create the state schema and tables if missing (idempotent)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for name, body in _TABLES.items():
            cur.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (" + body + ")").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            )
        cur.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (status, target_table)").format(
                sql.Identifier("conflicts_status_idx"), sql.Identifier(schema), sql.Identifier("conflicts")
            )
        )
