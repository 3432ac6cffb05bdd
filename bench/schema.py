"""The benchmark tables: the same columns on both sides, mapped one to one.

* narrow (4 columns): id, qty, label, changed_at.
* wide (12 columns): id, customer_id, status (ENUM), quantity, price (DECIMAL), weight
  (DOUBLE), active (boolean / TINYINT(1)), due_date, created_at / updated_at (timestamptz /
  DATETIME(6)), payload (jsonb / JSON, ~150 bytes), note (nullable text, NULL in 30% of rows).

Both are bridged in both directions (`direction = "both"`), as a real bidirectional table is:
the reader of the other direction sees, and drops, every applied transaction (echo).
Last-writer-wins by the `updated_at` / `changed_at` version column.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("new", "queued", "running", "done", "failed")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    crm_ddl: tuple[str, ...]
    mes_ddl: tuple[str, ...]
    version_column: str

    @property
    def crm(self) -> str:
        return f"public.{self.name}"

    def mapping(self) -> dict:
        return {
            "crm": self.crm, "mes": self.name, "direction": "both", "key": ["id"],
            "columns": {c: c for c in self.columns},
            "conflict": {"rule": "last_writer_wins", "crm_version_column": self.version_column},
        }


NARROW = Table(
    name="bench_narrow",
    columns=("id", "qty", "label", "changed_at"),
    crm_ddl=(
        """CREATE TABLE bench_narrow (
            id bigint PRIMARY KEY, qty integer NOT NULL, label varchar(40),
            changed_at timestamptz NOT NULL)""",
        "ALTER TABLE bench_narrow REPLICA IDENTITY FULL",
    ),
    mes_ddl=(
        """CREATE TABLE bench_narrow (
            id BIGINT NOT NULL PRIMARY KEY, qty INT NOT NULL, label VARCHAR(40),
            changed_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    ),
    version_column="changed_at",
)

WIDE = Table(
    name="bench_wide",
    columns=("id", "customer_id", "status", "quantity", "price", "weight", "active", "due_date",
             "created_at", "updated_at", "payload", "note"),
    crm_ddl=(
        "CREATE TYPE bench_status AS ENUM ('new', 'queued', 'running', 'done', 'failed')",
        """CREATE TABLE bench_wide (
            id bigint PRIMARY KEY, customer_id bigint NOT NULL, status bench_status NOT NULL,
            quantity integer NOT NULL, price numeric(12,2) NOT NULL, weight double precision,
            active boolean NOT NULL, due_date date, created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL, payload jsonb, note text)""",
        "ALTER TABLE bench_wide REPLICA IDENTITY FULL",
    ),
    mes_ddl=(
        """CREATE TABLE bench_wide (
            id BIGINT NOT NULL PRIMARY KEY, customer_id BIGINT NOT NULL,
            status ENUM('new','queued','running','done','failed') NOT NULL,
            quantity INT NOT NULL, price DECIMAL(12,2) NOT NULL, weight DOUBLE,
            active TINYINT(1) NOT NULL, due_date DATE, created_at DATETIME(6) NOT NULL,
            updated_at DATETIME(6) NOT NULL, payload JSON, note TEXT
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    ),
    version_column="updated_at",
)

TABLES = {"narrow": NARROW, "wide": WIDE}
