"""The outbox sender: stored mail -> SMTP, exactly as stored.

Each entry already has its Message-ID, so a retry after a crash sends the
same message again, never a different one.  An entry is marked sent (and
committed) right after the server's 250, one at a time: a crash can repeat at
most the one mail whose 250 had arrived but whose mark had not been written.
Temporary failures back off exponentially; permanent ones (5xx, or too many
attempts) are recorded on the ticket and never retried.
"""
from __future__ import annotations

import asyncio
import logging
import re
import zlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address as HeaderAddress
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr

import aiosmtplib

from maildesk.daemon.config import SmtpConfig
from maildesk.daemon.mailbox import tls_context
from maildesk.model import Event, OutboundMail
from maildesk.storage.store import TicketStore

log = logging.getLogger("maildesk.smtp")

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def header_safe(value: str) -> str:
    """One line, no control characters: customer text can never add a header."""
    return _CONTROL.sub(" ", value).strip()


def _header_address(email: str, name: str = "") -> HeaderAddress:
    local, _, domain = email.rpartition("@")
    return HeaderAddress(display_name=header_safe(name), username=local, domain=domain)


def build_message(mail: OutboundMail, load=None) -> Message:
    """The exact message for an outbox entry; ``load(sha256) -> bytes`` reads its parts."""
    if not mail.html and not mail.parts:
        return _build_plain(mail)
    return _build_rich(mail, load)


def _build_plain(mail: OutboundMail) -> Message:
    # Acknowledgements, relays and notifications are most of the traffic: built with the
    # compat32 classes, which encode headers without parsing them back (about 5x faster
    # than EmailMessage's header registry); same headers, same protections.
    msg = MIMEText(mail.text, "plain", "utf-8")
    msg["From"] = _formatted(mail.sender.email, mail.sender.name)
    to = mail.to_header or [type(mail.sender)(r) for r in mail.recipients]
    msg["To"] = ", ".join(_formatted(a.email, a.name) for a in to)
    if mail.reply_to:
        msg["Reply-To"] = _formatted(mail.reply_to, mail.sender.name)
    subject = header_safe(mail.subject)
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8", header_name="Subject")
    _common_headers(msg, mail)
    return msg


def _formatted(email: str, name: str = "") -> str:
    return formataddr((header_safe(name), email), charset="utf-8")


def _common_headers(msg, mail: OutboundMail) -> None:
    msg["Date"] = format_datetime(mail.created_at.astimezone(timezone.utc))
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
    if mail.references:
        msg["References"] = " ".join(mail.references)
    # Loop guards: RFC 3834 for everyone, the Microsoft header for Exchange/Outlook.
    msg["Auto-Submitted"] = mail.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    if mail.ticket:
        msg["X-Helpdesk-Ticket"] = mail.ticket
    msg["Content-Language"] = "zh-CN" if mail.language == "zh" else "en"


def _build_rich(mail: OutboundMail, load) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = _header_address(mail.sender.email, mail.sender.name)
    to = mail.to_header or [type(mail.sender)(r) for r in mail.recipients]
    msg["To"] = [_header_address(a.email, a.name) for a in to]
    if mail.reply_to:
        msg["Reply-To"] = _header_address(mail.reply_to, mail.sender.name)
    msg["Subject"] = header_safe(mail.subject)
    msg.set_content(mail.text, charset="utf-8")
    if mail.html:
        msg.add_alternative(mail.html, subtype="html", charset="utf-8")
    if mail.parts:
        if load is None:
            raise ValueError(f"{mail.message_id} has parts but no way to load them")
        html_part = msg.get_payload()[1] if mail.html else None
        for part in mail.parts:
            maintype, _, subtype = part.content_type.partition("/")
            data = load(part.sha256)
            if part.content_id and html_part is not None:
                # Inline images live beside the HTML that shows them (multipart/related).
                html_part.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{part.content_id}>",
                                      filename=part.filename, disposition="inline")
            elif maintype == "text":
                # Text goes as text with its charset, so every client shows Chinese right.
                msg.add_attachment(data.decode("utf-8"), subtype=subtype, charset="utf-8", filename=part.filename)
            else:
                msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=part.filename)
    # After set_content(), which replaces every Content-* header.
    _common_headers(msg, mail)
    return msg


