"""The IMAP side: fetch new mail, mark it processed, wait for more.

Owns the connection (TLS, login, folder set-up, IDLE with polling fallback).
Mail is read with ``BODY.PEEK[]`` so reading never changes it; a message
leaves the inbox (MOVE to the processed or quarantine folder) only after the
store has committed what it caused.  Because every mail is de-duplicated by
its key in the store, a changed UIDVALIDITY or a repeated fetch is harmless.

On connecting it asks the server how it is laid out (delimiter, personal
namespace, special-use folders, MOVE/UIDPLUS/IDLE, Gmail) and lets
``daemon/layout.py`` decide the folder names and commands from the answers.
Only mail without ``\\Deleted`` is read: a copied mail flagged by the desk (or
by anybody) is on its way out and is never handled twice.

imapclient is blocking; the daemon's main loop owns this object alone.  The one
exception is ``move_soon``: the MOVE of a handled batch runs on the mailbox's
own thread while the desk goes on sending, and every other call waits for it
first, so the connection still carries one command at a time.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from maildesk.daemon.config import ImapConfig
from maildesk.daemon.layout import MOVED_KEYWORD, Layout, LayoutError, ServerFacts, can_set_keyword, describe, plan

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
        self._uidvalidity: int | None = None
        self.layout: Layout | None = None
        self.capabilities: frozenset[str] = frozenset()
        self._keyword = False  # whether the watched folder keeps MOVED_KEYWORD
        # Connections made so far: UIDs fetched in one are never taken for the same UIDs of the next.
        self.sessions = 0
        self._mover: ThreadPoolExecutor | None = None
        self._moving: Future | None = None  # the move_soon() under way, if any
        self._mover_thread: int | None = None

    # -- connection ---------------------------------------------------------------------
    def connect(self) -> None:
        """(Re)connect: a connection already open is logged out first."""
        self.close()
        self._connect()

    def _connect(self) -> None:
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
            c.credentials.imap_login(client)  # a password or an OAuth2 token: LOGIN or AUTHENTICATE
        except LoginError as exc:
            raise MailboxUnavailable(f"IMAP login as {c.username} at {c.host}:{c.port} refused: "
                                     f"{_one_line(exc)}") from None
        except CONNECTION_ERRORS as exc:
            raise MailboxUnavailable(f"cannot reach IMAP server {c.host}:{c.port}: {_one_line(exc)}") from None
        self._client = client
        try:
            facts = server_facts(client)
            layout = plan(folder=c.folder, processed_folder=c.processed_folder,
                          quarantine_folder=c.quarantine_folder, idle=c.idle, facts=facts)
        except LayoutError as exc:
            self.close()
            raise MailboxUnavailable(f"IMAP folders at {c.host}:{c.port}: {exc}") from None
        self.capabilities, self.layout = facts.capabilities, layout
        for folder in layout.to_create:
            client.create_folder(folder)
            try:
                client.subscribe_folder(folder)  # so that people's mail clients show it
            except IMAPClientError:
                pass
        info = client.select_folder(layout.watched)
        self._keyword = can_set_keyword(tuple(_text(f) for f in info.get(b"PERMANENTFLAGS", ())))
        validity = info.get(b"UIDVALIDITY")
        if self._uidvalidity is not None and validity != self._uidvalidity:
            log.warning("UIDVALIDITY of %s changed (%s -> %s); mail already handled is recognised by "
                        "its Message-ID", layout.watched, self._uidvalidity, validity)
        self._uidvalidity = validity
        self.sessions += 1
        if layout.marking == "copy-expunge" and self._keyword:
            # Copied and flagged by a desk that died before its UID EXPUNGE: ours, safe to finish.
            leftovers = client.search(["DELETED", "KEYWORD", MOVED_KEYWORD])
            if leftovers:
                client.uid_expunge(leftovers)

    def close(self) -> None:
        self._settle()
        mover, self._mover = self._mover, None
        if mover is not None:
            mover.shutdown(wait=False)
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
        self._settle()
        return self._connected()

    def _connected(self) -> IMAPClient:
        if self._client is None:
            self._connect()
        return self._client

    def _settle(self) -> None:
        """Wait for the move under way, if any (its outcome is its future's, see ``move_soon``)."""
        if threading.get_ident() == self._mover_thread:
            return  # the move itself, reconnecting (or closing a connection it found unusable)
        moving, self._moving = self._moving, None
        if moving is not None:
            wait([moving])

    # -- reading ---------------------------------------------------------------------------
    def waiting_uids(self) -> list[int]:
        # UNDELETED: without MOVE a handled mail is copied and flagged before it is
        # expunged (or, without UIDPLUS, left for a mail client to expunge).
        return sorted(self.client.search(["UNDELETED"]))

    def describe(self) -> str:
        """What was detected, in one line (``helpdesk check``)."""
        if self.layout is None:
            self.connect()
        return describe(self.layout, self.capabilities)

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
    def move_soon(self, moves: list[tuple[list[int], str]]) -> Future:
        """Start moving handled mail, (UIDs, folder) by (UIDs, folder), on the mailbox's own thread.

        A folder is a configured name (``imap.processed_folder``) or a server name.

        A MOVE costs the server a folder update (about 8 ms for 50 mails on a local
        Dovecot, a round trip more on a remote one) that the desk spends sending
        instead.  The future's ``result()`` raises whatever the moves raised; until
        they end, every other call of this mailbox waits.
        """
        self._settle()
        if self._mover is None:
            self._mover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-move")
        self._moving = self._mover.submit(self._move_all, moves)
        return self._moving

    def _move_all(self, moves: list[tuple[list[int], str]]) -> None:
        self._mover_thread = threading.get_ident()
        for uids, folder in moves:
            self._move(uids, folder)

    def _move(self, uids: list[int], folder: str) -> None:
        if not uids:
            return
        client = self._connected()
        target = self.layout.server_name(folder)
        if self.layout.marking == "move":
            # On Gmail this takes the INBOX label off; All Mail keeps the message.
            client.move(uids, target)
            return
        client.copy(uids, target)
        # One STORE sets both: a mail is never \Deleted without the mark that it was copied.
        client.add_flags(uids, [b"\\Deleted", MOVED_KEYWORD.encode()] if self._keyword else [b"\\Deleted"])
        if self.layout.marking == "copy-expunge":
            client.uid_expunge(uids)  # exactly these UIDs (UIDPLUS), never somebody else's \Deleted mail
        # "copy-flag": no EXPUNGE at all (see layout.marking_for); SEARCH UNDELETED skips them.

    # -- waiting ----------------------------------------------------------------------------
    def wait_for_mail(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        """Return when new mail may have arrived, ``timeout`` passed, or ``should_stop()``."""
        deadline = time.monotonic() + timeout
        client = self.client
        if self.layout.waiting == "poll":
            while not should_stop() and time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            # NOOP lets the server report new mail in the selected folder (RFC 3501 6.1.2).
            client.noop()
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


def server_facts(client: IMAPClient) -> ServerFacts:
    """Ask the server how it is laid out: capabilities, delimiter, personal namespace, folders."""
    capabilities = frozenset(_text(c).upper() for c in client.capabilities())
    prefix, delimiter = "", None
    personal = client.namespace().personal if "NAMESPACE" in capabilities else None
    if personal:
        prefix, delimiter = personal[0][0] or "", personal[0][1] or None
    listing = _list_folders(client, capabilities)
    if not personal:
        # RFC 3501 6.3.8: LIST "" "" returns the hierarchy delimiter (NIL for a flat server);
        # a server that answers it with nothing still shows its delimiter on every folder.
        for _flags, sep, _name in client.list_folders("", "") or listing[:1]:
            delimiter = _text(sep) if sep else None
    folders = {name: frozenset(_text(f) for f in flags) for flags, _sep, name in listing}
    return ServerFacts(capabilities=capabilities, delimiter=delimiter, personal_prefix=prefix, folders=folders)


def _list_folders(client: IMAPClient, capabilities: frozenset[str]) -> list:
    """Every folder with its attributes, special-use ones included where the server has them.

    RFC 6154 lets a server leave special-use attributes out of a plain LIST and
    show them for ``LIST "" "*" RETURN (SPECIAL-USE)``.  imapclient has no public
    call for LIST's RETURN options, so this one goes through its own LIST path
    with the option added; any trouble falls back to the plain LIST.
    """
    if "SPECIAL-USE" in capabilities:
        try:
            typ, data = client._imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            client._checkok("LIST", typ, data)
            typ, data = client._imap._untagged_response(typ, data, "LIST")
            return client._proc_folder_list(data)
        except (IMAPClientError, AttributeError, ValueError, TypeError) as exc:
            log.debug("LIST RETURN (SPECIAL-USE) failed (%s); using a plain LIST", _one_line(exc))
    return client.list_folders()


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _one_line(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())
