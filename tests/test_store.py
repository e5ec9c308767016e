"""The store contract (both stores), and the TinyDB store's journal: durability, damage, locking, file modes."""
from __future__ import annotations

import errno
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from maildesk.model import Address, OutboundMail, Ticket
from maildesk.storage.journal import StoreCorrupt, StoreError
from maildesk.storage.lock import StoreLocked
from maildesk.storage.store import TicketStore

NOW = datetime(2026, 11, 23, 1, 2, 3, tzinfo=timezone.utc)


def make_ticket(store: TicketStore, subject: str = "printer", mid: str | None = None) -> Ticket:
    number = store.allocate_ticket_number()
    ticket = Ticket(number=number, tag=store.format_tag(number), subject=subject, customer="c@x.example",
                    customer_name="C", stage="received", language="en", created_at=NOW, updated_at=NOW,
                    message_ids=[mid or f"<m{number}@x.example>"])
    store.save_ticket(ticket)
    return ticket


def make_outbound(i: int) -> OutboundMail:
    return OutboundMail(id=f"o{i}", message_id=f"<ack.{i}@desk.example>", kind="ack",
                        sender=Address("support@desk.example", "Desk"), recipients=["c@x.example"],
                        subject="s", text="t", created_at=NOW + timedelta(seconds=i), ticket="TS-000001")


@pytest.fixture
def path(tmp_path):
    return tmp_path / "var" / "helpdesk.json"


@pytest.fixture
def opener(store_opener):
    return store_opener


both_stores = pytest.mark.both_stores


@both_stores
def test_committed_changes_survive_reopen_and_uncommitted_do_not(opener):
    with opener() as store:
        kept = make_ticket(store, "kept")
        store.record_processed("k1", "ticket", ticket=kept.tag, reason="", at=NOW)
        store.commit()
        make_ticket(store, "lost")  # never committed: as if the process died here
    with opener() as store:
        assert [t.subject for t in store.tickets()] == ["kept"]
        assert store.ticket_for_message_id("<m1@x.example>") == 1
        assert store.processed("k1").ticket == "TS-000001"
        assert store.processed("k2") is None
        # The number of the lost ticket is handed out again: no gaps from crashes.
        assert make_ticket(store).tag == "TS-000002"


@both_stores
def test_rollback_restores_previous_state_and_indexes(opener):
    with opener() as store:
        first = make_ticket(store, "one")
        store.commit()
        first.subject = "changed"
        store.save_ticket(first)
        make_ticket(store, "two", mid="<two@x.example>")
        store.enqueue(make_outbound(1))
        store.rollback()
        assert [t.subject for t in store.tickets()] == ["one"]
        assert store.ticket_for_message_id("<two@x.example>") is None
        assert store.pending_outbound() == []


