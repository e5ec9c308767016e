"""Performance appraisal (绩效考核): the supervisor's mail each period, and leadership's summary.

Each period (``[appraisal] period``, monthly or quarterly) the supervisor gets
one mail with a section per technician on the five criteria, pre-filled from
the desk's data where data exists and saying "no data" where none does: no
score is ever invented.  The supervisor answers by reply (``#考核`` /
``#appraise``, ``workflow/selfservice.py``); when every technician has all
five scores, or when the next period's appraisal falls due, the results go to
leadership in one summary mail.

Both mails are scheduled the Mailman way, like the weekly report: "is there a
completed period, due now, with no sent record?"  The record and the queued
mail are one commit: exactly once, caught up on start after downtime, and
never for a period that ended before the desk existed.
"""
from __future__ import annotations

import logging
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from maildesk.daemon.config import Config
from maildesk.model import Address, OutboundMail, StaffRecord, Ticket
from maildesk.reports.metrics import (REOPEN_KINDS, Policy, first_response, resolution_events, topics)
from maildesk.reports.periods import Period, desk_origin, first_weekday_on_or_after
from maildesk.reports.weekly import LATE_AFTER, WEEKDAYS, policy_for
from maildesk.templates import Renderer
from maildesk.workflow.selfservice import CRITERIA, merged_scores

log = logging.getLogger("maildesk.appraisal")

JOB = "appraisal"
SUMMARY_JOB = "appraisal-summary"
# Problem areas a technician worked on before are looked for this far back.
HISTORY = timedelta(days=365)


