"""The new-ticket digest: during a flood the team gets one list per 10 minutes, not a mail per ticket.

Pure.  Intake decides per new ticket whether the team is told by its own
notification or in the digest (``workflow/intake.py``); this module writes
the digest's parts.  The digest itself is an ordinary outbox entry, pending
until its time: each folded ticket appends its block to the open one, in the
same store commit as the ticket, so a crash loses or doubles no entry and the
outbox sends it exactly like any other mail (``daemon/intake.py`` finds the
open one and sets its time).

Every entry carries a ``mailto:`` link to the support address with the
ticket's tag in the subject: a reply written from it is routed by that tag
to the ticket like a reply to the ticket's own notification.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from maildesk.model import Address, OutboundMail, Ticket
from maildesk.parsers.subject import reply_link, tagged_subject

PERIOD = timedelta(minutes=10)
EXCERPT_CHARS = 160
# A digest stops growing here (some 200 tickets, a list a person still reads through): the rest
# of its period's tickets go into a continuation sent at the same time.  Each folded ticket
# appends to the open digest's text, and each commit writes it whole, so this bound also keeps a
# long flood's cost per ticket flat.
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class DigestEntry:
    """One folded ticket, ready to be appended to its recipients' open digest."""

    recipients: tuple[str, ...]
    desk: Address    # the digest's sender: the support address
    language: str
    tag: str
    block: str       # this ticket's part of the text
    head: str        # the digest's opening text, used when this entry opens a new digest
    subject: str     # the digest's subject
    at: datetime


def ticket_link(desk: Address, ticket: Ticket) -> str:
    """``mailto:`` the desk, subject "Re: [TS-000042] <subject>"."""
    return reply_link(desk.email, f"Re: {tagged_subject(ticket.tag, ticket.subject)}")


def digest_entry(ticket: Ticket, text: str, recipients: list[str], ctx, *, unverified: str = "") -> DigestEntry:
    """``ctx`` is the intake's ``DeskContext`` (renderer, desk, staff language, limit, now)."""
    lang = ctx.staff_language
    excerpt = " ".join(text.split())
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[:EXCERPT_CHARS - 1] + "…"
    block = ctx.renderer.render("notify_digest", lang, part="entry", tag=ticket.tag, subject=ticket.subject,
                                customer=ticket.customer, customer_name=ticket.customer_name,
                                received=ctx.now.isoformat(timespec="minutes"), excerpt=excerpt,
                                link=ticket_link(ctx.desk, ticket), unverified=unverified)
    head, subject = _frame(ctx.renderer, lang, ctx.notify_digest_after)
    return DigestEntry(tuple(recipients), ctx.desk, lang, ticket.tag, block, head, subject, ctx.now)


@lru_cache(maxsize=16)
def _frame(renderer, lang: str, limit: int) -> tuple[str, str]:
    # The same for every entry of a flood: rendered once, not once per folded ticket.
    return (renderer.render("notify_digest", lang, part="head", limit=limit),
            renderer.labels("subjects", lang)["digest"])


@lru_cache(maxsize=64)
def recipients_key(recipients: tuple[str, ...]) -> str:
    # Asked up to four times per folded ticket, for the same few recipient lists.
    return hashlib.sha256(",".join(sorted(recipients)).encode()).hexdigest()[:12]


def digest_id(recipients: tuple[str, ...], slot: int, part: int = 0) -> str:
    """The outbox id of the recipients' digest for a 10-minute slot (and of its continuations,
    ``part`` 1, 2, ...): found again without an index."""
    first = f"digest.{recipients_key(recipients)}.{slot}"
    return first if part == 0 else f"{first}.{part}"


def has_room(digest: OutboundMail, entry: DigestEntry) -> bool:
    return len(digest.text) + len(entry.block) <= MAX_TEXT_CHARS


def slot_of(at: datetime) -> int:
    return int(at.timestamp() // PERIOD.total_seconds())


def new_digest(entry: DigestEntry, *, mail_id: str, due: datetime) -> OutboundMail:
    desk = entry.desk
    message_id = f"<digest.{uuid.uuid4().hex[:16]}@{desk.domain}>"
    return OutboundMail(
        id=mail_id, message_id=message_id, kind="digest", sender=desk, recipients=list(entry.recipients),
        to_header=[Address(r) for r in entry.recipients], subject=entry.subject, text=entry.head + entry.block,
        created_at=entry.at, reply_to=desk.email, language=entry.language, auto_submitted="auto-generated",
        next_attempt_at=due,
    )


def with_entry(digest: OutboundMail, entry: DigestEntry) -> OutboundMail:
    return replace(digest, text=digest.text + entry.block)
