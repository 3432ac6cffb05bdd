"""Private servers, a fresh pair of databases per run, and the bridge as a subprocess.

The bridge runs exactly as in production (`python -m bridge run -c FILE --no-setup`, JSON log
on stderr, audit lines included) in its own process, so its RSS and CPU time are its own and
py-spy can attach to it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pymysql

from bench.schema import TABLES, Table

ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count(1)


class Servers:
    """One private PostgreSQL 15 and one MariaDB server for the whole suite."""

    def __init__(self) -> None:
        from bridge.devservers import MariaDBServer, PostgresServer

        self.pg = PostgresServer(settings={"max_wal_size": "4GB"})
        self.my = MariaDBServer(server_id=1)

    def __enter__(self) -> "Servers":
        self.pg.__enter__()
        try:
            self.my.__enter__()
        except BaseException:
            self.pg.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.my.__exit__(None, None, None)
        finally:
            self.pg.__exit__(None, None, None)

    def versions(self) -> dict[str, str]:
        pg = self.pg.query("SHOW server_version")[0][0]
        my = self.my.query("SELECT VERSION()")[0][0]
        return {"postgresql": str(pg), "mariadb": str(my)}


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
    return "\n".join(lines) + "\n"


class Env:
    """Fresh CRM and MES databases holding the bench tables, plus the bridge config."""

    def __init__(self, servers: Servers, workdir: Path, tables: tuple[Table, ...] = tuple(TABLES.values()),
                 apply: dict[str, Any] | None = None):
        n = next(_ids)
        self.servers = servers
        self.name = f"bench{os.getpid() % 10000}_{n}"
        self.crm_db, self.mes_db = f"crm_{self.name}", f"mes_{self.name}"
        self.server_id = 7000 + n
        self.workdir = workdir
        servers.pg.create_database(self.crm_db)
        servers.my.create_database(self.mes_db)
        for t in tables:
            for ddl in t.crm_ddl:
                servers.pg.execute(ddl, dbname=self.crm_db)
            for ddl in t.mes_ddl:
                servers.my.execute(ddl, dbname=self.mes_db)
        self.raw = {
            "bridge": {"name": self.name},
            "crm": {"dsn": servers.pg.dsn(self.crm_db)},
            "mes": {"dsn": servers.my.dsn(self.mes_db), "server_id": self.server_id},
            "tables": [t.mapping() for t in tables],
            "apply": dict(apply or {}),
            "logging": {"level": "info"},
        }
        from bridge.config import parse_config

        self.config = parse_config(self.raw)
        self.config_path = workdir / f"{self.name}.toml"
        self.config_path.write_text(to_toml(self.raw))

    # --- connections ------------------------------------------------------------------
    def crm(self, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(self.servers.pg.dsn(self.crm_db), autocommit=autocommit,
                               options="-c TimeZone=UTC")

    def mes(self, autocommit: bool = False) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.servers.my.port, user="root",
                               database=self.mes_db, autocommit=autocommit, charset="utf8mb4",
                               init_command="SET time_zone = '+00:00'")

    def setup(self) -> None:
        """The bridge's setup: slot, publication, origins, state tables, MES start position."""
        from bridge.setup import setup

        setup(self.config)

    def bridge(self, profile: Path | None = None) -> "BridgeProcess":
        return BridgeProcess(self, profile)

    def drop(self) -> None:
        """Free the slot (it would pin WAL for the rest of the suite) and the databases."""
        with psycopg.connect(self.servers.pg.dsn("postgres"), autocommit=True) as c:
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE database = %s AND NOT active", (self.crm_db,))
            c.execute(f'DROP DATABASE IF EXISTS "{self.crm_db}" WITH (FORCE)')
        self.servers.my.execute(f"DROP DATABASE IF EXISTS `{self.mes_db}`")


class RssSampler:
    """Peak RSS and CPU time of one process, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def reset(self) -> None:
        self.peak = 0

    def cpu_seconds(self) -> float:
        try:
            t = self.proc.cpu_times()
        except psutil.Error:
            return float("nan")
        return t.user + t.system

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class BridgeProcess:
    """`python -m bridge run` on an Env's config, with its log in the work directory."""

    def __init__(self, env: Env, profile: Path | None = None):
        self.env = env
        self.log_path = env.workdir / f"{env.name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(env.config_path), "--no-setup"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        self.rss = RssSampler(self.proc.pid)
        self._spy: subprocess.Popen | None = None
        self.profile = profile
        if profile is not None:
            self._start_profile(profile)

    def _start_profile(self, out: Path) -> None:
        spy = Path(sys.executable).with_name("py-spy")
        self._spy = subprocess.Popen(
            [str(spy), "record", "--pid", str(self.proc.pid), "--rate", "200", "--format", "raw",
             "--nonblocking", "--threads", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def events(self) -> list[dict]:
        out = []
        with open(self.log_path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_streaming(self, direction: str, timeout: float = 60.0) -> float:
        """Wall-clock time at which `direction` logged `streaming` (its reader starts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events():
                if ev.get("event") == "streaming" and ev.get("direction") == direction:
                    return datetime.fromisoformat(ev["timestamp"]).timestamp()
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.02)
        raise RuntimeError(f"bridge did not start streaming {direction} within {timeout}s; "
                           f"see {self.log_path}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {self.proc.returncode}; see {self.log_path}")

    def stop(self) -> int:
        """SIGTERM, wait; returns the peak RSS in bytes."""
        if self._spy is not None and self._spy.poll() is None:
            self._spy.send_signal(signal.SIGINT)
            try:
                self._spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        errors = [e for e in self.events() if e.get("level") in ("error", "critical")]
        if errors:
            raise RuntimeError(f"bridge logged errors: {errors[:3]} (log {self.log_path})")
        return self.rss.stop()


class CpuMeter:
    """CPU used by the whole machine and by processes outside this suite, in cores.

    Other engineers' test runs share the machine: every figure carries the average number of
    cores other processes used while it was measured (`other_cores`), so a noisy figure shows.
    The suite = this process and its descendants (servers, bridge), reaped children included.
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._ours0 = self._ours()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    @staticmethod
    def _ours() -> float:
        me = psutil.Process()
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy = (self._busy() - self._busy0) / wall
        ours = (self._ours() - self._ours0) / wall
        return {"machine_cores": round(busy, 2), "other_cores": round(max(0.0, busy - ours), 2)}
