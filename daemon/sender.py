"""The outbox sender: stored mail -> SMTP, exactly as stored.

Each entry already has its Message-ID, so a retry after a crash sends the
same message again, never a different one.  An entry is marked sent (and
committed) right after the server's 250, one at a time: a crash can repeat at
most the one mail whose 250 had arrived but whose mark had not been written.
Temporary failures back off exponentially; permanent ones (5xx, or too many
attempts) are recorded on the ticket and never retried.

Addresses travel in their ASCII form where one names exactly the same mailbox
(an internationalised domain as ``xn--``); the others (a UTF-8 local part, a
domain IDNA cannot encode faithfully) go out with SMTPUTF8, RFC 6531, in a
message with UTF-8 headers, RFC 6532.  A mail that cannot be built or sent
(no SMTPUTF8 at the server, a lost attachment, any error of its own) fails
alone and permanently: it never stops the rest of the outbox.
"""
from __future__ import annotations

import asyncio
import logging
import re
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from email import policy as email_policy
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

# Messages with an internationalised address: UTF-8 headers (RFC 6532), every body part
# base64 or quoted-printable (7bit), so they need SMTPUTF8 but nothing else of the server.
_UTF8_HEADERS = email_policy.default.clone(utf8=True, cte_type="7bit")
_UTF8_WIRE = email_policy.SMTPUTF8.clone(cte_type="7bit")

NO_SMTPUTF8 = "address needs SMTPUTF8 (RFC 6531), which the SMTP server does not offer"


def header_safe(value: str) -> str:
    """One line, no control characters: customer text can never add a header."""
    return _CONTROL.sub(" ", value).strip()


def _header_address(email: str, name: str = "") -> HeaderAddress:
    local, _, domain = email.rpartition("@")
    return HeaderAddress(display_name=header_safe(name), username=local, domain=domain)


# -- addresses on the wire -----------------------------------------------------------------

