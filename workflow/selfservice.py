"""Staff mail to the desk that needs the store: self-service questions and appraisal answers.

``#mine``, ``#find``, ``#status``, ``#help``, ``#myrecord`` and the supervisor's
``#appraise`` are sent in a new mail to the desk (no ticket).  ``read_view``
reads what they need from the store while the mail is routed; ``answer``
is pure and returns ``Effects``.  Each answer goes to the asking staff
member only, and the NDA rules hold: a technician without a signed NDA
sees no customer ticket, leadership sees customers masked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from maildesk.model import Address, InboundMail, OutboundMail, StaffRecord, Ticket
from maildesk.parsers.commands import (APPRAISAL_CRITERIA, SELF_SERVICE_COMMANDS, Command, parse_commands,
                                       raw_argument, read_appraisal)
from maildesk.parsers.reply import split_reply
from maildesk.workflow import stages
from maildesk.workflow.intake import DeskContext, Effects
from maildesk.workflow.route import Route
from maildesk.workflow.similar import index_for

STORE_COMMANDS = SELF_SERVICE_COMMANDS | {"appraise"}
CRITERIA = tuple(APPRAISAL_CRITERIA)
# Who may use what, by role (the help text lists exactly these).  Vocabulary: parsers.commands.
TICKET_COMMANDS = ("diagnose", "propose", "execute", "resolve", "close", "reopen", "assign", "priority", "note",
                   "risk")
HELP_BY_ROLE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "technician": (("ticket", TICKET_COMMANDS), ("self", ("mine", "find", "status", "myrecord", "help"))),
    "technician-no-nda": (("self", ("myrecord", "help")),),
    "supervisor": (("ticket", TICKET_COMMANDS), ("supervisor", ("plan", "commend", "warn", "appraise")),
                   ("self", ("mine", "find", "status", "myrecord", "help"))),
    "leadership": (("self", ("find", "status", "help")),),
}
FIND_LIMIT = 10
_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[a-z0-9][a-z0-9+#.-]*")


class StaffReader(Protocol):
    """What self-service reads from the store (every ``Store`` has all of it)."""

    def get_ticket(self, number: int) -> Ticket | None: ...
    def open_tickets(self, *, with_messages: bool = True): ...
    def tickets(self, *, with_messages: bool = True, active_since: datetime | None = None): ...
    def closed_cases(self): ...
    def staff_records(self) -> list[StaffRecord]: ...
    def job_run(self, name: str, period: str) -> dict | None: ...


@dataclass(frozen=True)
class StaffView:
    """What the store holds for one staff member's questions, read while routing."""

    mine: tuple[Ticket, ...] = ()
    found: tuple[tuple[str, tuple[Ticket, ...]], ...] = ()  # (words asked for, matches)
    status: tuple[tuple[str, Ticket | None], ...] = ()  # (tag asked for, ticket)
    records: tuple[StaffRecord, ...] = ()  # the asker's own record
    appraisal_period: str = ""  # the period an #appraise answer belongs to ("" = none sent yet)
    appraisals: tuple[StaffRecord, ...] = ()  # that period's appraisal records so far


@dataclass(frozen=True)
class SelfServiceRoute(Route):
    view: StaffView = field(default_factory=StaffView)


def store_commands(mail: InboundMail, ctx: DeskContext) -> list[Command]:
    return [c for c in parse_commands(split_reply(mail.text).new, ctx.vocabulary) if c.name in STORE_COMMANDS]


def read_view(mail: InboundMail, role: str, reader, ctx: DeskContext) -> StaffView:
    """Only what the mail's commands ask for; a reader without a method (a test double) yields nothing."""
    commands = store_commands(mail, ctx)
    names = {c.name for c in commands}
    sender = mail.sender.email
    view = StaffView()
    if "mine" in names and hasattr(reader, "open_tickets"):
        view = replace(view, mine=tuple(t for t in reader.open_tickets(with_messages=False)
                                        if t.assignee == sender))
    finds = [c.argument.strip() for c in commands if c.name == "find" and c.argument.strip()]
    if finds and callable(getattr(reader, "tickets", None)):
        index = index_for(reader)
        if index is not None and hasattr(reader, "open_tickets"):
            # Open work is scanned; the (many) closed cases are looked up in the case index.
            open_now = list(reader.open_tickets(with_messages=False))
            found = []
            for q in finds:
                closed = [reader.get_ticket(n) for n in
                          (ticket_number(tag, ctx.directory.prefix) for tag in index.matching(q, FIND_LIMIT))
                          if n is not None]
                closed = [t for t in closed if t is not None and t.stage == "closed"]
                found.append((q, tuple(search(closed + open_now, q)[:FIND_LIMIT])))
            view = replace(view, found=tuple(found))
        else:
            everything = list(reader.tickets(with_messages=False))
            view = replace(view, found=tuple((q, tuple(search(everything, q)[:FIND_LIMIT])) for q in finds))
    statuses = [c.argument.strip() for c in commands if c.name == "status"]
    if statuses:
        found = []
        for asked in statuses:
            number = ticket_number(asked, ctx.directory.prefix)
            found.append((asked, reader.get_ticket(number) if number is not None else None))
        view = replace(view, status=tuple(found))
    if names & {"myrecord", "appraise"} and hasattr(reader, "staff_records"):
        records = reader.staff_records()
        view = replace(view, records=tuple(r for r in records if r.technician == sender))
        if "appraise" in names:
            period = _appraisal_period(mail, reader, ctx.now)
            view = replace(view, appraisal_period=period, appraisals=tuple(
                r for r in records if r.kind == "appraisal" and r.period == period))
    return view


