"""The PostgreSQL store's deferred writes (storage/postgres.py, "Few round trips"): what a batch
writes waits in the process until the commit, yet the desk reads its own writes, nobody else
sees them before the commit, and a write the server refuses fails the whole batch."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from maildesk.model import Address, OutboundMail, Ticket
from maildesk.storage.journal import StoreError
from maildesk.storage.postgres import PostgresStore

NOW = datetime(2026, 11, 23, 1, 2, 3, tzinfo=timezone.utc)
TABLES = ("tickets", "ticket_message_ids", "outbox", "processed", "attempts", "acks", "attachments")


def ticket(number: int, *message_ids: str, stage: str = "received") -> Ticket:
    return Ticket(number=number, tag=f"TS-{number:06d}", subject=f"s{number}", customer="c@x.example",
                  customer_name="", stage=stage, language="en", created_at=NOW, updated_at=NOW,
                  message_ids=list(message_ids))


def outbound(mail_id: str, **changes) -> OutboundMail:
    mail = OutboundMail(id=mail_id, message_id=f"<{mail_id}@desk.example>", kind="ack",
                        sender=Address("support@desk.example", "Desk"), recipients=["c@x.example"],
                        subject="s", text="t", created_at=NOW, ticket="TS-000001")
    return replace(mail, **changes)


def counts(url: str) -> dict[str, int]:
    """Rows per table as another session sees them."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def write_a_batch(store: PostgresStore) -> str:
    number = store.allocate_ticket_number()
    store.save_ticket(ticket(number, "<a@x.example>"))
    store.save_ticket(ticket(number, "<a@x.example>", "<b@x.example>", stage="diagnosing"))
    store.enqueue(outbound("o1"))
    store.update_outbound(outbound("o1", text="t, longer"))
    store.record_processed("key1", "ticket", ticket="TS-000001", reason="", at=NOW)
    store.record_attempt("raw1")
    store.record_ack("c@x.example", NOW)
    return store.attachments.put(b"%PDF-1.4 the manual")