def wire_address(address: str) -> str:
    """``address`` as it travels: ASCII as it is; an ASCII local part at an internationalised
    domain with the domain in IDNA form (``xn--``); anything else unchanged, needing SMTPUTF8."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return address
    ascii_domain = _idna_domain(domain)
    return f"{local}@{ascii_domain}" if ascii_domain else address


def _idna_domain(domain: str) -> str | None:
    """The ``xn--`` form of ``domain``, or None when no ASCII form names exactly this domain.

    Python's codec is IDNA 2003, whose nameprep maps characters to others or to nothing: a
    zero-width space vanishes, so "ex\u200bample.test" would become example.test, someone
    else's domain.  Only an encoding that decodes back to the very same text is used.
    """
    try:
        encoded = domain.encode("idna")
        faithful = encoded.decode("idna") == domain
    except UnicodeError:
        return None
    return encoded.decode("ascii") if faithful else None


def _addresses(mail: OutboundMail) -> list[str]:
    found = [mail.sender.email, *mail.recipients, *(a.email for a in mail.to_header)]
    return found + [mail.reply_to] if mail.reply_to else found


def _in_wire_form(mail: OutboundMail) -> OutboundMail:
    """``mail`` with every address as it travels (see ``wire_address``)."""
    if all(a.isascii() for a in _addresses(mail)):
        return mail  # nearly every mail: one scan, no copy
    return replace(mail, sender=replace(mail.sender, email=wire_address(mail.sender.email)),
                   recipients=[wire_address(r) for r in mail.recipients],
                   to_header=[replace(a, email=wire_address(a.email)) for a in mail.to_header],
                   reply_to=wire_address(mail.reply_to) if mail.reply_to else mail.reply_to)


# -- building ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outgoing:
    """An outbox entry ready for SMTP: its message and envelope, addresses in wire form."""

    message: Message
    sender: str
    recipients: list[str]
    smtputf8: bool  # an address in the envelope or the headers is UTF-8


def outgoing(mail: OutboundMail, load, envelope_sender: str) -> Outgoing:
    """Message and envelope for an outbox entry; ``load(sha256) -> bytes`` reads its parts."""
    wire = _in_wire_form(mail)
    sender = wire_address(envelope_sender)
    utf8 = not (sender.isascii() and all(a.isascii() for a in _addresses(wire)))
    return Outgoing(_build(wire, load), sender, wire.recipients, utf8)


def build_message(mail: OutboundMail, load=None) -> Message:
    """The exact message for an outbox entry; ``load(sha256) -> bytes`` reads its parts."""
    return _build(_in_wire_form(mail), load)


def _build(mail: OutboundMail, load) -> Message:
    if not all(a.isascii() for a in _addresses(mail)):
        # compat32 cannot write a UTF-8 address at all; the header registry can, with utf8 on.
        return _build_rich(mail, load, _UTF8_HEADERS)
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


def _build_rich(mail: OutboundMail, load, policy=email_policy.default) -> EmailMessage:
    msg = EmailMessage(policy=policy)
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


# What became of one entry on a connection.
_SENT = "sent"
_FAILED = "failed"  # failed or deferred; the connection is fine
_UNSURE = "unsure"  # failed midway for a reason of its own: the connection is reset before reuse
_LOST = "lost"      # the connection is gone


async def _transmit(client: aiosmtplib.SMTP, out: Outgoing) -> tuple[dict, str]:
    if not out.smtputf8:
        return await client.send_message(out.message, sender=out.sender, recipients=out.recipients)
    if not await _offers_smtputf8(client):
        raise aiosmtplib.SMTPNotSupported(NO_SMTPUTF8)
    # Flattened here, not by send_message: it chooses UTF-8 headers from the envelope alone.
    data = out.message.as_bytes(policy=_UTF8_WIRE)
    return await client.sendmail(out.sender, out.recipients, data, mail_options=["SMTPUTF8"])


async def _offers_smtputf8(client: aiosmtplib.SMTP) -> bool:
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            return False  # a server without EHLO has no extensions; sendmail falls back to HELO
    return client.supports_extension("smtputf8")


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """Clear whatever part of a transaction an interrupted mail left: True if the connection is fine."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


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
                outcome = await self._deliver_one(client, mail)
                # Durable right after the server's answer: a crash repeats at most this one mail
                # per connection.  (No await between the answer and this commit.)
                self.store.commit()
                if outcome == _SENT:
                    sent += 1
                    continue
                problems += 1
                if outcome == _LOST or (outcome == _UNSURE and not await _reset(client)):
                    break  # the connection is gone; the rest wait for the next round
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return sent, problems

    async def _deliver_one(self, client: aiosmtplib.SMTP, mail: OutboundMail) -> str:
        """Build and send one entry and record what became of it: _SENT, _FAILED, _UNSURE or _LOST."""
        try:
            out = outgoing(mail, self.store.attachments.get, self.config.from_address)
        except Exception as exc:  # noqa: BLE001 - whatever breaks one mail must not stop the others
            _log_traceback("building", mail)
            self._permanent_failure(mail, f"cannot build the message: {_described(exc)}")
            return _FAILED
        try:
            errors, _ = await _transmit(client, out)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._permanent_failure(mail, _refusals(exc.recipients))
            return _FAILED
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                self._permanent_failure(mail, f"{exc.code} {_one_line(exc.message)}")
            else:
                self._temporary_failure(mail, f"{exc.code} {_one_line(exc.message)}")
            return _FAILED
        except aiosmtplib.SMTPNotSupported as exc:
            # Raised before any command of this mail: the connection serves the next one.
            self._permanent_failure(mail, _one_line(exc))
            return _FAILED
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._temporary_failure(mail, _one_line(exc))
            return _LOST
        except Exception as exc:  # noqa: BLE001 - e.g. an address aiosmtplib refuses to put on the wire
            _log_traceback("sending", mail)
            self._permanent_failure(mail, f"cannot send the message: {_described(exc)}")
            return _UNSURE
        refused = {r: e for r, e in errors.items() if not (200 <= e.code < 300)}
        self._mark_sent(mail, refused)
        return _SENT

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
            try:
                self.on_permanent_failure(mail, reason)
            except Exception as exc:  # noqa: BLE001
                # The failure stays recorded: raising here would leave the entry pending, to fail
                # again on every run and stop the outbox each time.
                log.error("could not report the failure of %s %s: %s", mail.kind, mail.message_id, _described(exc))
                _log_traceback("reporting the failure of", mail)


def _refusals(recipients) -> str:
    if isinstance(recipients, dict):
        return "; ".join(f"{r}: {e.code} {_one_line(e.message)}" for r, e in recipients.items())
    return "; ".join(f"{e.recipient}: {e.code} {_one_line(e.message)}" for e in recipients)


def _log_traceback(doing: str, mail: OutboundMail) -> None:
    # For a developer: the one-line reason is logged and recorded by _permanent_failure already,
    # and a traceback's lines would carry mail data past the log's escaping (cli.setup_logging).
    log.debug("%s %s %s failed", doing, mail.kind, mail.message_id, exc_info=True)


def _described(exc: Exception) -> str:
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())
