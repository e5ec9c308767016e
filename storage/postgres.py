"""The PostgreSQL store: the same contract as the TinyDB ``TicketStore``, in a server database.

For several desks (active/standby) on one history and for analysts' SQL.
What differs from the TinyDB store, and why:

* **Transactions.** The connection runs in autocommit; the first write opens
  a transaction (``BEGIN``) that ``commit()`` ends.  Reads before it see
  what is committed; reads after it also see this desk's own uncommitted
  writes, as in the TinyDB store.  A desk waiting in IMAP IDLE therefore
  holds no transaction open.
* **Few round trips.** A round trip per statement (about fifteen per mail)
  made intake five times slower than on the TinyDB store, and on a busy
  machine every round trip also waits for the server process to be
  scheduled.  So a transaction's writes wait in the process until the
  commit: whole documents and rows in dirty maps (tickets and their
  Message-IDs, outbox entries, processed keys, attempts, acknowledgement
  times, attachments, the ticket counter), each written once however often
  it changed (a ticket saved three times in a batch; the flood digest,
  which grows by one entry per mail), one statement per table with its
  columns as arrays, all in one pipeline with the lease check: one round
  trip per batch.  Reads keep read-your-writes: the point reads
  (``get_ticket``, ``ticket_for_message_id``, ``outbound``, ``processed``,
  attachments) look in those maps first and ask the server for the rest;
  every other read (``_read``) sends everything waiting ahead of itself in
  the same pipeline, and the server runs it in order.  The tables only the
  lease holder writes are cached whole (attempts, acks) or as a filter
  (which keys are certainly not processed), so a new mail needs no round
  trip at all.  A write that fails surfaces at the read or the commit that
  sends it, as a ``StoreError``; the transaction is then spoilt: every
  further statement and the commit refuse until ``rollback()``, so a batch
  never commits without one of its writes.
* **One working desk.** A writer takes the lease row (``desk_lease``): one
  holder, an expiry renewed every ``LEASE_SECONDS / 3`` by a thread of its
  own, and a token that grows with every take-over.  Every commit checks the
  token in the same transaction, so a desk that froze past its lease and woke
  up cannot write after another took over (fencing).  The active desk's
  session also holds an advisory lock named by its token.  A standby polls
  and takes over as soon as that lock is free (the desk was killed or lost
  its connection: within a poll), or, for a desk that is frozen but still
  connected, once its lease has lapsed (``LEASE_SECONDS``), ending its
  session if it froze holding the lease row; a desk that stops cleanly
  hands the lease over at once.
* **Schema versions.** ``storage/migrations/NNNN_*.sql`` are applied in order
  by ``helpdesk store migrate`` and recorded in ``schema_migrations``; a
  store whose schema is behind (or ahead of) this code refuses to open.
* Nothing is archived out of the database (``archive_closed`` is a no-op):
  the closed tickets stay queryable, and indexes keep the hot queries flat.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from maildesk.model import OutboundMail, PlanItem, StaffRecord, Ticket
from maildesk.storage.base import ClosedCase, ProcessedRecord, TagFormat
from maildesk.storage.codec import (dt_in, dt_out, outbound_from_doc, outbound_to_doc, plan_from_doc, plan_to_doc,
                                    record_from_doc, record_to_doc, ticket_from_doc, ticket_to_doc)
from maildesk.storage.journal import StoreError
from maildesk.storage.keyfilter import KeyFilter
from maildesk.storage.lock import StoreLocked

log = logging.getLogger("maildesk.storage")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A desk frozen this long (still connected, not renewing) loses the lease: take-over well inside 10 s.
LEASE_SECONDS = 6.0
STANDBY_POLL_SECONDS = 0.5
# How long a desk taking the lease waits for the lease row: a commit in flight holds it for milliseconds.
LEASE_ROW_WAIT = "500ms"
# pg_advisory_lock(ADVISORY_KEY, token): held by the active desk's session for its lease token.
ADVISORY_KEY = 0x6D64

# Writes waiting for the next round trip (see "Few round trips"): bounded, for an import of a
# million records or a mail with large attachments.
QUEUE_LIMIT = 500
QUEUE_BYTES = 16 * 2**20
DIRTY_LIMIT = 500

# Dirty documents are written one statement per table, their columns as arrays, sent in binary (%b):
# the text form of an array escapes every document in Python, ten times slower.
TICKETS_UPSERT = (
    "INSERT INTO tickets (number, tag, subject, customer, stage, language, priority, assignee, rating, "
    "created_at, updated_at, last_event_at, doc) SELECT * FROM unnest(%b::int[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::timestamptz[], %b::timestamptz[], "
    "%b::timestamptz[], %b::jsonb[]) "
    "ON CONFLICT (number) DO UPDATE SET tag = excluded.tag, subject = excluded.subject, "
    "customer = excluded.customer, stage = excluded.stage, language = excluded.language, "
    "priority = excluded.priority, assignee = excluded.assignee, rating = excluded.rating, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at, "
    "last_event_at = excluded.last_event_at, doc = excluded.doc")
OUTBOX_COLUMNS = "id, message_id, kind, ticket, status, created_at, sent_at, doc"
OUTBOX_ARRAYS = ("%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], "
                 "%b::jsonb[]")

set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if m:
            found.append((int(m.group(1)), path.stem, path))
    return found


def schema_version_needed() -> int:
    return max((v for v, _, _ in migrations()), default=0)


def describe(url: str) -> str:
    """host:port/database of a connection URL, never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (unreadable storage.url)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{info.get('dbname', '')}"


def connect(url: str, password: str | None, *, readonly: bool = False,
            idle_in_transaction: float | None = None) -> psycopg.Connection:
    options = "-c TimeZone=UTC" + (" -c default_transaction_read_only=on" if readonly else "")
    if idle_in_transaction:
        options += f" -c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}"
    kwargs: dict = {"autocommit": True, "connect_timeout": 10,
                    # Times come back in UTC, as the TinyDB store keeps them.
                    "options": options,
                    "application_name": "maildesk"}
    if password:
        kwargs["password"] = password
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {describe(url)}: {_one_line(exc)}") from None


