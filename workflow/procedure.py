"""The service procedure driven by mail: staff commands and customers' answers.  Pure.

Each function takes a ticket (never modified) and returns ``Effects``: the
ticket's new state, the mails to send, plan items and staff records.  A mail
with any command that cannot be obeyed changes nothing: its sender gets one
error mail naming the ticket's stage, what is allowed now and, for a typo,
the nearest keyword.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from maildesk.model import Address, Event, InboundMail, OutboundMail, PlanItem, StaffRecord, Ticket
from maildesk.parsers.commands import (SELF_SERVICE_COMMANDS, SUPERVISOR_COMMANDS, Command, Vocabulary,
                                       parse_commands, raw_argument, read_confirmation, read_feedback, split_level,
                                       text_without_commands)
from maildesk.parsers.own_text import lines_below_unproven_quotes, without_own_text
from maildesk.parsers.reply import split_reply
from maildesk.parsers.subject import reply_link, tagged_subject
from maildesk.workflow import stages
from maildesk.workflow.intake import (DeskContext, Effects, _copy, _inbound_message, _record_outbound,
                                      _remember_ids, _staff_recipients, forged_customer)

PRIORITIES = {"low": "low", "低": "low", "normal": "normal", "普通": "normal", "中": "normal", "high": "high",
              "高": "high", "urgent": "urgent", "紧急": "urgent", "critical": "urgent"}
# "Lessons:" / "经验：" at a line start, or mid-line after a sentence ends ("原因：驱动损坏。经验：…").
_ANY = Vocabulary.build()  # the line shape of a command, whatever the keyword
_LESSONS = re.compile(r"(?im)(?:^|(?<=[。．.!?！？;；]))\s*(lessons?(\s+learned)?|经验教训|经验|教训)\s*[:：]\s*")


@dataclass(frozen=True)
class Problem:
    """Why a command cannot be obeyed (rendered into the error mail)."""

    # unknown | not-allowed | supervisor-only | no-nda | not-staff | assign-unknown | assign-no-nda |
    # priority-unknown | close-needs-text | needs-text | who-unknown | why-missing | no-ticket |
    # below-quote (a command under a quote that is not the desk's own mail)
    kind: str
    keyword: str
    detail: str = ""
    suggestion: str | None = None


# -- staff ---------------------------------------------------------------------------------

def new_text(mail: InboundMail, ticket: Ticket | None) -> str:
    """What the sender wrote now: the splitter's new text minus anything the desk sent on the ticket."""
    return read_reply(mail, ticket)[0]


def read_reply(mail: InboundMail, ticket: Ticket | None) -> tuple[str, list[str]]:
    """The new text, and the command lines left unread because they stand below a quote that is
    not the desk's own mail (so that the sender can be told, rather than silently ignored)."""
    new = split_reply(mail.text).new
    sent = [m.text for m in ticket.messages if m.direction == "out"] if ticket is not None else []
    below = lines_below_unproven_quotes(mail.text, sent, lambda line: bool(parse_commands(line, _ANY)))
    unread = [line for line in new.split("\n") if line.strip() in below]
    if unread:
        new = "\n".join(line for line in new.split("\n") if line.strip() not in below)
    return (without_own_text(new, sent) if sent else new), [line.strip() for line in unread]


