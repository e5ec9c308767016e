"""The process: wires the steps together and owns the main loop.

``Desk.run_once()`` drains the inbox and the outbox once; ``Desk.run()`` keeps
doing so, waiting in IMAP IDLE (or polling) in between, reconnecting with
capped exponential backoff when a server goes away.
"""
from __future__ import annotations

import logging
import time

import schedule
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from maildesk.daemon.config import Config
from maildesk.daemon.credentials import TokenServiceUnavailable
from maildesk.daemon.intake import BatchResult, IntakeRunner
from maildesk.daemon.mailbox import CONNECTION_ERRORS, Mailbox, MailboxUnavailable
from maildesk.daemon.parsing import BatchParser, parser_for
from maildesk.daemon.sender import OutboxSender
from maildesk.daemon.timers import TimerRunner
from maildesk.reports.weekly import WeeklyReportJob
from maildesk.storage.base import Store, open_store
from maildesk.templates import default_renderer

log = logging.getLogger("maildesk.daemon")

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# How often scheduled work is looked at.  What is due is decided from the
# store (a week without a sent report, a ticket without its reminder event),
# never from this interval, so restarts and clock jumps cannot double anything.
JOBS_EVERY_SECONDS = 30
HOUSEKEEPING_EVERY_SECONDS = 6 * 3600


