"""Names of the objects the backfill and verify/repair add to a bridge (derived from the
config, like `Config.slot_name`). Pure."""

from __future__ import annotations

from bridge.config import Config

PROGRESS = "backfill_progress"  # target side: requests and progress
MARKS = "backfill_marks"  # source side: DBLog low/high watermarks


def pg_marks_table(config: Config) -> str:
    """The CRM watermark table, "schema.table" (in the bridge's state schema)."""
    return f"{config.state_schema}.{MARKS}"


def mysql_marks_table(config: Config) -> str:
    """The MES watermark table (bare name, in the MES database)."""
    return f"{config.state_prefix}{MARKS}"

