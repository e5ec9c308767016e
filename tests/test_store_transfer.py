"""`store export` / `store import`: everything moves both ways, counted and checksummed (no mail servers)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from maildesk.model import Address, Event, Message, OutboundMail, PlanItem, StaffRecord, Ticket
from maildesk.storage.journal import StoreError
from maildesk.storage.postgres import PostgresStore
from maildesk.storage.store import TicketStore
from maildesk.storage.transfer import export_store, import_store

NOW = datetime(2026, 11, 23, 1, 2, 3, 456789, tzinfo=timezone.utc)


def fill(store) -> None:
    """A bit of everything a store holds, archived tickets included."""
    blob = store.attachments.put("报告 PDF".encode() * 50)
    for i in range(1, 6):
        number = store.allocate_ticket_number()
        closed = i <= 2
        store.save_ticket(Ticket(
            number=number, tag=store.format_tag(number), subject=f"打印机 {i}", customer=f"c{i}@cust.example",
            customer_name="张三", stage="closed" if closed else "received", language="zh",
            created_at=NOW - timedelta(days=100 if closed else 1), updated_at=NOW, rating=4 if closed else None,
            message_ids=[f"<m{i}@cust.example>"], summary="驱动" if closed else "",
            messages=[Message(direction="in", sender=f"c{i}@cust.example", recipients=["support@desk.example"],
                              date=NOW - timedelta(days=100), text="卡纸了\n", message_id=f"<m{i}@cust.example>")],
            events=[Event(NOW - timedelta(days=99 if closed else 1), "alice@desk.example",
                          "close" if closed else "created", "received", "closed" if closed else "received")]))
    for i, status in enumerate(("pending", "sent", "failed")):
        store.enqueue(OutboundMail(id=f"o{i}", message_id=f"<ack.{i}@desk.example>", kind="ack",
                                   sender=Address("support@desk.example", "Desk"), recipients=[f"c{i}@cust.example"],
                                   subject="s", text="t", created_at=NOW + timedelta(seconds=i), ticket="TS-000003",
                                   status=status, sent_at=NOW if status == "sent" else None))
    store.record_processed("k1", "ticket", ticket="TS-000001", reason="", at=NOW)
    store.record_attempt("raw1")
    store.record_ack("c1@cust.example", NOW)
    store.add_plan(PlanItem(at=NOW, author="lead@desk.example", text="升级打印机", ticket=None))
    store.add_staff_record(StaffRecord(at=NOW, author="lead@desk.example", kind="commend",
                                       technician="alice@desk.example", reason="fast", ticket="TS-000001"))
    store.record_job_run("weekly-report", "2026-W47", at=NOW, late=False, detail="sent")
    store.commit()
    store.archive_closed(NOW - timedelta(days=30))  # the TinyDB store moves two tickets to its archive files
    store.commit()
    assert blob


@pytest.fixture
def pg(postgres):
    return lambda: PostgresStore(postgres.create_database())


def test_tinydb_to_postgres_and_back_moves_everything(tmp_path, postgres):
    source = tmp_path / "a" / "helpdesk.json"
    with TicketStore(source) as store:
        fill(store)
        exported = export_store(store, tmp_path / "one.jsonl")
    assert exported["tickets"][0] == 5 and exported["outbox"][0] == 3 and exported["attachments"][0] == 1
    url = postgres.create_database()
    with PostgresStore(url) as store:
        imported = import_store(store, tmp_path / "one.jsonl")
        again = export_store(store, tmp_path / "two.jsonl")
        assert store.get_ticket(1).subject == "打印机 1"
        assert store.ticket_for_message_id("<m2@cust.example>") == 2
        assert [m.id for m in store.pending_outbound()] == ["o0"]
        assert store.allocate_ticket_number() == 6
        store.rollback()
    assert imported == exported == again
    with TicketStore(tmp_path / "b" / "helpdesk.json") as store:
        assert import_store(store, tmp_path / "two.jsonl") == exported
        assert store.attempts("raw1") == 1 and store.job_run("weekly-report", "2026-W47")["detail"] == "sent"
        assert store.staff_records()[0].reason == "fast" and store.plans()[0].text == "升级打印机"


def test_postgres_export_imports_into_tinydb(tmp_path, pg):
    with pg() as store:
        fill(store)
        exported = export_store(store, tmp_path / "pg.jsonl")
    with TicketStore(tmp_path / "t" / "helpdesk.json") as store:
        assert import_store(store, tmp_path / "pg.jsonl") == exported
        assert sorted(t.number for t in store.tickets()) == [1, 2, 3, 4, 5]


def test_a_damaged_export_is_refused_and_nothing_is_imported(tmp_path, pg):
    with TicketStore(tmp_path / "a" / "helpdesk.json") as store:
        fill(store)
        export_store(store, tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_bytes().splitlines()
    record = orjson.loads(lines[2])
    record["d"]["subject"] = "changed in transit"
    lines[2] = orjson.dumps(record)
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pg() as store:
        with pytest.raises(StoreError, match="damaged"):
            import_store(store, tmp_path / "x.jsonl")
        assert store.ticket_count() == 0
    (tmp_path / "cut.jsonl").write_bytes(b"\n".join(lines[:4]) + b"\n")
    with pg() as store:
        with pytest.raises(StoreError, match="incomplete"):
            import_store(store, tmp_path / "cut.jsonl")


@pytest.mark.both_stores
def test_import_refuses_a_store_that_is_not_empty(tmp_path, store_opener):
    with store_opener() as store:
        fill(store)
        export_store(store, tmp_path / "x.jsonl")
        with pytest.raises(StoreError, match="not empty"):
            import_store(store, tmp_path / "x.jsonl")
