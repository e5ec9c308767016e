"""Hostile and broken conditions: mail loops, floods, leaks, damaged store, slow SMTP, time."""
from __future__ import annotations

import signal
import time
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildesk.daemon.config import load_config
from maildesk.model import InboundMail
from maildesk.parsers import parse_mail
from maildesk.storage.base import open_store
from maildesk.workflow.apply import decide, handle

from .desk import CORPUS, SUPPORT, customer_mail, helpdesk, start_daemon, tickets, write_config
from .test_procedure import Desk as PureDesk

pytestmark = pytest.mark.integration
# The tests that reach the store run on TinyDB and on PostgreSQL (tests/conftest.py); the damaged-store
# test is about the TinyDB journal's own file.
both_stores = pytest.mark.both_stores


def config_for(tmp_path, dovecot, mailbox, smtp_sink, **kw):
    return write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                        imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none", **kw)


@pytest.mark.parametrize("rfc3834, expected_acks", [(False, 5), (True, 1)])
@both_stores
def test_an_auto_responder_cannot_loop_with_the_desk(tmp_path, dovecot, mailbox, smtp_sink, rfc3834,
                                                     expected_acks):
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink, ack_limit_per_hour=5)
    answered = []

    def robot(received):
        if received.rcpt_tos != ["robot@cust.example"] or len(answered) > 50:
            return
        answered.append(received)
        reply = EmailMessage()
        reply["From"] = "robot@cust.example"
        reply["To"] = SUPPORT
        # A new subject every time and no threading: each answer looks like a new request.
        reply["Subject"] = f"Your message number {len(answered)} was received"
        reply["Message-ID"] = make_msgid(domain="cust.example")
        if rfc3834:
            reply["Auto-Submitted"] = "auto-replied"
        reply.set_content("Thank you, we will answer soon.")
        mailbox.deliver(reply.as_bytes())

    smtp_sink.on_receive = robot
    log = tmp_path / "daemon.log"
    mailbox.deliver(customer_mail("robot@cust.example", "Hello", "first contact"))
    proc = start_daemon(config, password=mailbox.password, log_path=log)
    try:
        # The loop starts with the desk's first answer (a busy machine can take seconds to start the
        # desk); from then on it has six seconds to run away, far more than its five rounds need.
        smtp_sink.wait_for(1, timeout=60)
        time.sleep(6)
        mailbox.deliver(customer_mail("human@cust.example", "Still served?", "yes"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "human@cust.example" not in [
                r for m in smtp_sink.messages() for r in m.rcpt_tos]:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    to = [r for m in smtp_sink.messages() for r in m.rcpt_tos]
    assert to.count("robot@cust.example") == expected_acks
    assert "human@cust.example" in to, "the desk keeps serving others"


@both_stores
def test_a_flood_from_one_sender_gets_a_bounded_number_of_acks(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, ack_limit_per_hour=5,
                          notify_unassigned="supervisor")
    flood = [customer_mail("flood@cust.example", f"Spam {i}", "buy now") for i in range(500)]
    others = [customer_mail(f"real{i}@cust.example", f"Real {i}", "help") for i in range(3)]
    mailbox.deliver_many(flood[:250] + others + flood[250:])
    helpdesk(config, "once", password=mailbox.password, timeout=300)
    to = [r for m in smtp_sink.messages() for r in m.rcpt_tos]
    assert to.count("flood@cust.example") == 5
    assert sorted(r for r in to if r.startswith("real")) == ["real0@cust.example", "real1@cust.example",
                                                            "real2@cust.example"]
    assert len(tickets(config, password=mailbox.password)) == 503  # every mail is kept, only mail out is capped
    # The supervisor heard of the first five flood tickets and of each real one, not of 500.
    assert to.count("lead@example.com") == 5 + 3


@both_stores
def test_nothing_reaches_cc_recipients_or_forward_targets(tmp_path, dovecot, mailbox, smtp_sink):
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink)
    msg = EmailMessage()
    msg["From"] = "owner@cust.example"
    msg["To"] = SUPPORT
    msg["Cc"] = "boss@cust.example, outsider@other.example"
    msg["Subject"] = "Salary system down"
    msg["Message-ID"] = make_msgid(domain="cust.example")
    msg.set_content("Payroll data cannot be opened.")
    mailbox.deliver(msg.as_bytes())
    helpdesk(config, "once", password=mailbox.password)
    [ack] = smtp_sink.messages()
    assert ack.rcpt_tos == ["owner@cust.example"] and ack.message["Cc"] is None
    # The owner forwards the ack; the colleague replies to it: a ticket of their own, nothing disclosed.
    fwd = EmailMessage()
    fwd["From"] = "outsider@other.example"
    fwd["To"] = SUPPORT
    fwd["Subject"] = f"Re: Fwd: {ack.message['Subject']}"
    fwd["In-Reply-To"] = ack.message["Message-ID"]
    fwd["Message-ID"] = make_msgid(domain="other.example")
    fwd.set_content("What is wrong with payroll?")
    mailbox.deliver(fwd.as_bytes())
    smtp_sink.clear()
    helpdesk(config, "once", password=mailbox.password)
    [reply] = smtp_sink.messages()
    assert reply.rcpt_tos == ["outsider@other.example"]
    assert "Payroll data" not in reply.message.get_content() and "TS-000001" not in reply.message.as_string()
    assert {t["customer"] for t in tickets(config, password=mailbox.password)} == {
        "owner@cust.example", "outsider@other.example"}


def test_a_damaged_store_stops_the_daemon_and_is_left_as_it_was(tmp_path, dovecot, mailbox, smtp_sink):
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink)
    mailbox.deliver(customer_mail("a@cust.example", "One", "x"))
    helpdesk(config, "once", password=mailbox.password)
    journal = load_config(config).storage_path.with_name("helpdesk.json.journal")
    damaged = journal.read_bytes().replace(b'"One"', b'"0ne"')
    journal.write_bytes(damaged + b"\n" + damaged)  # damage in the middle, not a torn tail
    mailbox.deliver(customer_mail("b@cust.example", "Two", "y"))
    proc = helpdesk(config, "once", password=mailbox.password, check=False)
    assert proc.returncode == 3 and str(journal) in proc.stderr and proc.stderr.count("\n") == 1
    assert journal.read_bytes() == damaged + b"\n" + damaged
    assert mailbox.count("INBOX") == 1, "the new mail stays in the inbox for when the store is repaired"


