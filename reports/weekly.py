"""The weekly report: from the store to text, HTML, charts, CSV and a queued mail.

``WeeklyReportJob.run_due(now)`` asks the Mailman question: "is there a
completed week whose report is due and has no sent record?"  The record and
the queued mails are written in one commit, so the report goes out exactly
once, whether the daemon was running at the time, restarted after, or was
down for days (then it is sent on start and marked late).
"""
from __future__ import annotations

import base64
import csv
import io
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from maildesk.daemon.config import Config
from maildesk.model import Address, OutboundMail, OutboundPart
from maildesk.reports.periods import desk_origin
from maildesk.reports.metrics import Policy, Week, WeeklyReport
from maildesk.storage.base import Store
from maildesk.templates import Renderer

log = logging.getLogger("maildesk.report")

JOB = "weekly-report"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A report sent more than this long after its time says so.
LATE_AFTER = timedelta(hours=1)


def mask_address(address: str) -> str:
    """w***@cust.example: enough to tell customers apart, not to write to them."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def policy_for(config: Config) -> Policy:
    staff = set(config.team.staff_addresses)
    return Policy(first_response_hours=config.procedure.first_response_hours,
                  resolution_hours=config.procedure.resolution_hours,
                  technicians=tuple((t.email, t.name) for t in config.team.technicians), staff=frozenset(staff),
                  internal_domains=frozenset(config.team.internal_domains))


def build_report(store: Store, config: Config, week: Week) -> WeeklyReport:
    # Each store computes it where its data is: in memory for TinyDB, in SQL for PostgreSQL.
    return store.weekly_report(week, policy_for(config))


# The templates render_report uses (``labels()`` reads theirs as templates too).
REPORT_TEMPLATES = ("weekly_report", "weekly_subject", "stage", "suggestion", "record_levels", "report_labels")


def rendered_report(store: Store, config: Config, week: Week, renderer: Renderer, *, late: bool = False,
                    inline_images: bool = False) -> RenderedReport:
    """The week's report, computed by the store and rendered.

    What rendering needs the first time in a process (matplotlib, about a second to load, and
    the report's templates, compiled at first use) loads in a thread meanwhile: while the
    PostgreSQL store computes, this process mostly waits for the server.
    """
    loading = _start_loading(renderer, config.report.language)
    try:
        report = build_report(store, config, week)
    finally:
        loading.join()
    return render_report(report, config, renderer, late=late, inline_images=inline_images)


def _start_loading(renderer: Renderer, lang: str) -> threading.Thread:
    loading = threading.Thread(target=_load_rendering, args=(renderer, lang), name="report-loading", daemon=True)
    loading.start()
    return loading


def _load_rendering(renderer: Renderer, lang: str) -> None:
    try:
        import maildesk.reports.charts  # noqa: F401 - loaded now, used by render_report

        renderer.load([f"{lang}/{key}.txt" for key in REPORT_TEMPLATES] + ["layout/weekly_report.html"])
    except Exception:  # noqa: BLE001 - rendering itself will meet the same trouble and say so
        log.debug("loading the report's rendering ahead failed", exc_info=True)


@dataclass
class RenderedReport:
    report: WeeklyReport
    subject: str
    text: str
    html: str
    charts: list  # of reports.charts.Chart
    csv: bytes


def render_report(report: WeeklyReport, config: Config, renderer: Renderer, *, late: bool = False,
                  inline_images: bool = False) -> RenderedReport:
    """Text, HTML (images by ``cid:``, or as data: URIs for a browser preview), charts and CSV."""
    lang = config.report.language
    tz = config.report.timezone
    show = config.report.show_customer_addresses
    mask = (lambda a: a) if show else mask_address
    names = {t.email: t.name for t in config.team.technicians}
    stage_names = {s: renderer.render("stage", lang, stage=s).strip() for s in report.open_by_stage}
    stage_names["closed"] = renderer.render("stage", lang, stage="closed").strip()
    last_day = report.end.astimezone(tz) - timedelta(days=1)
    period = f"{report.start.astimezone(tz):%Y-%m-%d} – {last_day:%Y-%m-%d} ({tz.key})"
    suggestions = [renderer.render("suggestion", lang, s=s, stage_names=stage_names).strip()
                   for s in report.suggestions]
    common = dict(r=report, period=period, late=late, mask=mask, names=names, stage_names=stage_names,
                  suggestions=suggestions, levels=renderer.labels("record_levels", lang))
    # matplotlib loads in about half a second: only when a report is rendered, not at start-up.
    from maildesk.reports.charts import render_charts

    charts = render_charts(report, lang, renderer)

    def image_src(chart) -> str:
        if inline_images:
            return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")
        return f"cid:{chart.content_id}"

    text = renderer.render("weekly_report", lang, **common)
    html = renderer.render_layout("weekly_report.html", L=renderer.labels("report_labels", lang), charts=charts,
                                  image_src=image_src, lang=lang, **common)
    subject = renderer.render("weekly_subject", lang, week=report.week, period=period, late=late).strip()
    return RenderedReport(report, subject, text, html, charts, ticket_csv(report, config, mask))


# Starts of a cell that a spreadsheet may evaluate: OWASP's list (= + - @, a leading tab or
# carriage return) and the full-width signs, which Excel reads as the ASCII ones.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_text(value: str) -> str:
    """A text cell that a spreadsheet shows as text, never evaluates (OWASP's CSV Injection advice:
    a leading single quote; the csv writer quotes the cell when it needs quoting)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def ticket_csv(report: WeeklyReport, config: Config, mask) -> bytes:
    """One row per ticket received or closed in the week; UTF-8 with BOM so Excel shows Chinese.

    Subjects, summaries and lessons are written by customers and staff: every text cell is made
    inert (``spreadsheet_text``); the figures computed here are written as numbers.
    """
    tz = config.report.timezone
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ticket", "subject", "customer", "stage", "assignee", "priority", "created_at",
                     "first_response_hours", "resolution_hours", "rating", "summary", "lessons"])
    for t in report.tickets_of_week:  # reports.metrics.TicketRow: the hours are the store's
        fr, res = t.first_response_hours, t.resolution_hours
        row = [
            t.tag, t.subject, mask(t.customer), t.stage, t.assignee or "", t.priority,
            t.created_at.astimezone(tz).isoformat(timespec="minutes"),
            "" if fr is None else round(fr, 2), "" if res is None else round(res, 2),
            t.rating or "", t.summary, t.lessons,
        ]
        writer.writerow([spreadsheet_text(cell) if isinstance(cell, str) else cell for cell in row])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def report_mails(rendered: RenderedReport, config: Config, store: Store, now: datetime) -> list[OutboundMail]:
    """One mail per leadership address, through the outbox; parts go to the attachment store."""
    parts = [OutboundPart(c.filename, "image/png", store.attachments.put(c.png), c.content_id, c.alt)
             for c in rendered.charts]
    parts.append(OutboundPart(f"tickets-{rendered.report.week}.csv", "text/csv", store.attachments.put(rendered.csv)))
    desk = Address(config.smtp.from_address, config.smtp.from_name)
    mails = []
    for leader in config.team.leadership:
        mail_id = uuid.uuid4().hex
        mails.append(OutboundMail(
            id=mail_id, message_id=f"<report.{rendered.report.week}.{mail_id[:16]}@{desk.domain}>", kind="report",
            sender=desk, recipients=[leader], to_header=[Address(leader)], subject=rendered.subject,
            text=rendered.text, html=rendered.html, created_at=now, language=config.report.language,
            auto_submitted="auto-generated", parts=parts))
    return mails