def _appraisal_period(mail: InboundMail, reader, now: datetime) -> str:
    """The period of the appraisal mail answered, else the latest one sent."""
    for mid in mail.thread_ids:
        m = re.match(r"<appraisal\.(\d{4}-(?:\d{2}|Q[1-4]))\.", mid)
        if m:
            return m.group(1)
    if not hasattr(reader, "job_run"):
        return ""
    candidates = []
    for back in (0, 1, 2, 3):
        month = (now.year * 12 + now.month - 1) - back
        year, index = divmod(month, 12)
        candidates.append(f"{year}-{index + 1:02d}")
        candidates.append(f"{year}-Q{index // 3 + 1}")
    for label in dict.fromkeys(candidates):
        if reader.job_run("appraisal", label):
            return label
    return ""


def ticket_number(text: str, prefix: str) -> int | None:
    m = re.fullmatch(rf"\[?(?:{re.escape(prefix)}-?)?0*(\d{{1,9}})\]?", text.strip(), re.IGNORECASE)
    return int(m.group(1)) if m else None


# -- search ---------------------------------------------------------------------------------

def query_terms(text: str) -> list[str]:
    """English words and Chinese runs of a query; a Chinese run matches as a whole or by its pairs."""
    text = text.lower()
    return _CJK.findall(text) + [w.strip(".-") for w in _WORD.findall(_CJK.sub(" ", text)) if w.strip(".-")]


def _matches(term: str, haystack: str) -> bool:
    if term in haystack:
        return True
    if _CJK.fullmatch(term) and len(term) > 2:
        return all(term[i:i + 2] in haystack for i in range(len(term) - 1))
    return False


def search(tickets, query: str) -> list[Ticket]:
    """Tickets whose subject, summary or lessons hold every term; closed cases first, newest first."""
    terms = query_terms(query)
    if not terms:
        return []
    found = []
    for t in tickets:
        haystack = f"{t.subject}\n{t.summary}\n{t.lessons}".lower()
        if all(_matches(term, haystack) for term in terms):
            found.append(t)
    found.sort(key=lambda t: (t.stage != "closed", -t.number))
    return found


def is_overdue(ticket: Ticket) -> bool:
    """Past the resolution SLA: the timer recorded its alert on the ticket."""
    return any(e.kind == "sla-alert" and e.detail.startswith("resolution") for e in ticket.events)


# -- appraisal answers ------------------------------------------------------------------------

def merged_scores(records, technician: str) -> tuple[dict[str, int], list[str]]:
    """A technician's scores and comments for a period: later answers add to and override earlier ones."""
    scores: dict[str, int] = {}
    comments = []
    for r in sorted((r for r in records if r.technician == technician), key=lambda r: r.at):
        scores.update(dict(r.scores))
        if r.reason:
            comments.append(r.reason)
    return scores, comments


# -- the answer -------------------------------------------------------------------------------

