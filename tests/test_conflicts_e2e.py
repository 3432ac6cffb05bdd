"""Conflicts produced for real: concurrent writes on both servers while the bridge runs.

A race is made deterministic by holding the MES row lock in an open transaction, committing the
CRM change, waiting until the bridge's MES applier is blocked on that lock, then committing the
MES change: each side has changed the row before the bridge carried the other's change."""

from __future__ import annotations

import json
import random
import threading
import time

import pymysql
import pytest

from tests.bridgeenv import BridgeEnv, wait_until

pytestmark = pytest.mark.integration

CRM = ["""CREATE TABLE orders (id bigint PRIMARY KEY, qty int, status text, produced int,
          note text, counter int, updated_at timestamptz)""",
       "ALTER TABLE orders REPLICA IDENTITY FULL"]
MES = ["""CREATE TABLE orders (id BIGINT PRIMARY KEY, qty INT, status VARCHAR(20), produced INT,
          note VARCHAR(100), counter INT, updated_at DATETIME(6))"""]
COLS = ["id", "qty", "status", "produced", "note", "counter", "updated_at"]


def table(**conflict):
    return [{"crm": "public.orders", "mes": "orders", "direction": "both", "key": ["id"],
             "columns": {c: c for c in COLS}, "conflict": conflict}]


@pytest.fixture
def make_env(pg_server, mariadb_server, tmp_path):
    envs = []

    def make(**conflict):
        e = BridgeEnv(pg_server, mariadb_server, tmp_path, CRM, MES, tables=table(**conflict))
        e.start()
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.close()


def rows(env, side):
    q = f"SELECT {', '.join(COLS[:-1])} FROM orders ORDER BY id"
    return [tuple(r) for r in (env.crm(q) if side == "crm" else env.mes(q))]


def conflicts(env):
    crm = env.crm(f"SELECT conflict_type, rule, winner, status, incoming_after, target_found "
                  f"FROM {env.config.state_schema}.conflicts ORDER BY id")
    mes = env.mes(f"SELECT conflict_type, rule, winner, status, incoming_after, target_found "
                  f"FROM {env.config.state_prefix}conflicts ORDER BY id")
    return crm, mes


def seed(env, *ids, **vals):
    row = {"qty": 1, "status": "new", "produced": 0, "note": "n", "counter": 0,
           "updated_at": "2026-01-01 00:00:00+00", **vals}
    for i in ids:
        env.crm("INSERT INTO orders (id, qty, status, produced, note, counter, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)", (i, *row.values()))
    wait_until(lambda: len(rows(env, "mes")) >= len(ids), what="seed rows on the MES")