class OutboxSender:
    def __init__(self, config: SmtpConfig, store: TicketStore,
                 clock=lambda: datetime.now(timezone.utc), on_permanent_failure=None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        # called with (mail, reason) inside the failure's commit: e.g. to tell the supervisor
        self.on_permanent_failure = on_permanent_failure
        self._loop = asyncio.new_event_loop()
        # Why the server could not be reached on the last attempt, or None.
        self.unreachable: str | None = None

    def close(self) -> None:
        self._loop.close()

    def next_due(self) -> datetime | None:
        pending = self.store.pending_outbound()
        times = [m.next_attempt_at or m.created_at for m in pending]
        return min(times) if times else None

    def deliver_due(self, now: datetime | None = None) -> tuple[int, int]:
        """Send every due entry over one connection; returns (sent, failed-or-deferred)."""
        now = now or self.clock()
        due = [m for m in self.store.pending_outbound() if (m.next_attempt_at or m.created_at) <= now]
        if not due:
            return 0, 0
        return self._loop.run_until_complete(self._deliver(due))

    async def _deliver(self, due: list[OutboundMail]) -> tuple[int, int]:
        """Send over up to ``smtp.connections`` connections at once.

        A recipient's mails always travel on the same connection, in the order
        they were queued, so an acknowledgement never overtakes its ticket's
        earlier mail to the same person.
        """
        lanes: list[list[OutboundMail]] = [[] for _ in range(max(1, min(self.config.connections, len(due))))]
        for mail in due:
            lanes[zlib.crc32(",".join(mail.recipients).encode()) % len(lanes)].append(mail)
        results = await asyncio.gather(*(self._deliver_lane(lane) for lane in lanes if lane))
        return sum(r[0] for r in results), sum(r[1] for r in results)

    async def _deliver_lane(self, due: list[OutboundMail]) -> tuple[int, int]:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout_seconds,
            use_tls=c.security == "ssl", start_tls=True if c.security == "starttls" else False,
            tls_context=tls_context(c.ca_file) if c.security != "none" else None,
        )
        sent = problems = 0
        try:
            await client.connect()
            if c.username:
                await client.login(c.username, c.password)
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.unreachable = f"cannot reach SMTP server {c.host}:{c.port}: {_one_line(exc)}"
            client.close()
            log.warning("cannot reach SMTP server %s:%s: %s; %d mail(s) wait in the outbox",
                        c.host, c.port, _one_line(exc), len(due))
            for mail in due:
                self._temporary_failure(mail, f"connect: {_one_line(exc)}")
            self.store.commit()
            return 0, len(due)
        self.unreachable = None
        try:
            for mail in due:
                try:
                    message = build_message(mail, self.store.attachments.get)
                    errors, _ = await client.send_message(message, sender=c.from_address,
                                                          recipients=mail.recipients)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    self._permanent_failure(mail, _refusals(exc.recipients))
                    problems += 1
                except aiosmtplib.SMTPResponseException as exc:
                    if 500 <= exc.code < 600:
                        self._permanent_failure(mail, f"{exc.code} {_one_line(exc.message)}")
                    else:
                        self._temporary_failure(mail, f"{exc.code} {_one_line(exc.message)}")
                    problems += 1
                except (aiosmtplib.SMTPException, OSError) as exc:
                    self._temporary_failure(mail, _one_line(exc))
                    problems += 1
                    self.store.commit()
                    break  # the connection is gone; the rest wait for the next round
                else:
                    refused = {r: e for r, e in errors.items() if not (200 <= e.code < 300)}
                    self._mark_sent(mail, refused)
                    sent += 1
                # Durable right after the server's answer: a crash repeats at most this one mail
                # per connection.  (No await between the answer and this commit.)
                self.store.commit()
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return sent, problems

    # -- outcomes -----------------------------------------------------------------------
    def _mark_sent(self, mail: OutboundMail, refused: dict) -> None:
        now = self.clock()
        note = f"some recipients refused: {_refusals(refused)}" if refused else ""
        self.store.update_outbound(replace(mail, status="sent", sent_at=now, attempts=mail.attempts + 1,
                                           last_error=note, next_attempt_at=None))
        log.info("sent %s %s to %s", mail.kind, mail.message_id, ", ".join(mail.recipients),
                 extra={"ticket": mail.ticket})

    def _temporary_failure(self, mail: OutboundMail, reason: str) -> None:
        attempts = mail.attempts + 1
        if attempts >= self.config.max_attempts:
            self._permanent_failure(replace(mail, attempts=attempts - 1),
                                    f"gave up after {attempts} attempts; last error: {reason}")
            return
        delay = min(timedelta(minutes=2 ** (attempts - 1)), timedelta(minutes=self.config.retry_max_minutes))
        now = self.clock()
        self.store.update_outbound(replace(mail, attempts=attempts, last_error=reason,
                                           next_attempt_at=now + delay))
        log.warning("deferred %s %s (attempt %d): %s; next try in %s", mail.kind, mail.message_id,
                    attempts, reason, delay)

    def _permanent_failure(self, mail: OutboundMail, reason: str) -> None:
        now = self.clock()
        self.store.update_outbound(replace(mail, status="failed", attempts=mail.attempts + 1,
                                           last_error=reason, next_attempt_at=None))
        log.error("could not deliver %s %s to %s: %s", mail.kind, mail.message_id,
                  ", ".join(mail.recipients), reason)
        number = self.store.parse_tag(mail.ticket) if mail.ticket else None
        ticket = self.store.get_ticket(number) if number is not None else None
        if ticket is not None:
            ticket.events.append(Event(at=now, actor="desk", kind="delivery-failed", from_stage=ticket.stage,
                                       to_stage=ticket.stage,
                                       detail=f"{mail.kind} {mail.message_id} to "
                                              f"{', '.join(mail.recipients)}: {reason}"))
            self.store.save_ticket(ticket)
        if self.on_permanent_failure is not None:
            self.on_permanent_failure(mail, reason)


def _refusals(recipients) -> str:
    if isinstance(recipients, dict):
        return "; ".join(f"{r}: {e.code} {_one_line(e.message)}" for r, e in recipients.items())
    return "; ".join(f"{e.recipient}: {e.code} {_one_line(e.message)}" for e in recipients)


def _one_line(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())