@both_stores
def test_a_slow_smtp_server_defers_mail_without_losing_the_ticket(tmp_path, dovecot, mailbox, smtp_sink):
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink)
    config.write_text(config.read_text().replace('retry_max_minutes = 0.02',
                                                 'retry_max_minutes = 0.02\ntimeout_seconds = 1'))
    smtp_sink.delay_seconds = 3
    mailbox.deliver(customer_mail("slow@cust.example", "Slow", "x"))
    helpdesk(config, "once", password=mailbox.password)
    assert [t["customer"] for t in tickets(config, password=mailbox.password)] == ["slow@cust.example"]
    with open_store(load_config(config), readonly=True) as store:
        [entry] = store.pending_outbound()
        assert entry.attempts == 1 and entry.last_error
    smtp_sink.delay_seconds = 0
    smtp_sink.clear()
    time.sleep(2)
    helpdesk(config, "once", password=mailbox.password)
    # The timed-out attempt may or may not have reached the server; the retry certainly did.
    assert "slow@cust.example" in [r for m in smtp_sink.wait_for(1) for r in m.rcpt_tos]
    with open_store(load_config(config), readonly=True) as store:
        assert store.pending_outbound() == []


def test_clock_jumps_do_not_multiply_reminders():
    from maildesk.workflow.procedure import Timers, due_timers
    from .test_procedure import CUSTOMER, T0

    desk = PureDesk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#解决 好了", kind="notify")
    timers = Timers(reminder_days=3, no_rating_days=7, first_response_hours=1e6, resolution_hours=1e6)
    sent = 0
    for days in (3.5, 1, 3.6, -30, 4, 100, 3.7, 8, 2, 9):  # forwards, backwards, days of downtime
        desk.now = T0 + timedelta(days=days)
        effects = due_timers(desk.tickets[1], desk.ctx(), timers)
        if effects:
            desk.tickets[1] = effects.ticket
            sent += len(effects.outbound)
    kinds = [e.kind for e in desk.tickets[1].events]
    assert sent == 1 and kinds.count("feedback-reminder") == 1 and kinds.count("no-rating") == 1


