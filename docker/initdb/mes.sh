#!/bin/bash
# MES init: the sample schema and a least-privilege `bridge` user.
# Passwords travel in the environment (MYSQL_PWD) and as an escaped SQL literal, never on a
# command line.
set -euo pipefail
export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"
quoted=$(printf '%s' "$BRIDGE_PASSWORD" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
mysql -uroot mes <<'SQL'
CREATE TABLE customers (
    crm_customer_id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,
    email VARCHAR(200), country CHAR(2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE work_orders (
    crm_order_id BIGINT NOT NULL PRIMARY KEY, crm_customer_id BIGINT NOT NULL,
    state ENUM('draft','RELEASED','RUNNING','DONE','cancelled') NOT NULL DEFAULT 'draft',
    planned_qty INT NOT NULL, produced_qty INT NOT NULL DEFAULT 0, due_date DATE NULL,
    finished_at DATETIME(6) NULL, notes JSON NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), machine VARCHAR(40) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE work_order_lines (
    crm_line_id BIGINT NOT NULL PRIMARY KEY, crm_order_id BIGINT NOT NULL,
    sku VARCHAR(40) NOT NULL, qty INT NOT NULL, unit_price DECIMAL(12,2) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
SQL
mysql -uroot mes <<SQL
CREATE USER 'bridge'@'%' IDENTIFIED BY '${quoted}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'bridge'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON mes.* TO 'bridge'@'%';
SQL
