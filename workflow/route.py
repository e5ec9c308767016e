"""Which ticket a mail belongs to, and in what role its sender acts.

Pure: the store is only read through the narrow ``TicketLookup`` protocol.

A customer reaches only their own tickets.  A tag or a Message-ID that leads
to somebody else's ticket is not enough to join it: the mail opens a new
ticket instead, and nothing of the other ticket is disclosed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from maildesk.model import InboundMail, OutboundMail, Ticket
from maildesk.parsers.subject import find_tags
from maildesk.parsers.thread_index import ticket_for

_VALID_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")
_MAILER_DAEMON = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
_UNQUALIFIED_DAEMON = re.compile(r"^(mailer-daemon|postmaster)(@[^.@]+)?$")  # no domain, or a bare host name


def _no_sender_reason(mail: InboundMail) -> str:
    """Why the mail names nobody to answer, in the words of the parser's finding when it has one."""
    if mail.sender is not None:
        return f"no usable sender address (From {mail.sender.email!r} has no valid domain)"
    found = next((d for d in mail.defects if d.startswith(("From ", "no From"))), "")
    return f"no usable sender address ({found})" if found else "no usable sender address (From)"


def is_plain_address(address: str) -> bool:
    """No invisible, control or compatibility characters: what you see is the whole address."""
    if unicodedata.normalize("NFKC", address) != address:
        return False
    return not any(unicodedata.category(ch)[0] in "CZ" for ch in address)


class TicketLookup(Protocol):
    def get_ticket(self, number: int) -> Ticket | None: ...
    def ticket_for_message_id(self, message_id: str) -> int | None: ...
    def outbound_by_message_id(self, message_id: str) -> OutboundMail | None: ...


@dataclass(frozen=True)
class Directory:
    """Who is who, from the configuration."""

    support_address: str
    prefix: str
    technicians: frozenset[str]
    supervisor: str | None
    leadership: frozenset[str]
    # Technicians who signed the NDA: only they may handle customer tickets.
    nda_signed: frozenset[str] = frozenset()
    names: tuple[tuple[str, str], ...] = ()  # (address, name) of every technician
    # Domains of the company's own people (team.internal_domains): their requests are internal.
    internal_domains: frozenset[str] = frozenset()

    def is_internal(self, address: str) -> bool:
        """A colleague (内部员工) rather than an external customer (外部客户)."""
        return address.rpartition("@")[2] in self.internal_domains

    def name_of(self, address: str) -> str:
        return dict(self.names).get(address, address)

    def find_technician(self, who: str) -> str | None:
        """An address from an address or a (case-insensitive) name."""
        who = who.strip().strip("<>").lower()
        if who in self.technicians:
            return who
        for address, name in self.names:
            if name.lower() == who:
                return address
        return None

    def role_of(self, address: str) -> str:
        if self.is_own_address(address):
            return "self"
        if not is_plain_address(address):
            # Look-alike or invisible characters can only ever make a customer: a staff role
            # is given to the exact configured address and nothing that resembles it.
            return "customer"
        if address == self.supervisor:
            return "supervisor"
        if address in self.technicians:
            return "technician"
        if address in self.leadership:
            return "leadership"
        return "customer"

    def is_own_address(self, address: str) -> bool:
        """The support address, or a plus-alias of it (``support+anything@``): mail from it is ours."""
        local, _, domain = address.rpartition("@")
        own_local, _, own_domain = self.support_address.rpartition("@")
        return domain == own_domain and (local == own_local or local.partition("+")[0] == own_local)

    @property
    def staff(self) -> frozenset[str]:
        found = set(self.technicians) | set(self.leadership)
        if self.supervisor:
            found.add(self.supervisor)
        return frozenset(found)


@dataclass(frozen=True)
class Route:
    # new | follow-up | staff-reply | directive | machine | bounce | own | quarantine | forged | no-nda
    kind: str
    role: str
    ticket: Ticket | None = None
    reason: str = ""
    # For bounces: the outbox entries that came back.
    bounced: tuple[OutboundMail, ...] = ()
    # For a new ticket that continues a closed one (written to after the reopen window).
    linked_to: str | None = None


