"""The outbox's delivery log: what the SMTP server accepted since the store's last commit.

A store commit ends in an fsync (a few milliseconds on an ordinary disk),
which made "commit right after every 250" the largest cost of sending.  The
sender now writes one short line here instead: ``sending <id>`` before a
transaction and ``sent <id> <time>`` right after the server's 250, each one
``write()`` on an O_APPEND descriptor and no fsync, and it commits the store
once per batch of marks, after which this file is emptied.

What each failure costs:

* The process is killed (SIGKILL, OOM, a crash): whatever was written here is
  in the kernel and survives.  On the next start the ``sent`` lines are
  folded into the store before anything is sent; the one mail per connection
  whose 250 arrived but whose line was not yet written is still pending and
  goes out once more.  That is the repeat bound the daemon always had: at
  most one repeated mail per connection per kill.  A ``sending`` line without
  its ``sent`` line names that uncertain mail, so the resend is logged.
* The machine loses power: lines not yet on disk are lost, so up to one
  batch of marks (``MARKS_PER_COMMIT`` per connection) can be sent again.
  Nothing is lost either way: a mail leaves the pending state only through a
  store commit.

Folding a line twice is harmless (a mail already marked sent stays as it is),
so a crash between the store commit and emptying this file repeats nothing.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from maildesk.storage.codec import dt_in, dt_out

log = logging.getLogger("maildesk.storage")


@dataclass
class Recovered:
    """What a previous process left in the log."""

    sent: dict[str, datetime] = field(default_factory=dict)  # outbox id -> when the server said 250
    uncertain: list[str] = field(default_factory=list)  # sending, no 250 seen: sent again


class DeliveryLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self) -> Recovered:
        found = Recovered()
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return found
        sending: list[str] = []
        for line in lines:
            parts = line.decode("utf-8", "replace").split(" ")
            try:
                if parts[0] == "sending" and len(parts) == 2:
                    sending.append(parts[1])
                elif parts[0] == "sent" and len(parts) == 3:
                    found.sent[parts[1]] = dt_in(parts[2])
            except ValueError:
                continue  # a line cut short: its mail was not marked, so it counts as pending
        found.uncertain = [i for i in dict.fromkeys(sending) if i not in found.sent]
        return found

    def sending(self, mail_id: str) -> None:
        os.write(self._open(), f"sending {mail_id}\n".encode())

    def sent(self, mail_id: str, at: datetime) -> None:
        # One write() of a short line: the kernel has it (and a kill cannot take it back) when this returns.
        os.write(self._open(), f"sent {mail_id} {dt_out(at)}\n".encode())

    def clear(self) -> None:
        """Forget every line: call only right after a store commit that holds their marks."""
        if self._fd is not None or self.path.exists():
            os.ftruncate(self._open(), 0)
