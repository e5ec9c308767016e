"""The PostgreSQL store: the same contract as the TinyDB ``TicketStore``, in a server database.

For several desks (active/standby) on one history and for analysts' SQL.
What differs from the TinyDB store, and why:

* **Transactions.** The connection runs in autocommit; the first write opens
  a transaction (``BEGIN``) that ``commit()`` ends.  Reads before it see
  what is committed; reads after it also see this desk's own uncommitted
  writes, as in the TinyDB store.  A desk waiting in IMAP IDLE therefore
  holds no transaction open.
* **One working desk.** A writer takes the lease row (``desk_lease``): one
  holder, an expiry renewed every ``LEASE_SECONDS / 3`` by a thread of its
  own, and a token that grows with every take-over.  Every commit checks the
  token in the same transaction, so a desk that froze past its lease and woke
  up cannot write after another took over (fencing).  The active desk's
  session also holds an advisory lock named by its token.  A standby polls
  and takes over as soon as that lock is free (the desk was killed or lost
  its connection: within a poll), or, for a desk that is frozen but still
  connected, once its lease has lapsed (``LEASE_SECONDS``); a desk that
  stops cleanly hands the lease over at once.
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
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from maildesk.model import OutboundMail, PlanItem, StaffRecord, Ticket
from maildesk.storage.base import ClosedCase, ProcessedRecord, TagFormat
from maildesk.storage.codec import (dt_in, dt_out, outbound_from_doc, outbound_to_doc, plan_from_doc, plan_to_doc,
                                    record_from_doc, record_to_doc, ticket_from_doc, ticket_to_doc)
from maildesk.storage.journal import StoreError
from maildesk.storage.lock import StoreLocked

log = logging.getLogger("maildesk.storage")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A desk frozen this long (still connected, not renewing) loses the lease: take-over well inside 10 s.
LEASE_SECONDS = 6.0
STANDBY_POLL_SECONDS = 0.5
# pg_advisory_lock(ADVISORY_KEY, token): held by the active desk's session for its lease token.
ADVISORY_KEY = 0x6D64

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


def connect(url: str, password: str | None, *, readonly: bool = False) -> psycopg.Connection:
    kwargs: dict = {"autocommit": True, "connect_timeout": 10,
                    # Times come back in UTC, as the TinyDB store keeps them.
                    "options": "-c TimeZone=UTC" + (" -c default_transaction_read_only=on" if readonly else ""),
                    "application_name": "maildesk"}
    if password:
        kwargs["password"] = password
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {describe(url)}: {_one_line(exc)}") from None


def _lock_id(token: int) -> int:
    return token % 2**31  # the two-key advisory lock takes int4s


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
        self._store._write("INSERT INTO attachments (sha256, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                           (digest, data))
        return digest

    def get(self, sha256: str) -> bytes:
        row = self._store._read("SELECT data FROM attachments WHERE sha256 = %s", (sha256,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"attachment {sha256} is not in the store")
        return bytes(row[0])


class PgDeliveryLog:
    """The sender's delivery log (``storage/delivery_log.py``) as a table every desk sees.

    Its own connection, committing without waiting for the server's disk: a
    killed client cannot take a line back (the server has it), and only a
    server crash could lose lines, like the file version's lost page cache.
    """

    def __init__(self, url: str, password: str | None) -> None:
        self._url, self._password = url, password
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
        self._run("INSERT INTO delivery_log (mail_id, state) VALUES (%s, 'sending')", (mail_id,))

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

    def __init__(self, url: str, password: str | None, location: str) -> None:
        self.url = url
        self.password = password
        self.location = location
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.token: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_take(self, conn: psycopg.Connection) -> tuple[int | None, str, bool]:
        """Take the lease if it lapsed or its holder's session is gone: (token or None, holder, lapsed)."""
        with conn.transaction():
            # FOR UPDATE: desks starting together take turns, and a commit in flight finishes first
            # (bounded: a desk frozen inside its commit must not hang the standby; it tries again).
            conn.execute("SET LOCAL lock_timeout = '2s'")
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

    def acquire(self, conn: psycopg.Connection, standby: Callable[[], bool] | None) -> bool:
        told = False
        # Without standby (`once`, `store import`): a moment's grace for a desk that has just died,
        # whose server session may not have noticed yet.
        grace = time.monotonic() + 2
        while True:
            try:
                token, holder, lapsed = self._try_take(conn)
            except psycopg.errors.LockNotAvailable:
                token, holder, lapsed = None, "a desk in the middle of a commit", False
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
                log.error("another desk took over %s; this desk's next commit will fail", self.location)
                break
        if conn is not None:
            conn.close()

    def fence(self, conn: psycopg.Connection) -> bool:
        """Inside the commit's transaction: is the lease still ours?  (Renews it too.)"""
        row = conn.execute("UPDATE desk_lease SET expires_at = greatest(expires_at, now() + make_interval(secs => %s)) "
                           "WHERE id = 1 AND token = %s RETURNING 1", (LEASE_SECONDS, self.token)).fetchone()
        return row is not None

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