def apply_staff_reply(mail: InboundMail, ticket: Ticket, role: str, ctx: DeskContext) -> Effects:
    written, unread = read_reply(mail, ticket)
    commands = parse_commands(written, ctx.vocabulary)
    sender = mail.sender.email
    ticket = _copy(ticket)
    inbound, blobs = _inbound_message(mail, ctx, kind="staff", internal=True)
    ticket.messages.append(inbound)
    _remember_ids(ticket, mail)
    ticket.updated_at = ctx.now
    effects = Effects("staff-reply", ticket=ticket, blobs=blobs)

    text = text_without_commands(written)
    problems = _check(commands, ticket, role, sender, text, ctx)
    problems += [Problem("below-quote", c.keyword, detail=line)
                 for line in unread for c in parse_commands(line, _ANY)[:1]]
    if problems:
        ticket.events.append(Event(ctx.now, sender, "command-rejected", ticket.stage, ticket.stage,
                                   "; ".join(f"{p.kind} {p.keyword}" for p in problems)))
        effects.outbound.append(_error_mail(mail, ticket, problems, role, ctx, read_as_new=written))
        effects.reason = "command rejected"
        _record_outbound(ticket, effects.outbound)
        return effects

    # A note and a risk report are for the team and leadership, never for the customer.
    internal_only = any(c.name in ("note", "risk") for c in commands)
    moved_to: str | None = None
    for command in commands:
        name, arg = command.name, command.argument
        if name in stages.MOVES:
            before, after = ticket.stage, stages.target_of(name)
            if name == "close":
                ticket.summary, ticket.lessons = _summary_and_lessons(text)
            ticket.stage = after
            moved_to = after
            ticket.events.append(Event(ctx.now, sender, name, before, after,
                                       ticket.summary if name == "close" else ""))
            if not ticket.assignee and role == "technician" and sender in ctx.directory.nda_signed:
                ticket.assignee = sender
                ticket.events.append(Event(ctx.now, sender, "assigned", after, after, sender))
        elif name == "assign":
            who = ctx.directory.find_technician("" if arg.lower() in ("me", "我") else arg) or sender
            ticket.assignee = who
            ticket.events.append(Event(ctx.now, sender, "assigned", ticket.stage, ticket.stage, who))
        elif name == "priority":
            ticket.priority = PRIORITIES[arg.strip().lower()]
            ticket.events.append(Event(ctx.now, sender, "priority", ticket.stage, ticket.stage, ticket.priority))
        elif name == "note":
            ticket.events.append(Event(ctx.now, sender, "note", ticket.stage, ticket.stage))
        elif name == "plan":
            effects.plans.append(PlanItem(ctx.now, sender, arg or text, ticket.tag))
            ticket.events.append(Event(ctx.now, sender, "plan", ticket.stage, ticket.stage, arg or text))
        elif name in ("commend", "warn"):
            who, level, why = _who_level_why(name, raw_argument(written, command), ctx)  # reason as written
            effects.records.append(StaffRecord(ctx.now, sender, name, who, why, ticket.tag, level=level))
            ticket.events.append(Event(ctx.now, sender, name, ticket.stage, ticket.stage,
                                       f"{who} ({level}): {why}"))
        elif name == "risk":
            what = raw_argument(written, command) or text
            ticket.events.append(Event(ctx.now, sender, "risk", ticket.stage, ticket.stage, what))
            effects.outbound.extend(_risk_mails(ticket, sender, what, ctx))
    if not commands:
        ticket.events.append(Event(ctx.now, sender, "staff-reply", ticket.stage, ticket.stage))

    # Leadership reads reports and may comment on a ticket for the team, but is no party to the
    # customer's conversation: nothing of theirs is relayed.
    if role == "leadership":
        internal_only = True
    # What reaches the customer: the new text without command lines, from the desk's address.
    if not internal_only:
        out = _customer_mail_for(moved_to, text, mail, ticket, ctx)
        if out is not None:
            effects.outbound.append(out)
            inbound.internal = True
    if internal_only:
        inbound.text = text or written
    _record_outbound(ticket, effects.outbound)
    return effects