def race(env, crm_sql, mes_sql, crm_params=None, mes_params=None, gap=0.0):
    """CRM commits first, MES second; neither change has crossed when the other commits."""
    c = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root", database=env.mes_db,
                        autocommit=False, init_command="SET time_zone='+00:00'")
    try:
        with c.cursor() as cur:
            cur.execute(mes_sql, mes_params)  # holds the row lock
        env.crm(crm_sql, crm_params)
        wait_until(lambda: env.mes("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                                   "WHERE trx_state = 'LOCK WAIT'")[0][0] >= 1,
                   what="the bridge's MES applier waiting on the row lock")
        time.sleep(gap)
        c.commit()
    finally:
        c.close()


def converged(env, n_conflicts=2):
    wait_until(lambda: rows(env, "crm") == rows(env, "mes")
               and sum(map(len, conflicts(env))) >= n_conflicts, timeout=30, what="convergence")
    return rows(env, "crm")


class TestEachConflictType:
    def test_update_differs_both_sides_record_it(self, make_env):
        """Concurrent updates of one row: both sides detect update_differs and converge."""
        env = make_env(rule="last_writer_wins", crm_version_column="updated_at")
        seed(env, 1)
        race(env, "UPDATE orders SET qty = 10, updated_at = '2026-01-01 10:00:00+00' WHERE id = 1",
             "UPDATE orders SET qty = 20, updated_at = '2026-01-01 11:00:00' WHERE id = 1")
        assert converged(env)[0][1] == 20  # the MES version is newer
        crm, mes = conflicts(env)
        assert [c[0] for c in crm] == [c[0] for c in mes] == ["update_differs"]
        assert crm[0][2] == mes[0][2] == "mes"
        # both versions are kept in the log
        assert json.loads(mes[0][4])["qty"] == 10 and json.loads(mes[0][5])["qty"] == 20

    def test_insert_exists(self, make_env):
        """The same key inserted on both sides at once."""
        env = make_env(rule="last_writer_wins", crm_version_column="updated_at")
        race(env, "INSERT INTO orders (id, qty, updated_at) VALUES (5, 1, '2026-01-02 00:00:00+00')",
             "INSERT INTO orders (id, qty, updated_at) VALUES (5, 2, '2026-01-01 00:00:00')")
        assert converged(env)[0][1] == 1  # the CRM version is newer
        crm, mes = conflicts(env)
        assert {c[0] for c in crm} == {c[0] for c in mes} == {"insert_exists"}

    def test_delete_differs_and_update_missing(self, make_env):
        """A delete racing an update: delete_differs on one side, update_missing on the other;
        the delete wins on both."""
        env = make_env(rule="last_writer_wins", crm_version_column="updated_at")
        seed(env, 1)
        race(env, "UPDATE orders SET qty = 10 WHERE id = 1", "DELETE FROM orders WHERE id = 1")
        assert converged(env) == []
        crm, mes = conflicts(env)
        assert [c[0] for c in crm] == ["delete_differs"] and [c[0] for c in mes] == ["update_missing"]

    def test_delete_missing(self, make_env):
        """Both sides delete the same row."""
        env = make_env(rule="last_writer_wins", crm_version_column="updated_at")
        seed(env, 1)
        race(env, "DELETE FROM orders WHERE id = 1", "DELETE FROM orders WHERE id = 1")
        assert converged(env) == []
        crm, mes = conflicts(env)
        assert [c[0] for c in crm] == [c[0] for c in mes] == ["delete_missing"]

    def test_ownership_violation_is_refused_and_written_back(self, make_env):
        """A CRM change to an MES-owned column is not applied, is recorded, and is undone."""
        env = make_env(rule="last_writer_wins", owner="crm", owners={"produced": "mes"},
                       crm_version_column="updated_at")
        seed(env, 1)
        env.mes("UPDATE orders SET produced = 7 WHERE id = 1")
        wait_until(lambda: env.crm("SELECT produced FROM orders WHERE id = 1") == [(7,)])
        env.crm("UPDATE orders SET produced = 99, qty = 3 WHERE id = 1")
        wait_until(lambda: rows(env, "crm") == rows(env, "mes") and rows(env, "crm")[0][3] == 7,
                   what="write-back of the owner's value")
        assert rows(env, "mes")[0][1] == 3  # the CRM-owned column did flow
        _, mes = conflicts(env)
        assert [c[0] for c in mes] == ["ownership_violation"] and mes[0][2] == "mes"


class TestEachRule:
    @pytest.mark.parametrize("conflict,expected", [
        ({"rule": "last_writer_wins", "crm_version_column": "updated_at"}, {"qty": 20}),
        ({"rule": "last_writer_wins"}, {"qty": 20}),  # commit times: the MES committed later
        ({"rule": "crm_wins"}, {"qty": 10}),
        ({"rule": "mes_wins"}, {"qty": 20}),
        ({"rule": "last_writer_wins", "owner": "crm"}, {"qty": 10}),
        ({"rule": "last_writer_wins", "owner": "mes", "priority": "crm"}, {"qty": 20}),
    ])
    def test_rule_decides_the_same_on_both_sides(self, make_env, conflict, expected):
        """Each rule picks one winner, the same in both directions."""
        env = make_env(**conflict)
        seed(env, 1)
        race(env, "UPDATE orders SET qty = 10, updated_at = '2026-01-01 10:00:00+00' WHERE id = 1",
             "UPDATE orders SET qty = 20, updated_at = '2026-01-01 11:00:00' WHERE id = 1", gap=1.1)
        assert converged(env)[0][1] == expected["qty"]

    def test_column_merge_keeps_disjoint_changes_on_both_sides(self, make_env):
        """Concurrent updates of different columns both survive, on both sides."""
        env = make_env(rule="column_merge")
        seed(env, 1)
        race(env, "UPDATE orders SET qty = 10, note = 'crm' WHERE id = 1",
             "UPDATE orders SET produced = 5, status = 'RUNNING' WHERE id = 1")
        r = converged(env)[0]
        assert (r[1], r[4], r[3], r[2]) == (10, "crm", 5, "RUNNING")
        crm, mes = conflicts(env)
        assert crm[0][2] == mes[0][2] == "merged"

    def test_delta_counts_both_increments(self, make_env):
        """delta: concurrent increments of a counter both count."""
        env = make_env(rule="last_writer_wins", columns={"counter": "delta"})
        seed(env, 1, counter=100)
        race(env, "UPDATE orders SET counter = counter + 3 WHERE id = 1",
             "UPDATE orders SET counter = counter + 10 WHERE id = 1")
        assert converged(env)[0][5] == 113

    def test_ownership_per_column(self, make_env):
        """CRM owns the order fields, MES owns production: each side's columns win."""
        env = make_env(rule="last_writer_wins", owner="crm",
                       owners={"produced": "mes", "status": "mes"})
        seed(env, 1)
        race(env, "UPDATE orders SET qty = 10, produced = 99 WHERE id = 1",
             "UPDATE orders SET qty = 77, produced = 5, status = 'RUNNING' WHERE id = 1")
        r = converged(env)[0]
        assert (r[1], r[3], r[2]) == (10, 5, "RUNNING")

    def test_manual_parks_and_later_changes_queue(self, make_env):
        """manual: the change is parked on both sides, later changes wait behind it."""
        env = make_env(rule="manual")
        seed(env, 1, 2)
        race(env, "UPDATE orders SET qty = 10 WHERE id = 1", "UPDATE orders SET qty = 20 WHERE id = 1")
        wait_until(lambda: sum(1 for c in conflicts(env)[0] + conflicts(env)[1] if c[3] == "parked") == 2,
                   what="parked on both sides")
        env.crm("UPDATE orders SET qty = 11 WHERE id = 1")
        env.crm("UPDATE orders SET qty = 5 WHERE id = 2")  # other rows keep streaming
        wait_until(lambda: env.mes("SELECT qty FROM orders WHERE id = 2") == [(5,)])
        wait_until(lambda: any(c[3] == "queued" for c in conflicts(env)[1]), what="queued behind")
        assert env.mes("SELECT qty FROM orders WHERE id = 1") == [(20,)]  # untouched while parked


def test_random_concurrent_writers_converge(make_env, capsys):
    """60 s of random concurrent writers on both sides (overlapping updates, inserts, deletes):
    afterwards both sides are identical and the conflicts are all in the log."""
    env = make_env(rule="last_writer_wins", crm_version_column="updated_at", priority="crm")
    seed(env, *range(1, 41))
    duration = float(__import__("os").environ.get("BRIDGE_CONVERGENCE_SECONDS", "60"))
    stop = time.monotonic() + duration
    writes = {"crm": 0, "mes": 0}
    touched = {"crm": set(), "mes": set()}
    deleted: set[int] = set()
    lock = threading.Lock()

    def connect(side: str):
        if side == "crm":
            import psycopg

            conn = psycopg.connect(env.pg.dsn(env.crm_db), autocommit=True)
            return lambda sql, params=None: conn.execute(sql, params), conn.close
        conn = pymysql.connect(host="127.0.0.1", port=env.my.port, user="root",
                               database=env.mes_db, autocommit=True,
                               init_command="SET time_zone='+00:00'")
        return lambda sql, params=None: conn.cursor().execute(sql, params), conn.close

    def writer(side: str, seed_: int, new_ids):
        rnd = random.Random(seed_)
        run, close = connect(side)
        try:
            _write_loop(side, rnd, run, new_ids)
        finally:
            close()

    def _write_loop(side, rnd, run, new_ids):
        while time.monotonic() < stop:
            with lock:
                alive = [k for k in range(1, 41) if k not in deleted]
            k = rnd.choice(alive)
            op = rnd.random()
            try:
                if op < 0.85:
                    sql = ("UPDATE orders SET qty = %s, note = %s, updated_at = clock_timestamp() WHERE id = %s"
                           if side == "crm" else
                           "UPDATE orders SET qty = %s, note = %s, updated_at = UTC_TIMESTAMP(6) WHERE id = %s")
                    run(sql, (rnd.randint(0, 999), f"{side}{rnd.random():.4f}", k))
                elif op < 0.95:
                    i = next(new_ids)
                    sql = ("INSERT INTO orders (id, qty, updated_at) VALUES (%s, 1, clock_timestamp())"
                           if side == "crm" else
                           "INSERT INTO orders (id, qty, updated_at) VALUES (%s, 1, UTC_TIMESTAMP(6))")
                    run(sql, (i,))
                    k = i
                elif len(alive) > 20:
                    with lock:
                        deleted.add(k)
                    run("DELETE FROM orders WHERE id = %s", (k,))
                writes[side] += 1
                touched[side].add(k)
            except (pymysql.err.OperationalError,) as exc:  # lock wait timeout / deadlock: retry
                if exc.args[0] not in (1205, 1213):
                    raise
            time.sleep(rnd.random() * 0.002)

    threads = [threading.Thread(target=writer, args=("crm", 1, iter(range(10_000, 20_000)))),
               threading.Thread(target=writer, args=("mes", 2, iter(range(20_000, 30_000))))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    wait_until(lambda: rows(env, "crm") == rows(env, "mes"), timeout=120, what="both sides identical")
    crm_c = env.crm(f"SELECT row_key, conflict_type FROM {env.config.state_schema}.conflicts")
    mes_c = env.mes(f"SELECT row_key, conflict_type FROM {env.config.state_prefix}conflicts")
    keys_both = touched["crm"] & touched["mes"]
    for key, kind in crm_c + mes_c:  # no conflict on a row only one side ever wrote
        k = (key if isinstance(key, dict) else json.loads(key))["id"]
        assert k in keys_both or kind in ("update_missing", "delete_missing", "delete_differs"), (k, kind)
    total_conflicts = len(crm_c) + len(mes_c)
    assert total_conflicts > 0
    with capsys.disabled():
        print(f"\nconvergence: {sum(writes.values())} writes in {elapsed:.1f} s "
              f"({sum(writes.values()) / elapsed:.0f} rows/s), {total_conflicts} conflicts "
              f"({total_conflicts / elapsed:.2f}/s), rows={len(rows(env, 'crm'))}")
