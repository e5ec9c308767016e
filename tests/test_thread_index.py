"""Outlook threading: Thread-Index/Thread-Topic on the desk's mail, and replies found by them alone."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from maildesk.daemon.sender import build_message
from maildesk.model import Address, OutboundMail
from maildesk.parsers.mime import parse_mail
from maildesk.parsers.thread_index import (child_block, decode, filetime, header_block, ticket_for,
                                           ticket_header, ticket_thread_index, thread_headers)
from maildesk.workflow.route import route_mail

from .desk import customer_mail, helpdesk, ticket, tickets, write_config
from .test_routing import DIRECTORY, FakeLookup, mail, ticket as make_ticket

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
SUPPORT = "support@example.com"


# -- the encoding ------------------------------------------------------------------------------

def test_filetime_counts_100ns_since_1601():
    assert filetime(datetime(1970, 1, 1, tzinfo=timezone.utc)) == 116_444_736_000_000_000
    assert filetime(datetime(1601, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)) == 10


@pytest.mark.parametrize("value, replies", [
    ("Ab7TEZtW04eKS19qTMukQad1gGNu3A==", 0),       # desktop Outlook, Microsoft's own example
    ("Ab7TEZtW04eKS19qTMukQad1gGNu3A", 0),         # ... as some clients send it, unpadded
    ("AQHWLRNo4NaOjvXU8EODe0ZotrA8B6itzaxf", 1),   # Exchange Online: a reply's child block
    ("AQHWLRNo 4NaOjvXU8EODe0Zo\r\n trA8B6itzaxf", 1),  # folded
])
def test_decodes_indexes_written_by_outlook_and_exchange(value, replies):
    index = decode(value)
    assert index is not None and index.replies == replies
    assert len(index.header) == 22 and index.header[0] == 0x01 and len(index.guid) == 16


@pytest.mark.parametrize("value", [
    None, "", "not base64!", base64.b64encode(b"\x01" * 21).decode(),        # too short
    base64.b64encode(b"\x01" * 24).decode(),                                   # 22 + 2: not whole blocks
    base64.b64encode(b"\x02" + b"\x00" * 21).decode(),                         # reserved byte not 0x01
    "A" * 5000,
])
def test_rejects_what_is_not_a_conversation_index(value):
    assert decode(value) is None


def test_header_block_is_six_time_bytes_and_the_guid():
    guid = bytes(range(16))
    block = header_block(guid, filetime(NOW))
    assert len(block) == 22 and block[0] == 0x01 and block[6:] == guid
    assert int.from_bytes(block[:6], "big") == filetime(NOW) >> 16
    with pytest.raises(ValueError):
        header_block(b"short", 0)


def test_child_block_carries_the_time_since_the_start():
    start = filetime(NOW)
    hour = child_block(start, filetime(NOW + timedelta(hours=1)), random_bits=0xA, sequence=3)
    assert len(hour) == 5 and hour[4] == 0xA3
    word = int.from_bytes(hour[:4], "big")
    assert word >> 31 == 0 and (word & 0x7FFFFFFF) << 18 == pytest.approx(36_000_000_000, abs=1 << 18)
    # Years later the coarse code (DC = 1) is used; the order is kept either way.
    years = child_block(start, filetime(NOW + timedelta(days=3000)))
    assert years[0] >> 7 == 1
    assert ((int.from_bytes(years[:4], "big") & 0x7FFFFFFF) << 23) == pytest.approx(
        3000 * 864_000_000_000, rel=1e-6)
    assert child_block(start, start - 5) == b"\x00\x00\x00\x00\x00"  # never negative


# -- the desk's conversations ----------------------------------------------------------------

def test_every_mail_of_a_ticket_shares_its_header_and_names_only_that_ticket():
    first = decode(ticket_thread_index(SUPPORT, "TS-000042", 42, at=NOW, message_id="<ack@x>"))
    later = decode(ticket_thread_index(SUPPORT, "TS-000042", 42, at=NOW + timedelta(days=2), message_id="<n@x>"))
    assert first.header == later.header == ticket_header(SUPPORT, "TS-000042", 42)
    assert first.replies == later.replies == 1
    assert ticket_header(SUPPORT, "TS-000043", 43) != first.header
    assert ticket_header("helpdesk@other.example", "TS-000042", 42) != first.header
    # The header's time is a plausible FILETIME before any real mail: child deltas stay positive.
    assert datetime(2000, 1, 1) <= datetime(1601, 1, 1) + timedelta(
        microseconds=(int.from_bytes(first.header[:6], "big") << 16) // 10) < datetime(2020, 1, 1)


def test_a_reply_index_finds_the_ticket_only_at_the_desk_that_made_it():
    ours = ticket_thread_index(SUPPORT, "TS-000042", 42, at=NOW, message_id="<ack@x>")
    # Outlook replies by appending its own child block.
    reply = base64.b64encode(base64.b64decode(ours) + child_block(0, filetime(NOW))).decode()
    assert ticket_for(ours, SUPPORT, "TS") == 42
    assert ticket_for(reply, "SUPPORT@example.com", "TS") == 42
    assert ticket_for(reply, "helpdesk@other.example", "TS") is None
    assert ticket_for(reply, SUPPORT, "HD") is None
    # A GUID whose last four bytes were changed to another ticket's number does not pass the check.
    raw = bytearray(base64.b64decode(ours))
    raw[21] ^= 0x01
    assert ticket_for(base64.b64encode(bytes(raw)).decode(), SUPPORT, "TS") is None
    assert ticket_for("Ab7TEZtW04eKS19qTMukQad1gGNu3A==", SUPPORT, "TS") is None  # someone else's conversation


def outbound(**kw) -> OutboundMail:
    fields = dict(id="o1", message_id="<ack.TS-000042.1@example.com>", kind="ack",
                  sender=Address(SUPPORT, "IT 服务台"), recipients=["c1@cust.example"],
                  subject="[TS-000042] Re: 打印机卡纸", text="您好", created_at=NOW, ticket="TS-000042",
                  language="zh", auto_submitted="auto-replied")
    fields.update(kw)
    return OutboundMail(**fields)


def test_desk_mail_carries_thread_topic_and_index_and_builds_the_same_twice():
    raw = build_message(outbound()).as_bytes()
    assert raw == build_message(outbound()).as_bytes()  # a retry sends the identical message
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg["Thread-Topic"] == "打印机卡纸"
    assert ticket_for(msg["Thread-Index"], SUPPORT, "TS") == 42
    # HTML mail goes through the other builder: same headers.
    rich = message_from_bytes(build_message(outbound(html="<p>您好</p>")).as_bytes(), policy=default_policy)
    assert rich["Thread-Topic"] == "打印机卡纸" and rich["Thread-Index"] == msg["Thread-Index"]


def test_topic_cannot_add_headers_and_mail_without_ticket_gets_none():
    raw = build_message(outbound(subject="[TS-000042] Printer\r\nBcc: victim@evil.example")).as_bytes()
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg["Bcc"] is None and msg["Thread-Topic"] == "Printer Bcc: victim@evil.example"
    assert thread_headers(outbound(ticket=None)) == []
    assert message_from_bytes(build_message(outbound(ticket=None)).as_bytes())["Thread-Index"] is None


def test_parsed_mail_keeps_the_thread_index():
    raw = customer_mail("c1@cust.example", "RE: Printer", "thanks")
    raw = b"Thread-Index: AQHWLRNo4NaOjvXU8EODe0ZotrA8B6itzaxf\r\nThread-Topic: Printer\r\n" + raw
    assert parse_mail(raw).thread_index == "AQHWLRNo4NaOjvXU8EODe0ZotrA8B6itzaxf"
    assert parse_mail(customer_mail("c1@cust.example", "x", "y")).thread_index is None


# -- routing ------------------------------------------------------------------------------------

def outlook_reply_index(number: int = 17) -> str:
    ours = ticket_thread_index(SUPPORT, f"TS-{number:06d}", number, at=NOW, message_id="<ack@x>")
    return base64.b64encode(base64.b64decode(ours) + child_block(0, filetime(NOW))).decode()


def test_reply_with_only_thread_index_joins_its_ticket():
    lookup = FakeLookup([make_ticket(17)])
    route = route_mail(mail(subject="RE: Cannot print", thread_index=outlook_reply_index()), lookup, DIRECTORY)
    assert (route.kind, route.ticket.number) == ("follow-up", 17)


def test_thread_index_reaches_no_ticket_of_another_sender():
    lookup = FakeLookup([make_ticket(17)])
    route = route_mail(mail(sender="mallory@evil.example", thread_index=outlook_reply_index()), lookup, DIRECTORY)
    assert route.kind == "new" and route.ticket is None


def test_references_and_tags_come_before_the_thread_index():
    lookup = FakeLookup([make_ticket(17), make_ticket(18, ids=("<ack.TS-000018.1@example.com>",))])
    route = route_mail(mail(subject="RE: [TS-000018] Cannot print", thread_index=outlook_reply_index(17)),
                       lookup, DIRECTORY)
    assert route.ticket.number == 18


# -- through real servers -----------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.both_stores
def test_outlook_reply_without_references_finds_its_ticket(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path, imap_port=mailbox.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port)
    customer = "li.na@customer.example"
    mailbox.deliver(customer_mail(customer, "Outlook crashes on start", "Since the update."))
    helpdesk(config, "once", password=mailbox.password)
    [record] = tickets(config, password=mailbox.password)
    ack = next(m.message for m in smtp_sink.messages() if m.rcpt_tos == [customer])
    assert ack["Thread-Topic"] == "Outlook crashes on start"
    assert ack["Thread-Index"] and decode(ack["Thread-Index"]) is not None

    # Outlook's answer: its own child block after the ack's index, the tag removed from the subject,
    # no References, no In-Reply-To.
    index = base64.b64encode(base64.b64decode(ack["Thread-Index"])
                             + child_block(0, filetime(datetime.now(timezone.utc)))).decode()
    reply = customer_mail(customer, "RE: Outlook crashes on start", "Safe mode works.")
    outlook = f"Thread-Topic: Outlook crashes on start\r\nThread-Index: {index}\r\n".encode()
    mailbox.deliver(outlook + reply)
    # The same index from someone else opens a ticket of their own.
    mailbox.deliver(outlook + customer_mail("eve@elsewhere.example", "RE: Outlook crashes on start", "me too"))
    helpdesk(config, "once", password=mailbox.password)

    listed = tickets(config, password=mailbox.password)
    assert sorted(t["customer"] for t in listed) == ["eve@elsewhere.example", customer]
    shown = ticket(config, record["id"], password=mailbox.password)
    texts = [m["text"] for m in shown["messages"]]
    assert any("Safe mode works." in t for t in texts) and not any("me too" in t for t in texts)