def _check(commands: list[Command], ticket: Ticket, role: str, sender: str, text: str,
           ctx: DeskContext) -> list[Problem]:
    problems: list[Problem] = []
    stage = ticket.stage
    for c in commands:
        if c.name is None:
            problems.append(Problem("unknown", c.keyword, suggestion=ctx.vocabulary.suggest(c.keyword)))
            continue
        if role not in ("technician", "supervisor"):
            problems.append(Problem("not-staff", c.keyword))
            continue
        if c.name in SUPERVISOR_COMMANDS and role != "supervisor":
            problems.append(Problem("supervisor-only", c.keyword))
            continue
        if c.name in SELF_SERVICE_COMMANDS or c.name == "appraise":
            problems.append(Problem("new-mail", c.keyword))
            continue
        if role == "technician" and sender not in ctx.directory.nda_signed:
            problems.append(Problem("no-nda", c.keyword))
            continue
        if not stages.is_allowed(c.name, stage):
            problems.append(Problem("not-allowed", c.keyword, detail=stage))
            continue
        if c.name == "assign":
            arg = c.argument.strip()
            who = sender if arg.lower() in ("me", "我", "") else ctx.directory.find_technician(arg)
            if who is None:
                problems.append(Problem("assign-unknown", c.keyword, detail=arg))
            elif who not in ctx.directory.nda_signed:
                problems.append(Problem("assign-no-nda", c.keyword, detail=who))
        elif c.name == "priority" and c.argument.strip().lower() not in PRIORITIES:
            problems.append(Problem("priority-unknown", c.keyword, detail=c.argument))
        elif c.name in ("commend", "warn"):
            who, _level, why = _who_level_why(c.name, c.argument, ctx)
            if who is None:
                problems.append(Problem("who-unknown", c.keyword, detail=c.argument))
            elif not why:
                problems.append(Problem("why-missing", c.keyword, detail=who))
        elif c.name == "risk" and not (c.argument.strip() or text.strip()):
            problems.append(Problem("why-missing", c.keyword))
        elif c.name == "close":
            summary, lessons = _summary_and_lessons(text)
            if not summary or not lessons:
                problems.append(Problem("close-needs-text", c.keyword))
        elif c.name in ("propose", "resolve") and not text.strip():
            problems.append(Problem("needs-text", c.keyword))
        if c.name in stages.MOVES:
            stage = stages.target_of(c.name)
    # A risk report makes the whole mail internal: it cannot ride on a mail the customer must get.
    risky = [c for c in commands if c.name == "risk"]
    if risky and any(c.name in ("propose", "resolve", "close") for c in commands):
        problems.append(Problem("risk-alone", risky[0].keyword))
    return problems


def _summary_and_lessons(text: str) -> tuple[str, str]:
    parts = _LESSONS.split(text, maxsplit=1)
    if len(parts) < 2:
        return text.strip(), ""
    summary, lessons = parts[0], parts[-1]
    return summary.strip(), lessons.strip()


def _who_and_why(argument: str, ctx: DeskContext) -> tuple[str | None, str]:
    arg = argument.strip()
    first, _, rest = arg.partition(" ")
    if ctx.directory.find_technician(first):
        return ctx.directory.find_technician(first), rest.strip()
    for address, name in sorted(ctx.directory.names, key=lambda n: -len(n[1])):
        if arg.lower().startswith(name.lower()):
            return address, arg[len(name):].strip(" ,，:：")
    # "alice": the local part of an address, or a first name, when exactly one technician has it.
    short = [address for address, name in ctx.directory.names
             if first.lower() in (address.partition("@")[0], name.split()[0].lower() if name.split() else "")]
    if len(short) == 1:
        return short[0], rest.strip()
    return None, arg


def _who_level_why(kind: str, argument: str, ctx: DeskContext) -> tuple[str | None, str, str]:
    """Who, the level ("written" warning, "reward") and why: "#警告 Bob 书面警告 连续两次超时"."""
    who, why = _who_and_why(argument, ctx)
    level, why = split_level(kind, why)
    return who, level, why


