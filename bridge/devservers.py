"""Private, throw-away PostgreSQL 15 and MariaDB servers for tests and demos.

Each server lives in its own temporary directory and listens on a free port on 127.0.0.1,
so several instances can run side by side and none of them touches the system servers
(ports 5432/3306, /etc/mysql, /etc/postgresql).

* :class:`PostgresServer` runs ``initdb`` on first start (trust auth, superuser ``postgres``,
  UTF8, locale C) and is configured for logical decoding (``wal_level=logical``).
* :class:`MariaDBServer` runs ``mariadb-install-db`` on first start (``root`` without a
  password) and writes a ROW binlog with FULL row image and FULL row metadata.

Durability is left on for both (fsync, ``innodb_flush_log_at_trx_commit=1``,
``sync_binlog=1``) because the test-suite crashes servers on purpose: :meth:`kill` SIGKILLs
the server (PostgreSQL: the postmaster together with all its children) and a later
:meth:`start` must find every committed transaction again.

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``postgres``
are run as the ``postgres`` OS user (the data directory is handed to it); otherwise they
run as the current user. MariaDB runs as the current user (``--user=root`` when root).

The server processes are children of this process. Every instance is registered in a
module-level registry and an :mod:`atexit` hook calls :meth:`cleanup` on the ones still
alive, so an aborted test run does not leak servers. (Nothing can clean up after SIGKILL
of the Python process itself.)

Example::

    with PostgresServer() as pg, MariaDBServer(server_id=2) as my:
        pg.create_database("crm")
        pg.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname="crm")
        my.create_database("mes")
        print(pg.dsn("crm"), my.dsn("mes"))
"""

from __future__ import annotations

import atexit
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote

if TYPE_CHECKING:  # drivers are imported lazily so the module loads without them
    import psycopg
    import pymysql

__all__ = ["free_port", "PostgresServer", "MariaDBServer", "DEFAULT_START_TIMEOUT"]

PG_BIN_DIR = Path(os.environ.get("BRIDGE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
MARIADBD = Path(os.environ.get("BRIDGE_MARIADBD", "/usr/sbin/mariadbd"))
MARIADB_INSTALL_DB = Path(os.environ.get("BRIDGE_MARIADB_INSTALL_DB", "/usr/bin/mariadb-install-db"))
PG_OS_USER = "postgres"  # OS account that runs PostgreSQL when we are root

DEFAULT_START_TIMEOUT = 60.0  # seconds until a starting server must accept connections
DEFAULT_STOP_TIMEOUT = 60.0  # seconds a clean shutdown may take before the server is killed
LOG_TAIL_LINES = 30

_SYSTEM_PORTS = frozenset({3306, 5432})
_SOCKET_PATH_MAX = 100  # AF_UNIX sun_path holds 107 bytes; keep a margin
# Environment variables that could make a server or tool look at the system instances.
_ENV_DROP_PREFIXES = ("PG", "MYSQL", "MARIADB")


# --------------------------------------------------------------------------- ports

_reserved_ports: set[int] = set()
_ports_lock = threading.Lock()


def _port_is_free(port: int) -> bool:
    """True if 127.0.0.1:port can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and not handed out before.

    Ports are picked below the kernel's ephemeral range, so that the port of a server
    cannot be taken by the local end of some outgoing client connection while the server
    is down for a restart. Ports returned once are never returned again by this process,
    and 3306/5432 are never returned.
    """
    low_ephemeral, _ = _ephemeral_range()
    with _ports_lock:
        if low_ephemeral > 20000:
            for _ in range(200):
                port = random.randint(20000, low_ephemeral - 1)
                if port not in _reserved_ports and port not in _SYSTEM_PORTS and _port_is_free(port):
                    _reserved_ports.add(port)
                    return port
        for _ in range(200):  # fall back to whatever the kernel offers
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if port not in _reserved_ports and port not in _SYSTEM_PORTS:
                _reserved_ports.add(port)
                return port
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")


# ------------------------------------------------------------------ process helpers


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_DROP_PREFIXES)}
    env["TZ"] = "UTC"
    return env


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _child_pids(ppid: int) -> list[int]:
    """PIDs whose parent is ``ppid`` (scans /proc)."""
    children = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid:
            children.append(int(entry.name))
    return children


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log file (or a note that it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _PortInUse(Exception):
    """The server exited because its TCP port was taken."""


# ----------------------------------------------------------------------- registry

_live: dict[int, _ManagedServer] = {}
_live_lock = threading.Lock()


def _cleanup_all() -> None:
    """atexit hook: stop and clean every server this process created and still owns."""
    with _live_lock:
        servers = [s for s in _live.values() if s._owner_pid == os.getpid()]
    for server in servers:
        try:
            server.cleanup()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_cleanup_all)


