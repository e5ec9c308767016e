"""A durable TinyDB storage whose write cost does not grow with history.

Stock TinyDB hands its storage the whole database on every write and its
``JSONStorage`` rewrites the whole file each time; ``Table`` also rebuilds the
whole table dict per write.  Here instead:

* ``JournalTable`` (TinyDB's table class, swapped in) applies each update to
  the table in place and tells the storage which documents it touched;
* ``JournalStorage`` keeps the database in memory and, on ``commit()``, appends
  only the touched documents to an append-only journal as one line, then
  fsyncs.  One commit is one line: it is either wholly there or, if the
  process died while writing it, a torn tail that replay discards (the commit
  never returned, so nothing acted on it).
* When the journal grows past the snapshot's size the database is written to
  a new snapshot (temp file, fsync, rename, fsync of the folder) and the
  journal starts again, so replay stays short and the amortised cost of a
  commit stays proportional to the commit.

Files are created mode 0600 in a 0700 folder.  A snapshot or journal that
cannot be read stops the store with ``StoreCorrupt`` naming the file: it is
never overwritten.
"""
from __future__ import annotations

import copy
import logging
import os
import zlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import orjson
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

log = logging.getLogger("maildesk.storage")

SNAPSHOT_FORMAT = 1
# Below this journal size a checkpoint is never worth its full rewrite.
MIN_CHECKPOINT_BYTES = 8 * 2**20


class StoreError(Exception):
    """The store cannot be used; the message names the file and the reason."""