def answer(mail: InboundMail, route: SelfServiceRoute, ctx: DeskContext) -> Effects:
    from maildesk.workflow.procedure import Problem, _error_mail, _who_and_why, apply_directive

    sender = mail.sender.email
    role = route.role
    written = split_reply(mail.text).new
    commands = parse_commands(written, ctx.vocabulary)
    d = ctx.directory
    effects = Effects("self-service")
    # Supervisor directives and unknown words in the same mail are handled as they always are.
    others = [c for c in commands if c.name not in STORE_COMMANDS]
    if others:
        directive = apply_directive(mail, role, ctx)
        if directive.reason:
            return directive  # an error mail: nothing of this mail is carried out
        effects = directive
        effects.outcome = "self-service"
    problems = []
    for c in commands:
        if c.name == "appraise" and role != "supervisor":
            problems.append(Problem("supervisor-only", c.keyword))
        elif c.name == "appraise":
            who, rest = _who_and_why(raw_argument(written, c), ctx)
            if who is None:
                problems.append(Problem("who-unknown", c.keyword, detail=c.argument))
            elif not route.view.appraisal_period:
                problems.append(Problem("no-appraisal", c.keyword))
            elif not read_appraisal(rest).scores and not read_appraisal(rest).comment:
                problems.append(Problem("scores-missing", c.keyword, detail=d.name_of(who)))
    if problems:
        return Effects("self-service", outbound=[_error_mail(mail, None, problems, role, ctx)],
                       reason="command rejected")

    lang = ctx.staff_language
    no_nda = role == "technician" and sender not in d.nda_signed
    sections = []
    appraised: dict[str, list[StaffRecord]] = {}
    period_records = list(route.view.appraisals)
    for c in commands:
        if c.name not in STORE_COMMANDS:
            continue
        if c.name in ("find", "status") and no_nda:
            # Customer data is for technicians who signed the NDA: a neutral refusal, naming nothing.
            sections.append({"kind": "no-nda"})
        elif c.name == "mine":
            mine = sorted(route.view.mine, key=lambda t: (not is_overdue(t), t.created_at))
            sections.append({"kind": "mine", "tickets": [_row(t, ctx, role) for t in mine]})
        elif c.name == "find":
            query = c.argument.strip()
            found = dict(route.view.found).get(query, ())
            sections.append({"kind": "find", "query": query, "tickets": [_row(t, ctx, role) for t in found]})
        elif c.name == "status":
            asked = c.argument.strip()
            t = dict(route.view.status).get(asked)
            sections.append({"kind": "status", "asked": asked, "ticket": _detail(t, ctx, role) if t else None})
        elif c.name == "help":
            key = "technician-no-nda" if no_nda else role
            groups = [(group, [ctx.vocabulary.words_for(n) for n in names]) for group, names in HELP_BY_ROLE[key]]
            sections.append({"kind": "help", "groups": groups})
        elif c.name == "myrecord":
            sections.append({"kind": "myrecord", "records": [_record_row(r, ctx) for r in
                                                             sorted(route.view.records, key=lambda r: r.at)]})
        elif c.name == "appraise":
            # As written: the comment keeps its own punctuation.
            who, rest = _who_and_why(raw_argument(written, c), ctx)
            parsed = read_appraisal(rest)
            record = StaffRecord(ctx.now, sender, "appraisal", who, parsed.comment, level="",
                                 period=route.view.appraisal_period, scores=parsed.scores)
            effects.records.append(record)
            period_records.append(record)
            appraised.setdefault(who, []).append(record)
            scores, comments = merged_scores(period_records, who)
            sections.append({"kind": "appraise", "who": d.name_of(who), "period": route.view.appraisal_period,
                             "scores": [(k, scores[k]) for k in CRITERIA if k in scores],
                             "missing": [k for k in CRITERIA if k not in scores], "bad": list(parsed.bad),
                             "comments": comments,
                             "others_missing": [d.name_of(a) for a, _ in d.names
                                                if a != who and len(merged_scores(period_records, a)[0]) < 5]})
    text = ctx.renderer.render("selfservice", lang, sections=sections, desk_name=ctx.desk.name,
                               labels=ctx.renderer.labels("record_levels", lang),
                               stage_names={s: ctx.renderer.render("stage", lang, stage=s).strip()
                                            for s in stages.ORDER})
    effects.outbound.append(OutboundMail(
        id=ctx.new_id(), message_id=ctx.message_id("selfservice", None), kind="selfservice", sender=ctx.desk,
        recipients=[sender], to_header=[Address(sender)], subject=f"Re: {mail.subject}".strip(), text=text,
        created_at=ctx.now, in_reply_to=mail.message_id, references=[m for m in [mail.message_id] if m],
        language=lang, auto_submitted="auto-replied"))
    return effects


def _customer(address: str, role: str) -> str:
    if role == "leadership":
        from maildesk.reports.weekly import mask_address
        return mask_address(address)
    return address


def _age(ticket: Ticket, now: datetime) -> float:
    return max(0.0, (now - ticket.created_at) / timedelta(days=1))


def _row(t: Ticket, ctx: DeskContext, role: str) -> dict:
    return {"tag": t.tag, "subject": t.subject, "stage": t.stage, "age_days": _age(t, ctx.now),
            "overdue": t.stage != "closed" and is_overdue(t), "customer": _customer(t.customer, role),
            "assignee": ctx.directory.name_of(t.assignee) if t.assignee else "", "summary": t.summary,
            "lessons": t.lessons}


def _detail(t: Ticket, ctx: DeskContext, role: str) -> dict:
    row = _row(t, ctx, role)
    row.update(priority=t.priority, rating=t.rating, linked_to=t.linked_to,
               risks=[e.detail for e in t.events if e.kind == "risk"],
               last=[(e.at.isoformat(timespec="minutes"), e.kind) for e in t.events[-5:]])
    return row


def _record_row(r: StaffRecord, ctx: DeskContext) -> dict:
    return {"at": r.at.isoformat(timespec="minutes"), "kind": r.kind, "level": r.level, "reason": r.reason,
            "author": ctx.directory.name_of(r.author), "period": r.period,
            "scores": [(k, v) for k, v in r.scores], "ticket": r.ticket}


def wants_self_service(mail: InboundMail, ctx: DeskContext) -> bool:
    return bool(store_commands(mail, ctx))

