#!/bin/bash
# CRM init: the sample schema and a least-privilege `bridge` role.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres --dbname crm -v bridge_password="$BRIDGE_PASSWORD" <<'SQL'
CREATE TYPE order_status AS ENUM ('draft', 'confirmed', 'in_production', 'shipped', 'cancelled');
CREATE TABLE customers (
    id bigint PRIMARY KEY, name text NOT NULL, email varchar(200), country char(2),
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE sales_orders (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id),
    status order_status NOT NULL DEFAULT 'draft', quantity integer NOT NULL,
    produced_qty integer NOT NULL DEFAULT 0, due_date date, finished_at timestamptz,
    notes jsonb, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_lines (
    id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES sales_orders(id) ON DELETE CASCADE,
    sku varchar(40) NOT NULL, quantity integer NOT NULL, unit_price numeric(12,2) NOT NULL);
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE sales_orders REPLICA IDENTITY FULL;
ALTER TABLE order_lines REPLICA IDENTITY FULL;

CREATE ROLE bridge LOGIN REPLICATION PASSWORD :'bridge_password';
GRANT CREATE ON DATABASE crm TO bridge;                -- state schema plant1_bridge
GRANT USAGE ON SCHEMA public TO bridge;
GRANT SELECT ON customers, sales_orders, order_lines TO bridge;
GRANT INSERT, UPDATE, DELETE ON sales_orders TO bridge; -- tables the MES writes back to
-- the publication is created by the table owner (or run `setup` as the owner once)
CREATE PUBLICATION plant1_bridge FOR TABLE customers, sales_orders, order_lines;
ALTER PUBLICATION plant1_bridge OWNER TO bridge;     -- lets `setup` add its own tables
SELECT pg_replication_origin_create('plant1_bridge');
SELECT pg_replication_origin_create('plant1_bridge_admin');
GRANT EXECUTE ON FUNCTION pg_replication_origin_session_setup(text) TO bridge;
GRANT EXECUTE ON FUNCTION pg_replication_origin_session_reset() TO bridge;
GRANT EXECUTE ON FUNCTION pg_replication_origin_progress(text, boolean) TO bridge;
GRANT EXECUTE ON FUNCTION pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO bridge;
SQL
