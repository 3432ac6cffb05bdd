"""CRM capture: stream committed changes from a PostgreSQL logical replication slot (pgoutput).

Two layers, as in psycopg's own design:

* `ChangeAssembler` is pure: pgoutput message bytes in, `bridge.model` events out. It holds
  every decision (resume filter, echo suppression, before/after/key shaping) and is tested
  without a server.
* `PgChangeSource` owns the replication connection: it starts the stream, waits on the
  socket, answers keepalives, sends standby status updates, and feeds the assembler.

Positions: a transaction's position is its COMMIT LSN (Begin's final_lsn == Commit's
commit_lsn). The slot is told "flushed" only through `acknowledge`, with the END LSN of the
acknowledged transaction, so the server keeps WAL for everything not durably applied.
"""

from __future__ import annotations

import selectors
import struct
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping, Sequence

import psycopg
import structlog
from psycopg import pq, sql

from bridge.errors import BridgeError, Fatal, SetupError, SourceUnavailable
from bridge.model import (
    UNCHANGED,
    Event,
    Idle,
    Op,
    PgPosition,
    Position,
    Row,
    RowChange,
    Side,
    TxBegin,
    TxCommit,
)
from connectors.postgres.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Origin,
    PgOutputDecoder,
    ProtocolError,
    Relation,
    Truncate,
    Update,
)

__all__ = ["ChangeAssembler", "PgChangeSource"]

log = structlog.get_logger("connectors.postgres.reader")

_NO_EVENTS: tuple[Event, ...] = ()
_XLOG_DATA = ord("w")
_KEEPALIVE = ord("k")
_XLOG_HEADER = 25  # 'w' + start lsn + end lsn + send time
_KEEPALIVE_BODY = struct.Struct("!QqB")  # wal end, send time, reply requested
_STATUS_UPDATE = struct.Struct("!cQQQqB")  # 'r', write, flush, apply, client time, reply?
_ROW_TAGS = frozenset(b"IUDT")  # skipped unread inside a dropped transaction
_PG_EPOCH_UNIX = 946_684_800  # 2000-01-01 00:00:00 UTC in Unix seconds
_MAX_TRACKED_COMMITS = 10_000  # commit lsn -> end lsn entries kept for acknowledge()
_ACK_MIN_INTERVAL = 0.1  # seconds: acknowledgements closer together are coalesced
_CLOSE_DRAIN_SECONDS = 5.0
# The walsender renders values with its session settings: pin every one the decoder's loaders
# depend on, whatever postgresql.conf or ALTER DATABASE/ROLE SET say (startup options win).
_SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres "
    "-c extra_float_digits=1 -c bytea_output=hex"
)


# --- pure part ---------------------------------------------------------------------------


