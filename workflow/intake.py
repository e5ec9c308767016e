"""What a routed mail does to the helpdesk: pure functions returning ``Effects``.

Nothing here touches a file or a socket.  The daemon applies the returned
``Effects`` inside one store commit, which is what makes handling a mail
all-or-nothing.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from maildesk.model import (Address, Event, InboundMail, Message, OutboundMail, PlanItem, StaffRecord,
                            StoredAttachment, Ticket)
from maildesk.parsers.auth import customer_verdict
from maildesk.parsers.commands import Vocabulary
from maildesk.parsers.subject import clean_subject, tagged_subject
from maildesk.templates import Renderer
from maildesk.workflow.digest import DigestEntry, digest_entry
from maildesk.workflow.route import Directory, Route


@dataclass(frozen=True)
class DeskContext:
    directory: Directory
    desk: Address  # the support address and its display name
    renderer: Renderer
    now: datetime
    ack_limit_per_hour: int = 5
    notify_unassigned: str = "team"  # team | supervisor | none
    staff_language: str = "zh"
    max_attachment_bytes: int = 15 * 2**20
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    vocabulary: Vocabulary = field(default_factory=Vocabulary.build)
    reopen_days: float = 14
    require_authenticated_staff: bool = True
    authserv_id: str = ""
    # Flood guard for the team (tickets.notify_digest_after; 0: never fold): past this many
    # new-ticket notifications in 10 minutes (``team_notices_recent``, counted by the daemon)
    # new tickets are listed in a digest instead.
    notify_digest_after: int = 0
    team_notices_recent: int = 0
    # Closed cases like a new ticket (workflow/similar.py), listed in the team's notification.
    similar_cases: tuple = ()

    def message_id(self, kind: str, tag: str | None) -> str:
        label = f"{kind}.{tag}" if tag else kind
        return f"<{label}.{self.new_id()[:16]}@{self.desk.domain}>"


@dataclass
class Effects:
    outcome: str  # ticket | follow-up | staff-reply | machine | bounce | ignored | quarantined
    ticket: Ticket | None = None
    outbound: list[OutboundMail] = field(default_factory=list)
    outbox_updates: list[OutboundMail] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    acked_sender: str | None = None
    reason: str = ""
    plans: list[PlanItem] = field(default_factory=list)
    records: list[StaffRecord] = field(default_factory=list)
    # The team got a notification of a new ticket (counted for the digest threshold) ...
    team_noticed: bool = False
    # ... or will find it in the digest.
    digest: list[DigestEntry] = field(default_factory=list)


# -- customer mail ----------------------------------------------------------------------

def open_ticket(mail: InboundMail, number: int, tag: str, ctx: DeskContext, *,
                acks_last_hour: int = 0, note: str = "", linked_to: str | None = None) -> Effects:
    sender = mail.sender
    subject = clean_subject(mail.subject, ctx.directory.prefix) or _untitled(ctx, mail.language)
    inbound, blobs = _inbound_message(mail, ctx, kind="customer")
    ticket = Ticket(
        number=number, tag=tag, subject=subject, customer=sender.email, customer_name=sender.name,
        stage="received", language=mail.language, created_at=ctx.now, updated_at=ctx.now,
        message_ids=[m for m in [mail.message_id] if m], messages=[inbound], linked_to=linked_to,
        events=[Event(at=ctx.now, actor=sender.email, kind="created", from_stage=None, to_stage="received",
                      detail=note)],
    )
    effects = Effects("ticket", ticket=ticket, blobs=blobs)
    skipped = _skipped_lines(mail, ctx, ticket.language)
    forged = forged_customer(mail, ctx)
    if forged:
        ticket.events.append(Event(at=ctx.now, actor="desk", kind="sender-unverified", detail=forged))
    if acks_last_hour < ctx.ack_limit_per_hour:
        if forged:
            # The server says this From line is forged: the real owner of the address gets a
            # neutral note that echoes nothing the forger chose (no subject, name or link).
            ack_text = ctx.renderer.render("ack_unverified", ticket.language, tag=tag, desk_name=ctx.desk.name)
            ack_subject = ctx.renderer.labels("subjects", ticket.language)["ack_unverified"]
            ack = _reply_to_customer(mail, ticket, ctx, kind="ack", text=ack_text, auto_submitted="auto-replied",
                                     subject=ack_subject, name="")
        else:
            ack_text = ctx.renderer.render("ack", ticket.language, customer_name=sender.name, tag=tag,
                                           subject=subject, desk_name=ctx.desk.name, skipped=skipped,
                                           internal=ctx.directory.is_internal(sender.email))
            ack = _reply_to_customer(mail, ticket, ctx, kind="ack", text=ack_text, auto_submitted="auto-replied")
        effects.outbound.append(ack)
        effects.acked_sender = sender.email
        _tell_team_of_new_ticket(mail, ticket, ctx, effects, unverified=forged)
    else:
        # A flood (or a loop) from one sender: the tickets are kept, but neither the sender nor
        # the team gets a mail for each; the team heard of the first ones.
        ticket.events.append(Event(at=ctx.now, actor="desk", kind="ack-suppressed",
                                   detail=f"more than {ctx.ack_limit_per_hour} acknowledgements "
                                          f"to {sender.email} within an hour; team not notified"))
    _record_outbound(ticket, effects.outbound)
    return effects


# -- machine mail ------------------------------------------------------------------------

def record_machine_mail(mail: InboundMail, route: Route, ctx: DeskContext) -> Effects:
    if route.ticket is None:
        return Effects("ignored", reason=route.reason)
    ticket = _copy(route.ticket)
    inbound, blobs = _inbound_message(mail, ctx, kind="machine", internal=True)
    ticket.messages.append(inbound)
    _remember_ids(ticket, mail)
    ticket.events.append(Event(at=ctx.now, actor=mail.sender.email, kind="auto-reply",
                               from_stage=ticket.stage, to_stage=ticket.stage, detail=route.reason))
    return Effects("machine", ticket=ticket, blobs=blobs, reason=route.reason)


def record_bounce(mail: InboundMail, route: Route, ctx: DeskContext) -> Effects:
    detail = ", ".join(mail.bounced_recipients) or route.reason
    failed = [replace(o, status="failed", last_error=f"bounced: {detail}", next_attempt_at=None)
              for o in route.bounced]
    if route.ticket is None:
        return Effects("bounce", outbox_updates=failed,
                       reason=f"bounce for no known ticket ({detail})")
    ticket = _copy(route.ticket)
    for out in route.bounced:
        ticket.events.append(Event(at=ctx.now, actor=mail.sender.email, kind="delivery-failed",
                                   from_stage=ticket.stage, to_stage=ticket.stage,
                                   detail=f"{out.kind} {out.message_id} to {', '.join(out.recipients)}: "
                                          f"{detail}"))
    if not route.bounced:  # the outbox entry was already forgotten
        ticket.events.append(Event(at=ctx.now, actor=mail.sender.email, kind="delivery-failed",
                                   from_stage=ticket.stage, to_stage=ticket.stage,
                                   detail=f"{' '.join(mail.bounced_message_ids)}: {detail}"))
    inbound, blobs = _inbound_message(mail, ctx, kind="machine", internal=True)
    ticket.messages.append(inbound)
    return Effects("bounce", ticket=ticket, outbox_updates=failed, blobs=blobs, reason=detail)


# -- helpers ------------------------------------------------------------------------------

def _copy(ticket: Ticket) -> Ticket:
    return replace(ticket, message_ids=list(ticket.message_ids), messages=list(ticket.messages),
                   events=list(ticket.events))


def _untitled(ctx: DeskContext, lang: str) -> str:
    return ctx.renderer.render("untitled", lang).strip()


def _remember_ids(ticket: Ticket, mail: InboundMail) -> None:
    if mail.message_id and mail.message_id not in ticket.message_ids:
        ticket.message_ids.append(mail.message_id)


def _inbound_message(mail: InboundMail, ctx: DeskContext, *, kind: str,
                     internal: bool = False) -> tuple[Message, list[bytes]]:
    stored = [StoredAttachment(a.filename, a.content_type, a.size, hashlib.sha256(a.data).hexdigest())
              for a in mail.attachments]
    notes = [_skipped_line(s, ctx, "en") for s in mail.skipped_attachments]
    message = Message(
        direction="in", sender=mail.sender.email, recipients=[a.email for a in mail.to + mail.cc],
        date=mail.date or ctx.now, text=mail.text, message_id=mail.message_id, internal=internal,
        attachments=stored, notes=notes, kind=kind,
    )
    return message, [a.data for a in mail.attachments]


def _skipped_line(skipped, ctx: DeskContext, lang: str) -> str:
    return ctx.renderer.render(
        "skipped_attachment", lang, filename=skipped.filename, size_mb=f"{skipped.size / 2**20:.1f}",
        reason=skipped.reason, limit_mb=f"{ctx.max_attachment_bytes / 2**20:g}").strip()


def _skipped_lines(mail: InboundMail, ctx: DeskContext, lang: str) -> list[str]:
    return [_skipped_line(s, ctx, lang) for s in mail.skipped_attachments]


def forged_customer(mail: InboundMail, ctx: DeskContext) -> str:
    """Why the receiving server says the sender's address was forged, or "" (also when it said nothing)."""
    if not ctx.authserv_id or mail.sender is None:
        return ""
    verdict = customer_verdict(mail.sender.email, mail.auth_results, ctx.authserv_id)
    return verdict.detail if verdict.status == "fail" else ""