_CORPUS = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


@settings(max_examples=1000, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000),
                 st.tuples(st.sampled_from(_CORPUS), st.integers(0, 4000), st.binary(max_size=40)).map(
                     lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])))
def test_every_mail_ends_as_a_defined_outcome(raw):
    desk = PureDesk()
    mail = parse_mail(raw)
    assert isinstance(mail, InboundMail)
    ctx = desk.ctx()
    route = decide(mail, desk, ctx)
    effects = handle(mail, route, ctx, number=1, tag="TS-000001")
    assert effects.outcome in {"ticket", "follow-up", "staff-reply", "directive", "machine", "bounce", "ignored",
                               "quarantined", "forged", "refused"}
    if effects.outcome == "quarantined":
        assert effects.reason
    for out in effects.outbound:
        assert "\n" not in out.subject and "\r" not in out.subject


@both_stores
def test_a_permanent_failure_is_recorded_and_reported_to_the_supervisor_once(tmp_path, dovecot, mailbox,
                                                                            smtp_sink):
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink)
    smtp_sink.refuse_recipients = {"gone@cust.example"}
    mailbox.deliver(customer_mail("gone@cust.example", "Left the company", "x"))
    helpdesk(config, "once", password=mailbox.password)
    helpdesk(config, "once", password=mailbox.password)  # nothing is retried, nothing reported twice
    reports = [m for m in smtp_sink.messages() if m.rcpt_tos == ["lead@example.com"]]
    assert len(reports) == 1
    body = reports[0].message.get_content()
    assert "gone@cust.example" in body and "550" in body and "TS-000001" in body
    events = [e["kind"] for e in ticket_json(config, mailbox)["events"]]
    assert events.count("delivery-failed") == 1


def ticket_json(config, mailbox):
    from .desk import ticket
    return ticket(config, "TS-000001", password=mailbox.password)


@both_stores
def test_imap_connections_dropped_mid_work_lose_and_repeat_nothing(tmp_path, dovecot, mailbox, smtp_sink):
    import random
    config = config_for(tmp_path, dovecot, mailbox, smtp_sink)
    mailbox.deliver_many([customer_mail(f"d{i:03d}@cust.example", f"Drop {i}", "x" * 2000) for i in range(300)])
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password=mailbox.password, log_path=log)
    rng = random.Random(7)
    try:
        deadline = time.monotonic() + 20
        while "running for" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(6):  # mid-fetch, mid-commit, mid-move, mid-IDLE: wherever the moment falls
            time.sleep(rng.uniform(0.02, 0.25))
            dovecot.drop_connections()
        deadline = time.monotonic() + 90
        while mailbox.count("INBOX") and time.monotonic() < deadline:
            time.sleep(0.2)
        smtp_sink.wait_for(300, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    to = sorted(r for m in smtp_sink.messages() for r in m.rcpt_tos)
    assert to == [f"d{i:03d}@cust.example" for i in range(300)], "each customer acknowledged exactly once"
    assert len(tickets(config, password=mailbox.password)) == 300
    text = log.read_text()
    assert 1 <= text.count("IMAP connection lost") <= 6 and "reachable again" in text