class ChangeAssembler:
    """Turns pgoutput messages into `bridge.model` events. Pure; one per stream.

    * Transactions whose commit LSN is <= `resume_lsn` are dropped (already applied).
    * Transactions replayed by a replication-origin session (Begin followed by Origin) are
      dropped: they are the bridge's own writes. With `own_origin` set, only that origin's
      transactions are dropped; by default every origin-tagged transaction is.
    * A dropped transaction ends in `Idle(PgPosition(commit_lsn))`, so it can be acknowledged.
    * `primary_keys` ("schema.table" -> columns) names the key of REPLICA IDENTITY FULL
      tables, for which the server flags every column as key.
    """

    def __init__(
        self,
        resume_lsn: int | None = None,
        *,
        own_origin: str | None = None,
        primary_keys: Mapping[str, Sequence[str]] | None = None,
        decoder: PgOutputDecoder | None = None,
    ) -> None:
        self._resume_lsn = resume_lsn if resume_lsn is not None else -1
        self._own_origin = own_origin
        self._primary_keys = {t: tuple(cols) for t, cols in (primary_keys or {}).items()}
        self._decoder = decoder or PgOutputDecoder()
        self._pending: Begin | None = None  # Begin waiting to learn whether an Origin follows
        self._current: Begin | None = None  # Begin of the transaction being delivered
        self._skipping: Begin | None = None  # Begin of the transaction being dropped
        self._keys: dict[int, tuple[str, ...]] = {}  # relid -> key columns for RowChange.key
        self._end_lsns: OrderedDict[int, int] = OrderedDict()

    # -- public -------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """True between a Begin and its Commit (delivered, pending or dropped)."""
        return self._current is not None or self._pending is not None or self._skipping is not None

    def end_lsn(self, commit_lsn: int) -> int | None:
        """END LSN of the transaction that committed at `commit_lsn`, if still tracked."""
        return self._end_lsns.get(commit_lsn)

    def forget_through(self, commit_lsn: int) -> None:
        """Stop tracking end LSNs of transactions committed at or before `commit_lsn`."""
        ends = self._end_lsns
        while ends:
            first = next(iter(ends))
            if first > commit_lsn:
                break
            del ends[first]

    def feed(self, data: bytes, offset: int = 0) -> Sequence[Event]:
        """Consume one pgoutput message at `data[offset]`; return the events it completes."""
        if self._skipping is not None and data[offset] in _ROW_TAGS:
            return _NO_EVENTS  # inside a dropped transaction: not even decoded
        message = self._decoder.decode(data, offset)
        if message is None:
            return _NO_EVENTS
        if self._pending is not None:
            return self._after_begin(message)
        return self._dispatch(message)

    # -- transaction framing ------------------------------------------------------------

    def _dispatch(self, message: object) -> Sequence[Event]:
        if isinstance(message, Insert):
            return (self._insert(message),)
        if isinstance(message, Update):
            return (self._update(message),)
        if isinstance(message, Delete):
            return (self._delete(message),)
        if isinstance(message, Begin):
            return self._begin(message)
        if isinstance(message, Commit):
            return self._commit(message)
        if isinstance(message, Truncate):
            return self._truncate(message)
        if isinstance(message, Relation):
            self._keys[message.relid] = self._key_columns(message)
            return _NO_EVENTS
        return _NO_EVENTS  # Type messages (cached by the decoder), stray Origin

    def _begin(self, begin: Begin) -> Sequence[Event]:
        if self.in_transaction:
            raise ProtocolError(f"Begin of xid {begin.xid} inside another transaction")
        if begin.final_lsn <= self._resume_lsn:
            self._skipping = begin  # already applied: no need to wait for an Origin
        else:
            self._pending = begin
        return _NO_EVENTS

    def _after_begin(self, message: object) -> Sequence[Event]:
        """The message right after a Begin decides whether the transaction is delivered."""
        begin = self._pending
        assert begin is not None
        self._pending = None
        if isinstance(message, Origin) and self._is_own(message):
            self._skipping = begin
            return _NO_EVENTS
        self._current = begin
        opening = TxBegin(Side.CRM, str(begin.xid), begin.commit_ts, PgPosition(begin.final_lsn))
        return (opening, *self._dispatch(message))

    def _is_own(self, origin: Origin) -> bool:
        return self._own_origin is None or origin.name == self._own_origin

    def _commit(self, commit: Commit) -> Sequence[Event]:
        begin = self._current or self._skipping
        if begin is None:
            raise ProtocolError(f"Commit at {PgPosition(commit.commit_lsn)} without a Begin")
        if begin.final_lsn != commit.commit_lsn:
            raise ProtocolError(
                f"Commit LSN {PgPosition(commit.commit_lsn)} differs from Begin's "
                f"{PgPosition(begin.final_lsn)}"
            )
        self._track(commit)
        position = PgPosition(commit.commit_lsn)
        if self._skipping is not None:
            self._skipping = None
            return (Idle(position),)
        self._current = None
        return (TxCommit(Side.CRM, str(begin.xid), position, commit.commit_ts),)

    def _track(self, commit: Commit) -> None:
        ends = self._end_lsns
        ends[commit.commit_lsn] = commit.end_lsn
        if len(ends) > _MAX_TRACKED_COMMITS:
            ends.popitem(last=False)

    # -- rows ---------------------------------------------------------------------------

    def _key_columns(self, rel: Relation) -> tuple[str, ...]:
        if rel.replica_identity == "f":
            return self._primary_keys.get(rel.qualified, rel.key_names)
        return rel.key_names

    def _row_key(self, rel: Relation, row: Row) -> Row:
        keys = self._keys.get(rel.relid)
        if keys is None:
            keys = self._keys[rel.relid] = self._key_columns(rel)
        return {k: row[k] for k in keys if k in row}

    def _require_open(self, what: str) -> None:
        if self._current is None:
            raise ProtocolError(f"{what} outside a transaction")

    def _insert(self, msg: Insert) -> RowChange:
        self._require_open("Insert")
        rel = msg.relation
        return RowChange(Op.INSERT, rel.qualified, None, msg.new, self._row_key(rel, msg.new))

    def _update(self, msg: Update) -> RowChange:
        self._require_open("Update")
        rel = msg.relation
        before = _old_image(rel, msg.old_kind, msg.old)
        after = msg.new
        if before is not None:
            _fill_unchanged(after, before)
        return RowChange(Op.UPDATE, rel.qualified, before, after, self._row_key(rel, after))

    def _delete(self, msg: Delete) -> RowChange:
        self._require_open("Delete")
        rel = msg.relation
        before = _old_image(rel, msg.old_kind, msg.old)
        assert before is not None
        return RowChange(Op.DELETE, rel.qualified, before, None, self._row_key(rel, before))

    def _truncate(self, msg: Truncate) -> Sequence[Event]:
        self._require_open("Truncate")
        return tuple(RowChange(Op.TRUNCATE, rel.qualified, None, None) for rel in msg.relations)