def _reply_to_customer(mail: InboundMail, ticket: Ticket, ctx: DeskContext, *, kind: str, text: str,
                       auto_submitted: str, subject: str | None = None, name: str | None = None) -> OutboundMail:
    references = [*mail.references[-10:], *([mail.message_id] if mail.message_id else [])]
    return OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id(kind, ticket.tag), kind=kind, sender=ctx.desk,
        recipients=[ticket.customer],
        to_header=[Address(ticket.customer, ticket.customer_name if name is None else name)],
        subject=tagged_subject(ticket.tag, ticket.subject if subject is None else subject), text=text,
        created_at=ctx.now,
        ticket=ticket.tag, in_reply_to=mail.message_id, references=references,
        language=ticket.language, auto_submitted=auto_submitted,
    )


def _notify_staff(mail: InboundMail, ticket: Ticket, ctx: DeskContext, key: str, *,
                  unverified: str = "") -> list[OutboundMail]:
    recipients = _staff_recipients(ticket, ctx, exclude=mail.sender.email)
    if not recipients:
        return []
    lang = ctx.staff_language
    text = ctx.renderer.render(
        key, lang, tag=ticket.tag, customer=ticket.customer, customer_name=ticket.customer_name,
        subject=ticket.subject, received=ctx.now.isoformat(timespec="minutes"), text=mail.text,
        stage=ctx.renderer.render("stage", lang, stage=ticket.stage).strip(),
        attachments=[a.filename for a in mail.attachments], skipped=_skipped_lines(mail, ctx, lang),
        unverified=unverified,
        similar=ctx.similar_cases,
    )
    return [OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("notify", ticket.tag), kind="notify", sender=ctx.desk,
        recipients=recipients, to_header=[Address(r) for r in recipients],
        subject=tagged_subject(ticket.tag, ticket.subject), text=text, created_at=ctx.now,
        ticket=ticket.tag, reply_to=ctx.desk.email, language=lang, auto_submitted="auto-generated",
    )]