def _risk_mails(ticket: Ticket, reporter: str, text: str, ctx: DeskContext) -> list[OutboundMail]:
    """A risk goes to leadership at once (the supervisor when no leadership is configured), with
    the ticket's summary, stage and age; the customer is masked, as everywhere leadership reads."""
    from maildesk.reports.weekly import mask_address

    d = ctx.directory
    recipients = sorted(d.leadership) or ([d.supervisor] if d.supervisor else [])
    if not recipients:
        return []
    lang = ctx.staff_language
    age_hours = (ctx.now - ticket.created_at).total_seconds() / 3600
    body = ctx.renderer.render(
        "risk_alert", lang, tag=ticket.tag, subject=ticket.subject, customer=mask_address(ticket.customer),
        stage=ctx.renderer.render("stage", lang, stage=ticket.stage).strip(), age_hours=age_hours,
        assignee=d.name_of(ticket.assignee) if ticket.assignee else "", reporter=d.name_of(reporter),
        text=text, summary=ticket.summary, priority=ticket.priority)
    label = ctx.renderer.labels("subjects", lang)["risk"]
    return [OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("risk", ticket.tag), kind="risk", sender=ctx.desk,
        recipients=[r], to_header=[Address(r)], subject=f"{label} {tagged_subject(ticket.tag, ticket.subject)}",
        text=body, created_at=ctx.now, ticket=ticket.tag, language=lang, auto_submitted="auto-generated")
        for r in recipients]


def _customer_mail_for(moved_to: str | None, text: str, mail: InboundMail, ticket: Ticket,
                       ctx: DeskContext) -> OutboundMail | None:
    lang = ticket.language
    common = dict(tag=ticket.tag, subject=ticket.subject, desk_name=ctx.desk.name, text=text,
                  customer_name=ticket.customer_name)
    if moved_to == "proposed":
        return _to_customer(ticket, ctx, "proposal", ctx.renderer.render("proposal", lang, **common))
    if moved_to == "feedback":
        links = _rating_links(ticket, ctx)
        ticket.events.append(Event(ctx.now, "desk", "feedback-requested", "feedback", "feedback"))
        return _to_customer(ticket, ctx, "result", ctx.renderer.render("result", lang, links=links, **common))
    if moved_to == "closed":
        # The summary and lessons are the department's record, not the customer's mail.
        common["text"] = ""
        return _to_customer(ticket, ctx, "closed", ctx.renderer.render("closed", lang, **common))
    if not text.strip():
        return None
    return _to_customer(ticket, ctx, "relay", ctx.renderer.render("relay", lang, **common))


def _rating_links(ticket: Ticket, ctx: DeskContext) -> list[tuple[int, str]]:
    """mailto: links that pre-fill a rating reply: one click, no web server."""
    word = ctx.renderer.render("rating_word", ticket.language).strip()
    links = []
    for score in (5, 4, 3, 2, 1):
        subject = f"Re: {tagged_subject(ticket.tag, ticket.subject)} {word} {score}"
        links.append((score, reply_link(ctx.desk.email, subject, str(score))))
    return links


def _to_customer(ticket: Ticket, ctx: DeskContext, kind: str, text: str) -> OutboundMail:
    """A mail to the customer, threaded into their conversation, from the desk's address only."""
    customer_ids = [m.message_id for m in ticket.messages
                    if m.message_id and ((m.direction == "in" and m.sender == ticket.customer)
                                         or (m.direction == "out" and ticket.customer in m.recipients))]
    last_in = next((m.message_id for m in reversed(ticket.messages)
                    if m.direction == "in" and m.sender == ticket.customer and m.message_id), None)
    return OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id(kind, ticket.tag), kind=kind, sender=ctx.desk,
        recipients=[ticket.customer], to_header=[Address(ticket.customer, ticket.customer_name)],
        subject=tagged_subject(ticket.tag, ticket.subject), text=text, created_at=ctx.now, ticket=ticket.tag,
        in_reply_to=last_in, references=customer_ids[-10:], language=ticket.language,
        auto_submitted="auto-generated",
    )


