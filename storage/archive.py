"""Closed tickets rolled out of memory, so the daemon's size follows its open work, not its history.

A ticket closed long enough ago (``storage.archive_after_days``) leaves the
in-memory TinyDB table for ``<store>.archive/``:

* ``YYYY-MM.jsonl``: one line per archived ticket, by the month of its last event:
  ``<number> <crc32> <json document>``;
* ``index.jsonl``: one line per archived ticket, ``<crc32> [number, month,
  [message-id hashes]]``, read at start-up.

Only the index is held in memory: the ticket's month and 64-bit hashes of its
Message-IDs, so a late reply or bounce still finds the ticket.  Both files
are appended with fsync before the ticket leaves the hot table; a crash in
between leaves the ticket in both places, and the hot copy wins.  Lines are
never rewritten; a ticket archived twice is read from its last line.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from maildesk.storage.journal import StoreCorrupt


def mid_hash(message_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big")


class TicketArchive:
    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        self.readonly = readonly
        self._month: dict[int, str] = {}
        self._by_mid: dict[int, int] = {}
        self._load_index()

    # -- reading -------------------------------------------------------------------------
    def __contains__(self, number: int) -> bool:
        return number in self._month

    def __len__(self) -> int:
        return len(self._month)

    def numbers(self) -> Iterable[int]:
        return self._month.keys()

    def month_of(self, number: int) -> str | None:
        return self._month.get(number)

    def number_for_message_id(self, message_id: str) -> int | None:
        return self._by_mid.get(mid_hash(message_id))

    def get(self, number: int) -> dict | None:
        month = self._month.get(number)
        if month is None:
            return None
        prefix = f"{number} ".encode()
        found = None
        with (self.root / f"{month}.jsonl").open("rb") as fh:
            for line in fh:
                if line.startswith(prefix):
                    found = line
        return None if found is None else self._decode(found, month)

    def iter_docs(self, months_from: str | None = None) -> Iterator[dict]:
        """Every archived ticket (its last copy), oldest month first."""
        for path in sorted(self.root.glob("????-??.jsonl")):
            month = path.stem
            if months_from and month < months_from:
                continue
            latest: dict[int, bytes] = {}
            with path.open("rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        continue  # a torn last line: its ticket is still in the hot table
                    number = int(line.split(b" ", 1)[0])
                    if self._month.get(number) == month:
                        latest[number] = line
            for line in latest.values():
                yield self._decode(line, month)

    @staticmethod
    def _decode(line: bytes, month: str) -> dict:
        _number, crc, payload = line.rstrip(b"\n").split(b" ", 2)
        if int(crc, 16) != zlib.crc32(payload):
            raise StoreCorrupt(f"archive file {month}.jsonl has a damaged line for ticket {_number.decode()}")
        return orjson.loads(payload)

    # -- writing -------------------------------------------------------------------------
    def put(self, doc: dict, month: str, message_ids: list[str]) -> None:
        if self.readonly:
            raise StoreCorrupt("archive is open read-only")
        self.root.mkdir(mode=0o700, exist_ok=True)
        number = int(doc["number"])
        payload = orjson.dumps(doc)
        self._append(self.root / f"{month}.jsonl", b"%d %08x " % (number, zlib.crc32(payload)) + payload + b"\n")
        hashes = [mid_hash(m) for m in message_ids]
        entry = orjson.dumps([number, month, hashes])
        self._append(self.root / "index.jsonl", b"%08x " % zlib.crc32(entry) + entry + b"\n")
        self._month[number] = month
        for h in hashes:
            self._by_mid[h] = number

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_index(self) -> None:
        path = self.root / "index.jsonl"
        if not path.exists():
            return
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.endswith(b"\n"):
                    break  # torn by a crash while archiving: that ticket is still in the hot table
                crc, _, payload = line.rstrip(b"\n").partition(b" ")
                try:
                    if int(crc, 16) != zlib.crc32(payload):
                        raise ValueError("checksum mismatch")
                    ticket, month, hashes = orjson.loads(payload)
                except ValueError as exc:
                    raise StoreCorrupt(f"archive index {path} is damaged at line {number} ({exc}); "
                                       "it has been left untouched") from None
                self._month[ticket] = month
                for h in hashes:
                    self._by_mid[h] = ticket
