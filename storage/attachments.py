"""Attachments on disk, named by the SHA-256 of their bytes.

Content addressing makes a re-processed mail (after a crash) harmless: the
same bytes land on the same name, and identical files sent twice are kept once.

Files are written at once but made durable together, by ``sync()``, which the
store calls before the commit that refers to them: one fsync per file, one per
folder, all in flight at the same time, so the file system settles them in a
few journal commits instead of two per attachment.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from maildesk.storage.journal import fsync_dir

# fsyncs in flight at once: enough for the file system to group them.
SYNC_THREADS = 8


class AttachmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._unsynced: set[Path] = set()

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        try:
            # A power loss can leave a renamed file without its bytes (it was never committed to):
            # only a whole file counts as there.
            if target.stat().st_size == len(data):
                return digest
        except FileNotFoundError:
            pass
        self.root.mkdir(mode=0o700, exist_ok=True)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        self._unsynced.add(target)
        return digest

    def sync(self) -> None:
        """Make every file written since the last call durable, with its name."""
        if not self._unsynced:
            return
        files = sorted(self._unsynced)
        folders = sorted({f.parent for f in files})
        if len(files) == 1:
            fsync_dir(files[0])  # opened read-only and fsynced: the same for a file as for a folder
            fsync_dir(folders[0])
        else:
            with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(files))) as pool:
                list(pool.map(fsync_dir, files))  # the data first, then the names that point to it
                list(pool.map(fsync_dir, folders))
        # Only now: after a failure they are synced by the next commit, which refers to them too.
        self._unsynced.difference_update(files)

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
