"""``TicketStore``: the only code that reads or writes the helpdesk's files.

Changes accumulate in memory and become durable together on ``commit()``,
which is what makes "store the effects of a mail, then mark it processed"
one atomic step.  Lookups the hot path needs (Message-ID -> ticket, mail key
-> processed, pending outbox) are kept as in-memory indexes rebuilt at open.

This is the TinyDB implementation of ``maildesk.storage.base.Store``; the
PostgreSQL one (``storage/postgres.py``) keeps the same contract.
"""
from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from tinydb.table import Document

from maildesk.model import OutboundMail, PlanItem, StaffRecord, Ticket
from maildesk.storage.archive import TicketArchive
from maildesk.storage.attachments import AttachmentStore
from maildesk.storage.base import ClosedCase, ProcessedRecord, TagFormat
from maildesk.storage.codec import (dt_in, dt_out, outbound_from_doc, outbound_to_doc, plan_from_doc,
                                    plan_to_doc, record_from_doc, record_to_doc, ticket_from_doc, ticket_to_doc)
from maildesk.storage.journal import StoreError, open_database
from maildesk.storage.lock import StoreLock

log = logging.getLogger("maildesk.storage")

_META_ID = 1


__all__ = ["ProcessedRecord", "TicketStore"]


class TicketStore(TagFormat):
    def __init__(self, path: Path, *, prefix: str = "TS", readonly: bool = False,
                 checkpoint_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.prefix = prefix
        self.readonly = readonly
        self._lock = None
        if not readonly:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock = StoreLock(self.path)
            self._lock.acquire()
        try:
            self.db, self._storage = open_database(self.path, readonly=readonly,
                                                   checkpoint_bytes=checkpoint_bytes)
        except BaseException:
            if self._lock:
                self._lock.release()
            raise
        self._tickets = self.db.table("tickets")
        self._outbox = self.db.table("outbox")
        self._processed = self.db.table("processed")
        self._attempts = self.db.table("attempts")
        self._acks = self.db.table("acks")
        self._meta = self.db.table("meta")
        self._plans = self.db.table("plans")
        self._records = self.db.table("staff_records")
        self._jobs = self.db.table("jobs")
        self.attachments = AttachmentStore(self.path.with_name(self.path.stem + ".attachments"))
        try:
            self.archive = TicketArchive(self.path.with_name(self.path.stem + ".archive"), readonly=readonly)
        except BaseException:
            self.close()
            raise
        self._build_indexes()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "TicketStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def commit(self) -> None:
        self.attachments.sync()  # the files first: the commit refers to them
        self._storage.commit()

    def delivery_log(self):
        """The sender's log of accepted mail since the last commit, beside the store's files."""
        from maildesk.storage.delivery_log import DeliveryLog
        return DeliveryLog(self.path.with_name(self.path.name + ".sending"))

    def rollback(self) -> None:
        self._storage.rollback()
        self.db.clear_cache()
        for table in (self._tickets, self._outbox, self._processed, self._attempts, self._acks, self._meta,
                      self._plans, self._records, self._jobs):
            table.clear_cache()
            table._next_id = None  # recomputed from what is really there
        self._build_indexes()

    @property
    def dirty(self) -> bool:
        return self._storage.dirty

    def _build_indexes(self) -> None:
        self._by_message_id: dict[str, int] = {}
        for doc_id, doc in self._raw("tickets").items():
            for mid in doc.get("message_ids", ()):
                self._by_message_id[mid] = int(doc_id)
        self._processed_ids = {doc["key"]: int(i) for i, doc in self._raw("processed").items()}
        self._attempt_ids = {doc["key"]: int(i) for i, doc in self._raw("attempts").items()}
        self._ack_ids = {doc["sender"]: int(i) for i, doc in self._raw("acks").items()}
        self._outbox_ids = {doc["id"]: int(i) for i, doc in self._raw("outbox").items()}
        self._outbox_by_message_id = {doc["message_id"]: doc["id"] for doc in self._raw("outbox").values()}
        self._pending = {doc["id"] for doc in self._raw("outbox").values() if doc["status"] == "pending"}

    def _raw(self, table: str) -> dict[str, dict]:
        return self._storage.read().get(table, {})

    # -- tickets ---------------------------------------------------------------------------
    def allocate_ticket_number(self) -> int:
        meta = self._meta.get(doc_id=_META_ID) or {}
        number = int(meta.get("next_ticket", 1))
        self._meta.upsert(Document({**meta, "next_ticket": number + 1}, doc_id=_META_ID))
        return number

    def get_ticket(self, number: int) -> Ticket | None:
        doc = self._raw("tickets").get(str(number))
        if doc is None:
            doc = self.archive.get(number)  # closed long ago: read from its month's file
        return None if doc is None else ticket_from_doc(doc)

    def ticket_for_message_id(self, message_id: str) -> int | None:
        number = self._by_message_id.get(message_id)
        return number if number is not None else self.archive.number_for_message_id(message_id)

    def save_ticket(self, ticket: Ticket) -> None:
        self._tickets.upsert(Document(ticket_to_doc(ticket), doc_id=ticket.number))
        for mid in ticket.message_ids:
            self._by_message_id[mid] = ticket.number

    def tickets(self, *, with_messages: bool = True, active_since: datetime | None = None) -> Iterator[Ticket]:
        """Every ticket; without messages (for reports) it is several times faster.

        ``active_since`` leaves out closed tickets with no event since then, decided on
        the stored UTC strings (which sort as times) before anything is decoded.
        """
        since = dt_out(active_since) if active_since else None
        hot = self._raw("tickets")

        def idle(doc: dict) -> bool:
            return bool(since) and doc["stage"] == "closed" and doc["created_at"] < since and \
                (not doc["events"] or doc["events"][-1]["at"] < since)

        for doc in list(hot.values()):
            if not idle(doc):
                yield ticket_from_doc(doc, with_messages=with_messages)
        # Archived tickets are filed by the month of their last event: earlier months hold none
        # that was active since then.
        for doc in self.archive.iter_docs(months_from=since[:7] if since else None):
            if str(doc["number"]) not in hot and not idle(doc):
                yield ticket_from_doc(doc, with_messages=with_messages)

    def closed_cases(self) -> Iterator[ClosedCase]:
        """Closed tickets with a summary or lessons, by number, read from the stored documents."""
        hot = self._raw("tickets")
        archived = (d for d in self.archive.iter_docs() if str(d["number"]) not in hot)
        # Only the four fields are kept while sorting, never a whole archived document.
        cases = sorted((d["number"], ClosedCase(d["tag"], d["subject"], d.get("summary", ""), d.get("lessons", "")))
                       for d in itertools.chain(list(hot.values()), archived)
                       if d["stage"] == "closed" and (d.get("summary") or d.get("lessons")))
        for _, case in cases:
            yield case

    def weekly_report(self, week, policy):
        """The report by the pure definitions, over the tickets active in the nine weeks it shows."""
        from maildesk.reports.metrics import weekly_report  # reports import storage, not the other way round

        # Closed tickets untouched in the nine weeks the report shows change none of its figures.
        tickets = list(self.tickets(with_messages=False, active_since=week.previous(8).start))
        return weekly_report(week, tickets, self.staff_records(), self.plans(), policy)

    def ticket_count(self) -> int:
        hot = self._raw("tickets")
        return len(hot) + sum(1 for n in self.archive.numbers() if str(n) not in hot)

    def archive_closed(self, before: datetime) -> int:
        """Move tickets closed before ``before`` (and untouched since) out of memory.

        The archive's files are durable when this returns; the hot table's
        removals become durable with the next commit (a crash in between
        leaves the ticket in both places, where the hot copy wins).
        """
        cutoff = dt_out(before)
        moved = []
        for doc_id, doc in self._raw("tickets").items():
            if doc["stage"] != "closed" or not doc["events"] or doc["events"][-1]["at"] >= cutoff:
                continue
            # Filed by the month (UTC) of its last event: a report asking for activity since a
            # date never needs to open an earlier month's file.
            self.archive.put(doc, doc["events"][-1]["at"][:7], doc.get("message_ids", []))
            moved.append(int(doc_id))
        if moved:
            for number in moved:
                for mid in self._raw("tickets")[str(number)].get("message_ids", ()):
                    if self._by_message_id.get(mid) == number:
                        del self._by_message_id[mid]
            self._tickets.remove(doc_ids=moved)
        return len(moved)

    def checkpoint(self) -> None:
        """Fold the journal into a fresh snapshot now (e.g. after archiving freed much memory)."""
        self._storage.checkpoint()

    def open_tickets(self, *, with_messages: bool = True) -> Iterator[Ticket]:
        for doc in list(self._raw("tickets").values()):
            if doc["stage"] != "closed":
                yield ticket_from_doc(doc, with_messages=with_messages)

    # -- supervisor's plan items and staff records -------------------------------------
    def add_plan(self, item: PlanItem) -> None:
        self._plans.insert(plan_to_doc(item))

    def plans(self) -> list[PlanItem]:
        return [plan_from_doc(d) for d in self._raw("plans").values()]

    def add_staff_record(self, record: StaffRecord) -> None:
        self._records.insert(record_to_doc(record))

    def staff_records(self) -> list[StaffRecord]:
        return [record_from_doc(d) for d in self._raw("staff_records").values()]

    # -- scheduled jobs ------------------------------------------------------------------
    def job_run(self, name: str, period: str) -> dict | None:
        """The record of a scheduled job's run for a period (e.g. a report week), if any."""
        for doc in self._raw("jobs").values():
            if doc["name"] == name and doc["period"] == period:
                return dict(doc)
        return None

    def record_job_run(self, name: str, period: str, *, at: datetime, late: bool, detail: str = "") -> None:
        self._jobs.insert({"name": name, "period": period, "at": dt_out(at), "late": late, "detail": detail})

    # -- processed mail ------------------------------------------------------------------
    def processed(self, key: str) -> ProcessedRecord | None:
        doc_id = self._processed_ids.get(key)
        if doc_id is None:
            return None
        doc = self._raw("processed")[str(doc_id)]
        return ProcessedRecord(doc["key"], doc["outcome"], doc.get("ticket"), doc.get("reason", ""),
                               dt_in(doc["at"]))

    def record_processed(self, key: str, outcome: str, *, ticket: str | None, reason: str,
                         at: datetime) -> None:
        doc = {"key": key, "outcome": outcome, "ticket": ticket, "reason": reason, "at": dt_out(at)}
        doc_id = self._processed_ids.get(key)
        if doc_id is None:
            self._processed_ids[key] = self._processed.insert(doc)
        else:
            self._processed.upsert(Document(doc, doc_id=doc_id))
        self.clear_attempts(key)

    def processed_records(self) -> Iterator[ProcessedRecord]:
        for doc in list(self._raw("processed").values()):
            yield ProcessedRecord(doc["key"], doc["outcome"], doc.get("ticket"), doc.get("reason", ""),
                                  dt_in(doc["at"]))

    # -- handling attempts (poison-mail guard) ------------------------------------------
    def attempts(self, key: str) -> int:
        doc_id = self._attempt_ids.get(key)
        return 0 if doc_id is None else int(self._raw("attempts")[str(doc_id)]["count"])

    def record_attempt(self, key: str) -> int:
        count = self.attempts(key) + 1
        doc = {"key": key, "count": count}
        doc_id = self._attempt_ids.get(key)
        if doc_id is None:
            self._attempt_ids[key] = self._attempts.insert(doc)
        else:
            self._attempts.upsert(Document(doc, doc_id=doc_id))
        return count

    def clear_attempts(self, key: str) -> None:
        doc_id = self._attempt_ids.pop(key, None)
        if doc_id is not None:
            self._attempts.remove(doc_ids=[doc_id])

    # -- acknowledgement rate ----------------------------------------------------------
    def acks_since(self, sender: str, since: datetime) -> int:
        doc_id = self._ack_ids.get(sender)
        if doc_id is None:
            return 0
        times = self._raw("acks")[str(doc_id)]["times"]
        return sum(1 for t in times if dt_in(t) >= since)

    def record_ack(self, sender: str, at: datetime, *, keep: timedelta = timedelta(hours=24)) -> None:
        doc_id = self._ack_ids.get(sender)
        times = [] if doc_id is None else self._raw("acks")[str(doc_id)]["times"]
        times = [t for t in times if dt_in(t) >= at - keep] + [dt_out(at)]
        doc = {"sender": sender, "times": times}
        if doc_id is None:
            self._ack_ids[sender] = self._acks.insert(doc)
        else:
            self._acks.upsert(Document(doc, doc_id=doc_id))

    # -- housekeeping ------------------------------------------------------------------
    def prune(self, now: datetime, *, processed_days: float = 30, sent_days: float = 7,
              acks_days: float = 1) -> dict[str, int]:
        """Forget what can no longer matter, so the store does not grow with every mail ever seen.

        * processed mail keys: a mail has long left the inbox after ``processed_days``;
        * sent or failed outbox entries: their text is on the ticket already;
        * acknowledgement counters of senders quiet for a day.
        """
        removed = {"processed": 0, "outbox": 0, "acks": 0}
        cutoff = dt_out(now - timedelta(days=processed_days))
        old = [(doc["key"], int(i)) for i, doc in self._raw("processed").items() if doc["at"] < cutoff]
        if old:
            self._processed.remove(doc_ids=[i for _, i in old])
            for key, _ in old:
                self._processed_ids.pop(key, None)
        removed["processed"] = len(old)
        cutoff = dt_out(now - timedelta(days=sent_days))
        done = [(doc["id"], doc["message_id"], int(i)) for i, doc in self._raw("outbox").items()
                if doc["status"] != "pending" and (doc.get("sent_at") or doc["created_at"]) < cutoff]
        if done:
            self._outbox.remove(doc_ids=[i for *_, i in done])
            for mail_id, message_id, _ in done:
                self._outbox_ids.pop(mail_id, None)
                self._outbox_by_message_id.pop(message_id, None)
        removed["outbox"] = len(done)
        cutoff = dt_out(now - timedelta(days=acks_days))
        quiet = [(doc["sender"], int(i)) for i, doc in self._raw("acks").items()
                 if not doc["times"] or doc["times"][-1] < cutoff]
        if quiet:
            self._acks.remove(doc_ids=[i for _, i in quiet])
            for sender, _ in quiet:
                self._ack_ids.pop(sender, None)
        removed["acks"] = len(quiet)
        return removed

    # -- outbox ---------------------------------------------------------------------------
    def enqueue(self, mail: OutboundMail) -> None:
        if mail.id in self._outbox_ids:
            raise StoreError(f"outbox entry {mail.id} already exists")
        self._outbox_ids[mail.id] = self._outbox.insert(outbound_to_doc(mail))
        self._outbox_by_message_id[mail.message_id] = mail.id
        if mail.status == "pending":
            self._pending.add(mail.id)

    def update_outbound(self, mail: OutboundMail) -> None:
        doc_id = self._outbox_ids[mail.id]
        self._outbox.upsert(Document(outbound_to_doc(mail), doc_id=doc_id))
        if mail.status == "pending":
            self._pending.add(mail.id)
        else:
            self._pending.discard(mail.id)

    def outbound(self, mail_id: str) -> OutboundMail | None:
        doc_id = self._outbox_ids.get(mail_id)
        return None if doc_id is None else outbound_from_doc(self._raw("outbox")[str(doc_id)])

    def outbound_by_message_id(self, message_id: str) -> OutboundMail | None:
        mail_id = self._outbox_by_message_id.get(message_id)
        return None if mail_id is None else self.outbound(mail_id)

    def pending_outbound(self) -> list[OutboundMail]:
        """Pending mail in the order it was queued."""
        found = [self.outbound(i) for i in self._pending]
        return sorted(found, key=lambda m: (m.created_at, self._outbox_ids[m.id]))

    def outbox(self) -> Iterator[OutboundMail]:
        for doc in list(self._raw("outbox").values()):
            yield outbound_from_doc(doc)

    # -- moving the whole store (storage/transfer.py) ----------------------------------------
    def export_records(self) -> Iterator[tuple[str, dict]]:
        meta = self._raw("meta").get(str(_META_ID)) or {}
        yield "counters", {"name": "next_ticket", "value": int(meta.get("next_ticket", 1))}
        hot = self._raw("tickets")
        for doc in list(hot.values()):
            yield "tickets", doc
        for doc in self.archive.iter_docs():
            if str(doc["number"]) not in hot:
                yield "tickets", doc
        # Queue order, so an imported outbox sends in the same order.
        for doc in sorted(self._raw("outbox").values(), key=lambda d: (d["created_at"], self._outbox_ids[d["id"]])):
            yield "outbox", doc
        for name, table in (("processed", "processed"), ("attempts", "attempts"), ("acks", "acks"),
                            ("plans", "plans"), ("staff_records", "staff_records"), ("jobs", "jobs")):
            for doc in list(self._raw(table).values()):
                yield name, doc
        root = self.attachments.root
        if root.is_dir():
            for path in sorted(root.glob("??/*")):
                if len(path.name) == 64:
                    yield "attachments", {"sha256": path.name,
                                          "data": base64.b64encode(path.read_bytes()).decode("ascii")}

    def import_records(self, records: Iterable[tuple[str, dict]]) -> None:
        """Add exported records (into an empty store); durable with the next commit."""
        tables = {"processed": self._processed, "attempts": self._attempts, "acks": self._acks,
                  "plans": self._plans, "staff_records": self._records, "jobs": self._jobs}
        for table, doc in records:
            if table == "counters":
                if doc["name"] == "next_ticket":
                    self._meta.upsert(Document({"next_ticket": int(doc["value"])}, doc_id=_META_ID))
            elif table == "tickets":
                self._tickets.upsert(Document(dict(doc), doc_id=int(doc["number"])))
            elif table == "outbox":
                self._outbox.insert(dict(doc))
            elif table == "attachments":
                self.attachments.put(base64.b64decode(doc["data"]))
            elif table in tables:
                tables[table].insert(dict(doc))
            else:
                raise StoreError(f"unknown table {table!r} in the import")
        self._build_indexes()
