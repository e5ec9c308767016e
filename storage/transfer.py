"""``store export`` / ``store import``: a whole store as JSON lines, counted and checksummed.

The file is one header line, one line per record ``{"t": table, "d": document}``
(documents as in ``storage/codec.py``, the same for every store), and one
trailer with each table's count and SHA-256.  A table's checksum is taken over
its documents' canonical JSON (sorted keys), sorted, so it does not depend on
the order a store hands them out in.  Import checks the file against its
trailer, loads it into an empty store in one commit, exports the store again
and checks that every count and checksum matches: what arrived is what left.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from maildesk.storage.base import EXPORT_TABLES, Store
from maildesk.storage.journal import StoreError

FORMAT = "maildesk-store-export"
VERSION = 1

Summary = dict[str, tuple[int, str]]  # table -> (count, sha256 hex)


class _Digest:
    def __init__(self) -> None:
        self.lines: dict[str, list[bytes]] = {t: [] for t in EXPORT_TABLES}

    def add(self, table: str, doc: dict) -> None:
        # Only the line's hash is kept: a large store's export need not fit in memory twice.
        self.lines[table].append(hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest())

    def summary(self) -> Summary:
        out = {}
        for table, hashes in self.lines.items():
            h = hashlib.sha256()
            for line in sorted(hashes):
                h.update(line)
            out[table] = (len(hashes), h.hexdigest())
        return out


def summarise(records: Iterable[tuple[str, dict]]) -> Summary:
    digest = _Digest()
    for table, doc in records:
        digest.add(table, doc)
    return digest.summary()


def export_store(store: Store, path: Path) -> Summary:
    digest = _Digest()
    tmp = path.with_name(path.name + ".tmp")
    # The export holds every customer's mail: private like the store itself.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"format": FORMAT, "version": VERSION, "tables": list(EXPORT_TABLES)}) + b"\n")
        for table, doc in store.export_records():
            digest.add(table, doc)
            fh.write(orjson.dumps({"t": table, "d": doc}) + b"\n")
        summary = digest.summary()
        fh.write(orjson.dumps({"end": {t: {"count": c, "sha256": h} for t, (c, h) in summary.items()}}) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return summary


def _read(path: Path) -> tuple[Iterator[tuple[str, dict]], dict]:
    """The file's records (streamed) and its trailer; the trailer is read first, from the end."""
    with path.open("rb") as fh:
        header = orjson.loads(fh.readline() or b"{}")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise StoreError(f"{path} is not a maildesk store export (version {VERSION})")
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4096))
        last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        trailer = orjson.loads(last)["end"]
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"{path} is incomplete: it has no closing counts and checksums") from None

    def records() -> Iterator[tuple[str, dict]]:
        with path.open("rb") as fh:
            fh.readline()
            for number, line in enumerate(fh, start=2):
                item = orjson.loads(line)
                if "end" in item:
                    return
                if item.get("t") not in EXPORT_TABLES:
                    raise StoreError(f"{path} line {number}: unknown table {item.get('t')!r}")
                yield item["t"], item["d"]

    return records(), trailer


def _compare(expected: dict, got: Summary, what: str) -> None:
    for table in EXPORT_TABLES:
        want = expected.get(table, {"count": 0, "sha256": summarise([])[table][1]})
        count, digest = got[table]
        if (count, digest) != (want["count"], want["sha256"]):
            raise StoreError(f"{what}: table {table} has {count} records (sha256 {digest[:16]}…), "
                             f"the export says {want['count']} (sha256 {want['sha256'][:16]}…)")


def import_store(store: Store, path: Path) -> Summary:
    if store.ticket_count() or next(iter(store.outbox()), None) or next(iter(store.processed_records()), None):
        raise StoreError(f"store {store.location} is not empty; import only into a new store")
    records, trailer = _read(path)
    _compare(trailer, summarise(_read(path)[0]), f"{path} is damaged")
    store.import_records(records)
    store.commit()
    got = summarise(store.export_records())
    _compare(trailer, got, f"import into {store.location} does not match {path}")
    return got