def _old_image(rel: Relation, kind: str | None, old: Row | None) -> Row | None:
    """The before image: the full old row ('O'), or only the replica identity columns ('K'
    sends NULL for every other column: those NULLs are not values)."""
    if old is None or kind == "O":
        return old
    return {name: old[name] for name in rel.key_names}


def _fill_unchanged(after: Row, before: Row) -> None:
    """Replace UNCHANGED ('u', TOASTed and not sent) in `after` with the old value, when the
    old tuple carries it."""
    for name, value in after.items():
        if value is UNCHANGED:
            old = before.get(name, UNCHANGED)
            if old is not UNCHANGED:
                after[name] = old


# --- error classification ----------------------------------------------------------------

_RETRY_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, operator, system
_SETUP_CLASSES = ("0A", "22", "28", "42", "55")  # feature, parameter, auth, name/privilege, state
_RETRY_STATES = frozenset({"55006"})  # object in use: the slot's previous walsender is exiting


def _error_class(sqlstate: str | None) -> type[BridgeError]:
    """The bridge error class for a server error, by SQLSTATE (never by message text)."""
    if sqlstate is None or sqlstate in _RETRY_STATES or sqlstate.startswith(_RETRY_CLASSES):
        return SourceUnavailable
    if sqlstate.startswith(_SETUP_CLASSES):
        return SetupError
    return Fatal


def _translate(exc: psycopg.Error, doing: str) -> BridgeError:
    cls = _error_class(exc.sqlstate)
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return cls(f"PostgreSQL capture: {doing} failed{state}: {str(exc).strip()}")


# --- the replication connection ----------------------------------------------------------


_PRIMARY_KEYS_SQL = """
SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE pt.pubname = {publication}
GROUP BY n.nspname, c.relname
"""


