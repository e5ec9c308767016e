"""Routing and intake as pure functions over typed mails (no servers, no files)."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from maildesk.model import (Address, InboundAttachment, InboundMail, Message, OutboundMail, SkippedAttachment,
                            Ticket)
from maildesk.templates import Renderer
from maildesk.workflow.apply import handle
from maildesk.workflow.intake import DeskContext
from maildesk.workflow.route import Directory, route_mail

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
DIRECTORY = Directory(support_address="support@example.com", prefix="TS",
                      technicians=frozenset({"alice@example.com", "bob@example.com"}),
                      supervisor="lead@example.com", leadership=frozenset({"boss@example.com"}),
                      nda_signed=frozenset({"alice@example.com"}),
                      names=(("alice@example.com", "Alice Wang"), ("bob@example.com", "Bob Li")))


class FakeLookup:
    """An in-memory TicketLookup: the routing protocol is three reads."""

    def __init__(self, tickets=(), outbound=()):
        self.tickets = {t.number: t for t in tickets}
        self.outbound = {o.message_id: o for o in outbound}

    def get_ticket(self, number):
        return self.tickets.get(number)

    def ticket_for_message_id(self, mid):
        for t in self.tickets.values():
            if mid in t.message_ids:
                return t.number
        return None

    def outbound_by_message_id(self, mid):
        return self.outbound.get(mid)


def mail(sender="zhang.wei@customer.example", subject="Cannot print", text="Printer broken.", **kw):
    return InboundMail(key=kw.pop("key", "k1"), message_id=kw.pop("message_id", "<c1@customer.example>"),
                       sender=Address(sender, kw.pop("name", "Zhang Wei")) if sender else None,
                       subject=subject, text=text, **kw)


def ticket(number=17, customer="zhang.wei@customer.example",
           ids=("<ack.TS-000017.1@example.com>", "<notify.TS-000017.2@example.com>"), inbound=()):
    sent = [Message("out", "support@example.com", [customer], NOW, "x", message_id=m) for m in ids]
    received = [Message("in", customer, ["support@example.com"], NOW, "x", message_id=m) for m in inbound]
    return Ticket(number=number, tag=f"TS-{number:06d}", subject="Cannot print", customer=customer,
                  customer_name="", stage="received", language="en", created_at=NOW, updated_at=NOW,
                  message_ids=[*inbound, *ids], messages=received + sent)


def ctx(**kw):
    counter = itertools.count(1)
    return DeskContext(directory=DIRECTORY, desk=Address("support@example.com", "IT Service Desk"),
                       renderer=Renderer(), now=NOW, new_id=lambda: f"{next(counter):016x}" * 2, **kw)


# -- routing -------------------------------------------------------------------------------

@pytest.mark.parametrize("m, expected_kind, expected_ticket", [
    (mail(), "new", None),
    (mail(subject="Re: [TS-000017] Cannot print"), "follow-up", 17),
    (mail(subject="RE: 回复: AW: Cannot print", in_reply_to=["<ack.TS-000017.1@example.com>"]), "follow-up", 17),
    (mail(subject="Cannot print", references=["<x@y>", "<ack.TS-000017.1@example.com>"]), "follow-up", 17),
    # Someone else's tag: a new ticket, never a view into the old one.
    (mail(sender="mallory@evil.example", subject="Re: [TS-000017] Cannot print"), "new", None),
    (mail(sender="mallory@evil.example", in_reply_to=["<ack.TS-000017.1@example.com>"]), "new", None),
    # A stranger answering an old staff notification someone passed on: still a ticket of their own.
    (mail(sender="mallory@evil.example", in_reply_to=["<notify.TS-000017.2@example.com>"]), "new", None),
    (mail(sender="alice@example.com", subject="Re: [TS-000017] Cannot print"), "staff-reply", 17),
    (mail(sender="support@example.com"), "own", None),
    (mail(sender=None), "quarantine", None),
    (mail(sender="not-an-address"), "quarantine", None),
    (mail(machine="auto-reply", machine_reason="Auto-Submitted: auto-replied"), "machine", None),
    (mail(subject="Automatic reply: [TS-000017] Cannot print", machine="auto-reply"), "machine", 17),
    (mail(machine="bulk", machine_reason="List-Id"), "machine", None),
    (mail(subject="[TS-000099] unknown ticket"), "new", None),
])
def test_route(m, expected_kind, expected_ticket):
    route = route_mail(m, FakeLookup([ticket()]), DIRECTORY)
    assert route.kind == expected_kind
    assert (route.ticket.number if route.ticket else None) == expected_ticket


def test_own_ticket_wins_over_a_foreign_tag_in_the_same_subject():
    mine = ticket(number=3, customer="mallory@evil.example", ids=())
    route = route_mail(mail(sender="mallory@evil.example", subject="Re: [TS-000017] [TS-000003] x"),
                       FakeLookup([ticket(), mine]), DIRECTORY)
    assert route.kind == "follow-up" and route.ticket.number == 3


def test_bounce_finds_the_failed_outbound_mail_and_its_ticket():
    out = OutboundMail(id="o1", message_id="<ack.TS-000017.1@example.com>", kind="ack",
                       sender=Address("support@example.com"), recipients=["nobody@customer.example"],
                       subject="s", text="t", created_at=NOW, ticket="TS-000017")
    m = mail(sender="mailer-daemon@mx.example.com", machine="bounce",
             bounced_message_ids=["<ack.TS-000017.1@example.com>"],
             bounced_recipients=["nobody@customer.example"])
    route = route_mail(m, FakeLookup([ticket()], [out]), DIRECTORY)
    assert route.kind == "bounce" and route.ticket.number == 17 and route.bounced == (out,)
    effects = handle(m, route, ctx())
    assert effects.outbound == []  # never answer a bounce
    assert effects.outbox_updates[0].status == "failed"
    assert "nobody@customer.example" in effects.outbox_updates[0].last_error
    assert effects.ticket.events[-1].kind == "delivery-failed"


# -- intake -------------------------------------------------------------------------------

def test_new_ticket_acknowledges_customer_and_notifies_team():
    m = mail(subject="Re: [TS-000017] Cannot print", sender="mallory@evil.example", name="")
    route = route_mail(m, FakeLookup([ticket()]), DIRECTORY)
    effects = handle(m, route, ctx(), number=42, tag="TS-000042")
    t = effects.ticket
    assert (t.tag, t.stage, t.customer, t.subject) == ("TS-000042", "received", "mallory@evil.example",
                                                       "Cannot print")
    ack, notify = effects.outbound
    assert ack.kind == "ack" and ack.recipients == ["mallory@evil.example"]
    assert ack.subject == "[TS-000042] Cannot print"
    assert ack.in_reply_to == "<c1@customer.example>" and ack.auto_submitted == "auto-replied"
    assert "TS-000042" in ack.text and "TS-000017" not in ack.text
    # Bob has no NDA on record: customer text never reaches him.
    assert notify.recipients == ["lead@example.com", "alice@example.com"]
    assert "Printer broken." in notify.text
    # Replies to either mail find the ticket again.
    assert {ack.message_id, notify.message_id, "<c1@customer.example>"} <= set(t.message_ids)
    assert t.events[0].kind == "created" and t.events[0].to_stage == "received"
    assert effects.acked_sender == "mallory@evil.example"


def test_chinese_mail_gets_chinese_acknowledgement():
    m = mail(subject="邮箱容量已满，无法收信", text="您好，我的邮箱提示容量已满。", language="zh", name="刘洋")
    effects = handle(m, route_mail(m, FakeLookup(), DIRECTORY), ctx(), number=1, tag="TS-000001")
    ack = effects.outbound[0]
    assert ack.language == "zh" and "刘洋，您好" in ack.text and "工单号为 TS-000001" in ack.text
    assert ack.subject == "[TS-000001] 邮箱容量已满，无法收信"


def test_ack_rate_limit_suppresses_the_ack_but_keeps_the_ticket():
    m = mail()
    effects = handle(m, route_mail(m, FakeLookup(), DIRECTORY), ctx(ack_limit_per_hour=5),
                     number=9, tag="TS-000009", acks_last_hour=5)
    assert effects.outbound == []  # no ack, and no notification per flood mail either
    assert effects.ticket.events[-1].kind == "ack-suppressed"
    assert effects.acked_sender is None


def test_follow_up_notifies_assignee_only_and_sends_no_ack():
    t = ticket()
    t.assignee = "alice@example.com"
    m = mail(subject="Re: [TS-000017] Cannot print", text="Still broken", message_id="<c2@customer.example>")
    effects = handle(m, route_mail(m, FakeLookup([t]), DIRECTORY), ctx())
    assert [(o.kind, o.recipients) for o in effects.outbound] == [("notify", ["alice@example.com"])]
    assert [m.text for m in effects.ticket.messages if m.direction == "in"] == ["Still broken"]
    assert "<c2@customer.example>" in effects.ticket.message_ids
    assert len(t.messages) == 2  # the input ticket is not mutated


def test_attachments_are_listed_and_oversized_ones_noted():
    m = mail(attachments=[InboundAttachment("网络拓扑.pdf", "application/pdf", b"%PDF-1.4 x")],
             skipped_attachments=[SkippedAttachment("huge.iso", 30 * 2**20, "too-large")])
    effects = handle(m, route_mail(m, FakeLookup(), DIRECTORY), ctx(), number=1, tag="TS-000001")
    msg = effects.ticket.messages[0]
    assert [a.filename for a in msg.attachments] == ["网络拓扑.pdf"]
    assert effects.blobs == [b"%PDF-1.4 x"]
    assert "huge.iso" in msg.notes[0] and "15 MB" in msg.notes[0]
    assert "huge.iso" in effects.outbound[0].text  # the customer is told


def test_machine_mail_is_never_answered():
    m = mail(machine="auto-reply", machine_reason="X-Autoreply")
    effects = handle(m, route_mail(m, FakeLookup(), DIRECTORY), ctx())
    assert effects.outcome == "ignored" and effects.outbound == [] and effects.ticket is None


def test_bounce_of_a_forgotten_outbox_entry_still_lands_on_its_ticket():
    m = mail(sender="mailer-daemon@mx.example.com", machine="bounce",
             bounced_message_ids=["<ack.TS-000017.1@example.com>"], bounced_recipients=["x@customer.example"])
    route = route_mail(m, FakeLookup([ticket()]), DIRECTORY)
    assert route.kind == "bounce" and route.ticket.number == 17 and route.bounced == ()
    effects = handle(m, route, ctx())
    assert effects.ticket.events[-1].kind == "delivery-failed" and "x@customer.example" in effects.ticket.events[-1].detail


def test_a_forged_delivery_report_for_a_customers_own_mail_writes_nothing():
    # The attacker knows (or guessed) the Message-ID of the victim's inbound mail.
    victim = ticket(inbound=("<victim-1@customer.example>",))
    for sender, machine, return_path in (("mailer-daemon@evil.example", "bounce", ""),
                                         ("postmaster@evil.example", None, "postmaster@evil.example")):
        m = mail(sender=sender, machine=machine, return_path=return_path,
                 bounced_message_ids=["<victim-1@customer.example>"], bounced_recipients=["x@customer.example"])
        route = route_mail(m, FakeLookup([victim]), DIRECTORY)
        assert route.kind == "bounce" and route.ticket is None
        effects = handle(m, route, ctx())
        assert effects.ticket is None and effects.outbound == []


@pytest.mark.parametrize("sender", ["support+x@example.com", "support+anything.at.all@example.com",
                                    "MAILER-DAEMON@mx.example.net", "postmaster@cust.example"])
def test_the_desk_never_answers_its_own_aliases_or_mailer_daemons(sender):
    m = mail(sender=sender.lower(), return_path=sender.lower())  # no null Return-Path
    effects = handle(m, route_mail(m, FakeLookup(), DIRECTORY), ctx(), number=1, tag="TS-000001")
    assert effects.outbound == [] and effects.acked_sender is None


@pytest.mark.parametrize("sender", ["alice@ex\u0430mple.com", "ali\u200bce@example.com", "alice@example.com\u200b",
                                    "\uff41lice@example.com", "lead@example.com\u2060", "alice\u00ad@example.com"])
def test_look_alike_and_invisible_characters_make_a_customer_never_staff(sender):
    assert DIRECTORY.role_of(sender) == "customer"
    m = mail(sender=sender, subject="Re: [TS-000017] Cannot print", text="#resolve fixed")
    route = route_mail(m, FakeLookup([ticket()]), DIRECTORY)
    assert route.role == "customer" and route.kind == "new"