def _tell_team_of_new_ticket(mail: InboundMail, ticket: Ticket, ctx: DeskContext, effects: Effects, *,
                             unverified: str = "") -> None:
    """A notification of its own, or, in a flood of new tickets from many senders, a line in the digest.

    (A flood from one sender is caught earlier, by the acknowledgement limit: those tickets are
    neither acknowledged nor announced, as the team heard of that sender's first ones.)
    """
    if ctx.notify_digest_after and ctx.team_notices_recent >= ctx.notify_digest_after:
        recipients = _staff_recipients(ticket, ctx, exclude=mail.sender.email)
        if recipients:
            effects.digest.append(digest_entry(ticket, mail.text, recipients, ctx, unverified=unverified))
            ticket.events.append(Event(at=ctx.now, actor="desk", kind="notify-digest",
                                       detail=f"more than {ctx.notify_digest_after} new tickets within 10 "
                                              f"minutes; listed in the team's digest"))
        return
    notices = _notify_staff(mail, ticket, ctx, "notify_new", unverified=unverified)
    effects.outbound.extend(notices)
    effects.team_noticed = bool(notices)


def _staff_recipients(ticket: Ticket, ctx: DeskContext, *, exclude: str) -> list[str]:
    d = ctx.directory
    if ticket.assignee:
        found = [ticket.assignee]
    elif ctx.notify_unassigned == "team":
        # Customer text goes only to technicians who signed the NDA.
        found = ([d.supervisor] if d.supervisor else []) + sorted(d.nda_signed)
    elif ctx.notify_unassigned == "supervisor" and d.supervisor:
        found = [d.supervisor]
    else:
        found = []
    return [a for a in dict.fromkeys(found) if a != exclude]


def _record_outbound(ticket: Ticket, outbound: list[OutboundMail]) -> None:
    """Outgoing mail is part of the ticket's history, and replies to it find the ticket."""
    for out in outbound:
        ticket.message_ids.append(out.message_id)
        ticket.messages.append(Message(
            direction="out", sender=out.sender.email, recipients=list(out.recipients), date=out.created_at,
            text=out.text, message_id=out.message_id, internal=out.kind != "ack", kind=out.kind,
        ))


def ack_window_start(now: datetime) -> datetime:
    return now - timedelta(hours=1)