def _lock_id(token: int) -> int:
    return token % 2**31  # the two-key advisory lock takes int4s


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column: the parameters of an ``unnest`` of arrays."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _ticket_row(doc: dict) -> tuple:
    events = doc.get("events") or []
    return (doc["number"], doc["tag"], doc["subject"], doc["customer"], doc["stage"], doc.get("language", "en"),
            doc.get("priority", "normal"), doc.get("assignee"), doc.get("rating"), dt_in(doc["created_at"]),
            dt_in(doc["updated_at"]), dt_in(events[-1]["at"]) if events else None, Jsonb(doc))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(url: str, *, password: str | None = None, show_addresses: bool | None = None) -> list[str]:
    """Apply every migration the database lacks, each in its own transaction; their names."""
    conn = connect(url, password)
    applied = []
    try:
        with conn.transaction():
            # Two `store migrate` at once: the second waits, then finds nothing left to do.
            conn.execute("SELECT pg_advisory_xact_lock(7261)")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            have = _schema_version(conn)
            for version, name, path in migrations():
                if version <= have:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(name)
            if show_addresses is not None:
                _set_analyst_addresses(conn, show_addresses)
    except psycopg.Error as exc:
        raise StoreError(f"migration of {describe(url)} failed: {_one_line(exc)}") from None
    finally:
        conn.close()
    return applied


def _set_analyst_addresses(conn: psycopg.Connection, show: bool) -> None:
    conn.execute("UPDATE analyst_settings SET show_addresses = %s WHERE id = 1 AND show_addresses <> %s",
                 (show, show))