@dataclass
class Criterion:
    """One of the five criteria: facts from the data (None: no data) and, later, a score."""

    name: str
    facts: dict[str, float | int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(v not in (None, 0) for v in self.facts.values()) or bool(self.notes)


@dataclass
class TechnicianAppraisal:
    email: str
    name: str
    criteria: list[Criterion]
    scores: dict[str, int] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(c in self.scores for c in CRITERIA)

    @property
    def average(self) -> float | None:
        return sum(self.scores.values()) / len(self.scores) if self.scores else None


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def appraisal_data(period: Period, tickets: list[Ticket], records: list[StaffRecord], policy: Policy,
                   now: datetime) -> list[TechnicianAppraisal]:
    """The five criteria per technician, from the tickets and records of ``period``.  Pure."""
    start, end = period.start, period.end
    techs = dict(policy.technicians)
    closed: dict[str, int] = defaultdict(int)
    on_time: dict[str, list[bool]] = defaultdict(list)
    overdue: dict[str, int] = defaultdict(int)
    ratings: dict[str, list[int]] = defaultdict(list)
    reopened: dict[str, int] = defaultdict(int)
    not_fixed: dict[str, int] = defaultdict(int)
    resolved: dict[str, int] = defaultdict(int)
    helped: dict[str, int] = defaultdict(int)
    taken: dict[str, int] = defaultdict(int)
    accepted: dict[str, int] = defaultdict(int)
    lessons: dict[str, int] = defaultdict(int)
    areas_now: dict[str, set[str]] = defaultdict(set)
    areas_before: dict[str, set[str]] = defaultdict(set)
    first: dict[str, list[float]] = defaultdict(list)
    for t in tickets:
        owner = t.assignee
        for e in t.events:
            inside = start <= e.at < end
            if e.to_stage == "closed" and e.from_stage != "closed":
                if owner in techs:
                    if inside:
                        closed[owner] += 1
                        areas_now[owner] |= topics(t.subject)
                    elif e.at < start:
                        areas_before[owner] |= topics(t.subject)
                if inside and e.actor in techs and t.lessons:
                    lessons[e.actor] += 1
            if not inside:
                continue
            if owner in techs:
                if e.kind == "rated" and e.detail.isdigit():
                    ratings[owner].append(int(e.detail))
                elif e.kind == "customer-not-solved":
                    not_fixed[owner] += 1
                elif e.kind in REOPEN_KINDS:
                    reopened[owner] += 1
            # Work on a colleague's ticket: anything the technician did on a ticket owned by another.
            if e.actor in techs and owner and owner != e.actor and e.kind not in ("assigned", "command-rejected"):
                helped[e.actor] += 1
        # Hand-overs: the ticket passed to a technician from another; accepted when they then acted on it.
        previous = None
        for i, e in enumerate(t.events):
            if e.kind != "assigned":
                continue
            who = e.detail
            if previous and previous != who and who in techs and start <= e.at < end:
                taken[who] += 1
                if any(later.actor == who for later in t.events[i + 1:]):
                    accepted[who] += 1
            previous = who
        res = [e for e in resolution_events(t) if start <= e.at < end]
        if res and owner in techs:
            resolved[owner] += 1
            fr = first_response(t, policy.staff)
            hours = _hours(t.created_at, res[-1].at)
            on_time[owner].append(fr is not None and _hours(t.created_at, fr.at) <= policy.first_response_hours
                                  and hours <= policy.resolution_hours)
        if owner in techs and t.stage != "closed" and _hours(t.created_at, now) > policy.resolution_hours:
            overdue[owner] += 1
        if start <= t.created_at < end:
            fr = first_response(t, policy.staff)
            if fr is not None and fr.actor in techs:
                first[fr.actor].append(_hours(t.created_at, fr.at))
    commends: dict[str, list[StaffRecord]] = defaultdict(list)
    warns: dict[str, list[StaffRecord]] = defaultdict(list)
    for r in records:
        if start <= r.at < end and r.kind in ("commend", "warn"):
            (commends if r.kind == "commend" else warns)[r.technician].append(r)
    found = []
    for email, name in policy.technicians:
        n_res = resolved[email]
        new_areas = sorted(areas_now[email] - areas_before[email])
        criteria = [
            Criterion("tasks", {"closed": closed[email],
                                "on_time_rate": (sum(on_time[email]) / len(on_time[email])) if on_time[email]
                                else None,
                                "overdue_now": overdue[email]}),
            Criterion("quality", {"average_rating": statistics.mean(ratings[email]) if ratings[email] else None,
                                  "ratings": len(ratings[email]),
                                  "reopen_rate": reopened[email] / closed[email] if closed[email] else None,
                                  "not_fixed_rate": not_fixed[email] / n_res if n_res else None}),
            Criterion("teamwork", {"colleague_actions": helped[email], "handovers_taken": taken[email],
                                   "handovers_accepted": accepted[email]}),
            Criterion("learning", {"lessons_written": lessons[email], "new_areas": len(new_areas)},
                      notes=new_areas[:5]),
            Criterion("attitude", {"median_first_response_hours": statistics.median(first[email])
                                   if first[email] else None, "first_responses": len(first[email]),
                                   "commendations": len(commends[email]), "warnings": len(warns[email])},
                      notes=[f"{r.kind}:{r.level}:{r.reason}" for r in commends[email] + warns[email]]),
        ]
        scores, comments = merged_scores([r for r in records if r.kind == "appraisal" and r.period == period.label],
                                         email)
        found.append(TechnicianAppraisal(email, name, criteria, scores, comments))
    return found


def team_averages(appraisals: list[TechnicianAppraisal]) -> dict[str, float | None]:
    """The team's average score per criterion (None where nobody was scored)."""
    out = {}
    for c in CRITERIA:
        values = [a.scores[c] for a in appraisals if c in a.scores]
        out[c] = sum(values) / len(values) if values else None
    return out


class AppraisalJob:
    def __init__(self, config: Config, store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer

    def due_at(self, period: Period) -> datetime:
        """The configured weekday and time on or after the period's end."""
        a = self.config.appraisal
        day = first_weekday_on_or_after(period.end.date(), WEEKDAYS.index(a.weekday))
        return datetime.combine(day, a.time, a.timezone)

    def last_owed(self, now: datetime) -> Period | None:
        a = self.config.appraisal
        if a.period == "none":
            return None
        period = Period.containing(a.period, now, a.timezone).previous()
        if now < self.due_at(period):
            period = period.previous()
            if now < self.due_at(period):
                return None
        return period

    def build(self, period: Period, now: datetime) -> list[TechnicianAppraisal]:
        tickets = list(self.store.tickets(with_messages=False, active_since=period.start - HISTORY))
        return appraisal_data(period, tickets, self.store.staff_records(), policy_for(self.config), now)

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Queue the appraisal mail and the leadership summary that are due; returns what was queued."""
        now = now or datetime.now(timezone.utc)
        period = self.last_owed(now)
        if period is None or not self.config.team.technicians:
            return []
        queued = []
        origin = desk_origin(self.store, now)
        if self.config.team.supervisor and not self.store.job_run(JOB, period.label) and period.end > origin:
            self.send_appraisal(period, now, late=now - self.due_at(period) > LATE_AFTER)
            queued.append(f"{JOB} {period.label}")
        # A summary is owed for a period whose appraisal went out: once complete, or at the latest
        # when the next period's appraisal is due.
        for p in (period.previous(), period):
            if self.store.job_run(JOB, p.label) and not self.store.job_run(SUMMARY_JOB, p.label) and \
                    self.config.team.leadership:
                # Whether every technician is scored needs only the staff records: the ticket
                # figures (a scan of the period's tickets) are built once the summary is going out.
                if now >= self.due_at(p.next()) or self.fully_scored(p):
                    self.send_summary(p, self.build(p, now), now)
                    queued.append(f"{SUMMARY_JOB} {p.label}")
        return queued

    def fully_scored(self, period: Period) -> bool:
        answers = [r for r in self.store.staff_records() if r.kind == "appraisal" and r.period == period.label]
        return all(all(c in merged_scores(answers, email)[0] for c in CRITERIA)
                   for email, _ in policy_for(self.config).technicians)

    def _labels(self, lang: str) -> dict[str, str]:
        return self.renderer.labels("record_levels", lang)

    def render_appraisal(self, period: Period, appraisals, *, late: bool = False) -> tuple[str, str]:
        lang = self.config.team_language
        text = self.renderer.render("appraisal", lang, period=period.label, appraisals=appraisals, late=late,
                                    labels=self._labels(lang), criteria=CRITERIA)
        subject = self.renderer.render("appraisal_subject", lang, period=period.label, late=late,
                                       summary=False).strip()
        return subject, text

    def send_appraisal(self, period: Period, now: datetime, *, late: bool = False) -> OutboundMail:
        appraisals = self.build(period, now)
        subject, text = self.render_appraisal(period, appraisals, late=late)
        supervisor = self.config.team.supervisor
        mail = self._mail("appraisal", period, [supervisor], subject, text, now, self.config.team_language)
        self.store.enqueue(mail)
        self.store.record_job_run(JOB, period.label, at=now, late=late, detail=supervisor)
        self.store.commit()
        log.info("appraisal %s queued for %s%s", period.label, supervisor, " (late)" if late else "")
        return mail

    def send_summary(self, period: Period, appraisals, now: datetime) -> list[OutboundMail]:
        lang = self.config.report.language
        text = self.renderer.render("appraisal_summary", lang, period=period.label, appraisals=appraisals,
                                    averages=team_averages(appraisals), labels=self._labels(lang),
                                    criteria=CRITERIA)
        subject = self.renderer.render("appraisal_subject", lang, period=period.label, late=False,
                                       summary=True).strip()
        mails = [self._mail("appraisal-summary", period, [leader], subject, text, now, lang)
                 for leader in self.config.team.leadership]
        for mail in mails:
            self.store.enqueue(mail)
        self.store.record_job_run(SUMMARY_JOB, period.label, at=now, late=False,
                                  detail=", ".join(self.config.team.leadership))
        self.store.commit()
        log.info("appraisal summary %s queued for %s", period.label, ", ".join(self.config.team.leadership))
        return mails

    def _mail(self, kind: str, period: Period, recipients: list[str], subject: str, text: str, now: datetime,
              lang: str) -> OutboundMail:
        desk = Address(self.config.smtp.from_address, self.config.smtp.from_name)
        mail_id = uuid.uuid4().hex
        # The period is in the Message-ID: a reply to this mail tells which period it appraises.
        return OutboundMail(
            id=mail_id, message_id=f"<{kind}.{period.label}.{mail_id[:16]}@{desk.domain}>", kind=kind, sender=desk,
            recipients=recipients, to_header=[Address(r) for r in recipients], subject=subject, text=text,
            created_at=now, reply_to=desk.email, language=lang, auto_submitted="auto-generated")