class StoreCorrupt(StoreError):
    pass


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalStorage(Storage):
    """Snapshot + append-only journal; the database itself lives in memory."""

    def __init__(self, path: str | os.PathLike[str], *, checkpoint_bytes: int | None = None,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        # A read-only view (e.g. ``tickets list`` beside a running daemon) never
        # writes, not even to cut off a torn journal tail the writer may be appending.
        self.readonly = readonly
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self._checkpoint_floor = MIN_CHECKPOINT_BYTES if checkpoint_bytes is None else checkpoint_bytes
        if not readonly:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tables: dict[str, dict[str, dict]] = {}
        self._seq = 0
        self._snapshot_bytes = 0
        # (table, doc_id) -> before-image (None when the document did not exist)
        self._touched: dict[tuple[str, str], dict | None] = {}
        self._load()
        self._journal = None if readonly else self._open_journal()

    # -- TinyDB storage interface -------------------------------------------------
    def read(self) -> dict:
        return self._tables

    def write(self, data: dict) -> None:
        # JournalTable mutates self._tables in place; nothing to copy here.
        if data is not self._tables:
            self._tables = data

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- change tracking (called by JournalTable) ------------------------------------
    def touch(self, table: str, doc_id: str, current: dict | None) -> None:
        key = (table, doc_id)
        if key not in self._touched:
            self._touched[key] = None if current is None else copy.copy(current)

    @property
    def dirty(self) -> bool:
        return bool(self._touched)

    # -- durability ---------------------------------------------------------------------
    def commit(self) -> None:
        """Make every change since the last commit durable, as one journal record."""
        if not self._touched:
            return
        if self._journal is None:
            raise StoreError(f"store {self.path} is open read-only")
        ops = []
        for (table, doc_id) in self._touched:
            ops.append([table, doc_id, self._tables.get(table, {}).get(doc_id)])
        payload = orjson.dumps({"seq": self._seq + 1, "ops": ops})
        line = b"%08x " % zlib.crc32(payload) + payload + b"\n"
        start = self._journal.tell()
        try:
            self._journal.write(line)
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as exc:
            # Leave the journal exactly as it was: a half-written record must
            # not be followed by later ones.
            try:
                self._journal.seek(start)
                self._journal.truncate(start)
            except OSError:
                pass
            self.rollback()
            raise StoreError(f"cannot write store journal {self.journal_path}: {exc}") from exc
        self._seq += 1
        self._touched.clear()
        if self._journal.tell() > max(self._checkpoint_floor, self._snapshot_bytes):
            self.checkpoint()

    def rollback(self) -> None:
        """Forget every change since the last commit."""
        for (table, doc_id), before in self._touched.items():
            docs = self._tables.setdefault(table, {})
            if before is None:
                docs.pop(doc_id, None)
            else:
                docs[doc_id] = before
        self._touched.clear()

    def checkpoint(self) -> None:
        """Write the whole database to a new snapshot and empty the journal."""
        if self._touched:
            raise StoreError("checkpoint with uncommitted changes")
        data = orjson.dumps({"format": SNAPSHOT_FORMAT, "seq": self._seq, "tables": self._tables})
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.error("checkpoint of %s failed, the journal keeps every change: %s", self.path, exc)
            return
        self._snapshot_bytes = len(data)
        # The snapshot holds every journal record (seq <= self._seq): replay
        # skips them, so emptying the journal after the rename is safe.
        self._journal.seek(0)
        self._journal.truncate(0)
        self._journal.flush()
        os.fsync(self._journal.fileno())

    # -- loading --------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path.exists():
            try:
                raw = self.path.read_bytes()
                snap = orjson.loads(raw)
                if snap.get("format") != SNAPSHOT_FORMAT or not isinstance(snap.get("tables"), dict):
                    raise ValueError("unknown snapshot format")
            except (OSError, ValueError) as exc:
                raise StoreCorrupt(f"store file {self.path} cannot be read ({exc}); "
                                   "it has been left untouched") from None
            self._tables = snap["tables"]
            self._seq = int(snap.get("seq", 0))
            self._snapshot_bytes = len(raw)
        if self.journal_path.exists():
            self._replay()

    def _replay(self) -> None:
        good_end = 0
        with self.journal_path.open("rb") as fh:
            lines = fh.read().split(b"\n")
        # The final element is what follows the last newline: empty for a clean
        # journal, a torn record if the process died while appending.
        torn = lines.pop()
        for number, line in enumerate(lines, start=1):
            try:
                crc, _, payload = line.partition(b" ")
                if int(crc, 16) != zlib.crc32(payload):
                    raise ValueError("checksum mismatch")
                record = orjson.loads(payload)
            except ValueError as exc:
                if number == len(lines) and not torn:
                    # A last record whose bytes did not all reach the disk.
                    torn = line
                    break
                raise StoreCorrupt(f"store journal {self.journal_path} is damaged at record {number} "
                                   f"({exc}); it has been left untouched") from None
            good_end += len(line) + 1
            if record["seq"] <= self._seq:
                continue
            for table, doc_id, doc in record["ops"]:
                docs = self._tables.setdefault(table, {})
                if doc is None:
                    docs.pop(doc_id, None)
                else:
                    docs[doc_id] = doc
            self._seq = record["seq"]
        if torn and not self.readonly:
            log.warning("store journal %s ended in an incomplete record (%d bytes) from an "
                        "interrupted commit; it is discarded", self.journal_path, len(torn))
            with self.journal_path.open("r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())

    def _open_journal(self):
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fh = os.fdopen(fd, "r+b", buffering=0)
        fh.seek(0, os.SEEK_END)
        return fh


class _TrackedTable(MutableMapping):
    """The view TinyDB's update functions get: int ids, raw string-keyed dict underneath.

    Every document an updater reaches is reported to the storage, which keeps
    its before-image for rollback and journals its new value on commit.
    """

    def __init__(self, storage: JournalStorage, name: str, raw: dict[str, dict]) -> None:
        self._storage = storage
        self._name = name
        self._raw = raw

    def __getitem__(self, doc_id: int) -> dict:
        key = str(doc_id)
        doc = self._raw[key]
        self._storage.touch(self._name, key, doc)
        return doc

    def __setitem__(self, doc_id: int, doc: dict) -> None:
        key = str(doc_id)
        self._storage.touch(self._name, key, self._raw.get(key))
        self._raw[key] = doc

    def __delitem__(self, doc_id: int) -> None:
        key = str(doc_id)
        self._storage.touch(self._name, key, self._raw.get(key))
        del self._raw[key]

    def __contains__(self, doc_id: object) -> bool:
        return str(doc_id) in self._raw

    def __iter__(self) -> Iterator[int]:
        return (int(k) for k in self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class JournalTable(Table):
    """TinyDB table that updates in place instead of rebuilding the whole table."""

    def _update_table(self, updater) -> None:
        storage = self._storage
        if not isinstance(storage, JournalStorage):  # pragma: no cover - wiring error
            raise TypeError("JournalTable needs a JournalStorage")
        raw = storage.read().setdefault(self.name, {})
        updater(_TrackedTable(storage, self.name, raw))
        self.clear_cache()


class JournalDB(TinyDB):
    table_class = JournalTable


def open_database(path: str | os.PathLike[str], **kwargs) -> tuple[JournalDB, JournalStorage]:
    db = JournalDB(path, storage=JournalStorage, **kwargs)
    return db, db.storage
