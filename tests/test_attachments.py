"""Attachment files of the TinyDB store (storage/attachments.py)."""
from __future__ import annotations

from maildesk.storage.attachments import AttachmentStore
from maildesk.storage.store import TicketStore


def test_files_are_readable_at_once_and_synced_with_the_commit(tmp_path):
    with TicketStore(tmp_path / "helpdesk.json") as store:
        digests = [store.attachments.put(f"file {i}".encode() * 100) for i in range(12)]
        assert store.attachments.get(digests[3]) == b"file 3" * 100  # before the commit, for the sender
        assert len(store.attachments._unsynced) == 12
        store.commit()
        assert not store.attachments._unsynced
    again = AttachmentStore(tmp_path / "helpdesk.attachments")
    assert [again.get(d) for d in digests] == [f"file {i}".encode() * 100 for i in range(12)]
    assert not list((tmp_path / "helpdesk.attachments").rglob("*.tmp"))


def test_a_file_left_without_its_bytes_is_written_again(tmp_path):
    """After a power loss a renamed file can be empty; the mail is handled again and must not keep it."""
    store = AttachmentStore(tmp_path / "a")
    data = b"%PDF-1.4 " + b"x" * 5000
    digest = store.put(data)
    store.sync()
    store.path_for(digest).write_bytes(b"")  # what the disk kept
    assert store.put(data) == digest
    assert store.get(digest) == data
    assert store.put(data) == digest and store._unsynced == {store.path_for(digest)}, "whole: left as it is"
