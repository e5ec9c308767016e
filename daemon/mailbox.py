"""The IMAP side: fetch new mail, mark it processed, wait for more.

Owns the connection (TLS, login, folder set-up, IDLE with polling fallback).
Mail is read with ``BODY.PEEK[]`` so reading never changes it; a message
leaves the inbox (MOVE to the processed or quarantine folder) only after the
store has committed what it caused.  Because every mail is de-duplicated by
its key in the store, a changed UIDVALIDITY or a repeated fetch is harmless.

imapclient is blocking; the daemon's main loop owns this object alone.
"""
from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from maildesk.daemon.config import ImapConfig

log = logging.getLogger("maildesk.imap")

# Errors that mean "the connection is gone or unusable": reconnect and go on.
CONNECTION_ERRORS = (OSError, socket.timeout, ssl.SSLError, IMAPClientError, EOFError)


class MailboxUnavailable(Exception):
    """The server cannot be reached or refuses us; the message says why in one line."""


@dataclass(frozen=True)
class Fetched:
    uid: int
    size: int
    data: bytes | None  # None when the mail was too large to fetch


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Mailbox:
    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._client: IMAPClient | None = None
        self._can_move = False
        self._can_idle = False
        self._uidvalidity: int | None = None

    # -- connection ---------------------------------------------------------------------
    def connect(self) -> None:
        c = self.config
        try:
            if c.security == "ssl":
                client = IMAPClient(c.host, port=c.port, ssl=True, ssl_context=tls_context(c.ca_file),
                                    timeout=c.timeout_seconds)
            else:
                client = IMAPClient(c.host, port=c.port, ssl=False, timeout=c.timeout_seconds)
                if c.security == "starttls":
                    # No fallback to plain text: a failed STARTTLS is an error.
                    client.starttls(tls_context(c.ca_file))
            client.login(c.username, c.password)
        except LoginError as exc:
            raise MailboxUnavailable(f"IMAP login as {c.username} at {c.host}:{c.port} refused: "
                                     f"{_one_line(exc)}") from None
        except CONNECTION_ERRORS as exc:
            raise MailboxUnavailable(f"cannot reach IMAP server {c.host}:{c.port}: {_one_line(exc)}") from None
        self._client = client
        self._can_move = client.has_capability("MOVE")
        self._can_idle = client.has_capability("IDLE")
        for folder in (c.processed_folder, c.quarantine_folder):
            if folder and not client.folder_exists(folder):
                client.create_folder(folder)
        info = client.select_folder(c.folder)
        validity = info.get(b"UIDVALIDITY")
        if self._uidvalidity is not None and validity != self._uidvalidity:
            log.warning("UIDVALIDITY of %s changed (%s -> %s); mail already handled is recognised by "
                        "its Message-ID", c.folder, self._uidvalidity, validity)
        self._uidvalidity = validity

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            self.connect()
        return self._client

    # -- reading ---------------------------------------------------------------------------
    def waiting_uids(self) -> list[int]:
        return sorted(self.client.search(["ALL"]))

    def fetch(self, uids: Iterable[int], max_bytes: int) -> list[Fetched]:
        uids = list(uids)
        if not uids:
            return []
        sizes = self.client.fetch(uids, ["RFC822.SIZE"])
        small = [u for u in uids if u in sizes and sizes[u].get(b"RFC822.SIZE", 0) <= max_bytes]
        bodies = self.client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        found = []
        for uid in uids:
            if uid not in sizes:
                continue  # expunged by someone else meanwhile
            size = int(sizes[uid].get(b"RFC822.SIZE", 0))
            data = bodies.get(uid, {}).get(b"BODY[]") if uid in small else None
            if uid in small and data is None:
                continue
            found.append(Fetched(uid, size, data))
        return found

    # -- marking ---------------------------------------------------------------------------
    def move(self, uids: list[int], folder: str) -> None:
        if not uids:
            return
        client = self.client
        if self._can_move:
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()

    # -- waiting ----------------------------------------------------------------------------
    def wait_for_mail(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        """Return when new mail may have arrived, ``timeout`` passed, or ``should_stop()``."""
        deadline = time.monotonic() + timeout
        client = self.client
        if not (self.config.idle and self._can_idle):
            while not should_stop() and time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            return
        client.idle()
        try:
            while not should_stop():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Short checks keep signal handling prompt; IDLE itself stays open.
                responses = client.idle_check(timeout=min(0.5, remaining))
                if any(r[1] in (b"EXISTS", b"RECENT") for r in responses if len(r) > 1):
                    break
        finally:
            client.idle_done()


def _one_line(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())
