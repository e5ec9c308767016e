"""The outbox sender: stored mail -> SMTP, exactly as stored.

Each entry already has its Message-ID, so a retry after a crash sends the
same message again, never a different one.  Right after the server's 250 the
entry's "sent" line goes to the delivery log (one ``write()``, which a kill
cannot undo) and the store is committed once per ``MARKS_PER_COMMIT`` marks,
not once per mail: a store commit ends in an fsync, which cost more than the
SMTP transaction itself.  A crash can still repeat at most the one mail per
connection whose 250 had arrived but whose line had not been written (see
``storage/delivery_log.py``).
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
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from email import policy as email_policy
from email.headerregistry import Address as HeaderAddress
from email.charset import Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr

import aiosmtplib

from maildesk.daemon.config import SmtpConfig
from maildesk.daemon.mailbox import tls_context
from maildesk.model import Event, OutboundMail
from maildesk.parsers.thread_index import thread_headers
from maildesk.storage.store import TicketStore

log = logging.getLogger("maildesk.smtp")

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")

# Messages with an internationalised address: UTF-8 headers (RFC 6532), every body part
# base64 or quoted-printable (7bit), so they need SMTPUTF8 but nothing else of the server.
_UTF8_HEADERS = email_policy.default.clone(utf8=True, cte_type="7bit")
_UTF8_WIRE = email_policy.SMTPUTF8.clone(cte_type="7bit")

NO_SMTPUTF8 = "address needs SMTPUTF8 (RFC 6531), which the SMTP server does not offer"

# Sent marks made durable together: one store commit (one fsync) per this many mails and at the
# end of every round.  Only a power loss, never a kill, can repeat more than one mail per connection.
MARKS_PER_COMMIT = 100


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
    # The message's bytes as they travel, where the fast writer applies (plain ASCII mail); else None.
    wire: bytes | None = None


def outgoing(mail: OutboundMail, load, envelope_sender: str) -> Outgoing:
    """Message and envelope for an outbox entry; ``load(sha256) -> bytes`` reads its parts."""
    wire = _in_wire_form(mail)
    sender = wire_address(envelope_sender)
    utf8 = not (sender.isascii() and all(a.isascii() for a in _addresses(wire)))
    message = _build(wire, load)
    return Outgoing(message, sender, wire.recipients, utf8, None if utf8 else plain_wire_bytes(message))


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


_UTF8 = Charset("utf-8")
# RFC 5322's recommended line length, which Header and the generator fold to.
MAX_HEADER_LINE = 78


class PlainText(MIMENonMultipart):
    """A UTF-8 text/plain message, byte for byte what ``MIMEText(text, "plain", "utf-8")`` makes.

    MIMEText writes its Content-Type and then parses it back twice to set the charset
    again; made from the same library parts directly it costs a seventh as much.
    """

    def __init__(self, text: str) -> None:
        super().__init__("text", "plain", charset="utf-8")
        self["Content-Transfer-Encoding"] = "base64"
        self.set_payload(_UTF8.body_encode(text))


def _build_plain(mail: OutboundMail) -> Message:
    # Acknowledgements, relays and notifications are most of the traffic: built with the
    # compat32 classes, which encode headers without parsing them back (about 5x faster
    # than EmailMessage's header registry); same headers, same protections.
    msg = PlainText(mail.text)
    msg["From"] = _formatted(mail.sender.email, mail.sender.name)
    to = mail.to_header or [type(mail.sender)(r) for r in mail.recipients]
    msg["To"] = ", ".join(_formatted(a.email, a.name) for a in to)
    if mail.reply_to:
        msg["Reply-To"] = _formatted(mail.reply_to, mail.sender.name)
    msg["Subject"] = _encoded("Subject", header_safe(mail.subject))
    _common_headers(msg, mail)
    return msg


def _encoded(name: str, value: str) -> str | Header:
    """A compat32 header value: ASCII as it is, else what ``Header(value, "utf-8")`` writes.

    A short value is one encoded word, made here without Header's folding pass (a
    subject or thread topic costs half a mail's building through it); a longer one
    is a Header, folded by the generator.
    """
    if value.isascii():
        return value
    word = _UTF8.header_encode(value)
    return word if len(name) + 2 + len(word) <= MAX_HEADER_LINE else Header(value, "utf-8", header_name=name)


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
    for name, value in thread_headers(mail):  # Outlook's conversation view (Thread-Topic, Thread-Index)
        msg[name] = value if isinstance(msg, EmailMessage) else _encoded(name, value)
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


_WIRE_POLICY = compat32.clone(linesep="\r\n")


def plain_wire_bytes(message: Message) -> bytes | None:
    """The bytes of a single-part compat32 message as the generator would write them, or None.

    Acknowledgements and notifications are most of the traffic.  The email
    generator re-folds every header through ``Header.encode`` (about a third
    of the cost of sending one); a short ASCII header folds to itself, so only
    the others (an encoded subject, long References) go through the policy.
    """
    if not isinstance(message, PlainText):
        return None
    payload = message.get_payload()
    if not isinstance(payload, str) or not payload.isascii():
        return None
    lines = []
    for name, value in message.items():
        if isinstance(value, str) and value.isascii() and len(name) + len(value) <= 76 and \
                "\n" not in value and "\r" not in value:
            lines.append(f"{name}: {value}\r\n")
        else:
            lines.append(_WIRE_POLICY.fold(name, value))
    head = "".join(lines)
    if not head.isascii():
        return None
    body = payload.replace("\r\n", "\n").replace("\n", "\r\n")
    if body and not body.endswith("\r\n"):
        body += "\r\n"
    return (head + "\r\n" + body).encode("ascii")


class _Pipelined(asyncio.Protocol):
    """Replies of a connection on which the commands of a mail travel together (RFC 2920 PIPELINING).

    aiosmtplib reads one reply per command written and drops bytes that come
    while no read is pending, so it cannot pipeline.  After its connect,
    EHLO, STARTTLS and login, the transport is handed to this protocol for the
    mail transactions and given back for QUIT.

    One round trip per mail: a mail's content goes out together with the
    next mail's MAIL, RCPT and DATA (RFC 2920 lets the content open a group).
    The next mail's content is still written only after this one's final
    reply has been read and its mark logged, so at most one accepted message
    per connection can lack its mark.  ``announced`` names the mail whose
    envelope is on the wire ahead of its turn.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._replies: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._message: list[str] = []
        self.announced: str | None = None

    def _put(self, item) -> None:
        self._replies.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end + 1]).rstrip(b"\r\n")
            del self._buffer[:end + 1]
            try:
                code = int(line[:3])
            except ValueError:
                # Out of step with the server: the connection is given up (a retry starts afresh).
                self._put(aiosmtplib.SMTPException(f"malformed reply: {_one_line(line)}"))
                continue
            self._message.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                self._put(aiosmtplib.SMTPResponse(code, "\n".join(self._message)))
                self._message = []

    def eof_received(self) -> bool:
        self._put(aiosmtplib.SMTPServerDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._put(aiosmtplib.SMTPServerDisconnected(f"connection lost: {exc or 'closed'}"))

    async def reply(self, timeout: float) -> aiosmtplib.SMTPResponse:
        # A future and a timeout scope, not wait_for on a queue: no task per reply.
        while not self._replies:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the server's reply") from None
            finally:
                self._waiter = None
        found = self._replies[0]
        if isinstance(found, Exception):
            raise found  # left in place: every later read fails the same way
        self._replies.popleft()
        return found


_DOT_LINE = re.compile(rb"(?m)^\.")
_UNSAFE_IN_COMMAND = re.compile(r"[\s<>\x00-\x1f\x7f]")


def _envelope(out: Outgoing, sized: bool) -> bytes:
    """MAIL, RCPT and DATA of a plain mail, as one write."""
    for address in (out.sender, *out.recipients):
        # A space or line break on a command line could smuggle parameters or commands.
        if _UNSAFE_IN_COMMAND.search(address) or not address.isascii():
            raise ValueError(f"address {address!r} cannot be put on an SMTP command line")
    size = f" SIZE={len(out.wire)}" if sized else ""
    commands = [f"MAIL FROM:<{out.sender}>{size}"] + [f"RCPT TO:<{r}>" for r in out.recipients] + ["DATA"]
    return ("\r\n".join(commands) + "\r\n").encode("ascii")


def _announceable(following: Outgoing | None, sized: bool) -> bytes | None:
    """The envelope of the next mail, if it can ride along with this one's content."""
    if following is None or following.wire is None or following.smtputf8:
        return None
    try:
        return _envelope(following, sized)
    except ValueError:
        return None  # it fails on its own turn, with its own reason


async def _send_pipelined(session: _Pipelined, transport, out: Outgoing, mail_id: str, timeout: float,
                          sized: bool, following: tuple[str, Outgoing] | None = None,
                          meanwhile=lambda: None) -> tuple[dict, str]:
    """One transaction; outcomes and exceptions as aiosmtplib's ``sendmail``.

    ``following``: (id, message) of the mail to be sent next on this connection, whose
    envelope is written together with this mail's content.  ``meanwhile`` runs while the
    server takes the content (the desk builds the mail after next).
    """
    if session.announced == mail_id:
        session.announced = None  # its MAIL, RCPT and DATA went out with the mail before
    else:
        transport.write(_envelope(out, sized))
    body = _DOT_LINE.sub(b"..", out.wire)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    recipients = out.recipients
    mail = await session.reply(timeout)
    rcpts = [await session.reply(timeout) for _ in recipients]
    start = await session.reply(timeout)
    refused = {r: e for r, e in zip(recipients, rcpts) if not 200 <= e.code < 300}
    if start.code == 354 and (mail.code != 250 or len(refused) == len(recipients)):
        # RFC 2920: a server may say 354 although the envelope failed; end the empty message.
        transport.write(b".\r\n")
        await session.reply(timeout)
        start = aiosmtplib.SMTPResponse(554, "no valid recipients")
    if start.code != 354:
        transport.write(b"RSET\r\n")
        await session.reply(timeout)
        if mail.code != 250:
            raise aiosmtplib.SMTPResponseException(mail.code, mail.message)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(e.code, e.message, r) for r, e in refused.items()])
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    then = _announceable(following[1], sized) if following is not None else None
    transport.write(body + b".\r\n" + (then or b""))
    if then is not None:
        session.announced = following[0]
    meanwhile()
    done = await session.reply(timeout)
    if done.code != 250:
        raise aiosmtplib.SMTPDataError(done.code, done.message)
    return refused, done.message