class StandbyStopped(StoreError):
    """A standby desk was asked to stop before it became active."""


class PostgresStore(TagFormat):
    def __init__(self, url: str, *, password: str | None = None, prefix: str = "TS", readonly: bool = False,
                 standby: Callable[[], bool] | None = None, show_addresses: bool | None = None) -> None:
        self.url = url
        self._password = password
        self.prefix = prefix
        self.readonly = readonly
        self.location = describe(url)
        self._in_tx = False
        self._lease: _Lease | None = None
        self.conn = connect(url, password, readonly=readonly)
        try:
            have, need = _schema_version(self.conn), schema_version_needed()
            if have != need:
                raise StoreError(
                    f"database {self.location} has schema version {have}, this helpdesk needs {need}: "
                    + ("run `helpdesk -c CONFIG store migrate`" if have < need else "upgrade this helpdesk"))
            if not readonly:
                self._lease = _Lease(url, password, self.location)
                if not self._lease.acquire(self.conn, standby):
                    raise StandbyStopped("stopped while waiting as a standby desk")
                if show_addresses is not None:
                    _set_analyst_addresses(self.conn, show_addresses)
        except BaseException:
            self.conn.close()
            raise
        self.attachments = PgAttachments(self)
        self._attempt_keys: set[str] = set()
        self._acks: dict[str, list[str]] = {}
        self._pending_docs: dict[str, dict] = {}
        if not readonly:
            self._load_attempt_keys()

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
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as exc:
            raise StoreError(f"store {self.location}: {_one_line(exc)}") from None

    def _write(self, sql: str, params: tuple | list | None = None) -> psycopg.Cursor:
        if self.readonly:
            raise StoreError(f"store {self.location} is open read-only")
        if not self._in_tx:
            self._read("BEGIN")
            self._in_tx = True
        return self._read(sql, params)

    def commit(self) -> None:
        if not self._in_tx:
            return
        try:
            if self._lease is not None and not self._lease.fence(self.conn):
                self.rollback()
                raise StoreError(f"another desk took over {self.location}; this desk stops without writing")
            self.conn.execute("COMMIT")
        except psycopg.Error as exc:
            self.rollback()
            raise StoreError(f"cannot commit to {self.location}: {_one_line(exc)}") from None
        self._in_tx = False

    def rollback(self) -> None:
        if not self._in_tx:
            return
        self._in_tx = False
        try:
            self.conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise StoreError(f"cannot roll back on {self.location}: {_one_line(exc)}") from None
        self._acks.clear()
        self._pending_docs.clear()
        self._load_attempt_keys()

    @property
    def dirty(self) -> bool:
        return self._in_tx

    def delivery_log(self) -> PgDeliveryLog:
        return PgDeliveryLog(self.url, self._password)

    def set_analyst_addresses(self, show: bool) -> None:
        _set_analyst_addresses(self.conn, show)

    # -- tickets -------------------------------------------------------------------------
    def allocate_ticket_number(self) -> int:
        return self._write("UPDATE counters SET value = value + 1 WHERE name = 'next_ticket' "
                           "RETURNING value - 1").fetchone()[0]

    def get_ticket(self, number: int) -> Ticket | None:
        row = self._read("SELECT doc FROM tickets WHERE number = %s", (number,)).fetchone()
        return None if row is None else ticket_from_doc(row[0])

    def ticket_for_message_id(self, message_id: str) -> int | None:
        row = self._read("SELECT number FROM ticket_message_ids WHERE message_id = %s", (message_id,)).fetchone()
        return None if row is None else row[0]

    def save_ticket(self, ticket: Ticket) -> None:
        self._save_ticket_doc(ticket_to_doc(ticket))

    def _save_ticket_doc(self, doc: dict) -> None:
        events = doc.get("events") or []
        self._write(
            "INSERT INTO tickets (number, tag, subject, customer, stage, language, priority, assignee, rating, "
            "created_at, updated_at, last_event_at, doc) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (number) DO UPDATE SET tag = excluded.tag, subject = excluded.subject, "
            "customer = excluded.customer, stage = excluded.stage, language = excluded.language, "
            "priority = excluded.priority, assignee = excluded.assignee, rating = excluded.rating, "
            "created_at = excluded.created_at, updated_at = excluded.updated_at, "
            "last_event_at = excluded.last_event_at, doc = excluded.doc",
            (doc["number"], doc["tag"], doc["subject"], doc["customer"], doc["stage"], doc.get("language", "en"),
             doc.get("priority", "normal"), doc.get("assignee"), doc.get("rating"), dt_in(doc["created_at"]),
             dt_in(doc["updated_at"]), dt_in(events[-1]["at"]) if events else None, Jsonb(doc)))
        message_ids = list(dict.fromkeys(doc.get("message_ids") or ()))
        if message_ids:
            self._write(
                "INSERT INTO ticket_message_ids (message_id, number) SELECT m, %s FROM unnest(%s::text[]) AS m "
                "ON CONFLICT (message_id) DO UPDATE SET number = excluded.number "
                "WHERE ticket_message_ids.number <> excluded.number", (doc["number"], message_ids))

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
        row = self._read("SELECT key, outcome, ticket, reason, at FROM processed WHERE key = %s", (key,)).fetchone()
        return None if row is None else ProcessedRecord(*row)

    def record_processed(self, key: str, outcome: str, *, ticket: str | None, reason: str,
                         at: datetime) -> None:
        self._write("INSERT INTO processed (key, outcome, ticket, reason, at) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, ticket = excluded.ticket, "
                    "reason = excluded.reason, at = excluded.at", (key, outcome, ticket, reason, at))
        self.clear_attempts(key)

    def processed_records(self) -> Iterator[ProcessedRecord]:
        for row in self._read("SELECT key, outcome, ticket, reason, at FROM processed ORDER BY at, key").fetchall():
            yield ProcessedRecord(*row)

    # -- handling attempts (poison-mail guard) ------------------------------------------
    def attempts(self, key: str) -> int:
        if not self.readonly and key not in self._attempt_keys:
            return 0  # the writer knows every key with attempts (see _load_attempt_keys)
        row = self._read("SELECT count FROM attempts WHERE key = %s", (key,)).fetchone()
        return 0 if row is None else row[0]

    def record_attempt(self, key: str) -> int:
        count = self._write("INSERT INTO attempts (key, count) VALUES (%s, 1) ON CONFLICT (key) "
                            "DO UPDATE SET count = attempts.count + 1 RETURNING count", (key,)).fetchone()[0]
        self._attempt_keys.add(key)
        return count

    def clear_attempts(self, key: str) -> None:
        # Most keys have no attempt row (a mail's own key never has): skip the round trip for them.
        if key in self._attempt_keys:
            self._write("DELETE FROM attempts WHERE key = %s", (key,))
            self._attempt_keys.discard(key)

    def _load_attempt_keys(self) -> None:
        # Only the desk holding the lease writes attempts, so this set stays exact while it does.
        self._attempt_keys = {key for (key,) in self._read("SELECT key FROM attempts").fetchall()}

    # -- acknowledgement rate ----------------------------------------------------------
    def _ack_times(self, sender: str) -> list[str]:
        # The writer caches what it read or wrote: only the desk holding the lease writes acks.
        times = self._acks.get(sender)
        if times is None:
            row = self._read("SELECT times FROM acks WHERE sender = %s", (sender,)).fetchone()
            times = [] if row is None else row[0]
            if not self.readonly:
                self._acks[sender] = times
        return times

    def acks_since(self, sender: str, since: datetime) -> int:
        return sum(1 for t in self._ack_times(sender) if dt_in(t) >= since)

    def record_ack(self, sender: str, at: datetime, *, keep: timedelta = timedelta(hours=24)) -> None:
        cutoff = dt_out(at - keep)
        kept = [t for t in self._ack_times(sender) if t >= cutoff] + [dt_out(at)]
        # One statement: the stored UTC ISO strings compare as the times they are.
        self._write("INSERT INTO acks (sender, times) VALUES (%s, %s) ON CONFLICT (sender) DO UPDATE SET times = "
                    "coalesce((SELECT jsonb_agg(t) FROM jsonb_array_elements(acks.times) AS t WHERE t #>> '{}' >= %s), "
                    "'[]'::jsonb) || excluded.times", (sender, Jsonb([dt_out(at)]), dt_out(at - keep)))
        self._acks[sender] = kept

    # -- housekeeping ------------------------------------------------------------------
    def prune(self, now: datetime, *, processed_days: float = 30, sent_days: float = 7,
              acks_days: float = 1) -> dict[str, int]:
        removed = {}
        removed["processed"] = self._write("DELETE FROM processed WHERE at < %s",
                                           (now - timedelta(days=processed_days),)).rowcount
        removed["outbox"] = self._write("DELETE FROM outbox WHERE status <> 'pending' AND "
                                        "coalesce(sent_at, created_at) < %s",
                                        (now - timedelta(days=sent_days),)).rowcount
        cutoff = dt_out(now - timedelta(days=acks_days))
        removed["acks"] = self._write("DELETE FROM acks WHERE jsonb_array_length(times) = 0 OR "
                                      "times->>(jsonb_array_length(times) - 1) < %s", (cutoff,)).rowcount
        self._acks.clear()
        return removed

    # -- outbox ---------------------------------------------------------------------------
    @staticmethod
    def _outbox_row(doc: dict) -> tuple:
        return (doc["message_id"], doc["kind"], doc.get("ticket"), doc.get("status", "pending"),
                dt_in(doc["created_at"]), dt_in(doc.get("sent_at")), Jsonb(doc))

    def enqueue(self, mail: OutboundMail) -> None:
        self._enqueue_doc(outbound_to_doc(mail))

    def _enqueue_doc(self, doc: dict) -> None:
        # ON CONFLICT rather than an error: a failed statement would abort the whole batch's transaction.
        row = self._write("INSERT INTO outbox (id, message_id, kind, ticket, status, created_at, sent_at, doc) "
                          "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING 1",
                          (doc["id"], *self._outbox_row(doc))).fetchone()
        if row is None:
            raise StoreError(f"outbox entry {doc['id']} already exists")
        self._cache_outbound(doc)

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
        doc = outbound_to_doc(mail)
        row = self._write("UPDATE outbox SET message_id = %s, kind = %s, ticket = %s, status = %s, created_at = %s, "
                          "sent_at = %s, doc = %s WHERE id = %s RETURNING 1",
                          (*self._outbox_row(doc), mail.id)).fetchone()
        if row is None:
            raise KeyError(mail.id)
        self._cache_outbound(doc)

    def outbound(self, mail_id: str) -> OutboundMail | None:
        doc = self._pending_docs.get(mail_id)
        if doc is not None:
            return outbound_from_doc(doc)
        row = self._read("SELECT doc FROM outbox WHERE id = %s", (mail_id,)).fetchone()
        return None if row is None else outbound_from_doc(row[0])

    def outbound_by_message_id(self, message_id: str) -> OutboundMail | None:
        row = self._read("SELECT doc FROM outbox WHERE message_id = %s ORDER BY seq DESC LIMIT 1",
                         (message_id,)).fetchone()
        return None if row is None else outbound_from_doc(row[0])

    def pending_outbound(self) -> list[OutboundMail]:
        return [outbound_from_doc(row[0]) for row in
                self._read("SELECT doc FROM outbox WHERE status = 'pending' ORDER BY created_at, seq")]

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
                self._write("UPDATE counters SET value = %s WHERE name = %s", (int(doc["value"]), doc["name"]))
            elif table == "tickets":
                self._save_ticket_doc(doc)
            elif table == "outbox":
                self._enqueue_doc(doc)
            elif table == "processed":
                self._write("INSERT INTO processed (key, outcome, ticket, reason, at) VALUES (%s, %s, %s, %s, %s)",
                            (doc["key"], doc["outcome"], doc.get("ticket"), doc.get("reason", ""), dt_in(doc["at"])))
            elif table == "attempts":
                self._write("INSERT INTO attempts (key, count) VALUES (%s, %s)", (doc["key"], doc["count"]))
            elif table == "acks":
                self._write("INSERT INTO acks (sender, times) VALUES (%s, %s)", (doc["sender"], Jsonb(doc["times"])))
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
