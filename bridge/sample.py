"""The sample CRM and MES schemas used by the demo and the tests, and a config for them."""

from __future__ import annotations

from typing import Any

CRM_SCHEMA = [
    "CREATE TYPE order_status AS ENUM ('draft', 'confirmed', 'in_production', 'shipped', 'cancelled')",
    """CREATE TABLE customers (
        id bigint PRIMARY KEY,
        name text NOT NULL,
        email varchar(200),
        country char(2),
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE sales_orders (
        id bigint PRIMARY KEY,
        customer_id bigint NOT NULL REFERENCES customers(id),
        status order_status NOT NULL DEFAULT 'draft',
        quantity integer NOT NULL,
        produced_qty integer NOT NULL DEFAULT 0,
        due_date date,
        finished_at timestamptz,
        notes jsonb,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE order_lines (
        id bigint PRIMARY KEY,
        order_id bigint NOT NULL REFERENCES sales_orders(id) ON DELETE CASCADE,
        sku varchar(40) NOT NULL,
        quantity integer NOT NULL,
        unit_price numeric(12,2) NOT NULL
    )""",
    "ALTER TABLE customers REPLICA IDENTITY FULL",
    "ALTER TABLE sales_orders REPLICA IDENTITY FULL",
    "ALTER TABLE order_lines REPLICA IDENTITY FULL",
]

MES_SCHEMA = [
    """CREATE TABLE customers (
        crm_customer_id BIGINT NOT NULL PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        email VARCHAR(200),
        country CHAR(2)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE work_orders (
        crm_order_id BIGINT NOT NULL PRIMARY KEY,
        crm_customer_id BIGINT NOT NULL,
        state ENUM('draft','RELEASED','RUNNING','DONE','cancelled') NOT NULL DEFAULT 'draft',
        planned_qty INT NOT NULL,
        produced_qty INT NOT NULL DEFAULT 0,
        due_date DATE NULL,
        finished_at DATETIME(6) NULL,
        notes JSON NULL,
        updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        machine VARCHAR(40) NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE work_order_lines (
        crm_line_id BIGINT NOT NULL PRIMARY KEY,
        crm_order_id BIGINT NOT NULL,
        sku VARCHAR(40) NOT NULL,
        qty INT NOT NULL,
        unit_price DECIMAL(12,2) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]


def sample_tables(conflict: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {"crm": "public.customers", "mes": "customers", "direction": "crm_to_mes", "key": ["id"],
         "columns": {"id": "crm_customer_id", "name": "name", "email": "email", "country": "country"}},
        {"crm": "public.sales_orders", "mes": "work_orders", "direction": "both", "key": ["id"],
         "columns": {
             "id": "crm_order_id", "customer_id": "crm_customer_id",
             "status": {"mes": "state", "values": {"confirmed": "RELEASED",
                                                   "in_production": "RUNNING", "shipped": "DONE"}},
             "quantity": "planned_qty", "produced_qty": "produced_qty", "due_date": "due_date",
             "finished_at": "finished_at", "notes": "notes", "updated_at": "updated_at"},
         **({"conflict": conflict} if conflict else {})},
        {"crm": "public.order_lines", "mes": "work_order_lines", "direction": "crm_to_mes",
         "key": ["id"],
         "columns": {"id": "crm_line_id", "order_id": "crm_order_id", "sku": "sku",
                     "quantity": "qty", "unit_price": "unit_price"}},
    ]


def config_dict(name: str, crm_dsn: str, mes_dsn: str, server_id: int,
                tables: list[dict[str, Any]] | None = None, **sections: Any) -> dict[str, Any]:
    return {
        "bridge": {"name": name},
        "crm": {"dsn": crm_dsn},
        "mes": {"dsn": mes_dsn, "server_id": server_id, "heartbeat_seconds": 0.5},
        "tables": tables if tables is not None else sample_tables(),
        **sections,
    }