class PgAttachments:
    """Attachment bytes in the database, by SHA-256: every desk sees the same files."""

    def __init__(self, store: "PostgresStore") -> None:
        self._store = store

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        # Part of the current transaction: the blob is durable with the mail that refers to it.
        self._store._put_blob(digest, data)
        return digest

    def get(self, sha256: str) -> bytes:
        data = self._store._dirty_blobs.get(sha256)
        if data is not None:
            return data
        row = self._store._point_read("SELECT data FROM attachments WHERE sha256 = %s", (sha256,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"attachment {sha256} is not in the store")
        return bytes(row[0])


class PgDeliveryLog:
    """The sender's delivery log (``storage/delivery_log.py``) as a table every desk sees.

    Its own connection, committing without waiting for the server's disk: a
    killed client cannot take a line back (the server has it), and only a
    server crash could lose lines, like the file version's lost page cache.
    """

    def __init__(self, url: str, password: str | None, lease_token: int | None = None) -> None:
        self._url, self._password = url, password
        # The desk's lease token: a "sending" line is written only while the lease is still this
        # desk's, so a desk that froze and woke after a take-over sends nothing more.
        self._lease_token = lease_token
        self._conn: psycopg.Connection | None = None

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, self._password)
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def _run(self, sql: str, params: tuple = ()) -> psycopg.Cursor:
        try:
            return self._db().execute(sql, params)
        except psycopg.Error as exc:
            raise StoreError(f"delivery log: {_one_line(exc)}") from None

    def sending(self, mail_id: str) -> None:
        if self._lease_token is None:
            self._run("INSERT INTO delivery_log (mail_id, state) VALUES (%s, 'sending')", (mail_id,))
            return
        written = self._run("INSERT INTO delivery_log (mail_id, state) SELECT %s, 'sending' FROM desk_lease "
                            "WHERE id = 1 AND token = %s RETURNING 1", (mail_id, self._lease_token)).fetchone()
        if written is None:
            raise StoreError(f"another desk took over {describe(self._url)}; this desk stops without sending")

    def sent(self, mail_id: str, at: datetime) -> None:
        self._run("INSERT INTO delivery_log (mail_id, state, at) VALUES (%s, 'sent', %s)", (mail_id, at))

    def read(self):
        from maildesk.storage.delivery_log import Recovered
        found = Recovered()
        sending = []
        for mail_id, state, at in self._run("SELECT mail_id, state, at FROM delivery_log ORDER BY seq").fetchall():
            if state == "sent":
                found.sent[mail_id] = at
            else:
                sending.append(mail_id)
        found.uncertain = [i for i in dict.fromkeys(sending) if i not in found.sent]
        return found

    def clear(self) -> None:
        """Forget every line: call only right after a store commit that holds their marks."""
        self._run("DELETE FROM delivery_log")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Lease:
    """The right to write, held by one desk; renewed by a thread of its own."""

    def __init__(self, url: str, password: str | None, location: str,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.url = url
        self.password = password
        self.location = location
        self.on_lost = on_lost
        self._cannot_end_told = False
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.token: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_take(self, conn: psycopg.Connection) -> tuple[int | None, str, bool]:
        """Take the lease if it lapsed or its holder's session is gone: (token or None, holder, lapsed)."""
        with conn.transaction():
            # FOR UPDATE: desks starting together take turns, and a commit in flight finishes first
            # (bounded: a desk frozen inside its commit must not hang the standby; it tries again).
            conn.execute(f"SET LOCAL lock_timeout = '{LEASE_ROW_WAIT}'")
            token, holder, lapsed = conn.execute(
                "SELECT token, holder, expires_at < now() FROM desk_lease WHERE id = 1 FOR UPDATE").fetchone()
            if not lapsed:
                # The holder keeps a session lock named by its token: free means its process is gone
                # (killed, or its connection lost), so there is no need to wait for the lease to lapse.
                gone = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)",
                                    (ADVISORY_KEY, _lock_id(token))).fetchone()[0]
                if not gone:
                    return None, holder, False
            new, = conn.execute(
                "UPDATE desk_lease SET holder = %s, token = token + 1, acquired_at = now(), "
                "expires_at = now() + make_interval(secs => %s) WHERE id = 1 RETURNING token",
                (self.holder, LEASE_SECONDS)).fetchone()
            # Taken in the same transaction as the new token, so nobody can see the token without the lock.
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_KEY, _lock_id(new)))
        return new, holder, lapsed

    def _end_frozen_holder(self, conn: psycopg.Connection) -> tuple[str, bool]:
        """The lease row is locked: (its holder, whether its session was ended because its lease lapsed).

        A desk frozen inside its commit (SIGSTOP, a paused VM) keeps the row locked while it stays
        frozen.  Its session's idle-in-transaction timeout ends that only if it froze between
        statements: frozen in the middle of a pipeline, before the sync, the server is still reading
        the transaction's messages and no timeout runs.  The committed expiry, read without waiting
        for the lock, says whether the holder still renews; once it lapsed, its session is ended
        here, which releases the row and fences the holder out as a take-over would anyway.
        """
        holder = "another desk"
        try:
            token, holder, lapsed = conn.execute(
                "SELECT token, holder, expires_at < now() FROM desk_lease WHERE id = 1").fetchone()
            if not lapsed:
                return holder, False
            ended, = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND classid = %s::int4::oid AND objid = %s::int4::oid "
                "AND objsubid = 2 AND granted AND pid <> pg_backend_pid()",
                (ADVISORY_KEY, _lock_id(token))).fetchone()
        except psycopg.Error as exc:
            # E.g. not allowed (another role, without pg_signal_backend): the server's own timeouts
            # remain, and a lost connection shows at the next try.
            if not self._cannot_end_told:
                log.warning("standby: cannot end the session of desk %s, whose lease lapsed: %s", holder,
                            _one_line(exc))
                self._cannot_end_told = True
            return holder, False
        if ended:
            log.warning("standby: desk %s let its lease lapse inside a commit; its database session is ended",
                        holder)
        return holder, bool(ended)

    def acquire(self, conn: psycopg.Connection, standby: Callable[[], bool] | None) -> bool:
        told = False
        # Without standby (`once`, `store import`): a moment's grace for a desk that has just died,
        # whose server session may not have noticed yet.
        grace = time.monotonic() + 2
        while True:
            try:
                token, holder, lapsed = self._try_take(conn)
            except psycopg.errors.LockNotAvailable:
                token, lapsed = None, False
                holder, ended = self._end_frozen_holder(conn)
                if ended:
                    continue
            except psycopg.Error as exc:
                raise StoreError(f"store {self.location}: {_one_line(exc)}") from None
            if token is not None:
                self.token = token
                if told:
                    log.info("standby: %s; this desk (%s) is active now",
                             "the other desk's lease lapsed" if lapsed else "the other desk is gone", self.holder)
                break
            if standby is None and time.monotonic() > grace:
                raise StoreLocked(f"store {self.location} is in use by another helpdesk desk ({holder}); "
                                  "only one desk works at a time")
            if standby is not None and not told:
                log.info("standby: desk %s is active on %s; taking over when it stops or its lease lapses",
                         holder, self.location)
                told = True
            deadline = time.monotonic() + STANDBY_POLL_SECONDS
            while time.monotonic() < deadline:
                if standby is not None and standby():
                    return False
                time.sleep(0.05)
        self._thread = threading.Thread(target=self._renew, name="maildesk-lease", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        conn = None
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.url, self.password)
                row = conn.execute("UPDATE desk_lease SET expires_at = now() + make_interval(secs => %s) "
                                   "WHERE id = 1 AND token = %s RETURNING 1", (LEASE_SECONDS, self.token)).fetchone()
            except (psycopg.Error, StoreError) as exc:
                log.warning("lease on %s not renewed: %s", self.location, _one_line(exc))
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if row is None:
                log.error("another desk took over %s; this desk sends and commits nothing more", self.location)
                if self.on_lost is not None:
                    self.on_lost()
                break
        if conn is not None:
            conn.close()

    def taken_over(self) -> bool:
        """Whether another desk holds the lease now (asked on a connection of its own)."""
        try:
            conn = connect(self.url, self.password)
        except StoreError:
            return False
        try:
            row = conn.execute("SELECT token FROM desk_lease WHERE id = 1").fetchone()
            return row is not None and row[0] != self.token
        except psycopg.Error:
            return False
        finally:
            conn.close()

    def fence_statement(self) -> tuple[str, tuple]:
        """Inside the commit's transaction: a row if the lease is still ours (and renewed), none if not."""
        return ("UPDATE desk_lease SET expires_at = greatest(expires_at, now() + make_interval(secs => %s)) "
                "WHERE id = 1 AND token = %s RETURNING 1", (LEASE_SECONDS, self.token))

    def release(self, conn: psycopg.Connection | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if conn is not None and not conn.closed and self.token is not None:
            try:
                # Stopping cleanly: the standby need not wait for the lease to lapse.
                conn.execute("UPDATE desk_lease SET expires_at = '-infinity' WHERE id = 1 AND token = %s",
                             (self.token,))
            except psycopg.Error:
                pass


class SnapshotReaders:
    """Read-only connections that all see one snapshot of the database (as pg_dump's parallel jobs do).

    The first exports its snapshot and the others take it (``SET TRANSACTION SNAPSHOT``), so reads
    split between them fit together even while another desk or an import commits.
    """

    def __init__(self, url: str, password: str | None, count: int) -> None:
        self._conns: list[psycopg.Connection] = []
        try:
            for _ in range(count):
                self._conns.append(connect(url, password, readonly=True))
            first = self._conns[0]
            first.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = first.execute("SELECT pg_export_snapshot()").fetchone()[0]
            for conn in self._conns[1:]:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot)))
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot share a snapshot: {_one_line(exc)}") from None
        except BaseException:
            self.close()
            raise
        self.reads = [self._reader(conn) for conn in self._conns]

    @staticmethod
    def _reader(conn: psycopg.Connection):
        def read(sql: str, params: tuple | list | dict | None = None) -> psycopg.Cursor:
            try:
                return conn.execute(sql, params)
            except psycopg.Error as exc:
                raise StoreError(f"report: {_one_line(exc)}") from None
        return read

    def close(self) -> None:
        for conn in self._conns:
            conn.close()  # ends the read-only transaction

    def __enter__(self) -> "SnapshotReaders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StandbyStopped(StoreError):
    """A standby desk was asked to stop before it became active."""