async def _transmit(client: aiosmtplib.SMTP, out: Outgoing, pipeline=None, mail_id: str = "",
                    following: tuple[str, Outgoing] | None = None, meanwhile=lambda: None) -> tuple[dict, str]:
    data = out.wire
    if data is not None and pipeline is not None:
        session, transport = pipeline
        return await _send_pipelined(session, transport, out, mail_id, client.timeout or 60,
                                     client.supports_extension("size"), following, meanwhile)
    if pipeline is not None:
        # Rich or SMTPUTF8 mail goes through aiosmtplib: it reads the connection meanwhile.
        session, transport = pipeline
        transport.set_protocol(client.protocol)
        try:
            return await _transmit(client, out)
        finally:
            transport.set_protocol(session)
    if not out.smtputf8:
        if data is not None:
            return await client.sendmail(out.sender, out.recipients, data)
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


async def _pipeline_for(client: aiosmtplib.SMTP):
    """(replies, transport) when the server offers PIPELINING, else None (one command at a time)."""
    try:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
    except (aiosmtplib.SMTPException, OSError):
        return None  # HELO only: aiosmtplib's sendmail knows what to do
    if not client.supports_extension("pipelining") or client.protocol is None:
        return None
    transport = client.protocol.transport
    if transport is None:
        return None
    session = _Pipelined()
    transport.set_protocol(session)
    return session, transport


