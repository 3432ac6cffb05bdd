"""Test helpers: a bridge between two fresh databases on the harness servers, run in a
thread (fast) or as a subprocess (for kill -9)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

from bridge.config import Config, parse_config
from bridge.sample import config_dict

_ids = itertools.count(1)
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def to_toml(cfg: dict[str, Any]) -> str:
    lines = []
    for section, body in cfg.items():
        if section == "tables":
            for t in body:
                lines.append("[[tables]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # must parse
    return text


class BridgeEnv:
    def __init__(self, pg, my, tmp: Path, crm_schema: list[str], mes_schema: list[str],
                 tables: list[dict] | None = None, **sections: Any):
        n = next(_ids)
        self.pg, self.my, self.tmp = pg, my, tmp
        self.name = f"b{os.getpid() % 10000}_{n}"
        self.crm_db = f"crm_{self.name}"
        self.mes_db = f"mes_{self.name}"
        pg.create_database(self.crm_db)
        my.create_database(self.mes_db)
        for s in crm_schema:
            pg.execute(s, dbname=self.crm_db)
        for s in mes_schema:
            my.execute(s, dbname=self.mes_db)
        sections.setdefault("apply", {"retry_max_seconds": 2.0})
        self.raw = config_dict(self.name, pg.dsn(self.crm_db), my.dsn(self.mes_db),
                               server_id=5000 + n + (os.getpid() % 1000) * 10, tables=tables, **sections)
        self.config: Config = parse_config(self.raw)
        self.config_path = tmp / f"{self.name}.toml"
        self.config_path.write_text(to_toml(self.raw))
        self.daemon = None
        self.thread: threading.Thread | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / f"{self.name}.log"

    # --- SQL conveniences -------------------------------------------------------------------
    def crm(self, sql: str, params: Any = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg.dsn(self.crm_db), autocommit=True,
                             options="-c TimeZone=UTC") as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def mes(self, sql: str, params: Any = None) -> list[tuple]:
        import pymysql

        c = pymysql.connect(host="127.0.0.1", port=self.my.port, user="root", database=self.mes_db,
                            autocommit=True, charset="utf8mb4", init_command="SET time_zone='+00:00'")
        try:
            with c.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            c.close()

    # --- run in a thread ----------------------------------------------------------------------
    def setup(self) -> None:
        from bridge.setup import setup

        setup(self.config)

    def start(self) -> None:
        from bridge.daemon import Daemon

        self.setup()
        self.daemon = Daemon(self.config)
        self.thread = threading.Thread(target=self.daemon.run, kwargs={"install_signals": False},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop.set()
            assert self.thread is not None
            self.thread.join(timeout=60)
            assert not self.thread.is_alive(), "daemon did not stop"
            errors = self.daemon.errors
            self.daemon = None
            assert not errors, f"daemon failed: {errors}"

    # --- run as a process -----------------------------------------------------------------------
    def start_process(self) -> subprocess.Popen:
        self._log_mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        return self.proc

    def wait_running(self, timeout: float = 60) -> None:
        """Wait until the process started last runs its daemon. `run` checks and sets up
        first; a SIGTERM before the daemon's handlers are installed kills the process."""
        def running() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "the bridge process exited"
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(self._log_mark)
                return '"bridge_started"' in f.read()

        wait_until(running, timeout=timeout, what="the bridge process running")

    def kill_process(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def term_process(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._drop_replication_objects()

    def _drop_replication_objects(self, timeout: float = 10.0) -> None:
        """Free the server-wide resources of this bridge: its slot and the replication state
        slots of its origins. Both count against max_replication_slots, so a long test
        session that left them behind would run out ("could not find free replication state
        slot"). The walsender/applier of a killed bridge may still be exiting: retry."""
        import psycopg

        origins = [self.config.origin_name, self.config.admin_origin_name]
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.crm("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s", (self.config.slot_name,))
                self.crm("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                         "WHERE roname = ANY(%s)", (origins,))
                return
            except psycopg.Error:  # slot or origin still in use by an exiting session
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)
