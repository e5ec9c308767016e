"""Monthly work summary (工作总结会议): a digest for the team on the first working day of the month.

It brings to the team's monthly meeting the month's lessons learned, the
recurring problems, the appraisal criteria's team averages and the risks
still open.  It goes to the supervisor and the technicians who signed the
NDA (it quotes customers' subjects), never shows a customer's address, and
is scheduled like the weekly report: exactly once, caught up on start, and
never for a month that ended before the desk existed.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from maildesk.daemon.config import Config
from maildesk.model import Address, OutboundMail, StaffRecord, Ticket
from maildesk.reports.metrics import Recurring, recurring_topics
from maildesk.reports.periods import Period, desk_origin, first_working_day
from maildesk.reports.weekly import LATE_AFTER
from maildesk.templates import Renderer
from maildesk.workflow.selfservice import CRITERIA, merged_scores

log = logging.getLogger("maildesk.monthly")

JOB = "monthly-summary"


@dataclass(frozen=True)
class Lesson:
    tag: str
    subject: str
    assignee: str
    summary: str
    lessons: str


@dataclass(frozen=True)
class OpenRisk:
    tag: str
    subject: str
    stage: str
    at: datetime
    reporter: str
    text: str


@dataclass
class MonthlySummary:
    month: str
    received: int
    closed: int
    lessons: list[Lesson]
    recurring: list[Recurring]
    appraisal_period: str  # the appraisal whose averages are shown ("" when none was scored)
    averages: dict[str, float | None]
    open_risks: list[OpenRisk]


def monthly_summary(month: Period, tickets: list[Ticket], records: list[StaffRecord],
                    technicians: tuple[tuple[str, str], ...]) -> MonthlySummary:
    """The digest of ``month`` from tickets active in it and the staff records.  Pure."""
    start, end = month.start, month.end
    received = [t for t in tickets if start <= t.created_at < end]
    closed = [t for t in tickets if any(e.to_stage == "closed" and e.from_stage != "closed" and start <= e.at < end
                                        for e in t.events)]
    lessons = [Lesson(t.tag, t.subject, t.assignee or "", t.summary, t.lessons)
               for t in sorted(closed, key=lambda t: t.number) if t.lessons]
    # The appraisal of this month, or of the quarter it ends, or the latest one scored before.
    quarter = Period.containing("quarterly", start, month.tz).label
    scored = sorted({r.period for r in records if r.kind == "appraisal" and r.scores})
    period = month.label if month.label in scored else quarter if quarter in scored else \
        next((p for p in reversed(scored) if p < month.label), "")
    averages: dict[str, float | None] = {c: None for c in CRITERIA}
    if period:
        appraisals = [r for r in records if r.kind == "appraisal" and r.period == period]
        per_tech = [merged_scores(appraisals, email)[0] for email, _ in technicians]
        for c in CRITERIA:
            values = [s[c] for s in per_tech if c in s]
            averages[c] = sum(values) / len(values) if values else None
    risks = [OpenRisk(t.tag, t.subject, t.stage, e.at, e.actor, e.detail)
             for t in tickets if t.stage != "closed" for e in t.events if e.kind == "risk" and e.at < end]
    return MonthlySummary(month.label, len(received), len(closed), lessons,
                          recurring_topics(received + [t for t in closed if t not in received]),
                          period, averages, sorted(risks, key=lambda r: r.at))


class MonthlySummaryJob:
    def __init__(self, config: Config, store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer

    def due_at(self, month: Period) -> datetime:
        rc = self.config.report
        return datetime.combine(first_working_day(month.end.astimezone(rc.timezone).date()), rc.time, rc.timezone)

    def recipients(self) -> list[str]:
        team = self.config.team
        found = ([team.supervisor] if team.supervisor else []) + [t.email for t in team.technicians if t.nda_signed]
        return list(dict.fromkeys(found))

    def run_due(self, now: datetime | None = None) -> str | None:
        now = now or datetime.now(timezone.utc)
        if not self.recipients():
            return None
        tz = self.config.report.timezone
        month = Period.containing("monthly", now, tz).previous()
        if now < self.due_at(month):
            month = month.previous()
            if now < self.due_at(month):
                return None
        if self.store.job_run(JOB, month.label) or month.end <= desk_origin(self.store, now):
            return None
        self.send(month, now, late=now - self.due_at(month) > LATE_AFTER)
        return month.label

    def build(self, month: Period) -> MonthlySummary:
        tickets = list(self.store.tickets(with_messages=False, active_since=month.start))
        technicians = tuple((t.email, t.name) for t in self.config.team.technicians)
        return monthly_summary(month, tickets, self.store.staff_records(), technicians)

    def send(self, month: Period, now: datetime, *, late: bool = False) -> list[OutboundMail]:
        summary = self.build(month)
        lang = self.config.team_language
        names = {t.email: t.name for t in self.config.team.technicians}
        text = self.renderer.render("monthly_summary", lang, s=summary, late=late, names=names,
                                    labels=self.renderer.labels("record_levels", lang), criteria=CRITERIA,
                                    stage_names={st: self.renderer.render("stage", lang, stage=st).strip()
                                                 for st in ("received", "diagnosing", "proposed", "executing",
                                                            "feedback", "closed")})
        subject = self.renderer.render("monthly_subject", lang, month=month.label, late=late).strip()
        desk = Address(self.config.smtp.from_address, self.config.smtp.from_name)
        mails = []
        for r in self.recipients():
            mail_id = uuid.uuid4().hex
            mails.append(OutboundMail(
                id=mail_id, message_id=f"<monthly.{month.label}.{mail_id[:16]}@{desk.domain}>", kind="monthly",
                sender=desk, recipients=[r], to_header=[Address(r)], subject=subject, text=text, created_at=now,
                reply_to=desk.email, language=lang, auto_submitted="auto-generated"))
        for mail in mails:
            self.store.enqueue(mail)
        self.store.record_job_run(JOB, month.label, at=now, late=late, detail=", ".join(self.recipients()))
        self.store.commit()
        log.info("monthly summary %s queued for %s%s", month.label, ", ".join(self.recipients()),
                 " (late)" if late else "")
        return mails

