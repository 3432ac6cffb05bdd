"""What verify finds and does. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.model import Side


class VerifyError(Exception):
    """Verify cannot run (unknown table, missing table...). The message names the fix."""


@dataclass
class Difference:
    """One row that is not the same on both sides. Keys and values use CRM column names.

    kind: "missing" - the row is on `only_on` and not on the other side, which should have it;
          "extra" - the row is only on the target of a one-way table (`only_on`), whose
                    source does not have it;
          "differs" - on both sides; `columns` holds {column: {"crm": value, "mes": value}}.
    """

    table: str
    kind: str
    key: dict[str, Any]
    only_on: Side | None = None
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Repair:
    """A change verify --repair made (or could not make)."""

    table: str
    key: dict[str, Any]
    side: Side  # where it wrote
    action: str  # insert | update | delete | skipped | failed
    columns: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass
class TableReport:
    table: str  # CRM name
    mes_table: str
    direction: str
    rows: dict[str, int] = field(default_factory=dict)  # side -> rows counted
    ranges: int = 0  # checksum ranges compared (all levels)
    server_columns: list[str] = field(default_factory=list)
    client_columns: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    remaining: int = 0  # differences left after repair (re-verified)
    seconds: float = 0.0


@dataclass
class Report:
    tables: list[TableReport]
    repair: bool

    @property
    def differences(self) -> int:
        return sum(len(t.differences) for t in self.tables)

    @property
    def clean_after(self) -> bool:
        """No difference found, or every one repaired and re-verified."""
        if self.repair:
            return all(t.remaining == 0 for t in self.tables)
        return self.differences == 0
