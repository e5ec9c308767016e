"""The new-ticket digest: past tickets.notify_digest_after notifications in 10 minutes the team gets one list.

Pure parts with the intake's own functions; the flood and the reply path end
to end through Dovecot and aiosmtpd.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config
from maildesk.daemon.intake import add_to_digest
from maildesk.model import Address, InboundMail
from maildesk.templates import Renderer
from maildesk.workflow.digest import PERIOD
from maildesk.workflow.intake import DeskContext, open_ticket
from maildesk.workflow.route import Directory

from .desk import SUPPORT, customer_mail, ticket, verified, write_config

T0 = datetime(2026, 11, 26, 2, 0, 30, tzinfo=timezone.utc)
TEAM = ["lead@example.com", "alice@example.com"]


def ctx(now=T0, **kw) -> DeskContext:
    directory = Directory(support_address=SUPPORT, prefix="TS", technicians=frozenset({"alice@example.com"}),
                          supervisor="lead@example.com", leadership=frozenset(),
                          nda_signed=frozenset({"alice@example.com"}))
    return DeskContext(directory=directory, desk=Address(SUPPORT, "IT Service Desk"), renderer=Renderer(),
                       now=now, staff_language="en", **kw)


def new_mail(i: int) -> InboundMail:
    return InboundMail(key=f"k{i}", message_id=f"<m{i}@cust.example>", sender=Address(f"c{i}@cust.example"),
                       subject=f"Printer {i} jams", text=f"Printer number {i} jams on every page.")


# -- pure ---------------------------------------------------------------------------------

def test_below_the_limit_the_team_gets_a_notification_and_it_is_counted():
    effects = open_ticket(new_mail(1), 1, "TS-000001", ctx(notify_digest_after=3, team_notices_recent=2))
    assert [o.kind for o in effects.outbound] == ["ack", "notify"]
    assert effects.team_noticed and not effects.digest


def test_past_the_limit_the_ticket_goes_into_the_digest_with_a_reply_link():
    effects = open_ticket(new_mail(7), 7, "TS-000007", ctx(notify_digest_after=3, team_notices_recent=3))
    assert [o.kind for o in effects.outbound] == ["ack"], "the customer is acknowledged as always"
    assert not effects.team_noticed
    [entry] = effects.digest
    assert set(entry.recipients) == set(TEAM)
    link = re.search(r"mailto:\S+", entry.block).group(0)
    parsed = urlparse(link)
    assert parsed.path == SUPPORT
    assert unquote(parse_qs(parsed.query)["subject"][0]) == "Re: [TS-000007] Printer 7 jams"
    assert "Printer number 7 jams" in entry.block
    assert effects.ticket.events[-1].kind == "notify-digest"


def test_zero_never_folds():
    effects = open_ticket(new_mail(1), 1, "TS-000001", ctx(notify_digest_after=0, team_notices_recent=500))
    assert [o.kind for o in effects.outbound] == ["ack", "notify"]


def test_a_flood_from_one_sender_is_still_caught_by_the_acknowledgement_limit():
    effects = open_ticket(new_mail(1), 1, "TS-000001", ctx(notify_digest_after=3, team_notices_recent=9),
                          acks_last_hour=5)
    assert effects.outbound == [] and effects.digest == []


def entry(i: int, now: datetime):
    """Ticket ``i`` as folded into the digest (the team already told of one in the period)."""
    return open_ticket(new_mail(i), i, f"TS-{i:06d}", ctx(now, notify_digest_after=1,
                                                          team_notices_recent=1)).digest[0]


@pytest.mark.both_stores
def test_one_open_digest_per_recipients_and_at_most_one_per_ten_minutes(store_opener):
    with store_opener() as store:
        add_to_digest(store, entry(1, T0), T0)
        add_to_digest(store, entry(2, T0 + timedelta(seconds=5)), T0 + timedelta(seconds=5))
        [digest] = store.pending_outbound()
        assert digest.kind == "digest" and digest.next_attempt_at == T0, "the first digest goes at once"
        assert "TS-000001" in digest.text and "TS-000002" in digest.text
        sent_at = T0 + timedelta(seconds=6)
        from dataclasses import replace
        store.update_outbound(replace(digest, status="sent", sent_at=sent_at, next_attempt_at=None))
        later = T0 + timedelta(minutes=3)
        add_to_digest(store, entry(3, later), later)
        add_to_digest(store, entry(4, later + timedelta(minutes=1)), later + timedelta(minutes=1))
        [second] = store.pending_outbound()
        assert second.next_attempt_at == sent_at + PERIOD
        assert "TS-000003" in second.text and "TS-000004" in second.text and "TS-000001" not in second.text


@pytest.mark.both_stores
def test_a_digest_being_sent_is_not_grown_the_next_ticket_opens_the_following_one(store_opener):
    # While the sender sends a round, the next batch is handled in its waits (daemon/app.py): a
    # digest of that round is on the wire already, so a ticket added to it would be marked sent unseen.
    with store_opener() as store:
        add_to_digest(store, entry(1, T0), T0)
        [sending] = store.pending_outbound()
        later = T0 + timedelta(seconds=2)
        add_to_digest(store, entry(2, later), later, in_flight={sending.id})
        assert store.outbound(sending.id) == sending, "the digest on the wire is left as it is"
        [following] = [m for m in store.pending_outbound() if m.id != sending.id]
        assert "TS-000002" in following.text and "TS-000001" not in following.text
        assert following.next_attempt_at == sending.next_attempt_at + PERIOD
        add_to_digest(store, entry(3, later), later, in_flight={sending.id})
        assert "TS-000003" in store.outbound(following.id).text, "the following one stays open"


@pytest.mark.both_stores
def test_a_full_digest_is_continued_by_another_sent_at_the_same_time(store_opener, monkeypatch):
    from maildesk.workflow import digest as digest_module

    entries = [entry(i, T0 + timedelta(seconds=i)) for i in range(1, 8)]
    # Room for about two tickets per digest (a real one holds some 200).
    monkeypatch.setattr(digest_module, "MAX_TEXT_CHARS", len(entries[0].head) + 2 * len(entries[0].block) + 20)
    with store_opener() as store:
        for e in entries:
            add_to_digest(store, e, e.at)
        digests = store.pending_outbound()
    assert len(digests) >= 3 and all(len(d.text) <= digest_module.MAX_TEXT_CHARS for d in digests)
    assert {d.next_attempt_at for d in digests} == {entries[0].at}, "the continuations go out with the first"
    first, *continuations = sorted(d.id for d in digests)
    assert all(c.startswith(first + ".") for c in continuations)
    listed = [tag for d in digests for tag in re.findall(r"TS-\d{6}", d.text)]
    assert sorted(set(listed)) == [f"TS-{i:06d}" for i in range(1, 8)], "every ticket in one of them"
    assert all(sum(tag in d.text for d in digests) == 1 for tag in set(listed)), "and in one only"


# -- by real mail -------------------------------------------------------------------------

class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_once(config, clock):
    with Desk(load_config(config), clock=clock) as desk:
        return desk.run_once()


def kinds(sink, kind):
    return [m for m in sink.messages() if m.message["Message-ID"].startswith(f"<{kind}.")]


@pytest.mark.integration
@pytest.mark.both_stores
def test_a_flood_gives_notifications_up_to_the_limit_then_one_digest_whose_links_reach_the_ticket(
        tmp_path, dovecot, mailbox, smtp_sink):
    limit, burst = 3, 8
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, smtp_connections=1,
                          notify_digest_after=limit)
    clock = Clock(datetime.now(timezone.utc))
    mailbox.deliver_many([customer_mail(f"c{i}@cust{i}.example", f"Cannot log in {i}", f"Account {i} locked.")
                          for i in range(burst)])
    run_once(config, clock)

    acks = kinds(smtp_sink, "ack")
    assert sorted(r for m in acks for r in m.rcpt_tos) == sorted(f"c{i}@cust{i}.example" for i in range(burst))
    notifications = kinds(smtp_sink, "notify")
    assert len(notifications) == limit
    [digest] = kinds(smtp_sink, "digest")
    assert sorted(digest.rcpt_tos) == sorted(TEAM), "one digest, to each staff recipient once"
    body = digest.message.get_content()
    links = re.findall(r"mailto:\S+", body)
    assert len(links) == burst - limit
    notified = {m.message["X-Helpdesk-Ticket"] for m in notifications}
    listed = set(re.findall(r"TS-\d{6}", body))
    assert not notified & listed and len(notified | listed) == burst, "every ticket is announced exactly once"

    # A technician answers one listed ticket from the digest's link in a real client.
    link = urlparse(links[-1])
    subject = unquote(parse_qs(link.query)["subject"][0])
    tag = re.search(r"TS-\d{6}", subject).group(0)
    answer = EmailMessage()
    answer["From"] = "Alice Wang <alice@example.com>"
    answer["To"] = link.path
    answer["Subject"] = subject
    answer["Date"] = format_datetime(datetime.now(timezone.utc))
    answer["Message-ID"] = make_msgid(domain="example.com")
    answer.set_content("#diagnose\nI am looking at the account now.")
    mailbox.deliver(verified(answer.as_bytes()))
    clock.now += timedelta(minutes=1)
    run_once(config, clock)
    shown = ticket(config, tag, password=mailbox.password)
    assert shown["stage"] == "diagnosing" and shown["assignee"] == "alice@example.com"
    assert any(m["from"] == "alice@example.com" and "looking at the account" in m["text"] for m in shown["messages"])

    # More new tickets within the 10 minutes: no mail each, and no second digest yet ...
    mailbox.deliver_many([customer_mail(f"d{i}@late{i}.example", f"Printer {i}", "Jammed.") for i in range(2)])
    clock.now += timedelta(minutes=1)
    run_once(config, clock)
    assert len(kinds(smtp_sink, "notify")) == limit and len(kinds(smtp_sink, "digest")) == 1
    # ... it goes out once 10 minutes have passed since the first, listing just them.
    clock.now += PERIOD
    run_once(config, clock)
    digests = kinds(smtp_sink, "digest")
    assert len(digests) == 2
    second = digests[-1].message.get_content()
    assert len(re.findall(r"mailto:\S+", second)) == 2 and tag not in second
    run_once(config, clock)
    assert len(kinds(smtp_sink, "digest")) == 2, "sent exactly once"
