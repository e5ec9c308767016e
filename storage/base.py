"""The one interface every store implements, and the factory that picks one from the config.

The daemon, the reports and the command line only ever hold a ``Store``: the
journalled TinyDB store (``storage/store.py``) on one machine, or the
PostgreSQL store (``storage/postgres.py``) for several desks, analysts' SQL and
active/standby.  ``open_store`` and ``migrate_store`` are the only places that
look at which one the configuration names.

Contract (both stores: the ``both_stores`` tests in ``tests/test_store.py`` and the end-to-end tests):

* Changes are invisible to other processes until ``commit()``, and then
  durable together; ``rollback()`` forgets them.  Reads see this process's
  uncommitted changes.  That is what makes "a batch's effects and its
  processed keys, then move the mails out of the inbox" exactly-once.
* Only one store object may write at a time (``StoreLocked`` for a second
  writer; the PostgreSQL store can instead wait as a standby); readers may
  open beside it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from maildesk.model import OutboundMail, PlanItem, StaffRecord, Ticket

if TYPE_CHECKING:  # the config module imports nothing from storage; keep it that way
    from maildesk.daemon.config import Config
    from maildesk.reports.metrics import Policy, Week, WeeklyReport


@dataclass(frozen=True)
class ProcessedRecord:
    key: str
    outcome: str  # ticket | follow-up | ignored | quarantined | bounce | ...
    ticket: str | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class ClosedCase:
    """What the similar-case index needs of a closed ticket, and nothing more (never its messages)."""

    tag: str
    subject: str
    summary: str
    lessons: str


# The tables an export holds, in the order they are written and read back.
EXPORT_TABLES = ("counters", "tickets", "outbox", "processed", "attempts", "acks", "plans", "staff_records",
                 "jobs", "attachments")


class Attachments(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, sha256: str) -> bytes: ...  # FileNotFoundError when it is not there


class DeliveryLogLike(Protocol):
    def sending(self, mail_id: str) -> None: ...
    def sent(self, mail_id: str, at: datetime) -> None: ...
    def read(self): ...  # -> storage.delivery_log.Recovered
    def clear(self) -> None: ...
    def close(self) -> None: ...


class Store(Protocol):
    prefix: str
    attachments: Attachments
    # Where the store is, fit for a log line (never a password).
    location: str

    def close(self) -> None: ...
    def __enter__(self) -> "Store": ...
    def __exit__(self, *exc) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    # The outbox sender's record of mail the SMTP server accepted since its marks were last committed
    # (``storage/delivery_log.py``): kept where a desk taking over finds it.
    def delivery_log(self) -> "DeliveryLogLike": ...

    # tickets
    def format_tag(self, number: int) -> str: ...
    def parse_tag(self, tag: str) -> int | None: ...
    def allocate_ticket_number(self) -> int: ...
    def get_ticket(self, number: int) -> Ticket | None: ...
    def get_ticket_by_tag(self, tag: str) -> Ticket | None: ...
    def ticket_for_message_id(self, message_id: str) -> int | None: ...
    def save_ticket(self, ticket: Ticket) -> None: ...
    def tickets(self, *, with_messages: bool = True, active_since: datetime | None = None) -> Iterator[Ticket]: ...
    def open_tickets(self, *, with_messages: bool = True) -> Iterator[Ticket]: ...
    # Closed tickets with a summary or lessons, by number: read without building whole tickets.
    def closed_cases(self) -> Iterator[ClosedCase]: ...
    # The weekly report (reports/metrics.py defines its figures): each store computes it where its data is.
    def weekly_report(self, week: "Week", policy: "Policy") -> "WeeklyReport": ...
    def ticket_count(self) -> int: ...
    def archive_closed(self, before: datetime) -> int: ...
    def checkpoint(self) -> None: ...

    # supervisor's items, staff records, scheduled jobs
    def add_plan(self, item: PlanItem) -> None: ...
    def plans(self) -> list[PlanItem]: ...
    def add_staff_record(self, record: StaffRecord) -> None: ...
    def staff_records(self) -> list[StaffRecord]: ...
    def job_run(self, name: str, period: str) -> dict | None: ...
    def record_job_run(self, name: str, period: str, *, at: datetime, late: bool, detail: str = "") -> None: ...

    # processed mail, handling attempts, acknowledgement rate
    def processed(self, key: str) -> ProcessedRecord | None: ...
    def record_processed(self, key: str, outcome: str, *, ticket: str | None, reason: str,
                         at: datetime) -> None: ...
    def processed_records(self) -> Iterator[ProcessedRecord]: ...
    def attempts(self, key: str) -> int: ...
    def record_attempt(self, key: str) -> int: ...
    def clear_attempts(self, key: str) -> None: ...
    def acks_since(self, sender: str, since: datetime) -> int: ...
    def record_ack(self, sender: str, at: datetime, *, keep: timedelta = timedelta(hours=24)) -> None: ...
    def prune(self, now: datetime, *, processed_days: float = 30, sent_days: float = 7,
              acks_days: float = 1) -> dict[str, int]: ...

    # outbox
    def enqueue(self, mail: OutboundMail) -> None: ...
    def update_outbound(self, mail: OutboundMail) -> None: ...
    def outbound(self, mail_id: str) -> OutboundMail | None: ...
    def outbound_by_message_id(self, message_id: str) -> OutboundMail | None: ...
    def pending_outbound(self) -> list[OutboundMail]: ...
    def outbox(self) -> Iterator[OutboundMail]: ...

    # moving a whole store (``storage/transfer.py``): (table, document) pairs, documents as in codec.py
    def export_records(self) -> Iterator[tuple[str, dict]]: ...
    def import_records(self, records: Iterable[tuple[str, dict]]) -> None: ...


class TagFormat:
    """Ticket tags ``TS-000042``: the same for every store."""

    prefix: str

    def format_tag(self, number: int) -> str:
        return f"{self.prefix}-{number:06d}"

    def parse_tag(self, tag: str) -> int | None:
        m = re.fullmatch(rf"{re.escape(self.prefix)}-(\d{{1,9}})", tag.strip(), re.IGNORECASE)
        return int(m.group(1)) if m else None

    def get_ticket_by_tag(self, tag: str) -> Ticket | None:
        number = self.parse_tag(tag)
        return None if number is None else self.get_ticket(number)  # type: ignore[attr-defined]


def open_store(config: "Config", *, readonly: bool = False,
               standby: Callable[[], bool] | None = None,
               on_lease_lost: Callable[[], None] | None = None) -> Store:
    """The store the configuration names.

    ``standby``: a writer that finds another desk working waits (calling this
    to learn whether to give up) instead of failing, where the store allows
    two desks on one history; the TinyDB store refuses a second writer always.
    ``on_lease_lost``: called (from another thread) when such a store finds
    that another desk took over from this one, which must then stop.
    """
    if config.storage_url:
        from maildesk.storage.postgres import PostgresStore
        return PostgresStore(config.storage_url, password=config.storage_password, prefix=config.tickets.prefix,
                             readonly=readonly, standby=standby, on_lease_lost=on_lease_lost,
                             show_addresses=None if readonly else config.analysts_see_addresses)
    from maildesk.storage.store import TicketStore
    return TicketStore(config.storage_path, prefix=config.tickets.prefix, readonly=readonly)


def migrate_store(config: "Config") -> list[str]:
    """Bring the store's schema up to date; the names of the steps applied (none for TinyDB)."""
    if config.storage_url:
        from maildesk.storage.postgres import migrate
        return migrate(config.storage_url, password=config.storage_password,
                       show_addresses=config.analysts_see_addresses)
    return []