class PgChangeSource:
    """`connectors.base.ChangeSource` for the CRM: one logical replication stream.

    Nothing is opened until `events()` is first iterated. One `events()` per instance: to
    reconnect after `SourceUnavailable`, make a new instance with the stored resume position.
    `acknowledge` must be called from the thread that iterates `events()`.
    """

    side = Side.CRM

    def __init__(
        self,
        conninfo: str,
        password: str | None,
        slot: str,
        publication: str,
        resume: PgPosition | None = None,
        idle_seconds: float = 0.5,
        status_interval: float = 10.0,
        *,
        own_origin: str | None = None,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0 or status_interval <= 0:
            raise ValueError("idle_seconds and status_interval must be positive")
        self._conninfo = conninfo
        self._password = password
        self._slot = slot
        self._publication = publication
        self._resume = resume
        self._idle_seconds = idle_seconds
        self._status_interval = status_interval
        self._own_origin = own_origin
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._assembler: ChangeAssembler | None = None
        self._started = False
        self._closed = False
        self._streaming = False
        self._acked_lsn = 0  # END lsn to report as flushed (0: nothing yet)
        self._sent_lsn = 0  # flush position in the last status update
        self._last_status = float("-inf")
        self._selector: selectors.BaseSelector | None = None

    # -- ChangeSource ---------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Yield TxBegin / RowChange / TxCommit in commit order, Idle when nothing arrives.

        Raises SourceUnavailable when the connection is lost or the server shuts down,
        SetupError when the slot/publication/privileges are wrong.
        """
        if self._started:
            raise RuntimeError("PgChangeSource.events() may run once; create a new source to reconnect")
        self._started = True
        self._start()
        assembler = self._assembler
        assert assembler is not None
        clock = self._clock
        last_event = clock()
        drained_hint = False  # a transaction ended: say Idle as soon as nothing is buffered
        # The Idle ending a dropped (echo / already applied) transaction is held until the
        # next read tells whether more is already buffered: then it is only a position update
        # (`pending`), not a pause, and a consumer that commits on a pause keeps grouping.
        held: Idle | None = None
        while not self._closed:
            if drained_hint and not assembler.in_transaction:
                frame = self._read(0.0)
                if frame is None:
                    drained_hint = False
                    last_event = clock()
                    idle, held = held or Idle(), None
                    yield idle
                    continue
                if held is not None:
                    held.pending = True
                    idle, held = held, None
                    yield idle
            else:
                frame = self._read(self._wait_budget(last_event, assembler.in_transaction))
            now = clock()
            if frame is not None:
                tag = frame[0]
                if tag == _XLOG_DATA:
                    events = assembler.feed(frame, _XLOG_HEADER)
                    if events:
                        last_event = now
                        drained_hint = True
                        if len(events) == 1 and type(events[0]) is Idle:
                            held = events[0]  # a dropped transaction ended
                        else:
                            yield from events
                elif tag == _KEEPALIVE:
                    idle = self._keepalive(frame, assembler.in_transaction)
                    if idle is not None:
                        last_event = now
                        yield idle
                else:
                    raise ProtocolError(f"unexpected replication message {chr(tag)!r}")
            elif not assembler.in_transaction and now - last_event >= self._idle_seconds:
                last_event = now
                yield Idle()
            self._maybe_send_status(clock())

    def acknowledge(self, position: Position) -> None:
        """Everything up to `position` (a commit LSN, or a keepalive/Idle LSN) is durably
        applied: report the transaction's END lsn as flushed so the slot can release WAL."""
        if not isinstance(position, PgPosition):
            raise TypeError(f"PgChangeSource cannot acknowledge {type(position).__name__}")
        end = position.lsn
        if self._assembler is not None:
            end = self._assembler.end_lsn(position.lsn) or position.lsn
            self._assembler.forget_through(position.lsn)
        if end > self._acked_lsn:
            self._acked_lsn = end
            if self._streaming and self._clock() - self._last_status >= _ACK_MIN_INTERVAL:
                self._send_status()

    def close(self) -> None:
        """End the stream cleanly (final status update, CopyDone, drain) and disconnect."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn is None:
            return
        try:
            if self._streaming and not conn.closed:
                self._send_status()
                self._end_copy(conn.pgconn)
        except (psycopg.Error, SourceUnavailable) as exc:
            # the server is gone or the stream broke: nothing left to end, just disconnect
            log.warning("pg_stream_close_unclean", slot=self._slot, error=str(exc))
        finally:
            self._streaming = False
            self._conn = None
            if self._selector is not None:
                self._selector.close()
            conn.close()

    # -- start ----------------------------------------------------------------------------

    def _start(self) -> None:
        kwargs: dict[str, Any] = {
            "replication": "database",
            "autocommit": True,
            "prepare_threshold": None,
            "options": _SESSION_OPTIONS,
            "client_encoding": "UTF8",
            "connect_timeout": max(1, int(self._connect_timeout)),
        }
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            self._conn = psycopg.connect(self._conninfo, **kwargs)
        except psycopg.Error as exc:
            raise _translate(exc, "connecting for replication") from exc
        conn = self._conn
        try:
            confirmed = self._check_slot(conn)
            self._sent_lsn = confirmed
            self._acked_lsn = max(self._acked_lsn, confirmed)
            primary_keys = self._check_publication(conn)
            self._assembler = ChangeAssembler(
                self._resume.lsn if self._resume else None,
                own_origin=self._own_origin,
                primary_keys=primary_keys,
            )
            conn.execute(self._start_command(conn))
            conn.pgconn.nonblocking = 1
            self._selector = selectors.DefaultSelector()
            self._selector.register(conn.pgconn.socket, selectors.EVENT_READ)
        except psycopg.Error as exc:
            conn.close()
            raise _translate(exc, f"starting replication from slot {self._slot!r}") from exc
        except BaseException:
            conn.close()
            raise
        self._streaming = True
        log.info("pg_stream_started", slot=self._slot, publication=self._publication,
                 resume=str(self._resume) if self._resume else None)

    def _check_slot(self, conn: psycopg.Connection[Any]) -> int:
        """Fail early on a missing or unsuitable slot; return its confirmed_flush_lsn.

        Acknowledgements start from there, so the reported flush position never moves
        backwards (PostgreSQL 15 would accept a smaller one).
        """
        query = sql.SQL(
            "SELECT plugin, database = current_database(), confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = {}"
        ).format(sql.Literal(self._slot))
        row = conn.execute(query).fetchone()
        if row is None:
            raise SetupError(
                f"replication slot {self._slot!r} does not exist: run the bridge's setup command"
            )
        plugin, same_database, confirmed = row
        if plugin != "pgoutput" or not same_database:
            raise SetupError(
                f"replication slot {self._slot!r} must be a logical pgoutput slot of this "
                f"database (found plugin {plugin!r}); drop it and run setup again"
            )
        return PgPosition.parse(confirmed).lsn if confirmed else 0

    def _check_publication(self, conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
        """Fail early on a missing publication; return the primary keys of its tables.

        The replication connection speaks only the simple query protocol: the value is
        composed as a literal by psycopg, never interpolated by hand.
        """
        name = sql.Literal(self._publication)
        found = conn.execute(sql.SQL("SELECT 1 FROM pg_publication WHERE pubname = {}").format(name))
        if found.fetchone() is None:
            raise SetupError(
                f"publication {self._publication!r} does not exist in this database: "
                "run the bridge's setup command"
            )
        rows = conn.execute(sql.SQL(_PRIMARY_KEYS_SQL).format(publication=name)).fetchall()
        return {f"{schema}.{table}": list(cols) for schema, table, cols in rows}

    def _start_command(self, conn: psycopg.Connection[Any]) -> sql.Composed:
        start_lsn = str(self._resume) if self._resume else "0/0"
        # publication_names is a string holding a list of (quoted) identifiers
        publications = sql.Identifier(self._publication).as_string(conn)
        return sql.SQL(
            "START_REPLICATION SLOT {slot} LOGICAL {lsn} "
            "(proto_version '1', publication_names {publications})"
        ).format(
            slot=sql.Identifier(self._slot),
            lsn=sql.SQL(start_lsn),  # PgPosition renders only hex digits and '/'
            publications=sql.Literal(publications),
        )

    # -- stream I/O -----------------------------------------------------------------------

    def _wait_budget(self, last_event: float, in_transaction: bool) -> float:
        """Seconds to wait for data before the next status update (or, between
        transactions, the next Idle) is due."""
        due = self._last_status + self._status_interval
        if not in_transaction:
            due = min(due, last_event + self._idle_seconds)
        return max(0.0, due - self._clock())

    def _read(self, timeout: float) -> bytes | None:
        """The next CopyData message, or None after `timeout` seconds without one."""
        pgconn = self._pgconn()
        try:
            n, buf = pgconn.get_copy_data(1)
            if n == 0 and timeout >= 0 and self._readable(timeout):
                pgconn.consume_input()
                n, buf = pgconn.get_copy_data(1)
        except psycopg.Error as exc:
            raise _translate(exc, f"reading from slot {self._slot!r}") from exc
        if n > 0:
            return bytes(buf)
        if n == 0:
            return None
        raise self._stream_ended(pgconn)

    def _stream_ended(self, pgconn: pq.abc.PGconn) -> BridgeError:
        """The server ended the COPY stream: the error it gave, classified."""
        self._streaming = False
        result = pgconn.get_result()
        while pgconn.get_result() is not None:
            pass
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raw_state = result.error_field(pq.DiagnosticField.SQLSTATE)
            sqlstate = raw_state.decode() if raw_state else None
            message = result.get_error_message().strip()
            cls = _error_class(sqlstate)
            return cls(f"PostgreSQL capture: slot {self._slot!r} stream ended [{sqlstate}]: {message}")
        return SourceUnavailable(f"PostgreSQL capture: the server ended the stream of slot {self._slot!r}")

    def _keepalive(self, frame: bytes, in_transaction: bool) -> Idle | None:
        wal_end, _, reply = _KEEPALIVE_BODY.unpack_from(frame, 1)
        if reply:
            self._send_status()
        if in_transaction or wal_end == 0:
            return None
        return Idle(PgPosition(wal_end))

    def _maybe_send_status(self, now: float) -> None:
        since = now - self._last_status
        if since >= self._status_interval or (
            self._acked_lsn != self._sent_lsn and since >= _ACK_MIN_INTERVAL
        ):
            self._send_status()

    def _send_status(self) -> None:
        """Standby status update: written = flushed = applied = last acknowledged END lsn."""
        lsn = self._acked_lsn
        micros = int((time.time() - _PG_EPOCH_UNIX) * 1_000_000)
        message = _STATUS_UPDATE.pack(b"r", lsn, lsn, lsn, micros, 0)
        pgconn = self._pgconn()
        try:
            while pgconn.put_copy_data(message) == 0:
                self._flush(pgconn)
            self._flush(pgconn)
        except psycopg.Error as exc:
            raise _translate(exc, f"sending status for slot {self._slot!r}") from exc
        self._sent_lsn = lsn
        self._last_status = self._clock()

    def _flush(self, pgconn: pq.abc.PGconn) -> None:
        while pgconn.flush() == 1:
            if not self._wait(pgconn, selectors.EVENT_WRITE | selectors.EVENT_READ, self._status_interval):
                raise SourceUnavailable(
                    f"PostgreSQL capture: cannot send to the server for {self._status_interval}s"
                )
            pgconn.consume_input()  # libpq needs reads to make progress while writing

    def _end_copy(self, pgconn: pq.abc.PGconn) -> None:
        """CopyDone, then read what the server still sends until it ends the stream."""
        while pgconn.put_copy_end() == 0:
            self._flush(pgconn)
        self._flush(pgconn)
        deadline = self._clock() + _CLOSE_DRAIN_SECONDS
        while self._clock() < deadline:
            n, _ = pgconn.get_copy_data(1)
            if n == -1:
                break
            if n == 0 and self._wait(pgconn, selectors.EVENT_READ, deadline - self._clock()):
                pgconn.consume_input()
        else:
            log.warning("pg_stream_close_timeout", slot=self._slot, seconds=_CLOSE_DRAIN_SECONDS)
            return
        while pgconn.get_result() is not None:
            pass

    def _readable(self, timeout: float) -> bool:
        """Wait until the replication socket has data; False on timeout."""
        assert self._selector is not None
        return bool(self._selector.select(timeout))

    @staticmethod
    def _wait(pgconn: pq.abc.PGconn, events: int, timeout: float) -> bool:
        """Wait until the socket is ready for `events`; False on timeout."""
        with selectors.DefaultSelector() as selector:
            selector.register(pgconn.socket, events)
            return bool(selector.select(max(0.0, timeout)))

    def _pgconn(self) -> pq.abc.PGconn:
        if self._conn is None or self._conn.closed:
            raise SourceUnavailable("PostgreSQL capture: the replication connection is closed")
        return self._conn.pgconn