def _error_mail(mail: InboundMail, ticket: Ticket | None, problems: list[Problem], role: str,
                ctx: DeskContext, *, read_as_new: str | None = None) -> OutboundMail:
    lang = ctx.staff_language
    stage = ticket.stage if ticket else None
    allowed = stages.allowed_now(stage, supervisor=role == "supervisor") if stage else []
    text = ctx.renderer.render(
        "command_error", lang, tag=ticket.tag if ticket else None,
        stage=ctx.renderer.render("stage", lang, stage=stage).strip() if stage else None,
        allowed=[ctx.vocabulary.words_for(c) for c in allowed], problems=problems,
        vocabulary=ctx.vocabulary,
        # The text that was read as new, so the sender sees why (a quote taken for new text, say).
        read=(split_reply(mail.text).new if read_as_new is None else read_as_new)[:2000],
    )
    subject = tagged_subject(ticket.tag, ticket.subject) if ticket else mail.subject
    return OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("error", ticket.tag if ticket else None), kind="error",
        sender=ctx.desk, recipients=[mail.sender.email], to_header=[mail.sender], subject=subject, text=text,
        created_at=ctx.now, ticket=ticket.tag if ticket else None, in_reply_to=mail.message_id,
        references=[m for m in [mail.message_id] if m], language=lang, auto_submitted="auto-replied",
    )


# -- supervisor mail without a ticket -----------------------------------------------------

def apply_directive(mail: InboundMail, role: str, ctx: DeskContext) -> Effects:
    """``#plan``, ``#commend``, ``#warn`` sent straight to the desk: recorded, never a ticket."""
    parts = split_reply(mail.text)
    commands = parse_commands(parts.new, ctx.vocabulary)
    sender = mail.sender.email
    problems: list[Problem] = []
    for c in commands:
        if c.name is None:
            problems.append(Problem("unknown", c.keyword, suggestion=ctx.vocabulary.suggest(c.keyword)))
        elif c.name in SELF_SERVICE_COMMANDS or c.name == "appraise":
            continue  # answered by workflow.selfservice, which calls this for the rest
        elif c.name not in SUPERVISOR_COMMANDS:
            problems.append(Problem("no-ticket", c.keyword))
        elif role != "supervisor":
            problems.append(Problem("supervisor-only", c.keyword))
        elif c.name in ("commend", "warn"):
            who, _level, why = _who_level_why(c.name, c.argument, ctx)
            if who is None:
                problems.append(Problem("who-unknown", c.keyword, detail=c.argument))
            elif not why:
                problems.append(Problem("why-missing", c.keyword, detail=who))
        elif c.name == "plan" and not c.argument.strip():
            problems.append(Problem("why-missing", c.keyword))
    effects = Effects("directive")
    if problems:
        effects.outbound.append(_error_mail(mail, None, problems, role, ctx))
        effects.reason = "command rejected"
        return effects
    done = []
    for c in commands:
        if c.name == "plan":
            effects.plans.append(PlanItem(ctx.now, sender, c.argument.strip()))
            done.append(("plan", c.argument.strip(), None, ""))
        elif c.name in ("commend", "warn"):
            who, level, why = _who_level_why(c.name, raw_argument(parts.new, c), ctx)  # reason as written
            effects.records.append(StaffRecord(ctx.now, sender, c.name, who, why, level=level))
            done.append((c.name, why, ctx.directory.name_of(who), level))
    lang = ctx.staff_language
    text = ctx.renderer.render("directive_done", lang, done=done, levels=ctx.renderer.labels("record_levels", lang))
    effects.outbound.append(OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("directive", None), kind="directive", sender=ctx.desk,
        recipients=[sender], to_header=[mail.sender], subject=f"Re: {mail.subject}".strip(), text=text,
        created_at=ctx.now, in_reply_to=mail.message_id, references=[m for m in [mail.message_id] if m],
        language=lang, auto_submitted="auto-replied"))
    return effects


def has_commands(mail: InboundMail, ctx: DeskContext) -> bool:
    return bool(parse_commands(split_reply(mail.text).new, ctx.vocabulary))