class PostgresStore(TagFormat):
    def __init__(self, url: str, *, password: str | None = None, prefix: str = "TS", readonly: bool = False,
                 standby: Callable[[], bool] | None = None, on_lease_lost: Callable[[], None] | None = None,
                 show_addresses: bool | None = None) -> None:
        self.url = url
        self._password = password
        self.prefix = prefix
        self.readonly = readonly
        self.location = describe(url)
        self._in_tx = False
        self._lease: _Lease | None = None
        # A desk frozen inside a transaction (SIGSTOP, a stalled VM) would hold its row locks, the
        # lease row's among them, for as long as it stays frozen: the server ends such a session
        # once the lease it defends has lapsed, so a standby can take over.
        self.conn = connect(url, password, readonly=readonly,
                            idle_in_transaction=None if readonly else LEASE_SECONDS)
        try:
            have, need = _schema_version(self.conn), schema_version_needed()
            if have != need:
                raise StoreError(
                    f"database {self.location} has schema version {have}, this helpdesk needs {need}: "
                    + ("run `helpdesk -c CONFIG store migrate`" if have < need else "upgrade this helpdesk"))
            if not readonly:
                self._lease = _Lease(url, password, self.location, on_lease_lost)
                if not self._lease.acquire(self.conn, standby):
                    raise StandbyStopped("stopped while waiting as a standby desk")
                if show_addresses is not None:
                    _set_analyst_addresses(self.conn, show_addresses)
        except BaseException:
            self.conn.close()
            raise
        self.attachments = PgAttachments(self)
        # Caches of the writer: exact because only the desk holding the lease writes these tables.
        self._attempts: dict[str, int] = {}
        self._acks: dict[str, list[str]] = {}
        self._pending_docs: dict[str, dict] = {}
        self._absent_outbox: set[str] = set()  # ids looked up and not found (the digest's neighbouring slots)
        # This transaction's writes not yet sent (see "Few round trips" above).
        self._queue: list[tuple[str, tuple | list | None]] = []
        self._queued_bytes = 0
        self._dirty_tickets: dict[int, dict] = {}
        self._dirty_mids: dict[str, int] = {}  # Message-ID -> ticket, the last save winning
        self._dirty_outbox: dict[str, tuple[dict, bool]] = {}  # id -> (doc, new entry?)
        self._dirty_acks: dict[str, list[str]] = {}
        self._dirty_blobs: dict[str, bytes] = {}
        self._dirty_processed: dict[str, tuple] = {}  # key -> the row, the last record winning
        self._dirty_attempts: dict[str, int | None] = {}  # key -> count, or None: delete
        self._next_ticket: int | None = None  # the counter, read once (only the lease holder writes it)
        self._counter_dirty = False
        self._server_tx = False  # BEGIN has reached the server
        self._failed: str | None = None  # the first error of this transaction: it must be rolled back
        self._processed_filter: KeyFilter | None = None
        if not readonly:
            self._load_attempts()
            self._load_acks()
            self._load_processed_filter()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        if self.conn.closed:
            return
        if self._in_tx:
            self.rollback()
        if self._lease is not None:
            self._lease.release(self.conn)
        self.conn.close()

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, sql: str, params: tuple | list | None = None) -> psycopg.Cursor:
        """A read that may see any of this desk's uncommitted writes: all of them travel first."""
        return self._run(sql, params, docs=True)

    def _point_read(self, sql: str, params: tuple | list | None = None) -> psycopg.Cursor:
        """A read of a table whose waiting writes the caller has already looked at in memory.

        Nothing waiting is sent: the server answers from what is committed (or what this
        transaction has sent), the caller overlays the rest.  Only tables written through the
        dirty maps may be read this way.
        """
        if self._failed is not None:
            raise self._spoilt()
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as exc:
            if self._server_tx:
                self._failed = _one_line(exc)
            raise StoreError(f"store {self.location}: {_one_line(exc)}") from None

    def _begin(self) -> None:
        if self.readonly:
            raise StoreError(f"store {self.location} is open read-only")
        if self._failed is not None:
            raise self._spoilt()
        if not self._in_tx:
            self._queue.append(("BEGIN", None))
            self._in_tx = True

    def _write(self, sql: str, params: tuple | list | None = None) -> None:
        """A write whose result nobody needs: it goes with the next round trip that sends anything."""
        self._begin()
        self._queue.append((sql, params))
        if len(self._queue) >= QUEUE_LIMIT:
            self._run(None, docs=False)  # an import of a million records: bounded memory

    def _write_now(self, sql: str, params: tuple | list | None = None) -> psycopg.Cursor:
        """A write whose result (rowcount, RETURNING) is needed at once."""
        self._begin()
        return self._run(sql, params, docs=True)

    def _dirtied(self) -> None:
        if len(self._dirty_tickets) + len(self._dirty_outbox) + len(self._dirty_acks) + len(self._dirty_processed) \
                + len(self._dirty_attempts) >= DIRTY_LIMIT or \
                self._queued_bytes >= QUEUE_BYTES:
            self._run(None, docs=True)  # an import, or mail with large attachments: bounded memory

    def _spoilt(self) -> StoreError:
        return StoreError(f"store {self.location}: an earlier statement of this transaction failed "
                          f"({self._failed}); it must be rolled back")

    def _run(self, sql: str | None, params: tuple | list | None = None, *, docs: bool) -> psycopg.Cursor | None:
        """Send the waiting writes (and with ``docs`` the dirty documents), then ``sql``: one round trip."""
        if self._failed is not None:
            raise self._spoilt()
        statements, self._queue = self._queue, []
        checks: list[tuple[psycopg.Cursor, set[str], str]] = []
        cur = None
        try:
            if not statements and not (docs and self._has_dirty_docs()):
                return None if sql is None else self.conn.execute(sql, params)
            self._server_tx = self._server_tx or self._in_tx
            # The pipeline sends everything and waits once; the server runs it in order, so the
            # read at the end sees the writes before it.  An error ends the pipeline at the sync.
            with self.conn.pipeline():
                for q, p in statements:
                    self.conn.execute(q, p)
                if docs:
                    checks = self._send_docs()
                if sql is not None:
                    cur = self.conn.execute(sql, params)
        except psycopg.Error as exc:
            if self._in_tx:
                self._failed = _one_line(exc)
            raise StoreError(f"store {self.location}: {_one_line(exc)}") from None
        for sent, ids, problem in checks:
            wrong = sorted(ids - {i for (i,) in sent.fetchall()})
            if wrong:
                self._failed = f"outbox entr{'y' if len(wrong) == 1 else 'ies'} {', '.join(wrong)} {problem}"
                raise StoreError(f"store {self.location}: {self._failed}")
        return cur

    def _has_dirty_docs(self) -> bool:
        return bool(self._counter_dirty or self._dirty_tickets or self._dirty_mids or self._dirty_outbox
                    or self._dirty_acks or self._dirty_blobs or self._dirty_processed or self._dirty_attempts)

    def _send_docs(self) -> list[tuple[psycopg.Cursor, set[str], str]]:
        """Queue the dirty documents in the open pipeline, one statement per table (arrays, unnest).

        Returns the statements whose RETURNING ids must be exactly the ids given, with the
        problem to report for the others.
        """
        checks = []
        execute = self.conn.execute
        if self._counter_dirty:
            execute("UPDATE counters SET value = %s WHERE name = 'next_ticket'", (self._next_ticket,))
            self._counter_dirty = False
        if self._dirty_tickets:
            execute(TICKETS_UPSERT, _columns([_ticket_row(d) for d in self._dirty_tickets.values()], 13))
            self._dirty_tickets = {}
        if self._dirty_mids:
            execute("INSERT INTO ticket_message_ids (message_id, number) SELECT * FROM unnest(%b::text[], %b::int[]) "
                    "ON CONFLICT (message_id) DO UPDATE SET number = excluded.number "
                    "WHERE ticket_message_ids.number <> excluded.number",
                    (list(self._dirty_mids), list(self._dirty_mids.values())))
            self._dirty_mids = {}
        new = [(i, doc) for i, (doc, is_new) in self._dirty_outbox.items() if is_new]
        old = [(i, doc) for i, (doc, is_new) in self._dirty_outbox.items() if not is_new]
        if new:
            # ON CONFLICT rather than an error, to name the entry; the batch fails all the same.  The
            # entries get their queue order (seq) in the order they were enqueued.
            sent = execute("INSERT INTO outbox (id, message_id, kind, ticket, status, created_at, sent_at, doc) "
                           "SELECT id, message_id, kind, ticket, status, created_at, sent_at, doc FROM unnest("
                           f"{OUTBOX_ARRAYS}) WITH ORDINALITY AS u({OUTBOX_COLUMNS}, n) ORDER BY n "
                           "ON CONFLICT (id) DO NOTHING RETURNING id",
                           _columns([(i, *self._outbox_row(doc)) for i, doc in new], 8))
            checks.append((sent, {i for i, _ in new}, "already exists"))
        if old:
            sent = execute("UPDATE outbox SET message_id = u.message_id, kind = u.kind, ticket = u.ticket, "
                           "status = u.status, created_at = u.created_at, sent_at = u.sent_at, doc = u.doc "
                           f"FROM unnest({OUTBOX_ARRAYS}) AS u({OUTBOX_COLUMNS}) WHERE outbox.id = u.id "
                           "RETURNING outbox.id", _columns([(i, *self._outbox_row(doc)) for i, doc in old], 8))
            checks.append((sent, {i for i, _ in old}, "is not in the store"))
        self._dirty_outbox = {}
        if self._dirty_blobs:
            execute("INSERT INTO attachments (sha256, data) SELECT * FROM unnest(%b::text[], %b::bytea[]) "
                    "ON CONFLICT DO NOTHING", (list(self._dirty_blobs), list(self._dirty_blobs.values())))
            self._dirty_blobs, self._queued_bytes = {}, 0
        if self._dirty_acks:
            execute("INSERT INTO acks (sender, times) SELECT * FROM unnest(%b::text[], %b::jsonb[]) "
                    "ON CONFLICT (sender) DO UPDATE SET times = excluded.times",
                    (list(self._dirty_acks), [Jsonb(t) for t in self._dirty_acks.values()]))
            self._dirty_acks = {}
        if self._dirty_processed:
            execute("INSERT INTO processed (key, outcome, ticket, reason, at) SELECT * FROM unnest(%b::text[], "
                    "%b::text[], %b::text[], %b::text[], %b::timestamptz[]) ON CONFLICT (key) DO UPDATE SET "
                    "outcome = excluded.outcome, ticket = excluded.ticket, reason = excluded.reason, at = excluded.at",
                    _columns(list(self._dirty_processed.values()), 5))
            self._dirty_processed = {}
        if self._dirty_attempts:
            counted = {k: n for k, n in self._dirty_attempts.items() if n is not None}
            cleared = [k for k, n in self._dirty_attempts.items() if n is None]
            if counted:
                execute("INSERT INTO attempts (key, count) SELECT * FROM unnest(%b::text[], %b::int[]) "
                        "ON CONFLICT (key) DO UPDATE SET count = excluded.count",
                        (list(counted), list(counted.values())))
            if cleared:
                execute("DELETE FROM attempts WHERE key = ANY(%b::text[])", (cleared,))
            self._dirty_attempts = {}
        return checks

    def _put_blob(self, digest: str, data: bytes) -> None:
        self._begin()
        if digest not in self._dirty_blobs:
            self._dirty_blobs[digest] = data
            self._queued_bytes += len(data)
            self._dirtied()

    def _end_tx(self) -> None:
        self._in_tx = self._server_tx = False
        self._queue, self._queued_bytes = [], 0
        self._dirty_tickets, self._dirty_mids, self._dirty_outbox, self._dirty_acks = {}, {}, {}, {}
        self._dirty_blobs, self._dirty_processed, self._dirty_attempts = {}, {}, {}
        self._counter_dirty = False
        self._failed = None

    def commit(self) -> None:
        if not self._in_tx:
            return
        if self._failed is not None:
            problem = self._failed
            self._rollback_quietly()
            raise StoreError(f"cannot commit to {self.location}: {problem}")
        try:
            # The waiting writes and the fencing check in one round trip; COMMIT only once the lease is ours.
            sql, params = self._lease.fence_statement() if self._lease is not None else ("SELECT 1", None)
            held = self._run(sql, params, docs=True).fetchone() is not None
            if held:
                self.conn.execute("COMMIT")
        except (psycopg.Error, StoreError) as exc:
            problem = self._failed or _one_line(exc)
            self._rollback_quietly()
            if self._lease is not None and self._lease.taken_over():
                raise StoreError(f"another desk took over {self.location}; this desk stops without writing") \
                    from None
            raise StoreError(f"cannot commit to {self.location}: {problem}") from None
        if not held:
            self._rollback_quietly()
            raise StoreError(f"another desk took over {self.location}; this desk stops without writing")
        self._end_tx()

    def _rollback_quietly(self) -> None:
        # On the way to raising the first error: a second one (the connection is gone) would only hide it.
        try:
            self.rollback()
        except StoreError:
            pass

    def rollback(self) -> None:
        if not self._in_tx:
            return
        sent = self._server_tx
        self._end_tx()
        self._next_ticket = None
        self._pending_docs.clear()
        self._absent_outbox.clear()
        try:
            if sent:
                self.conn.execute("ROLLBACK")
            self._load_attempts()
            self._load_acks()
        except psycopg.Error as exc:
            raise StoreError(f"cannot roll back on {self.location}: {_one_line(exc)}") from None

    @property
    def dirty(self) -> bool:
        return self._in_tx

    def delivery_log(self) -> PgDeliveryLog:
        return PgDeliveryLog(self.url, self._password, self._lease.token if self._lease is not None else None)

    def set_analyst_addresses(self, show: bool) -> None:
        _set_analyst_addresses(self.conn, show)

    # -- tickets -------------------------------------------------------------------------
    def allocate_ticket_number(self) -> int:
        self._begin()
        if self._next_ticket is None:
            # Read once, then counted here: only the desk holding the lease hands out numbers (the commit's
            # fencing check stops one that lost it), and the numbers handed out are written at the commit.
            self._next_ticket = self._read("SELECT value FROM counters WHERE name = 'next_ticket'").fetchone()[0]
        number = self._next_ticket
        self._next_ticket += 1
        self._counter_dirty = True
        return number

    def get_ticket(self, number: int) -> Ticket | None:
        doc = self._dirty_tickets.get(number)
        if doc is not None:
            return ticket_from_doc(doc)
        row = self._point_read("SELECT doc FROM tickets WHERE number = %s", (number,)).fetchone()
        return None if row is None else ticket_from_doc(row[0])

    def ticket_for_message_id(self, message_id: str) -> int | None:
        number = self._dirty_mids.get(message_id)
        if number is not None:
            return number
        row = self._point_read("SELECT number FROM ticket_message_ids WHERE message_id = %s",
                               (message_id,)).fetchone()
        return None if row is None else row[0]

    def save_ticket(self, ticket: Ticket) -> None:
        self._save_ticket_doc(ticket_to_doc(ticket))

    def _save_ticket_doc(self, doc: dict) -> None:
        # Written at the commit (or before a read that could see it): once, however often it is saved.
        self._begin()
        self._dirty_tickets[doc["number"]] = doc
        for message_id in doc.get("message_ids") or ():
            self._dirty_mids[message_id] = doc["number"]
        self._dirtied()

    def _ticket_docs(self, where: str = "", params: tuple = (), *, with_messages: bool) -> list[dict]:
        column = "doc" if with_messages else "doc - 'messages'"
        return [row[0] for row in self._read(f"SELECT {column} FROM tickets {where} ORDER BY number", params)]

    def tickets(self, *, with_messages: bool = True, active_since: datetime | None = None) -> Iterator[Ticket]:
        if active_since is None:
            docs = self._ticket_docs(with_messages=with_messages)
        else:
            # As the TinyDB store: leave out tickets closed, created and last touched before then.
            # Spelt as an OR of indexed conditions, so a year of closed tickets is never scanned.
            docs = self._ticket_docs("WHERE stage <> 'closed' OR created_at >= %s OR last_event_at >= %s",
                                     (active_since, active_since), with_messages=with_messages)
        for doc in docs:
            yield ticket_from_doc(doc, with_messages=with_messages)

    def open_tickets(self, *, with_messages: bool = True) -> Iterator[Ticket]:
        for doc in self._ticket_docs("WHERE stage <> 'closed'", with_messages=with_messages):
            yield ticket_from_doc(doc, with_messages=with_messages)

    def closed_cases(self) -> Iterator[ClosedCase]:
        # Four short fields per case: the documents (messages, events) never leave the server.
        rows = self._read("SELECT tag, subject, coalesce(doc->>'summary', ''), coalesce(doc->>'lessons', '') "
                          "FROM tickets WHERE stage = 'closed' AND (coalesce(doc->>'summary', '') <> '' "
                          "OR coalesce(doc->>'lessons', '') <> '') ORDER BY number")
        for tag, subject, summary, lessons in rows:
            yield ClosedCase(tag, subject, summary, lessons)

    def ticket_count(self) -> int:
        return self._read("SELECT count(*) FROM tickets").fetchone()[0]

    def archive_closed(self, before: datetime) -> int:
        return 0  # closed tickets stay in their table: indexes, not memory, keep the desk's queries flat

    def checkpoint(self) -> None:
        pass

    # -- supervisor's plan items and staff records -------------------------------------
    def add_plan(self, item: PlanItem) -> None:
        self._add_plan_doc(plan_to_doc(item))

    def _add_plan_doc(self, doc: dict) -> None:
        self._write("INSERT INTO plans (at, author, text, ticket, doc) VALUES (%s, %s, %s, %s, %s)",
                    (dt_in(doc["at"]), doc["author"], doc["text"], doc.get("ticket"), Jsonb(doc)))

    def plans(self) -> list[PlanItem]:
        return [plan_from_doc(doc) for (doc,) in self._read("SELECT doc FROM plans ORDER BY id")]

    def add_staff_record(self, record: StaffRecord) -> None:
        self._add_record_doc(record_to_doc(record))

    def _add_record_doc(self, doc: dict) -> None:
        self._write("INSERT INTO staff_records (at, author, kind, technician, reason, ticket, doc) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (dt_in(doc["at"]), doc["author"], doc["kind"], doc["technician"], doc["reason"], doc.get("ticket"),
                     Jsonb(doc)))

    def staff_records(self) -> list[StaffRecord]:
        return [record_from_doc(doc) for (doc,) in self._read("SELECT doc FROM staff_records ORDER BY id")]

    # -- scheduled jobs ------------------------------------------------------------------
    def job_run(self, name: str, period: str) -> dict | None:
        row = self._read("SELECT name, period, at, late, detail FROM jobs WHERE name = %s AND period = %s",
                         (name, period)).fetchone()
        if row is None:
            return None
        return {"name": row[0], "period": row[1], "at": dt_out(row[2]), "late": row[3], "detail": row[4]}

    def record_job_run(self, name: str, period: str, *, at: datetime, late: bool, detail: str = "") -> None:
        self._write("INSERT INTO jobs (name, period, at, late, detail) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", (name, period, at, late, detail))

    # -- processed mail ------------------------------------------------------------------
    def processed(self, key: str) -> ProcessedRecord | None:
        row = self._dirty_processed.get(key)
        if row is not None:
            return ProcessedRecord(*row)
        if self._processed_filter is not None:
            if self._processed_filter.full:
                self._load_processed_filter()
            if key not in self._processed_filter:
                return None  # certainly new: no round trip for (nearly) every mail
        row = self._point_read("SELECT key, outcome, ticket, reason, at FROM processed WHERE key = %s",
                               (key,)).fetchone()
        return None if row is None else ProcessedRecord(*row)

    def record_processed(self, key: str, outcome: str, *, ticket: str | None, reason: str,
                         at: datetime) -> None:
        self._begin()
        self._dirty_processed[key] = (key, outcome, ticket, reason, at)
        if self._processed_filter is not None:
            self._processed_filter.add(key)  # kept if rolled back: a false "perhaps" costs only a round trip
        self.clear_attempts(key)
        self._dirtied()

    def _load_processed_filter(self) -> None:
        """Every processed key, in a filter that says which keys are certainly not there.

        Exact for the writer: only the desk holding the lease records keys, and it adds
        each one as it does.  Pruned keys stay in it (false "perhaps"), until it is built again.
        """
        self._run(None, docs=True)  # this transaction's keys too
        count = self._point_read("SELECT count(*) FROM processed").fetchone()[0]
        try:
            keys = (key for (key,) in self.conn.cursor().stream("SELECT key FROM processed"))
            self._processed_filter = KeyFilter.of(keys, capacity=max(100_000, 2 * count))
        except psycopg.Error as exc:
            if self._server_tx:
                self._failed = _one_line(exc)
            raise StoreError(f"store {self.location}: {_one_line(exc)}") from None

    def processed_records(self) -> Iterator[ProcessedRecord]:
        for row in self._read("SELECT key, outcome, ticket, reason, at FROM processed ORDER BY at, key").fetchall():
            yield ProcessedRecord(*row)

    # -- handling attempts (poison-mail guard) ------------------------------------------
    def attempts(self, key: str) -> int:
        if not self.readonly:
            return self._attempts.get(key, 0)  # the writer knows every attempt row (see _load_attempts)
        row = self._read("SELECT count FROM attempts WHERE key = %s", (key,)).fetchone()
        return 0 if row is None else row[0]

    def record_attempt(self, key: str) -> int:
        self._begin()
        count = self._attempts.get(key, 0) + 1
        self._attempts[key] = self._dirty_attempts[key] = count
        self._dirtied()
        return count

    def clear_attempts(self, key: str) -> None:
        # Most keys have no attempt row (a mail's own key never has): skip the statement for them.
        if key in self._attempts:
            self._begin()
            del self._attempts[key]
            self._dirty_attempts[key] = None

    def _load_attempts(self) -> None:
        # Only the desk holding the lease writes attempts, so this map stays exact while it does.
        self._attempts = dict(self._read("SELECT key, count FROM attempts").fetchall())

    # -- acknowledgement rate ----------------------------------------------------------
    def _ack_times(self, sender: str) -> list[str]:
        if not self.readonly:
            return self._acks.get(sender, [])  # the writer holds every row (see _load_acks)
        row = self._read("SELECT times FROM acks WHERE sender = %s", (sender,)).fetchone()
        return [] if row is None else row[0]

    def _load_acks(self) -> None:
        # Only the desk holding the lease writes acks, so this map stays exact while it does, and a new
        # sender costs no round trip.  Its size follows the senders of the last day (prune), not history.
        self._acks = dict(self._read("SELECT sender, times FROM acks").fetchall())

    def acks_since(self, sender: str, since: datetime) -> int:
        return sum(1 for t in self._ack_times(sender) if dt_in(t) >= since)

    def record_ack(self, sender: str, at: datetime, *, keep: timedelta = timedelta(hours=24)) -> None:
        self._begin()
        cutoff = dt_out(at - keep)
        # The stored UTC ISO strings compare as the times they are.  The cache is what the server holds
        # (only the lease holder writes acks), so the new list is written whole, once, at the commit.
        kept = [t for t in self._ack_times(sender) if t >= cutoff] + [dt_out(at)]
        self._acks[sender] = kept
        self._dirty_acks[sender] = kept
        self._dirtied()

    # -- housekeeping ------------------------------------------------------------------
    def prune(self, now: datetime, *, processed_days: float = 30, sent_days: float = 7,
              acks_days: float = 1) -> dict[str, int]:
        removed = {}
        removed["processed"] = self._write_now("DELETE FROM processed WHERE at < %s",
                                           (now - timedelta(days=processed_days),)).rowcount
        removed["outbox"] = self._write_now("DELETE FROM outbox WHERE status <> 'pending' AND "
                                        "coalesce(sent_at, created_at) < %s",
                                        (now - timedelta(days=sent_days),)).rowcount
        cutoff = dt_out(now - timedelta(days=acks_days))
        removed["acks"] = self._write_now("DELETE FROM acks WHERE jsonb_array_length(times) = 0 OR "
                                      "times->>(jsonb_array_length(times) - 1) < %s", (cutoff,)).rowcount
        self._load_acks()
        if removed["processed"] and self._processed_filter is not None:
            self._load_processed_filter()
        return removed

    # -- outbox ---------------------------------------------------------------------------
    @staticmethod
    def _outbox_row(doc: dict) -> tuple:
        return (doc["message_id"], doc["kind"], doc.get("ticket"), doc.get("status", "pending"),
                dt_in(doc["created_at"]), dt_in(doc.get("sent_at")), Jsonb(doc))

    def enqueue(self, mail: OutboundMail) -> None:
        self._enqueue_doc(outbound_to_doc(mail))

    def _enqueue_doc(self, doc: dict) -> None:
        self._begin()
        mail_id = doc["id"]
        # An entry this desk knows is refused here; one only the server knows, when the batch is sent.
        if mail_id in self._dirty_outbox or mail_id in self._pending_docs:
            raise StoreError(f"outbox entry {mail_id} already exists")
        self._dirty_outbox[mail_id] = (doc, True)
        self._absent_outbox.discard(mail_id)
        self._cache_outbound(doc)
        self._dirtied()

    def _cache_outbound(self, doc: dict) -> None:
        # The writer keeps its pending mail (the entries intake and the sender look up again and again);
        # nobody else writes the outbox while it holds the lease.  Sent and failed entries drop out.
        if self.readonly:
            return
        if doc.get("status", "pending") == "pending":
            self._pending_docs[doc["id"]] = doc
        else:
            self._pending_docs.pop(doc["id"], None)

    def update_outbound(self, mail: OutboundMail) -> None:
        self._begin()
        doc = outbound_to_doc(mail)
        dirty = self._dirty_outbox.get(mail.id)
        if dirty is not None or mail.id in self._pending_docs:
            # Known to exist: written at the commit, once however often it changes (the digest grows per mail).
            self._dirty_outbox[mail.id] = (doc, dirty is not None and dirty[1])
            self._dirtied()
        else:
            row = self._write_now("UPDATE outbox SET message_id = %s, kind = %s, ticket = %s, status = %s, "
                                  "created_at = %s, sent_at = %s, doc = %s WHERE id = %s RETURNING 1",
                                  (*self._outbox_row(doc), mail.id)).fetchone()
            if row is None:
                raise KeyError(mail.id)
        self._cache_outbound(doc)

    def outbound(self, mail_id: str) -> OutboundMail | None:
        dirty = self._dirty_outbox.get(mail_id)
        doc = dirty[0] if dirty is not None else self._pending_docs.get(mail_id)
        if doc is not None:
            return outbound_from_doc(doc)
        if mail_id in self._absent_outbox:
            return None
        row = self._point_read("SELECT doc FROM outbox WHERE id = %s", (mail_id,)).fetchone()
        if row is None and not self.readonly:
            # Only this desk adds entries while it holds the lease, so "not there" stays true until it does.
            if len(self._absent_outbox) >= 10_000:
                self._absent_outbox.clear()
            self._absent_outbox.add(mail_id)
        return None if row is None else outbound_from_doc(row[0])

    def outbound_by_message_id(self, message_id: str) -> OutboundMail | None:
        row = self._read("SELECT doc FROM outbox WHERE message_id = %s ORDER BY seq DESC LIMIT 1",
                         (message_id,)).fetchone()
        return None if row is None else outbound_from_doc(row[0])

    def pending_outbound(self) -> list[OutboundMail]:
        docs = [row[0] for row in
                self._read("SELECT doc FROM outbox WHERE status = 'pending' ORDER BY created_at, seq")]
        for doc in docs:
            self._cache_outbound(doc)  # the sender marks them sent next: then without a round trip each
        return [outbound_from_doc(doc) for doc in docs]

    def outbox(self) -> Iterator[OutboundMail]:
        for row in self._read("SELECT doc FROM outbox ORDER BY seq").fetchall():
            yield outbound_from_doc(row[0])

    # -- moving the whole store (storage/transfer.py) ----------------------------------------
    def export_records(self) -> Iterator[tuple[str, dict]]:
        # One snapshot for the whole export, even beside a working desk.
        conn = connect(self.url, self._password, readonly=True)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield from self._export(conn)
        finally:
            conn.close()

    @staticmethod
    def _export(conn: psycopg.Connection) -> Iterator[tuple[str, dict]]:
        def rows(sql: str):
            with conn.cursor(name="export") as cur:  # server-side: a million tickets need not fit in memory
                cur.itersize = 500
                cur.execute(sql)
                yield from cur

        for name, value in conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall():
            yield "counters", {"name": name, "value": value}
        for (doc,) in rows("SELECT doc FROM tickets ORDER BY number"):
            yield "tickets", doc
        for (doc,) in rows("SELECT doc FROM outbox ORDER BY created_at, seq"):
            yield "outbox", doc
        for key, outcome, ticket, reason, at in rows("SELECT key, outcome, ticket, reason, at FROM processed"):
            yield "processed", {"key": key, "outcome": outcome, "ticket": ticket, "reason": reason, "at": dt_out(at)}
        for key, count in rows("SELECT key, count FROM attempts"):
            yield "attempts", {"key": key, "count": count}
        for sender, times in rows("SELECT sender, times FROM acks"):
            yield "acks", {"sender": sender, "times": times}
        for (doc,) in rows("SELECT doc FROM plans ORDER BY id"):
            yield "plans", doc
        for (doc,) in rows("SELECT doc FROM staff_records ORDER BY id"):
            yield "staff_records", doc
        for name, period, at, late, detail in rows("SELECT name, period, at, late, detail FROM jobs"):
            yield "jobs", {"name": name, "period": period, "at": dt_out(at), "late": late, "detail": detail}
        for sha, data in rows("SELECT sha256, data FROM attachments ORDER BY sha256"):
            yield "attachments", {"sha256": sha, "data": base64.b64encode(bytes(data)).decode("ascii")}

    def import_records(self, records: Iterable[tuple[str, dict]]) -> None:
        """Add exported records (into an empty store); durable with the next commit."""
        for table, doc in records:
            if table == "counters":
                # Later than any number handed out in this transaction: the next one is read again.
                self._next_ticket, self._counter_dirty = None, False
                self._write("UPDATE counters SET value = %s WHERE name = %s", (int(doc["value"]), doc["name"]))
            elif table == "tickets":
                self._save_ticket_doc(doc)
            elif table == "outbox":
                self._enqueue_doc(doc)
            elif table == "processed":
                self._begin()
                self._dirty_processed[doc["key"]] = (doc["key"], doc["outcome"], doc.get("ticket"),
                                                     doc.get("reason", ""), dt_in(doc["at"]))
                if self._processed_filter is not None:
                    self._processed_filter.add(doc["key"])
                self._dirtied()
            elif table == "attempts":
                self._begin()
                self._attempts[doc["key"]] = self._dirty_attempts[doc["key"]] = doc["count"]
                self._dirtied()
            elif table == "acks":
                self._begin()
                self._acks[doc["sender"]] = self._dirty_acks[doc["sender"]] = list(doc["times"])
                self._dirtied()
            elif table == "plans":
                self._add_plan_doc(doc)
            elif table == "staff_records":
                self._add_record_doc(doc)
            elif table == "jobs":
                self.record_job_run(doc["name"], doc["period"], at=dt_in(doc["at"]), late=doc["late"],
                                    detail=doc.get("detail", ""))
            elif table == "attachments":
                self.attachments.put(base64.b64decode(doc["data"]))
            else:
                raise StoreError(f"unknown table {table!r} in the import")
        # Sent now: the point reads (processed(), ...) do not look at the queue.
        self._run(None, docs=True)

    # -- the weekly report (storage/postgres_report.py) ----------------------------------------
    def weekly_report(self, week, policy):
        """The report's figures in SQL over ticket_events: no ticket document decoded but the week's own.

        Two connections on one snapshot share the queries, so that two server processes work on
        them; but while this desk has writes not yet committed, only its own connection sees them,
        and it alone reads.
        """
        from maildesk.storage.postgres_report import weekly_report  # reports import storage, not the other way

        if self._in_tx:
            return weekly_report([self._read], week, policy)
        try:
            readers = SnapshotReaders(self.url, self._password, 2)
        except StoreError as exc:  # e.g. the server's connection limit: one connection does it all
            log.warning("the weekly report reads on one connection: %s", exc)
            return weekly_report([self._read], week, policy)
        with readers:
            return weekly_report(readers.reads, week, policy)