@dataclass
class RunSummary:
    handled: int = 0
    quarantined: int = 0
    sent: int = 0
    deferred: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # From the first fetch to the last server reply of the run (monotonic seconds).
    seconds: float = 0.0

    def add(self, batch: BatchResult) -> None:
        self.handled += batch.handled
        self.quarantined += batch.quarantined
        for k, v in batch.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + v


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Desk:
    # Whether the next batch is handled while the outbox is sent (False: one after the other,
    # for tests that compare the two).
    overlap_intake = True

    def __init__(self, config: Config, clock: Callable[[], datetime] = _utc_now, *,
                 store: Store | None = None, parser: BatchParser | None = None) -> None:
        # ``clock`` is the desk's idea of now for tickets, timers and reports (tests set it);
        # ``parser`` one the command line started before loading the desk (the desk closes it).
        self.config = config
        self.clock = clock
        # The store the config names (storage/base.py); `run` passes one it opened as a standby.
        self.store = store if store is not None else open_store(config)
        self.mailbox = Mailbox(config.imap)
        self.sender = OutboxSender(config.smtp, self.store, clock=clock,
                                   on_permanent_failure=self._tell_supervisor_of_failure)
        self.intake = IntakeRunner(config, self.store, self.mailbox, default_renderer(), clock=clock,
                                   parser=parser if parser is not None else parser_for(config.imap),
                                   outbox_in_flight=lambda: self.sender.in_flight)
        self.timers = TimerRunner(config, self.store, default_renderer(), clock=clock)
        self.weekly_report = WeeklyReportJob(config, self.store, default_renderer())
        # Imported here, not with the module: `run` installs its signal handlers before building the Desk.
        from maildesk.parsers import reply
        from maildesk.reports.appraisal import AppraisalJob
        from maildesk.reports.monthly import MonthlySummaryJob
        from maildesk.workflow.similar import index_for

        self.appraisal = AppraisalJob(config, self.store, default_renderer())
        self.monthly_summary = MonthlySummaryJob(config, self.store, default_renderer())
        # The closed cases a new ticket is compared with: read once, at start, not at the first mail;
        # so are the reply splitter's largest patterns built.
        index_for(self.store)
        reply.prepare()
        self.scheduler = schedule.Scheduler()
        self.scheduler.every(JOBS_EVERY_SECONDS).seconds.do(self.run_jobs)
        self.scheduler.every(HOUSEKEEPING_EVERY_SECONDS).seconds.do(self.housekeeping)
        if not config.procedure.require_authenticated_staff and config.team.staff_addresses:
            log.warning("security.require_authenticated_staff = false: staff commands are obeyed on the bare "
                        "From line, which anyone can forge; set security.authserv_id and remove that line")

    def _tell_supervisor_of_failure(self, failed, reason: str) -> None:
        """A mail that can never be delivered is reported to the supervisor (once, never about itself)."""
        supervisor = self.config.team.supervisor
        if not supervisor or supervisor in failed.recipients or failed.kind == "failure-report":
            return
        import uuid

        from maildesk.model import Address, OutboundMail

        lang = self.config.team_language
        desk = Address(self.config.smtp.from_address, self.config.smtp.from_name)
        mail_id = uuid.uuid4().hex
        text = default_renderer().render("delivery_failed", lang, tag=failed.ticket, kind=failed.kind,
                                         recipients=", ".join(failed.recipients), subject=failed.subject,
                                         reason=reason, message_id=failed.message_id)
        self.store.enqueue(OutboundMail(
            id=mail_id, message_id=f"<failure.{mail_id[:16]}@{desk.domain}>", kind="failure-report", sender=desk,
            recipients=[supervisor], to_header=[Address(supervisor)], subject=failed.subject, text=text,
            created_at=self.clock(), ticket=failed.ticket, language=lang, auto_submitted="auto-generated"))

    def close(self) -> None:
        self.intake.parser.close()
        self.mailbox.close()
        self.sender.close()
        self.store.close()

    def __enter__(self) -> "Desk":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one pass -----------------------------------------------------------------------
    def drain_inbox(self, summary: RunSummary, should_stop: Callable[[], bool] = lambda: False) -> None:
        if should_stop():
            return
        batch = self.intake.run_batch()
        summary.add(batch)
        while batch.handled and not should_stop():
            # Acknowledge as we go: customers should not wait for a big backlog.  While the
            # SMTP server takes this batch's mail, the next batch is handled in the waits.
            following = self.intake.begin_batch() if self.overlap_intake else None
            self.deliver_outbox(summary, meanwhile=following.step if following else lambda: None)
            batch = following.finish() if following else self.intake.run_batch()
            summary.add(batch)

    def deliver_outbox(self, summary: RunSummary, meanwhile: Callable[[], None] = lambda: None) -> None:
        self._prepare_smtp_login()
        sent, deferred = self.sender.deliver_due(meanwhile=meanwhile)
        summary.sent += sent
        summary.deferred += deferred

    def _prepare_smtp_login(self) -> None:
        """Renew an OAuth2 token here, before the parallel SMTP lanes need it.

        A refused refresh then stops the desk from this one place (CredentialsRefused, exit 4);
        a token endpoint that cannot be reached is left to the sender, which defers the mail as
        for any SMTP outage.
        """
        credentials = self.config.smtp.credentials
        due = self.sender.next_due()
        if credentials is None or due is None or due > self.clock():
            return
        try:
            credentials.prepare()
        except TokenServiceUnavailable:
            pass

    def run_jobs(self) -> None:
        """Reminders, SLA alerts and the weekly report, whatever is due now."""
        self.timers.run_due()
        self.weekly_report.run_due(self.clock())
        self.appraisal.run_due(self.clock())
        self.monthly_summary.run_due(self.clock())

    def housekeeping(self) -> None:
        now = self.clock()
        removed = self.store.prune(now)
        archived = self.store.archive_closed(now - timedelta(days=self.config.archive_after_days))
        self.store.commit()
        if archived:
            # Without a fresh snapshot the next start would load the archived tickets again.
            self.store.checkpoint()
            log.info("housekeeping: %d closed ticket(s) moved to the archive", archived)
        if any(removed.values()):
            log.info("housekeeping: forgot %(processed)d processed mail keys, %(outbox)d sent outbox entries, "
                     "%(acks)d quiet senders' counters", removed)

    def run_once(self) -> RunSummary:
        """Handle every waiting mail, run due timers, send every due outbox entry, then return."""
        summary = RunSummary()
        self.mailbox.connect()
        started = time.monotonic()
        self.drain_inbox(summary)
        self.run_jobs()
        self.deliver_outbox(summary)
        summary.seconds = time.monotonic() - started
        self.housekeeping()
        return summary

    # -- the daemon -----------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> RunSummary:
        summary = RunSummary()
        backoff = BACKOFF_START_SECONDS
        outage: str | None = None
        self.run_jobs()  # a report or reminder missed while the daemon was down goes out now
        self.housekeeping()
        while not should_stop():
            try:
                if not self.mailbox.connected:
                    self.mailbox.connect()
                    if outage:
                        log.info("IMAP server reachable again; resuming")
                    outage = None
                    backoff = BACKOFF_START_SECONDS
                self.drain_inbox(summary, should_stop)
                self.scheduler.run_pending()
                self.deliver_outbox(summary)
                if should_stop():
                    break
                self.weekly_report.load_rendering()  # while the desk waits: its first report is then no slower
                self.mailbox.wait_for_mail(self._wait_seconds(), should_stop)
            except (MailboxUnavailable, *CONNECTION_ERRORS) as exc:
                self.mailbox.close()
                reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                if outage is None:
                    # One line per outage, not one per retry.
                    log.warning("IMAP connection lost: %s; retrying with backoff up to %ds",
                                reason, BACKOFF_MAX_SECONDS)
                outage = reason
                self.scheduler.run_pending()
                self.deliver_outbox(summary)
                _sleep(backoff, should_stop)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        return summary

    def _wait_seconds(self) -> float:
        wait = min(self.config.imap.poll_seconds, max(0.05, self.scheduler.idle_seconds or 0.05))
        due = self.sender.next_due()
        if due is not None:
            wait = min(wait, max(0.05, (due - self.clock()).total_seconds()))
        return wait


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, deadline - time.monotonic()))
