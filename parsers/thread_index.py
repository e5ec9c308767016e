"""Outlook's conversation headers: ``Thread-Index`` and ``Thread-Topic``.

Outlook and Exchange group a conversation by its conversation index
(MAPI ``PidTagConversationIndex``, MS-OXOMSG 2.2.1.3), sent as the base64
``Thread-Index`` header, and by its topic (``Thread-Topic``, the subject
without prefixes, MS-OXOMSG 2.2.1.5).  An index is

* a 22-byte header block: six bytes of the conversation's start time
  (``FILETIME >> 16``; the first byte is the reserved ``0x01`` for any date
  between 1829 and 2057) and a 16-byte GUID naming the conversation;
* then one 5-byte child block per reply: a 1-bit delta code, 31 bits of the
  time since the header's time (bits 48-18 of the difference, or bits 53-23
  when it is too large for that), 4 random bits and a 4-bit sequence count.

Exchange derives the conversation id from the GUID (MS-OXOMSG 2.2.1.2), and a
reply from Outlook keeps the header block of the mail it answers and appends
its own child block.  So a reply that carries nothing but ``Thread-Index`` (no
``References``, no ``In-Reply-To``, as Outlook mobile and some gateways send)
still names the ticket through the first 22 bytes.

The desk's index is stable per ticket and computed, never stored: its GUID is
a hash of the support address and the ticket tag with the ticket number in
its last four bytes, so reading a reply needs no index of its own (``ticket_for``
finds the number and checks the hash).  Its time bytes come from the same
hash: an outbox entry does not carry its ticket's creation time, the bytes
must be the same in every mail of the ticket, and nothing reads them as a date.
The hash puts them in 2000-2019, so every child block's time difference is
positive and later mails sort after earlier ones.  Pure; no I/O.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from maildesk.parsers.subject import clean_subject

HEADER_BYTES = 22
CHILD_BYTES = 5
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
_ROOT_FROM = datetime(2000, 1, 1, tzinfo=timezone.utc)
_ROOT_UNTIL = datetime(2020, 1, 1, tzinfo=timezone.utc)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def filetime(at: datetime) -> int:
    """Windows FILETIME: 100-nanosecond intervals since 1601-01-01 UTC."""
    delta = at.astimezone(timezone.utc) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def header_block(guid: bytes, started: int) -> bytes:
    """The 22-byte header block for a conversation named ``guid`` that started at FILETIME ``started``."""
    if len(guid) != 16:
        raise ValueError("a conversation GUID has 16 bytes")
    return (started >> 16).to_bytes(6, "big") + guid


def child_block(started: int, at: int, *, random_bits: int = 0, sequence: int = 0) -> bytes:
    """The 5-byte block a reply written at FILETIME ``at`` appends (times as FILETIME integers)."""
    delta = max(0, at - started)
    if delta < 1 << 49:
        code, diff = 0, (delta >> 18) & 0x7FFFFFFF
    else:
        code, diff = 1, (delta >> 23) & 0x7FFFFFFF
    return ((code << 31) | diff).to_bytes(4, "big") + bytes([((random_bits & 0xF) << 4) | (sequence & 0xF)])


@dataclass(frozen=True)
class ConversationIndex:
    header: bytes  # the first 22 bytes: what names the conversation
    replies: int   # child blocks after it

    @property
    def guid(self) -> bytes:
        return self.header[6:]


def decode(value: str | None) -> ConversationIndex | None:
    """A ``Thread-Index`` header's value, or None when it is not a well-formed conversation index."""
    if not value:
        return None
    text = "".join(value.split())
    if len(text) > 4096:  # a conversation of hundreds of replies is still far shorter
        return None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < HEADER_BYTES or (len(raw) - HEADER_BYTES) % CHILD_BYTES or raw[0] != 0x01:
        return None
    return ConversationIndex(raw[:HEADER_BYTES], (len(raw) - HEADER_BYTES) // CHILD_BYTES)


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- the desk's conversations -------------------------------------------------------------

def _digest(support_address: str, tag: str) -> bytes:
    return hashlib.sha256(f"maildesk thread\n{support_address.lower()}\n{tag.upper()}".encode()).digest()


def ticket_guid(support_address: str, tag: str, number: int) -> bytes:
    """The conversation GUID of ticket ``tag`` (number ``number``) of the desk at ``support_address``."""
    return _digest(support_address, tag)[:12] + (number & 0xFFFFFFFF).to_bytes(4, "big")


def ticket_header(support_address: str, tag: str, number: int) -> bytes:
    """The ticket's 22-byte header block, the same in every mail of the ticket."""
    digest = _digest(support_address, tag)
    low, high = filetime(_ROOT_FROM), filetime(_ROOT_UNTIL)
    started = low + int.from_bytes(digest[16:24], "big") % (high - low)
    return header_block(ticket_guid(support_address, tag, number), started)


def ticket_thread_index(support_address: str, tag: str, number: int, *, at: datetime, message_id: str) -> str:
    """``Thread-Index`` for a desk mail written at ``at``: the ticket's header block and one child block.

    The child block's random bits come from the Message-ID, so a retry builds the same bytes.
    """
    header = ticket_header(support_address, tag, number)
    started = int.from_bytes(header[:6], "big") << 16
    random_bits = hashlib.sha256(message_id.encode()).digest()[0] >> 4
    return encode(header + child_block(started, filetime(at), random_bits=random_bits))


def ticket_for(value: str | None, support_address: str, prefix: str) -> int | None:
    """The ticket number a ``Thread-Index`` names, when its header block is one of this desk's.

    Who may reach that ticket is for routing to decide, as for a tag or a References header.
    """
    index = decode(value)
    if index is None:
        return None
    number = int.from_bytes(index.guid[12:], "big")
    tag = f"{prefix}-{number:06d}"
    return number if index.header == ticket_header(support_address, tag, number) else None


def _number_of(tag: str) -> int | None:
    digits = tag.rpartition("-")[2]
    return int(digits) if digits.isdigit() else None


def thread_headers(mail) -> list[tuple[str, str]]:
    """(name, value) of ``Thread-Topic`` and ``Thread-Index`` for an outbox entry of a ticket, else []."""
    number = _number_of(mail.ticket or "")
    if number is None:
        return []
    prefix = mail.ticket.rpartition("-")[0]
    # One line, no control characters: the subject holds the customer's words.
    subject = _CONTROL.sub(" ", mail.subject)
    topic = clean_subject(subject, prefix) or subject.strip()
    index = ticket_thread_index(mail.sender.email, mail.ticket, number, at=mail.created_at,
                                message_id=mail.message_id)
    return [("Thread-Topic", topic), ("Thread-Index", index)]