def test_torn_journal_tail_is_discarded_with_the_rest_kept(path):
    with TicketStore(path) as store:
        make_ticket(store, "one")
        store.commit()
        make_ticket(store, "two")
        store.commit()
    journal = path.with_name(path.name + ".journal")
    data = journal.read_bytes()
    # Cut the second record in half, as a power loss during the append would.
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(data[: last_start + (len(data) - last_start) // 2])
    with TicketStore(path) as store:
        assert [t.subject for t in store.tickets()] == ["one"]
        make_ticket(store, "three")
        store.commit()
    with TicketStore(path) as store:
        assert sorted(t.subject for t in store.tickets()) == ["one", "three"]


def test_damaged_journal_record_stops_the_store_and_leaves_the_file_untouched(path):
    with TicketStore(path) as store:
        for name in ("one", "two", "three"):
            make_ticket(store, name)
            store.commit()
    journal = path.with_name(path.name + ".journal")
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"two", b"tw0")  # bit rot in the middle: checksum no longer matches
    damaged = b"\n".join(lines)
    journal.write_bytes(damaged)
    with pytest.raises(StoreCorrupt) as info:
        TicketStore(path)
    assert str(journal) in str(info.value) and "record 2" in str(info.value)
    assert journal.read_bytes() == damaged


def test_unreadable_snapshot_is_never_overwritten(path):
    with TicketStore(path, checkpoint_bytes=1) as store:
        make_ticket(store)
        store.commit()  # past the (tiny) threshold: a snapshot is written
    assert path.exists()
    path.write_bytes(b'{"format": 1, "seq": 3, "tables": {"tick')
    with pytest.raises(StoreCorrupt) as info:
        TicketStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b'{"format": 1, "seq": 3, "tables": {"tick'


def test_checkpoint_folds_the_journal_into_the_snapshot(path):
    with TicketStore(path, checkpoint_bytes=4000) as store:
        for i in range(40):
            make_ticket(store, f"t{i}")
            store.commit()
        journal = path.with_name(path.name + ".journal")
        assert path.exists()
        # Bounded: never much more than the snapshot (or the floor), however many commits.
        record = 400
        assert journal.stat().st_size <= max(4000, path.stat().st_size) + record
    with TicketStore(path) as store:
        assert store.ticket_count() == 40
        assert store.get_ticket(40).subject == "t39"


def test_failed_write_keeps_the_previous_state(path, monkeypatch):
    with TicketStore(path) as store:
        make_ticket(store, "one")
        store.commit()

        def disk_full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", disk_full)
        make_ticket(store, "two")
        with pytest.raises(StoreError, match="No space left"):
            store.commit()
        monkeypatch.undo()
        assert [t.subject for t in store.tickets()] == ["one"]
        make_ticket(store, "three")
        store.commit()
    with TicketStore(path) as store:
        assert sorted(t.subject for t in store.tickets()) == ["one", "three"]


@both_stores
def test_second_writer_is_refused_with_a_clear_message(opener):
    with opener():
        with pytest.raises(StoreLocked, match="in use by another helpdesk"):
            opener()
        # Readers (tickets list) do not need the lock.
        with opener(readonly=True) as reader:
            assert reader.ticket_count() == 0


def test_files_are_private(path):
    with TicketStore(path, checkpoint_bytes=1) as store:
        make_ticket(store)
        store.attachments.put(b"%PDF-1.4 tiny")
        store.commit()
    for p in path.parent.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@both_stores
def test_outbox_pending_order_and_status(opener):
    with opener() as store:
        for i in (3, 1, 2):
            store.enqueue(make_outbound(i))
        store.commit()
        assert [m.id for m in store.pending_outbound()] == ["o1", "o2", "o3"]
        sent = store.outbound("o2")
        sent.status = "sent"
        store.update_outbound(sent)
        store.commit()
    with opener() as store:
        assert [m.id for m in store.pending_outbound()] == ["o1", "o3"]
        assert store.outbound_by_message_id("<ack.2@desk.example>").status == "sent"


@both_stores
def test_attempts_and_ack_counts(opener):
    with opener() as store:
        assert store.record_attempt("raw") == 1
        assert store.record_attempt("raw") == 2
        store.record_ack("c@x.example", NOW - timedelta(hours=2))
        store.record_ack("c@x.example", NOW - timedelta(minutes=5))
        store.record_ack("c@x.example", NOW)
        store.commit()
    with opener() as store:
        assert store.attempts("raw") == 2
        assert store.acks_since("c@x.example", NOW - timedelta(hours=1)) == 2
        store.clear_attempts("raw")
        store.commit()
        assert store.attempts("raw") == 0


@both_stores
def test_prune_forgets_old_processed_keys_sent_mail_and_quiet_senders(opener):
    with opener() as store:
        store.record_processed("old", "ticket", ticket="TS-000001", reason="", at=NOW - timedelta(days=40))
        store.record_processed("new", "ticket", ticket="TS-000002", reason="", at=NOW - timedelta(days=2))
        for i, (status, age) in enumerate([("sent", 10), ("sent", 1), ("pending", 30), ("failed", 9)]):
            mail = make_outbound(i)
            mail.status, mail.created_at = status, NOW - timedelta(days=age)
            store.enqueue(mail)
        store.record_ack("quiet@x.example", NOW - timedelta(days=3))
        store.record_ack("busy@x.example", NOW - timedelta(hours=2))
        store.commit()
        assert store.prune(NOW) == {"processed": 1, "outbox": 2, "acks": 1}
        store.commit()
    with opener() as store:
        assert store.processed("old") is None and store.processed("new") is not None
        assert sorted(m.id for m in store.outbox()) == ["o1", "o2"]
        assert [m.id for m in store.pending_outbound()] == ["o2"]
        assert store.outbound_by_message_id("<ack.0@desk.example>") is None
        assert store.acks_since("busy@x.example", NOW - timedelta(days=1)) == 1
        assert store.prune(NOW) == {"processed": 0, "outbox": 0, "acks": 0}


def closed_ticket(store, subject, closed_at, mid):
    t = make_ticket(store, subject, mid=mid)
    t.stage = "closed"
    from maildesk.model import Event
    t.events = [Event(closed_at - timedelta(days=1), "c@x.example", "created", None, "received"),
                Event(closed_at, "alice@x.example", "close", "received", "closed", "done")]
    store.save_ticket(t)
    return t


def test_closed_tickets_move_to_the_archive_and_stay_reachable(path):
    with TicketStore(path) as store:
        old = closed_ticket(store, "old printer", NOW - timedelta(days=100), "<old@x.example>")
        recent = closed_ticket(store, "recent", NOW - timedelta(days=5), "<recent@x.example>")
        open_one = make_ticket(store, "still open", mid="<open@x.example>")
        store.commit()
        assert store.archive_closed(NOW - timedelta(days=70)) == 1
        store.commit()
        assert store._raw("tickets").keys() == {str(recent.number), str(open_one.number)}
        assert store.get_ticket(old.number).subject == "old printer"
        assert store.ticket_for_message_id("<old@x.example>") == old.number
        assert store.ticket_count() == 3
        store.checkpoint()
    with TicketStore(path) as store:
        # After a restart: the old ticket is read from the archive, not held in memory.
        assert str(old.number) not in store._raw("tickets")
        assert store.get_ticket(old.number).subject == "old printer"
        assert store.ticket_for_message_id("<old@x.example>") == old.number
        assert sorted(t.subject for t in store.tickets()) == ["old printer", "recent", "still open"]
        active = sorted(t.subject for t in store.tickets(active_since=NOW - timedelta(days=30)))
        assert active == ["recent", "still open"]
        # A reopened archived ticket comes back into memory and wins over its archived copy.
        again = store.get_ticket(old.number)
        again.stage = "diagnosing"
        store.save_ticket(again)
        store.commit()
        assert [t.stage for t in store.tickets() if t.number == old.number] == ["diagnosing"]
        assert store.ticket_count() == 3
    archive = path.with_name("helpdesk.archive")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in archive.iterdir())