# --------------------------------------------------------------------- base class


class _ManagedServer:
    """Lifecycle shared by both servers: directories, port, process, readiness, stop."""

    kind: ClassVar[str] = "server"
    _dir_prefix: ClassVar[str] = "bridge-"
    _log_name: ClassVar[str] = "server.log"
    _reserved_settings: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        base_dir: Path | str | None,
        port: int | None,
        settings: dict[str, str | None] | None,
    ) -> None:
        self.settings: dict[str, str | None] = dict(settings or {})
        for key in self.settings:
            if self._normalize_key(key) in self._reserved_settings:
                raise ValueError(f"{self.kind} setting {key!r} is managed by the harness")
        if base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=self._dir_prefix)).resolve()
            self._owns_base_dir = True
        else:
            self.base_dir = Path(base_dir).resolve()
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._owns_base_dir = False
        # mkdtemp makes 0700 dirs; other OS users (postgres) must be able to traverse it.
        if self._owns_base_dir:
            self.base_dir.chmod(0o755)
        self._auto_port = port is None
        self.port: int = port if port is not None else free_port()
        self.data_dir: Path = self.base_dir / "data"
        self.log_path: Path = self.base_dir / self._log_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_ok = False
        self._extra_dirs: list[Path] = []
        self._owner_pid = os.getpid()
        with _live_lock:
            _live[id(self)] = self

    # -- hooks for subclasses ---------------------------------------------------
    @staticmethod
    def _normalize_key(key: str) -> str:
        return key

    def _initialize(self) -> None:
        """Create the data directory contents (first start only)."""
        raise NotImplementedError

    def _launch_command(self) -> tuple[list[str], dict[str, Any]]:
        """Command line and extra Popen keyword arguments that run the server."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """One readiness check: True once this very server accepts connections."""
        raise NotImplementedError

    def _stop_signal(self, mode: str) -> int:
        raise NotImplementedError

    def _port_in_use_message(self, log_text: str) -> bool:
        return "Address already in use" in log_text

    # -- public lifecycle ---------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the running server process (PostgreSQL: the postmaster), else None."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Initialise the data directory if needed, start the server and wait until it
        accepts connections. No-op if already running.

        Raises RuntimeError (with the tail of the server log) if the server exits or does
        not become ready within ``timeout`` seconds; a half-started server is killed.
        """
        if self.running:
            return
        if self._owner_pid != os.getpid():
            raise RuntimeError(f"{self.kind} instance belongs to process {self._owner_pid}")
        self._initialize()
        for _attempt in range(5):
            self._launch()
            try:
                self._wait_ready(timeout)
            except _PortInUse:
                # Someone grabbed our port between free_port() and the bind. Only a port we
                # chose ourselves and never used yet may change; restarts keep their port.
                if self._auto_port and not self._started_ok:
                    self.port = free_port()
                    continue
                raise RuntimeError(
                    f"{self.kind} could not bind 127.0.0.1:{self.port} (port in use)\n"
                    f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{_tail(self.log_path)}"
                ) from None
            except BaseException:
                self.kill()  # never leave a half-started server behind
                raise
            self._started_ok = True
            return
        raise RuntimeError(f"{self.kind}: no free port found after several attempts")

    def stop(self, mode: str = "fast", timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server. ``"fast"``: clean shutdown; ``"immediate"``: crash-like.

        A clean shutdown that takes longer than ``timeout`` seconds is turned into a kill
        and reported with RuntimeError. No-op if the server is not running.
        """
        sig = self._stop_signal(mode)
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(
                    f"{self.kind} did not stop ({mode}) within {timeout}s and was killed"
                ) from None
        self._proc = None

    def restart(self, mode: str = "fast", timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Stop (``mode`` as in :meth:`stop`) and start again on the same port and data."""
        self.stop(mode)
        self.start(timeout)

    def kill(self) -> None:
        """Crash the server with SIGKILL (no shutdown work at all). No-op if not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal(proc.pid, signal.SIGKILL)
        proc.wait()
        self._proc = None

    def cleanup(self) -> None:
        """Stop the server if it runs and delete the directories the harness created.

        A ``base_dir`` passed by the caller is left in place (with its data).
        """
        try:
            if self.running:
                try:
                    self.stop("fast", timeout=30)
                except Exception:  # noqa: BLE001 - make sure nothing is left running
                    self.kill()
            self._proc = None
        finally:
            for extra in self._extra_dirs:
                _rmtree(extra)
            self._extra_dirs.clear()
            if self._owns_base_dir:
                _rmtree(self.base_dir)
            with _live_lock:
                _live.pop(id(self), None)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} 127.0.0.1:{self.port} {state} {self.base_dir}>"

    # -- internals ------------------------------------------------------------------
    def _launch(self) -> None:
        cmd, popen_kwargs = self._launch_command()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            log.write(f"\n=== devservers: starting {self.kind} on port {self.port} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env=_server_env(),
                start_new_session=True,  # keep terminal Ctrl-C away; atexit does the cleanup
                **popen_kwargs,
            )

    def _new_log_text(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                if self._port_in_use_message(self._new_log_text()):
                    raise _PortInUse()
                raise RuntimeError(
                    f"{self.kind} exited with code {code} while starting (port {self.port})\n"
                    f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{_tail(self.log_path)}"
                )
            if self._probe():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"{self.kind} did not accept connections on port {self.port} within "
                    f"{timeout}s; killed it\n"
                    f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{_tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _run_tool(self, cmd: list[str], what: str, **popen_kwargs: Any) -> None:
        """Run an initialisation tool, output appended to the log; raise on failure."""
        with self.log_path.open("ab") as log:
            log.write(f"\n=== devservers: {what} ===\n".encode())
            log.flush()
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env=_server_env(),
                check=False,
                **popen_kwargs,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed with exit code {result.returncode}\n"
                f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{_tail(self.log_path)}"
            )

    def _short_socket_dir(self, preferred: Path, socket_name: str) -> Path:
        """``preferred`` if a socket there fits in sun_path, else a new short temp dir."""
        if len(str(preferred / socket_name).encode()) <= _SOCKET_PATH_MAX:
            return preferred
        short = Path(tempfile.mkdtemp(prefix="bridge-sock-"))
        short.chmod(0o755)
        self._extra_dirs.append(short)
        return short


# ------------------------------------------------------------------------ PostgreSQL


class PostgresServer(_ManagedServer):
    """A private PostgreSQL 15 server configured for logical replication.

    ``settings`` override postgresql.conf items (e.g. ``{"wal_level": "replica"}``);
    a value of None drops a default of the harness. ``port`` and
    ``unix_socket_directories`` are managed by the harness. The settings are written to
    ``<data_dir>/devservers.conf`` on every start (included at the end of
    postgresql.conf, so ``ALTER SYSTEM`` still wins). Change ``self.settings`` and
    :meth:`restart` to reconfigure a server.
    """

    kind = "PostgreSQL"
    _dir_prefix = "bridge-pg-"
    _log_name = "postgres.log"
    _reserved_settings = frozenset({"port", "unix_socket_directories"})
    _conf_name = "devservers.conf"

    DEFAULT_SETTINGS: ClassVar[dict[str, str]] = {
        "listen_addresses": "127.0.0.1",
        "wal_level": "logical",
        "max_replication_slots": "20",
        "max_wal_senders": "20",
        "max_connections": "200",
        "fsync": "on",  # never off: the tests crash servers and expect committed data back
        "timezone": "UTC",
        "log_timezone": "UTC",
        "logging_collector": "off",  # log goes to stderr = postgres.log in base_dir
    }

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__(base_dir, port, settings)
        self.socket_dir: Path = self._short_socket_dir(self.data_dir, ".s.PGSQL.65535")
        if _is_root():
            try:
                pw = pwd.getpwnam(PG_OS_USER)
            except KeyError:
                self.cleanup()
                raise RuntimeError(
                    f"running as root needs an OS user {PG_OS_USER!r} for PostgreSQL"
                ) from None
            self._run_as: dict[str, Any] = {
                "user": pw.pw_uid,
                "group": pw.pw_gid,
                "extra_groups": os.getgrouplist(PG_OS_USER, pw.pw_gid),
            }
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        else:
            self._run_as = {}
            self._uid, self._gid = os.getuid(), os.getgid()

    @staticmethod
    def _normalize_key(key: str) -> str:
        return key.strip().lower()

    # -- hooks ---------------------------------------------------------------------
    def _give(self, path: Path) -> None:
        if _is_root():
            os.chown(path, self._uid, self._gid)

    def _initialize(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._give(self.data_dir)
        if _is_root():
            check = subprocess.run(
                ["test", "-w", str(self.data_dir), "-a", "-x", str(self.data_dir)],
                env=_server_env(), cwd="/", check=False, **self._run_as,
            )
            if check.returncode != 0:
                raise RuntimeError(
                    f"the {PG_OS_USER!r} OS user cannot reach {self.data_dir}: every parent "
                    "directory must be searchable by it. Pass base_dir=None (a fresh "
                    "/tmp/bridge-pg-* directory) or a base_dir below world-traversable directories."
                )
        self._run_tool(
            [
                str(PG_BIN_DIR / "initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "-A", "trust",
                "-E", "UTF8",
                "--locale=C",
            ],
            "initdb",
            **self._run_as,
        )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(f"\n# added by bridge.devservers\ninclude_if_exists = '{self._conf_name}'\n")

    def _write_conf(self) -> None:
        if self.socket_dir != self.data_dir:
            self._give(self.socket_dir)
        effective: dict[str, str | None] = dict(self.DEFAULT_SETTINGS)
        effective.update({self._normalize_key(k): v for k, v in self.settings.items()})
        effective["port"] = str(self.port)
        effective["unix_socket_directories"] = str(self.socket_dir)
        lines = ["# written by bridge.devservers on every start; edit PostgresServer.settings"]
        for name, value in effective.items():
            if value is None:
                continue
            escaped = str(value).replace("\\", "\\\\").replace("'", "''")
            lines.append(f"{name} = '{escaped}'")
        path = self.data_dir / self._conf_name
        path.write_text("\n".join(lines) + "\n")
        self._give(path)

    def _launch_command(self) -> tuple[list[str], dict[str, Any]]:
        self._write_conf()
        return [str(PG_BIN_DIR / "postgres"), "-D", str(self.data_dir)], dict(self._run_as)

    def _probe(self) -> bool:
        import psycopg

        # Probe through the Unix socket in our own directory: a stranger listening on "our"
        # TCP port cannot answer there (the postmaster binds TCP before it creates the
        # socket and exits if the TCP port is taken, which _wait_ready notices).
        try:
            with psycopg.connect(
                host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                connect_timeout=5, autocommit=True,
            ) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        return row is not None and Path(row[0]) == self.data_dir

    def _stop_signal(self, mode: str) -> int:
        signals = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        if mode not in signals:
            raise ValueError(f"unknown PostgreSQL stop mode {mode!r}; use one of {sorted(signals)}")
        return signals[mode]

    # -- public API --------------------------------------------------------------------
    def stop(self, mode: str = "fast", timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server: ``"fast"`` (clean, rolls back open transactions),
        ``"immediate"`` (no shutdown checkpoint: crash recovery on next start) or
        ``"smart"`` (waits for clients to disconnect)."""
        super().stop(mode, timeout)

    def kill(self) -> None:
        """Crash: SIGKILL the postmaster and all its children at the same instant.

        The postmaster is frozen (SIGSTOP) first so it cannot fork new children while they
        are collected; then everything is SIGKILLed and we wait until the children are gone
        (they keep the shared memory attached, which would block the next start).
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal(proc.pid, signal.SIGSTOP)
            children = _child_pids(proc.pid)
            _signal(proc.pid, signal.SIGKILL)
            for child in children:
                _signal(child, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + 10
            while any(_pid_alive(c) for c in children) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._proc = None

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """libpq URL, e.g. ``postgresql://postgres@127.0.0.1:54321/postgres``."""
        return f"postgresql://{quote(user, safe='')}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(
        self, dbname: str = "postgres", *, autocommit: bool = True, **kwargs: Any
    ) -> psycopg.Connection[Any]:
        """A new psycopg connection as superuser ``postgres`` (autocommit by default)."""
        import psycopg

        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.dsn(dbname), autocommit=autocommit, **kwargs)

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run SQL (one or several ``;``-separated statements) in autocommit mode."""
        with self.connect(dbname) as conn:
            conn.execute(sql.encode())  # bytes: no placeholder parsing, no prepare

    def query(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return all its rows."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description is not None else []

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name`` (UTF8, owner postgres)."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# -------------------------------------------------------------------------- MariaDB


class MariaDBServer(_ManagedServer):
    """A private MariaDB server with a ROW binlog (FULL image, FULL metadata).

    ``settings`` override mariadbd options (``--name=value``), e.g.
    ``{"binlog_row_metadata": "MINIMAL"}``; ``-`` and ``_`` are interchangeable in names.
    A value of ``""`` gives a bare flag (``--skip-log-bin``), None drops a default of the
    harness. ``datadir``, ``tmpdir``, ``port``, ``socket``, ``pid-file`` and ``log-error``
    are managed by the harness. Change ``self.settings`` and :meth:`restart` to reconfigure.
    The ``root`` account has no password and may connect over TCP from 127.0.0.1.
    """

    kind = "MariaDB"
    _dir_prefix = "bridge-mariadb-"
    _log_name = "mariadb.log"
    _reserved_settings = frozenset(
        {"datadir", "tmpdir", "port", "socket", "pid-file", "log-error", "no-defaults"}
    )

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        port: int | None = None,
        server_id: int = 1,
        settings: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__(base_dir, port, settings)
        self.server_id = server_id
        self.socket_path: Path = self._short_socket_dir(self.base_dir, "mariadb.sock") / "mariadb.sock"
        self.pid_file: Path = self.base_dir / "mariadbd.pid"
        # Private tmpdir: concurrent mariadbd/bootstrap processes sharing /tmp were seen to
        # trip over each other's internal temporary tables (install-db failed with 1017).
        self.tmp_dir: Path = self.base_dir / "tmp"

    @staticmethod
    def _normalize_key(key: str) -> str:
        return key.strip().lstrip("-").lower().replace("_", "-")

    def default_options(self) -> dict[str, str]:
        """The harness's mariadbd options (before ``settings`` are applied)."""
        return {
            "bind-address": "127.0.0.1",
            "skip-name-resolve": "",
            "log-bin": str(self.data_dir / "binlog"),
            "binlog-format": "ROW",
            "binlog-row-image": "FULL",
            "binlog-row-metadata": "FULL",
            "server-id": str(self.server_id),
            "sync-binlog": "1",
            "innodb-flush-log-at-trx-commit": "1",
            "innodb-buffer-pool-size": "128M",
            "innodb-log-file-size": "48M",
            "character-set-server": "utf8mb4",
            "collation-server": "utf8mb4_general_ci",
            "default-time-zone": "+00:00",
        }

    def _options(self) -> list[str]:
        effective: dict[str, str | None] = {
            "datadir": str(self.data_dir),
            "tmpdir": str(self.tmp_dir),
            "port": str(self.port),
            "socket": str(self.socket_path),
            "pid-file": str(self.pid_file),
            "log-error": str(self.log_path),
        }
        effective.update(self.default_options())
        effective.update({self._normalize_key(k): v for k, v in self.settings.items()})
        return [f"--{k}" if v == "" else f"--{k}={v}" for k, v in effective.items() if v is not None]

    # -- hooks -----------------------------------------------------------------------
    def _user_args(self) -> list[str]:
        return [f"--user={pwd.getpwuid(os.geteuid()).pw_name}"] if _is_root() else []

    def _initialize(self) -> None:
        self.tmp_dir.mkdir(exist_ok=True)
        if (self.data_dir / "mysql").is_dir():
            return
        self._run_tool(
            [
                str(MARIADB_INSTALL_DB),
                "--no-defaults",
                f"--datadir={self.data_dir}",
                f"--tmpdir={self.tmp_dir}",
                *self._user_args(),
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
                "--skip-test-db",
            ],
            "mariadb-install-db",
        )

    def _launch_command(self) -> tuple[list[str], dict[str, Any]]:
        return [str(MARIADBD), "--no-defaults", *self._user_args(), *self._options()], {}

    def _port_in_use_message(self, log_text: str) -> bool:
        return "Address already in use" in log_text or "Bind on TCP/IP port" in log_text

    def _probe(self) -> bool:
        import pymysql

        try:
            conn = pymysql.connect(unix_socket=str(self.socket_path), user="root", connect_timeout=5)
        except pymysql.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@datadir")
                datadir = cur.fetchone()[0]
                if Path(datadir) != self.data_dir:
                    return False
                self._ensure_tcp_root(cur)
        finally:
            conn.close()
        return True

    def _ensure_tcp_root(self, socket_cur: pymysql.cursors.Cursor) -> None:
        """Make sure root may log in over TCP from 127.0.0.1 (without a binlog entry)."""
        import pymysql

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=5).close()
            return
        except pymysql.err.OperationalError as exc:
            if exc.args[0] not in (1045, 1130):  # access denied / host not allowed
                raise RuntimeError(f"MariaDB on port {self.port}: TCP login failed: {exc}") from exc
        socket_cur.execute("SET SESSION sql_log_bin = 0")
        socket_cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
        socket_cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=5).close()

    def _stop_signal(self, mode: str) -> int:
        signals = {"fast": signal.SIGTERM, "immediate": signal.SIGKILL}
        if mode not in signals:
            raise ValueError(f"unknown MariaDB stop mode {mode!r}; use one of {sorted(signals)}")
        return signals[mode]

    # -- public API --------------------------------------------------------------------
    def stop(self, mode: str = "fast", timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server: ``"fast"`` = clean shutdown (SIGTERM, wait);
        ``"immediate"`` = SIGKILL (crash recovery on next start)."""
        super().stop(mode, timeout)

    def dsn(self, dbname: str = "mysql", user: str = "root") -> str:
        """URL, e.g. ``mysql://root@127.0.0.1:23306/mysql``."""
        return f"mysql://{quote(user, safe='')}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str | None = "mysql", **kwargs: Any) -> pymysql.connections.Connection:
        """A new PyMySQL connection as ``root`` over TCP (autocommit, utf8mb4)."""
        import pymysql

        kwargs.setdefault("user", "root")
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("charset", "utf8mb4")
        kwargs.setdefault("connect_timeout", 10)
        return pymysql.connect(host="127.0.0.1", port=self.port, database=dbname, **kwargs)

    def execute(self, sql: str, dbname: str | None = "mysql") -> None:
        """Run SQL (one or several ``;``-separated statements) in autocommit mode."""
        from pymysql.constants import CLIENT

        conn = self.connect(dbname, client_flag=CLIENT.MULTI_STATEMENTS)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                while cur.nextset():
                    pass
        finally:
            conn.close()

    def query(self, sql: str, dbname: str | None = "mysql") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return all its rows."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name`` (server default charset utf8mb4)."""
        quoted = "`" + name.replace("`", "``") + "`"
        self.execute(f"CREATE DATABASE {quoted}")
