"""Mapping on real servers: renames, value maps both ways, unmapped columns left alone, and
transaction order that respects foreign keys on both sides."""

from __future__ import annotations

import pytest

from bridge.sample import CRM_SCHEMA, MES_SCHEMA
from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = pytest.mark.integration

FK_CRM = [
    "CREATE TABLE parent (id bigint PRIMARY KEY, name text)",
    "CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent(id), v int)",
    "ALTER TABLE parent REPLICA IDENTITY FULL",
    "ALTER TABLE child REPLICA IDENTITY FULL",
]
FK_MES = [
    "CREATE TABLE parent (id BIGINT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB",
    "CREATE TABLE child (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL, v INT,"
    " FOREIGN KEY (parent_id) REFERENCES parent(id)) ENGINE=InnoDB",
]
FK_TABLES = [
    {"crm": "public.parent", "mes": "parent", "direction": "both", "key": ["id"],
     "columns": {"id": "id", "name": "name"}},
    {"crm": "public.child", "mes": "child", "direction": "both", "key": ["id"],
     "columns": {"id": "id", "parent_id": "parent_id", "v": "v"}},
]


@pytest.fixture
def sample(pg_server, mariadb_server, tmp_path):
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM_SCHEMA, MES_SCHEMA)
    env.start()
    yield env
    env.close()


@pytest.fixture
def fk(pg_server, mariadb_server, tmp_path):
    env = BridgeEnv(pg_server, mariadb_server, tmp_path, FK_CRM, FK_MES, tables=FK_TABLES)
    env.start()
    yield env
    env.close()


def test_value_maps_renames_and_unmapped_columns(sample):
    """CRM 'confirmed' arrives as MES 'RELEASED' and back; MES-only columns are left alone."""
    sample.crm("INSERT INTO customers (id, name) VALUES (1, 'Acme')")
    sample.crm("INSERT INTO sales_orders (id, customer_id, status, quantity) VALUES (7, 1, 'confirmed', 40)")
    wait_until(lambda: sample.mes("SELECT state, planned_qty FROM work_orders WHERE crm_order_id = 7")
               == [("RELEASED", 40)], what="mapped insert on the MES")
    sample.mes("UPDATE work_orders SET machine = 'press-4' WHERE crm_order_id = 7")  # MES-only column
    sample.mes("UPDATE work_orders SET state = 'DONE', produced_qty = 40 WHERE crm_order_id = 7")
    wait_until(lambda: sample.crm("SELECT status::text, produced_qty FROM sales_orders WHERE id = 7")
               == [("shipped", 40)], what="reverse value map on the CRM")
    sample.crm("UPDATE sales_orders SET quantity = 45 WHERE id = 7")
    wait_until(lambda: sample.mes("SELECT planned_qty FROM work_orders WHERE crm_order_id = 7") == [(45,)])
    assert sample.mes("SELECT machine, state FROM work_orders WHERE crm_order_id = 7") == [("press-4", "DONE")]


def test_transactions_respect_foreign_keys_both_ways(fk):
    """Parent-then-child inserts and child-then-parent deletes apply in source order on a target
    that enforces the foreign keys, in both directions, with nothing dead-lettered."""
    fk.crm("BEGIN; INSERT INTO parent VALUES (1, 'p1'); INSERT INTO child VALUES (10, 1, 1), (11, 1, 2); COMMIT")
    with __import__("pymysql").connect(host="127.0.0.1", port=fk.my.port, user="root",
                                        database=fk.mes_db, autocommit=False) as c:
        with c.cursor() as cur:
            cur.execute("INSERT INTO parent VALUES (2, 'p2')")
            cur.execute("INSERT INTO child VALUES (20, 2, 1)")
        c.commit()
    wait_until(lambda: fk.mes("SELECT COUNT(*) FROM child")[0][0] == 3
               and fk.crm("SELECT COUNT(*) FROM child")[0][0] == 3, what="children on both sides")
    fk.crm("BEGIN; DELETE FROM child WHERE parent_id = 1; DELETE FROM parent WHERE id = 1; COMMIT")
    with __import__("pymysql").connect(host="127.0.0.1", port=fk.my.port, user="root",
                                        database=fk.mes_db, autocommit=False) as c:
        with c.cursor() as cur:
            cur.execute("DELETE FROM child WHERE parent_id = 2")
            cur.execute("DELETE FROM parent WHERE id = 2")
        c.commit()
    wait_until(lambda: fk.mes("SELECT COUNT(*) FROM parent")[0][0] == 0
               and fk.crm("SELECT COUNT(*) FROM parent")[0][0] == 0, what="deletes on both sides")
    assert fk.crm(f"SELECT COUNT(*) FROM {fk.config.state_schema}.dead_letters") == [(0,)]
    assert fk.mes(f"SELECT COUNT(*) FROM {fk.config.state_prefix}dead_letters") == [(0,)]