def reject_without_ticket(mail: InboundMail, role: str, ctx: DeskContext) -> Effects:
    """Staff commands in a mail that belongs to no ticket (e.g. a new mail instead of a reply)."""
    commands = parse_commands(split_reply(mail.text).new, ctx.vocabulary)
    if all(c.name in SUPERVISOR_COMMANDS or c.name is None for c in commands):
        return apply_directive(mail, role, ctx)
    problems = [Problem("no-ticket", c.keyword) for c in commands]
    return Effects("directive", outbound=[_error_mail(mail, None, problems, role, ctx)],
                   reason="command without a ticket")


# -- customers -----------------------------------------------------------------------------

def apply_customer_reply(mail: InboundMail, ticket: Ticket, ctx: DeskContext) -> Effects:
    written = new_text(mail, ticket)
    ticket = _copy(ticket)
    inbound, blobs = _inbound_message(mail, ctx, kind="customer")
    ticket.messages.append(inbound)
    _remember_ids(ticket, mail)
    ticket.updated_at = ctx.now
    sender = mail.sender.email
    effects = Effects("follow-up", ticket=ticket, blobs=blobs)
    answer_kind = "message"
    forged = forged_customer(mail, ctx)
    if forged:
        # The receiving server says this From line is forged: an answer in the customer's name
        # (confirm, rating, not fixed, reopening) is kept for a person, never acted on.
        answer_kind = "unverified"
        ticket.events.append(Event(ctx.now, sender, "customer-answer-held", ticket.stage, ticket.stage, forged))
    elif ticket.stage == "proposed":
        answer = read_confirmation(written)
        answer_kind = answer.kind
        if answer.kind in ("confirm", "reject"):
            before = ticket.stage
            ticket.stage = stages.CUSTOMER_MOVES[(before, answer.kind)]
            ticket.events.append(Event(ctx.now, sender, f"customer-{answer.kind}", before, ticket.stage))
    elif ticket.stage == "feedback":
        answer = read_feedback(written, mail.subject)
        answer_kind = answer.kind
        if answer.kind == "not-solved":
            before = ticket.stage
            ticket.stage = stages.CUSTOMER_MOVES[(before, "not-solved")]
            ticket.events.append(Event(ctx.now, sender, "customer-not-solved", before, ticket.stage))
        elif answer.kind == "rating":
            ticket.rating = answer.rating
            ticket.rating_comment = answer.comment
            ticket.events.append(Event(ctx.now, sender, "rated", ticket.stage, ticket.stage, str(answer.rating)))
            effects.outbound.append(_to_customer(ticket, ctx, "thanks", ctx.renderer.render(
                "thanks", ticket.language, tag=ticket.tag, rating=answer.rating, desk_name=ctx.desk.name,
                customer_name=ticket.customer_name)))
    elif ticket.stage == "closed":
        answer_kind = "reopened"
        ticket.stage = "diagnosing"
        ticket.events.append(Event(ctx.now, sender, "reopened", "closed", "diagnosing"))
    if answer_kind in ("message", "unclear"):
        ticket.events.append(Event(ctx.now, sender, "customer-reply", ticket.stage, ticket.stage,
                                   "unclear answer" if answer_kind == "unclear" else ""))
    effects.outbound.extend(_tell_staff(ticket, ctx, answer_kind, written or mail.text, exclude=sender,
                                        verdict=forged))
    _record_outbound(ticket, effects.outbound)
    return effects