def route_mail(mail: InboundMail, lookup: TicketLookup, directory: Directory) -> Route:
    if mail.machine == "bounce" and mail.sender is not None and _UNQUALIFIED_DAEMON.match(mail.sender.email):
        # A mail system's report from a bare "MAILER-DAEMON": recorded only for mail the desk sent.
        return _bounce_route(mail, lookup, directory)
    if mail.sender is None or not _VALID_ADDRESS.match(mail.sender.email):
        return Route("quarantine", "unknown", reason=_no_sender_reason(mail))
    sender = mail.sender.email
    role = directory.role_of(sender)
    if role == "self":
        # Our own mail coming back (a list or a forward rule): answering it would loop.
        return Route("own", role, reason="sent by the support address itself")

    if mail.machine == "bounce" or (_MAILER_DAEMON.match(sender) and mail.machine != "report"):
        # Whatever the Return-Path says, mail from a mailer daemon is never answered.  Its reports
        # that name no failure (a "still being retried" warning) are machine mail, not bounces.
        return _bounce_route(mail, lookup, directory)

    candidates = _candidate_tickets(mail, lookup, directory.prefix, directory.support_address)
    is_staff = role in ("technician", "supervisor", "leadership")
    entitled = [t for t in candidates if t.customer == sender or is_staff]

    if mail.machine:  # auto-reply, report, bulk
        # Kept on the customer's own ticket for the record; never answered.
        own = [t for t in candidates if t.customer == sender]
        return Route("machine", "machine", ticket=own[0] if own else None,
                     reason=mail.machine_reason or mail.machine)

    if entitled:
        ticket = entitled[0]
        if ticket.customer == sender:
            return Route("follow-up", "customer" if not is_staff else role, ticket=ticket)
        return Route("staff-reply", role, ticket=ticket)
    if candidates:
        return Route("new", role, reason="refers to a ticket of another sender")
    return Route("new", role)


def _bounce_route(mail: InboundMail, lookup: TicketLookup, directory: Directory) -> Route:
    """A delivery report counts only for mail the desk itself sent.

    Anyone can write a delivery report; one naming the Message-ID of a
    customer's *inbound* mail must not write onto that customer's ticket.
    """
    bounced = tuple(o for o in (lookup.outbound_by_message_id(mid) for mid in mail.bounced_message_ids)
                    if o is not None)
    ticket = None
    for out in bounced:
        if out.ticket:
            number = _tag_number(out.ticket, directory.prefix)
            ticket = lookup.get_ticket(number) if number is not None else None
            if ticket:
                break
    if ticket is None:
        # The outbox entry may be long forgotten; the ticket still knows the mails it sent.
        for mid in mail.bounced_message_ids:
            number = lookup.ticket_for_message_id(mid)
            found = lookup.get_ticket(number) if number is not None else None
            if found is not None and any(m.direction == "out" and m.message_id == mid for m in found.messages):
                ticket = found
                break
    return Route("bounce", "machine", ticket=ticket, bounced=bounced,
                 reason=mail.machine_reason or "delivery status notification")


def _tag_number(tag: str, prefix: str) -> int | None:
    numbers = find_tags(f"[{tag}]", prefix)
    return numbers[0] if numbers else None


def _candidate_tickets(mail: InboundMail, lookup: TicketLookup, prefix: str,
                       support_address: str = "") -> list[Ticket]:
    """Tickets the mail points at: threading headers first (nearest first), then subject tags,
    then, as a last resort, Outlook's Thread-Index (a reply that kept nothing else)."""
    found: list[Ticket] = []
    numbers: list[int] = []
    for mid in mail.thread_ids:
        number = lookup.ticket_for_message_id(mid)
        if number is not None and number not in numbers:
            numbers.append(number)
    for number in find_tags(mail.subject, prefix):
        if number not in numbers:
            numbers.append(number)
    if not numbers and support_address:
        number = ticket_for(mail.thread_index, support_address, prefix)
        if number is not None:
            numbers.append(number)
    for number in numbers:
        ticket = lookup.get_ticket(number)
        if ticket is not None:
            found.append(ticket)
    return found
