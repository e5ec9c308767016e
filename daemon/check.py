"""``helpdesk check``: is this configuration usable?  One line per part, exit 0 only if all are."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiosmtplib

from maildesk.daemon.config import Config
from maildesk.daemon.mailbox import CONNECTION_ERRORS, Mailbox, MailboxUnavailable, tls_context
from maildesk.storage.journal import StoreError
from maildesk.storage.base import open_store


def run_checks(config: Config, out: Callable[[str], None]) -> bool:
    results = [_check_store(config), _check_imap(config), _check_smtp(config), _check_trust(config)]
    for ok, part, text in results:
        out(f"{'ok  ' if ok else 'FAIL'} {part:<6} {text}")
    return all(ok for ok, _, _ in results)


def _check_store(config: Config) -> tuple[bool, str, str]:
    try:
        with open_store(config, readonly=True) as store:
            count, location = store.ticket_count(), store.location
    except StoreError as exc:
        return False, "store", str(exc)
    parent = config.storage_path.parent
    while not parent.exists():
        parent = parent.parent
    import os

    if not os.access(parent, os.W_OK):
        return False, "store", f"{parent} is not writable by this user"
    return True, "store", f"{location}: {count} tickets"


def _check_imap(config: Config) -> tuple[bool, str, str]:
    c = config.imap
    mailbox = Mailbox(c)
    try:
        mailbox.connect()
        waiting = len(mailbox.waiting_uids())
        # Capabilities, delimiter, namespace, folder names and how mail is marked and awaited.
        detected = mailbox.describe()
    except MailboxUnavailable as exc:
        return False, "imap", str(exc)
    except CONNECTION_ERRORS as exc:
        return False, "imap", f"{c.host}:{c.port}: {' '.join(str(exc).split())}"
    finally:
        mailbox.close()
    # The configured method only: never anything of the secret or token itself.
    auth = getattr(c, "auth", "password")
    return True, "imap", (f"{c.username}@{c.host}:{c.port} ({c.security}): auth {auth}; {c.folder} has "
                          f"{waiting} waiting; {detected}")


def _check_smtp(config: Config) -> tuple[bool, str, str]:
    c = config.smtp

    async def probe() -> str:
        client = aiosmtplib.SMTP(hostname=c.host, port=c.port, timeout=c.timeout_seconds,
                                 use_tls=c.security == "ssl", start_tls=True if c.security == "starttls" else False,
                                 tls_context=tls_context(c.ca_file) if c.security != "none" else None)
        await client.connect()
        try:
            if c.credentials is not None:  # a password or an OAuth2 token, as the outbox logs in
                await c.credentials.smtp_login(client)
            await client.noop()
        finally:
            await client.quit()
        return f"login ok (auth {c.credentials.method})" if c.credentials is not None else "no login configured"

    try:
        text = asyncio.run(probe())
    except (aiosmtplib.SMTPException, OSError) as exc:
        return False, "smtp", f"{c.host}:{c.port}: {' '.join(str(exc).split())}"
    return True, "smtp", f"{c.host}:{c.port} ({c.security}): {text}; mail leaves as {c.from_address}"


def _check_trust(config: Config) -> tuple[bool, str, str]:
    """Which evidence staff mail is believed on (never a failure: the operator chose it)."""
    p = config.procedure
    if p.require_authenticated_staff:
        return True, "trust", (f"secure: staff mail must carry a DKIM or DMARC pass in the topmost "
                               f"Authentication-Results of {p.authserv_id or '(no staff configured)'}")
    return True, "trust", ("INSECURE: staff commands are obeyed on the bare From line "
                           "(security.require_authenticated_staff = false)")