def _tell_staff(ticket: Ticket, ctx: DeskContext, answer: str, text: str, *, exclude: str,
                verdict: str = "") -> list[OutboundMail]:
    recipients = _staff_recipients(ticket, ctx, exclude=exclude)
    if not recipients:
        return []
    lang = ctx.staff_language
    body = ctx.renderer.render(
        "notify_answer", lang, tag=ticket.tag, customer=ticket.customer, customer_name=ticket.customer_name,
        subject=ticket.subject, answer=answer, text=text, rating=ticket.rating, verdict=verdict,
        stage=ctx.renderer.render("stage", lang, stage=ticket.stage).strip())
    return [OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("notify", ticket.tag), kind="notify", sender=ctx.desk,
        recipients=recipients, to_header=[Address(r) for r in recipients],
        subject=tagged_subject(ticket.tag, ticket.subject), text=body, created_at=ctx.now, ticket=ticket.tag,
        reply_to=ctx.desk.email, language=lang, auto_submitted="auto-generated")]


# -- timers: reminders and SLA alerts ---------------------------------------------------------

@dataclass(frozen=True)
class Timers:
    reminder_days: float = 3
    no_rating_days: float = 7
    first_response_hours: float = 4
    resolution_hours: float = 48


def due_timers(ticket: Ticket, ctx: DeskContext, timers: Timers) -> Effects | None:
    """Reminders and SLA alerts that are due; each happens once, remembered as an event."""
    if ticket.stage == "closed":
        return None
    ticket = _copy(ticket)
    effects = Effects("timer", ticket=ticket)
    kinds = [e.kind for e in ticket.events]
    if ticket.stage == "feedback" and ticket.rating is None:
        requested = _last(ticket, "feedback-requested")
        if requested is not None:
            after = [e for e in ticket.events if e.at >= requested.at]
            reminded = any(e.kind == "feedback-reminder" for e in after)
            no_rating = any(e.kind == "no-rating" for e in after)
            if not reminded and ctx.now >= requested.at + timedelta(days=timers.reminder_days):
                ticket.events.append(Event(ctx.now, "desk", "feedback-reminder", "feedback", "feedback"))
                effects.outbound.append(_to_customer(ticket, ctx, "reminder", ctx.renderer.render(
                    "reminder", ticket.language, tag=ticket.tag, subject=ticket.subject,
                    desk_name=ctx.desk.name, customer_name=ticket.customer_name,
                    links=_rating_links(ticket, ctx))))
            elif reminded and not no_rating and ctx.now >= requested.at + timedelta(days=timers.no_rating_days):
                ticket.events.append(Event(ctx.now, "desk", "no-rating", "feedback", "feedback"))
    first_response = any(e.kind not in ("created", "ack-suppressed", "customer-reply", "sla-alert",
                                        "delivery-failed", "auto-reply") for e in ticket.events)
    if not first_response and "sla-first-response" not in _alerts(ticket) and \
            ctx.now >= ticket.created_at + timedelta(hours=timers.first_response_hours):
        effects.outbound.extend(_sla_alert(ticket, ctx, "first-response", timers.first_response_hours))
    if ticket.stage in ("received", "diagnosing", "proposed", "executing") and \
            "sla-resolution" not in _alerts(ticket) and \
            ctx.now >= ticket.created_at + timedelta(hours=timers.resolution_hours):
        effects.outbound.extend(_sla_alert(ticket, ctx, "resolution", timers.resolution_hours))
    if len(ticket.events) == len(kinds):
        return None
    _record_outbound(ticket, effects.outbound)
    return effects


def _last(ticket: Ticket, kind: str) -> Event | None:
    return next((e for e in reversed(ticket.events) if e.kind == kind), None)


def _alerts(ticket: Ticket) -> set[str]:
    return {f"sla-{e.detail.split(':')[0]}" for e in ticket.events if e.kind == "sla-alert"}