def test_a_crash_between_archiving_and_commit_keeps_the_ticket_once(path):
    with TicketStore(path) as store:
        old = closed_ticket(store, "old", NOW - timedelta(days=100), "<old@x.example>")
        store.commit()
        store.archive_closed(NOW - timedelta(days=70))
        # no commit: the process dies here
    with TicketStore(path) as store:
        assert [t.subject for t in store.tickets()] == ["old"]
        assert store.ticket_count() == 1
        assert store.archive_closed(NOW - timedelta(days=70)) == 1
        store.commit()
    with TicketStore(path) as store:
        assert [t.number for t in store.tickets()] == [old.number]


@both_stores
def test_closed_cases_give_the_similar_case_index_four_fields_in_number_order(opener):
    with opener() as store:
        first = closed_ticket(store, "VPN drops", NOW - timedelta(days=100), "<vpn@x.example>")
        first.summary, first.lessons = "Replaced the profile.", "Keep a spare profile."
        store.save_ticket(first)
        closed_ticket(store, "no lessons written", NOW - timedelta(days=3), "<bare@x.example>")
        make_ticket(store, "still open", mid="<open@x.example>")
        later = closed_ticket(store, "打印机卡纸", NOW - timedelta(days=2), "<printer@x.example>")
        later.summary, later.lessons = "更换了搓纸轮。", "备件放在每层。"
        store.save_ticket(later)
        store.commit()
        store.archive_closed(NOW - timedelta(days=70))  # a no-op where closed tickets stay in their table
        store.commit()
    with opener() as store:
        assert [tuple(vars(c).values()) for c in store.closed_cases()] == [
            (first.tag, "VPN drops", "Replaced the profile.", "Keep a spare profile."),
            (later.tag, "打印机卡纸", "更换了搓纸轮。", "备件放在每层。")]