class WeeklyReportJob:
    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self._loading: threading.Thread | None = None

    def load_rendering(self) -> None:
        """Load what rendering needs now, in a thread, once (the daemon calls this when it first has
        nothing to do): then even its first report is made as fast as any later one."""
        if self._loading is None and self.config.team.leadership:
            self._loading = _start_loading(self.renderer, self.config.report.language)

    def due_at(self, week: Week) -> datetime:
        """When the report of ``week`` is due: the configured weekday and time after it."""
        rc = self.config.report
        day = week.end.date() + timedelta(days=WEEKDAYS.index(rc.weekday))
        return datetime.combine(day, rc.time, rc.timezone)

    def run_due(self, now: datetime | None = None) -> str | None:
        """Queue the last complete week's report if it is due and not yet sent; returns its week."""
        now = now or datetime.now(timezone.utc)
        desk_origin(self.store, now)  # remembered at the first start, whoever reads reports
        if not self.config.team.leadership:
            return None
        week = Week.last_complete(now, self.config.report.timezone)
        if now < self.due_at(week):
            week = week.previous()  # this week's report is not due yet: is last week's still owed?
            if now < self.due_at(week) or self.store.job_run(JOB, week.label):
                return None
        if self.store.job_run(JOB, week.label):
            return None
        if week.end <= desk_origin(self.store, now):
            return None  # the desk did not exist yet that week: there is nothing to report, late or not
        late = now - self.due_at(week) > LATE_AFTER
        self.send(week, now, late=late)
        return week.label

    def send(self, week: Week, now: datetime, *, late: bool = False) -> list[OutboundMail]:
        rendered = rendered_report(self.store, self.config, week, self.renderer, late=late)
        mails = report_mails(rendered, self.config, self.store, now)
        for mail in mails:
            self.store.enqueue(mail)
        self.store.record_job_run(JOB, week.label, at=now, late=late,
                                  detail=", ".join(self.config.team.leadership))
        self.store.commit()
        log.info("weekly report %s queued for %s%s", week.label, ", ".join(self.config.team.leadership),
                 " (late)" if late else "")
        return mails