def test_the_desk_reads_its_own_batch_before_the_commit(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        blob = write_a_batch(store)
        # Point reads answer from what waits in the process...
        assert store.get_ticket(1).stage == "diagnosing"
        assert store.ticket_for_message_id("<b@x.example>") == 1
        assert store.outbound("o1").text == "t, longer"
        assert store.processed("key1").ticket == "TS-000001"
        assert store.attempts("raw1") == 1 and store.acks_since("c@x.example", NOW - timedelta(hours=1)) == 1
        assert store.attachments.get(blob) == b"%PDF-1.4 the manual"
        # ... and every other read sends it first, inside the transaction.
        assert [t.stage for t in store.open_tickets()] == ["diagnosing"] and store.ticket_count() == 1
        assert [m.text for m in store.pending_outbound()] == ["t, longer"]
        assert store.outbound_by_message_id("<o1@desk.example>").id == "o1"
        assert [r.key for r in store.processed_records()] == ["key1"]
        # The next number follows the one handed out in this transaction.
        assert store.allocate_ticket_number() == 2
        store.commit()
    with PostgresStore(url) as store:
        assert store.get_ticket(1).message_ids == ["<a@x.example>", "<b@x.example>"]
        assert store.outbound("o1").text == "t, longer" and store.processed("key1").outcome == "ticket"
        assert store.attempts("raw1") == 1 and store.acks_since("c@x.example", NOW - timedelta(hours=1)) == 1
        assert store.allocate_ticket_number() == 3


def test_nothing_is_seen_by_another_session_before_the_commit(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        write_a_batch(store)
        assert set(counts(url).values()) == {0}
        store.ticket_count()  # sends every waiting write: still inside the open transaction
        assert set(counts(url).values()) == {0}
        store.commit()
        assert counts(url) == {"tickets": 1, "ticket_message_ids": 2, "outbox": 1, "processed": 1, "attempts": 1,
                               "acks": 1, "attachments": 1}


def test_a_message_id_belongs_to_the_ticket_saved_last_with_it(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        store.save_ticket(ticket(1, "<shared@x.example>"))
        store.save_ticket(ticket(2, "<shared@x.example>"))
        assert store.ticket_for_message_id("<shared@x.example>") == 2
        store.save_ticket(ticket(1, "<shared@x.example>", "<own@x.example>"))
        assert store.ticket_for_message_id("<shared@x.example>") == 1
        store.commit()
        assert store.ticket_for_message_id("<shared@x.example>") == 1


def test_a_write_the_server_refuses_fails_the_batch_and_nothing_of_it_is_kept(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        store.save_ticket(ticket(1, "<kept@x.example>"))
        store.commit()
        store.record_processed("lost", "ticket", ticket="TS-000002", reason="", at=NOW)
        store.save_ticket(ticket(2**31, "<too-big@x.example>"))  # beyond the integer column: refused at the send
        with pytest.raises(StoreError, match="out of range"):
            list(store.tickets())
        # The transaction is spoilt: no further statement, and the commit refuses and rolls back.
        with pytest.raises(StoreError, match="must be rolled back"):
            store.record_attempt("raw")
        with pytest.raises(StoreError, match="cannot commit .*out of range"):
            store.commit()
        assert store.processed("lost") is None and [t.number for t in store.tickets()] == [1]
        # The desk goes on with the next batch.
        store.record_processed("next", "ticket", ticket="TS-000001", reason="", at=NOW)
        store.commit()
    assert counts(url)["processed"] == 1 and counts(url)["tickets"] == 1


def test_an_outbox_entry_only_the_server_knows_is_refused_at_the_commit(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        store.enqueue(outbound("sent-one", status="sent", sent_at=NOW))
        store.commit()
        with pytest.raises(StoreError, match="already exists"):
            store.enqueue(outbound("sent-one"))  # known to this desk only if pending: sent entries are not cached
            store.commit()
        store.enqueue(outbound("pending-one"))
        with pytest.raises(StoreError, match="already exists"):
            store.enqueue(outbound("pending-one"))  # known to this desk: refused at once
        store.rollback()
        assert [m.id for m in store.outbox()] == ["sent-one"]


def test_an_update_of_an_entry_that_is_not_there_is_a_key_error(postgres):
    with PostgresStore(postgres.create_database()) as store:
        with pytest.raises(KeyError):
            store.update_outbound(outbound("never-enqueued"))


def test_processed_keys_are_found_by_a_desk_that_opens_later_and_lost_ones_are_not(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        store.record_processed("kept", "ticket", ticket="TS-000001", reason="", at=NOW)
        store.commit()
        store.record_processed("rolled-back", "ticket", ticket="TS-000002", reason="", at=NOW)
        store.rollback()
        assert store.processed("kept").outcome == "ticket" and store.processed("rolled-back") is None
    with PostgresStore(url) as store:
        assert store.processed("kept").outcome == "ticket" and store.processed("rolled-back") is None
        # Pruned keys are forgotten, by the server and by the filter built again.
        assert store.prune(NOW + timedelta(days=31))["processed"] == 1
        assert store.processed("kept") is None
        store.commit()


def test_a_large_import_is_sent_in_parts_and_read_back_whole(postgres):
    url = postgres.create_database()
    records = [("tickets", {"number": n, "tag": f"TS-{n:06d}", "subject": "s", "customer": "c@x.example",
                            "customer_name": "", "stage": "closed", "language": "en",
                            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00",
                            "message_ids": [f"<{n}@x.example>"]}) for n in range(1, 1201)]
    records += [("processed", {"key": f"k{n}", "outcome": "ticket", "ticket": None, "reason": "",
                               "at": "2026-01-01T00:00:00+00:00"}) for n in range(1, 1201)]
    with PostgresStore(url) as store:
        store.import_records(records)
        assert store.ticket_count() == 1200 and store.ticket_for_message_id("<1200@x.example>") == 1200
        assert store.processed("k1200") is not None
        store.commit()
    assert counts(url)["tickets"] == 1200 and counts(url)["processed"] == 1200