async def _reset(client: aiosmtplib.SMTP, pipeline=None) -> bool:
    """Clear whatever part of a transaction an interrupted mail left: True if the connection is fine."""
    if pipeline is not None:
        session, transport = pipeline
        if session.announced is not None:
            return False  # the server reads the next mail's content now: RSET would be part of it
        try:
            transport.write(b"RSET\r\n")
            return (await session.reply(client.timeout or 60)).code == 250
        except (aiosmtplib.SMTPException, OSError):
            return False
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
        self._log = store.delivery_log()  # a file beside a TinyDB store, a table in PostgreSQL
        self._marks = 0  # sent marks not yet in a store commit
        # Ids of the entries of the round being sent: their stored versions are the sender's to change.
        self.in_flight: frozenset[str] = frozenset()
        # Now, before intake touches the outbox (a pending digest grows): what a killed desk had sent.
        self._recover()

    def close(self) -> None:
        self._loop.close()
        self._log.close()

    def _recover(self) -> None:
        """Fold what a previous process logged as accepted into the store."""
        found = self._log.read()
        folded = 0
        for mail_id, at in found.sent.items():
            mail = self.store.outbound(mail_id)
            if mail is not None and mail.status == "pending":
                self.store.update_outbound(replace(mail, status="sent", sent_at=at, attempts=mail.attempts + 1,
                                                   next_attempt_at=None))
                folded += 1
        for mail_id in found.uncertain:
            mail = self.store.outbound(mail_id)
            if mail is not None and mail.status == "pending":
                log.warning("%s %s was being sent when the desk stopped; it is sent again (it may arrive twice)",
                            mail.kind, mail.message_id, extra={"ticket": mail.ticket})
        if folded:
            log.info("%d mail(s) the SMTP server accepted before the desk stopped are marked sent", folded)
        self._commit_marks()

    def _commit_marks(self) -> None:
        # No await between a mark and this commit's end: the log is emptied only of marks the store holds.
        self.store.commit()
        self._log.clear()
        self._marks = 0

    def next_due(self) -> datetime | None:
        pending = self.store.pending_outbound()
        times = [m.next_attempt_at or m.created_at for m in pending]
        return min(times) if times else None

    def deliver_due(self, now: datetime | None = None, meanwhile: Callable[[], None] = lambda: None
                    ) -> tuple[int, int]:
        """Send every due entry; returns (sent, failed-or-deferred).

        ``meanwhile`` is called while the server takes a mail's content: a short piece of
        other work (the next batch's intake) that must not raise and may change the store,
        but not the entries of this round (``in_flight``), whose outcomes are being written.
        """
        now = now or self.clock()
        due = [m for m in self.store.pending_outbound() if (m.next_attempt_at or m.created_at) <= now]
        if not due:
            return 0, 0
        self.in_flight = frozenset(m.id for m in due)
        try:
            return self._loop.run_until_complete(self._deliver(due, meanwhile))
        finally:
            self.in_flight = frozenset()

    async def _deliver(self, due: list[OutboundMail], meanwhile: Callable[[], None] = lambda: None
                       ) -> tuple[int, int]:
        """Send over up to ``smtp.connections`` connections at once.

        A recipient's mails always travel on the same connection, in the order
        they were queued, so an acknowledgement never overtakes its ticket's
        earlier mail to the same person.
        """
        lanes: list[list[OutboundMail]] = [[] for _ in range(max(1, min(self.config.connections, len(due))))]
        for mail in due:
            lanes[zlib.crc32(",".join(mail.recipients).encode()) % len(lanes)].append(mail)
        started = time.monotonic()
        try:
            results = await asyncio.gather(*(self._deliver_lane(lane, meanwhile) for lane in lanes if lane))
        finally:
            self._commit_marks()
        sent, problems = sum(r[0] for r in results), sum(r[1] for r in results)
        if sent:
            log.info("sent %d of %d due mail(s) (%s) over %d connection(s) in %.2f s%s", sent, len(due),
                     ", ".join(f"{k} {v}" for k, v in sorted(Counter(m.kind for m in due).items())),
                     len([lane for lane in lanes if lane]), time.monotonic() - started,
                     f"; {problems} failed or deferred" if problems else "")
        return sent, problems

    async def _deliver_lane(self, due: list[OutboundMail], meanwhile: Callable[[], None] = lambda: None
                            ) -> tuple[int, int]:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout_seconds,
            use_tls=c.security == "ssl", start_tls=True if c.security == "starttls" else False,
            tls_context=tls_context(c.ca_file) if c.security != "none" else None,
        )
        sent = problems = 0
        try:
            await client.connect()
            if c.credentials is not None:  # a password or an OAuth2 token; none: no AUTH
                await c.credentials.smtp_login(client)
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
        pipeline = await _pipeline_for(client)
        try:
            # Mails are built ahead: the next one's envelope goes out with this one's content
            # (_send_pipelined), and the one after it is built while the server takes this one.
            waiting = iter(due)
            built: deque[tuple[OutboundMail, Outgoing | None]] = deque()

            def build_ahead() -> None:
                while len(built) < 2 and (mail := next(waiting, None)) is not None:
                    built.append(self._built(mail))

            def while_the_server_works() -> None:
                build_ahead()
                meanwhile()

            build_ahead()
            while built:
                mail, out = built.popleft()
                following = built[0] if built else None
                if out is None:
                    build_ahead()
                    outcome = _FAILED  # could not be built: recorded by _built
                else:
                    outcome = await self._deliver_one(
                        client, mail, out, pipeline,
                        (following[0].id, following[1]) if following is not None and following[1] else None,
                        meanwhile=while_the_server_works)
                    build_ahead()  # if the mail failed before its content went out
                if outcome == _SENT:
                    # The mark is in the delivery log already (a kill cannot undo it); the store
                    # takes a batch of them per commit.
                    sent += 1
                    self._marks += 1
                    if self._marks >= MARKS_PER_COMMIT:
                        self._commit_marks()
                    continue
                # Failures are rare and carry ticket events and reports: durable at once, as always.
                self._commit_marks()
                problems += 1
                if outcome == _LOST or (outcome == _UNSURE and not await _reset(client, pipeline)):
                    break  # the connection is gone; the rest wait for the next round
        finally:
            if pipeline is not None and pipeline[0].announced is not None:
                # A mail's envelope is out ahead of its turn and the server waits for its content:
                # only dropping the connection ends that without a message.
                client.close()
            else:
                if pipeline is not None:
                    pipeline[1].set_protocol(client.protocol)  # aiosmtplib says QUIT
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return sent, problems

    def _built(self, mail: OutboundMail) -> tuple[OutboundMail, Outgoing | None]:
        """(mail, its message), or (mail, None) when it cannot be built (recorded as failed)."""
        try:
            return mail, outgoing(mail, self.store.attachments.get, self.config.from_address)
        except Exception as exc:  # noqa: BLE001 - whatever breaks one mail must not stop the others
            _log_traceback("building", mail)
            self._permanent_failure(mail, f"cannot build the message: {_described(exc)}")
            return mail, None

    async def _deliver_one(self, client: aiosmtplib.SMTP, mail: OutboundMail, out: Outgoing, pipeline=None,
                           following: tuple[str, Outgoing] | None = None, meanwhile=lambda: None) -> str:
        """Send one entry and record what became of it: _SENT, _FAILED, _UNSURE or _LOST."""
        self._log.sending(mail.id)
        try:
            errors, _ = await _transmit(client, out, pipeline, mail.id, following, meanwhile)
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
        self._log.sent(mail.id, now)  # first: from here on a kill cannot make this mail go out again
        note = f"some recipients refused: {_refusals(refused)}" if refused else ""
        self.store.update_outbound(replace(mail, status="sent", sent_at=now, attempts=mail.attempts + 1,
                                           last_error=note, next_attempt_at=None))
        # Per mail only in debug: at info, one line per round (``_deliver``); a line per mail cost
        # as much as a fifth of sending it.  The outbox and the ticket keep what went where.
        log.debug("sent %s %s to %s", mail.kind, mail.message_id, ", ".join(mail.recipients),
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