def _sla_alert(ticket: Ticket, ctx: DeskContext, which: str, hours: float) -> list[OutboundMail]:
    ticket.events.append(Event(ctx.now, "desk", "sla-alert", ticket.stage, ticket.stage, f"{which}: {hours:g}h"))
    d = ctx.directory
    # One alert each to the assignee (or the team when nobody is assigned) and the supervisor.
    recipients = [ticket.assignee] if ticket.assignee else sorted(d.nda_signed)
    if d.supervisor:
        recipients.append(d.supervisor)
    recipients = list(dict.fromkeys(recipients))
    if not recipients:
        return []
    lang = ctx.staff_language
    text = ctx.renderer.render("sla_alert", lang, tag=ticket.tag, subject=ticket.subject, which=which,
                               hours=f"{hours:g}", customer=ticket.customer,
                               stage=ctx.renderer.render("stage", lang, stage=ticket.stage).strip(),
                               since=ticket.created_at.isoformat(timespec="minutes"))
    return [OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("sla", ticket.tag), kind="sla", sender=ctx.desk,
        recipients=[r], to_header=[Address(r)], subject=tagged_subject(ticket.tag, ticket.subject), text=text,
        created_at=ctx.now, ticket=ticket.tag, reply_to=ctx.desk.email, language=lang,
        auto_submitted="auto-generated") for r in recipients]


# -- mail from a staff address that the receiving server did not vouch for ----------------

def record_forged_staff_mail(mail: InboundMail, ticket: Ticket | None, ctx: DeskContext, *,
                             number: int | None = None, tag: str | None = None,
                             reason: str = "staff address not authenticated") -> Effects:
    """Kept as a customer's message (on the ticket it refers to, or a new ticket); no command
    is obeyed, nothing is relayed, and the supervisor is told."""
    from maildesk.workflow.intake import open_ticket

    if ticket is not None:
        ticket = _copy(ticket)
        inbound, blobs = _inbound_message(mail, ctx, kind="forged", internal=True)
        ticket.messages.append(inbound)
        _remember_ids(ticket, mail)
        ticket.events.append(Event(ctx.now, mail.sender.email, "forged-staff-mail", ticket.stage, ticket.stage,
                                   reason))
        effects = Effects("forged", ticket=ticket, blobs=blobs, reason=reason)
    else:
        effects = open_ticket(mail, number, tag, ctx, note=reason)
        effects.outcome = "forged"
        ticket = effects.ticket
    d = ctx.directory
    if d.supervisor:
        lang = ctx.staff_language
        text = ctx.renderer.render("forged_alert", lang, sender=mail.sender.email, subject=mail.subject,
                                   tag=ticket.tag, message_id=mail.message_id or "-",
                                   results=mail.auth_results or ["-"])
        effects.outbound.append(OutboundMail(
            id=ctx.new_id(), message_id=ctx.message_id("alert", ticket.tag), kind="alert", sender=ctx.desk,
            recipients=[d.supervisor], to_header=[Address(d.supervisor)],
            subject=tagged_subject(ticket.tag, ticket.subject), text=text, created_at=ctx.now, ticket=ticket.tag,
            language=lang, auto_submitted="auto-generated"))
        _record_outbound(ticket, effects.outbound[-1:])
    return effects


# -- a technician without a signed NDA writing to a customer's ticket -----------------------

def refuse_without_nda(mail: InboundMail, ticket: Ticket, ctx: DeskContext) -> Effects:
    """One neutral refusal: no subject, tag, stage or text of the customer's ticket goes back,
    and nothing of the mail reaches the customer or is kept as ticket text."""
    ticket = _copy(ticket)
    ticket.events.append(Event(ctx.now, mail.sender.email, "refused-no-nda", ticket.stage, ticket.stage))
    lang = ctx.staff_language
    refusal = OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("refusal", None), kind="refusal", sender=ctx.desk,
        recipients=[mail.sender.email], to_header=[Address(mail.sender.email)],
        subject=ctx.renderer.labels("subjects", lang)["nda_refusal"],
        text=ctx.renderer.render("nda_refusal", lang, desk_name=ctx.desk.name), created_at=ctx.now,
        in_reply_to=mail.message_id, references=[m for m in [mail.message_id] if m], language=lang,
        auto_submitted="auto-replied")
    return Effects("refused", ticket=ticket, outbound=[refusal], reason="technician without a signed NDA")
