"""Typed objects passed between the steps of a mail's journey.

fetch -> ``RawMail`` -> parse -> ``InboundMail`` -> route -> ``Route`` ->
apply -> ``Effects`` -> store (``Ticket``, ``OutboundMail``) -> send.

Only plain data lives here; behaviour sits in the module that owns a step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

STAGES = ("received", "diagnosing", "proposed", "executing", "feedback", "closed")


@dataclass(frozen=True)
class Address:
    """A mailbox: bare lower-case address plus the display name, if any."""

    email: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@dataclass(frozen=True)
class RawMail:
    """A message as fetched from the mailbox, before any parsing."""

    uid: int
    data: bytes


@dataclass
class InboundAttachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class SkippedAttachment:
    """An attachment we did not keep, and why (shown to staff on the ticket)."""

    filename: str
    size: int
    reason: str


@dataclass
class InboundMail:
    """Everything the helpdesk needs from one received message, decoded.

    ``key`` identifies the message for de-duplication: its Message-ID when it
    has one, otherwise ``sha256:<hex>`` of the raw bytes.
    """

    key: str
    message_id: str | None
    sender: Address | None
    subject: str
    text: str
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    reply_to: Address | None = None
    date: datetime | None = None
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    html: str | None = None
    attachments: list[InboundAttachment] = field(default_factory=list)
    skipped_attachments: list[SkippedAttachment] = field(default_factory=list)
    language: str = "en"
    # Why this mail was written by a machine ("auto-reply", "bounce", "bulk"), or None.
    machine: str | None = None
    machine_reason: str = ""
    # For delivery-status reports: the Message-IDs of the mails that failed.
    bounced_message_ids: list[str] = field(default_factory=list)
    bounced_recipients: list[str] = field(default_factory=list)
    return_path: str | None = None
    auth_results: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    size: int = 0
    # Outlook's conversation index (base64), read when References and tags name no ticket.
    thread_index: str | None = None

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, nearest first."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            if mid not in seen:
                seen.append(mid)
        return seen


@dataclass
class StoredAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass
class Message:
    direction: str  # "in" | "out"
    sender: str
    recipients: list[str]
    date: datetime
    text: str
    message_id: str | None = None
    internal: bool = False
    attachments: list[StoredAttachment] = field(default_factory=list)
    # Attachments not kept (too large, unreadable), as "name (reason)".
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # for "out": ack, notify, ...; for "in": customer, staff, machine


@dataclass
class Event:
    at: datetime
    actor: str
    kind: str
    from_stage: str | None = None
    to_stage: str | None = None
    detail: str = ""


@dataclass
class Ticket:
    number: int
    tag: str  # "TS-000042"
    subject: str
    customer: str
    customer_name: str
    stage: str
    language: str
    created_at: datetime
    updated_at: datetime
    assignee: str | None = None
    rating: int | None = None
    priority: str = "normal"
    rating_comment: str = ""
    summary: str = ""
    lessons: str = ""
    # The closed ticket this one continues, when a customer wrote again too late to reopen it.
    linked_to: str | None = None
    # Every Message-ID sent or received for this ticket: replies are routed by them.
    message_ids: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundPart:
    """A file sent with an outbound mail, kept in the content-addressed attachment folder.

    With ``content_id`` it is shown inside the HTML (``cid:``); otherwise it is an attachment.
    """

    filename: str
    content_type: str
    sha256: str
    content_id: str | None = None
    description: str = ""


@dataclass
class OutboundMail:
    """A mail waiting in (or gone through) the outbox.

    Everything needed to build the exact same message again is stored, so a
    retry after a crash sends an identical mail with the same Message-ID.
    """

    id: str
    message_id: str
    kind: str  # ack, notify, error, ...
    sender: Address
    recipients: list[str]
    subject: str
    text: str
    created_at: datetime
    ticket: str | None = None
    html: str | None = None
    to_header: list[Address] = field(default_factory=list)
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    language: str = "en"
    auto_submitted: str = "auto-generated"
    status: str = "pending"  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    sent_at: datetime | None = None
    parts: list[OutboundPart] = field(default_factory=list)


@dataclass(frozen=True)
class PlanItem:
    """A supervisor's item for next week's plan (``#plan``)."""

    at: datetime
    author: str
    text: str
    ticket: str | None = None


@dataclass(frozen=True)
class StaffRecord:
    """A commendation, warning or appraisal kept on a technician's record.

    ``#commend``/``#warn`` carry a ``level`` (see ``parsers.commands.RECORD_LEVELS``);
    ``#appraise`` gives ``scores`` for an appraisal ``period`` (e.g. "2026-11"), with the
    comment as ``reason``.  A later appraisal of the same period adds to an earlier one.
    """

    at: datetime
    author: str
    kind: str  # commend | warn | appraisal
    technician: str
    reason: str
    ticket: str | None = None
    level: str = ""
    period: str = ""
    scores: tuple[tuple[str, int], ...] = ()
