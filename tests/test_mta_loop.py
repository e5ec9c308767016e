"""A real MTA in the loop: customer -> Postfix -> LMTP -> Dovecot -> the desk -> Postfix submission -> Dovecot.

Everything runs privately on loopback: a Dovecot with LMTP and a SASL socket,
and a Postfix of its own (tests/postfix.py) that delivers every domain into
that Dovecot.  The desk reads its mailbox over IMAP and sends through Postfix's
submission port with STARTTLS and AUTH, as it would at a company.
"""
from __future__ import annotations

import smtplib
import time
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from maildesk.parsers.mime import parse_mail

from .desk import customer_mail, helpdesk, ticket, tickets, write_config
from .mailservers import Dovecot, MailAccount
from .postfix import Postfix, available

pytestmark = pytest.mark.integration

CUSTOMER = "ann@customer.test"
STAFF = ("alice@example.com", "bob@example.com", "lead@example.com")


@pytest.fixture(scope="module")
def servers():
    reason = available()
    if reason:
        pytest.fail(reason)
    dovecot = Dovecot(tls=True, lmtp=True, users=(CUSTOMER, *STAFF)).start()
    postfix = None
    try:
        postfix = Postfix(dovecot).start()
        yield dovecot, postfix
    finally:
        if postfix is not None:
            postfix.stop()
        dovecot.stop()


def desk_config(tmp_path, desk: MailAccount, postfix: Postfix):
    """The desk's config: IMAP as in every test, SMTP through Postfix's submission port with STARTTLS and
    AUTH as the same account (one password for both, as most providers do)."""
    config = write_config(tmp_path, imap_port=desk.port, imap_user=desk.username, imap_password=desk.password,
                          smtp_port=postfix.submission_port, support=desk.username, smtp_connections=1)
    text = config.read_text(encoding="utf-8")
    plain = f'port = {postfix.submission_port}\nsecurity = "none"\n'
    assert text.count(plain) == 1
    config.write_text(text.replace(plain, (
        f'port = {postfix.submission_port}\nsecurity = "starttls"\nca_file = "{postfix.ca_path}"\n'
        f'username = "{desk.username}"\npassword_env = "TEST_IMAP_PASSWORD"\n')), encoding="utf-8")
    return config


def inject(postfix: Postfix, sender: str, recipient: str, raw: bytes) -> None:
    """What a customer's provider does: hand the mail to the organisation's MX."""
    with smtplib.SMTP(postfix.host, postfix.smtp_port, timeout=30) as smtp:
        smtp.sendmail(sender, [recipient], raw)


def wait_count(account: MailAccount, count: int, postfix: Postfix, folder: str = "INBOX",
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while account.count(folder) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{account.username} {folder}: {account.count(folder)} of {count} mails arrived\n"
                                 f"queue: {postfix.queue()}\n{postfix.log_tail}")
        time.sleep(0.05)


def parsed(raw: bytes):
    return message_from_bytes(raw, policy=default_policy)


@pytest.mark.both_stores
def test_customer_mail_through_postfix_gets_its_answer_through_submission(servers, tmp_path):
    dovecot, postfix = servers
    desk = dovecot.add_user()
    customer = dovecot.account(CUSTOMER)
    before = customer.count()
    config = desk_config(tmp_path, desk, postfix)

    inject(postfix, CUSTOMER, desk.username,
           customer_mail(CUSTOMER, "VPN drops every hour", "The VPN disconnects every hour since Monday.",
                         name="Ann"))
    wait_count(desk, 1, postfix)
    arrived = parsed(desk.fetch_all()[0])
    assert "by mx.example.com (Postfix)" in str(arrived.get_all("Received"))  # it really came through Postfix

    helpdesk(config, "once", password=desk.password)

    [record] = tickets(config, password=desk.password)
    assert (record["customer"], record["subject"], record["stage"]) == (CUSTOMER, "VPN drops every hour",
                                                                       "received")
    assert desk.count("INBOX") == 0 and desk.count("Helpdesk/Processed") == 1

    # The acknowledgement went out through submission and Postfix delivered it over LMTP.
    wait_count(customer, before + 1, postfix)
    ack = parsed(customer.fetch_all()[-1])
    assert ack["Subject"] == f"[{record['id']}] VPN drops every hour"
    assert ack["From"].addresses[0].addr_spec == desk.username
    assert ack["Auto-Submitted"] == "auto-replied"
    # "ESMTPSA": Postfix's own record that the desk used TLS ("S") and authenticated ("A").
    assert "with ESMTPSA" in str(ack.get_all("Received"))
    assert "Return-Path" in ack and ack["Return-Path"].strip("<>") == desk.username

    # The team heard of it through the same path.
    alice = dovecot.account("alice@example.com")
    wait_count(alice, 1, postfix)
    assert any(record["id"] in str(parsed(raw)["Subject"]) for raw in alice.fetch_all())

    # The customer's reply (a real Re: with References) joins the ticket through Postfix again.
    reply = customer_mail(CUSTOMER, f"Re: {ack['Subject']}", "It happened again at 10:00.",
                          in_reply_to=ack["Message-ID"], references=[ack["Message-ID"]])
    inject(postfix, CUSTOMER, desk.username, reply)
    wait_count(desk, 1, postfix)
    helpdesk(config, "once", password=desk.password)
    assert len(tickets(config, password=desk.password)) == 1
    shown = ticket(config, record["id"], password=desk.password)
    assert any("It happened again at 10:00." in m["text"] for m in shown["messages"])


@pytest.mark.both_stores
def test_postfix_delivery_report_is_recorded_on_the_ticket_of_the_failed_mail(servers, tmp_path):
    """The customer's address accepts mail at their provider's MX but has no mailbox: Postfix's own
    bounce (multipart/report, returned message attached) comes back to the desk's address."""
    dovecot, postfix = servers
    desk = dovecot.add_user()
    config = desk_config(tmp_path, desk, postfix)
    ghost = "ghost@customer.test"  # no mailbox in Dovecot: LMTP refuses it with 550 5.1.1

    inject(postfix, ghost, desk.username, customer_mail(ghost, "Printer jam", "Tray 2 jams."))
    wait_count(desk, 1, postfix)
    helpdesk(config, "once", password=desk.password)
    [record] = tickets(config, password=desk.password)
    assert record["customer"] == ghost

    # Postfix accepted the acknowledgement, then LMTP refused it: the report lands in the desk's INBOX.
    wait_count(desk, 1, postfix)
    report = parsed(desk.fetch_all()[0])
    assert report["From"].addresses[0].addr_spec.lower() == "mailer-daemon@mx.example.com"
    assert report.get_content_type() == "multipart/report"

    helpdesk(config, "once", password=desk.password)
    assert len(tickets(config, password=desk.password)) == 1  # the report opened no ticket
    shown = ticket(config, record["id"], password=desk.password)
    failed = [e for e in shown["events"] if e["kind"] == "delivery-failed"]
    assert len(failed) == 1 and ghost in failed[0]["detail"]
    assert desk.count("INBOX") == 0 and desk.count("Helpdesk/Processed") == 2

    # Nothing answered the mailer daemon: what went out is the acknowledgement and the team's notice.
    sent_to = [m["to"] for m in shown["messages"] if m["direction"] == "out"]
    assert [ghost] in sent_to and not any("mailer-daemon" in a.lower() for to in sent_to for a in to)
    assert len(sent_to) == 2


@pytest.mark.both_stores
def test_postfix_delay_notice_is_not_recorded_as_a_failed_delivery(servers, tmp_path):
    """Postfix's "Delayed Mail (still being retried)" (Action: delayed) is a warning: the mail may
    still arrive, so the ticket must not say it failed.  (slow.test's server is a closed port.)"""
    dovecot, postfix = servers
    desk = dovecot.add_user()
    config = desk_config(tmp_path, desk, postfix)
    slow = "kim@slow.test"
    inject(postfix, slow, desk.username, customer_mail(slow, "Scanner offline", "Since 9:00."))
    wait_count(desk, 1, postfix)
    helpdesk(config, "once", password=desk.password)
    [record] = tickets(config, password=desk.password)

    wait_count(desk, 1, postfix)
    notice = parsed(desk.fetch_all()[0])
    assert notice["Subject"] == "Delayed Mail (still being retried)"
    helpdesk(config, "once", password=desk.password)
    assert len(tickets(config, password=desk.password)) == 1
    shown = ticket(config, record["id"], password=desk.password)
    assert not [e for e in shown["events"] if e["kind"] == "delivery-failed"]
    assert desk.count("INBOX") == 0


# A report exactly as Postfix 3.7 wrote it in the test below (only the desk's mail inside shortened):
# read without any server, so a change to the bounce reader is checked against the real thing.
POSTFIX_DSN = b"""\
Return-Path: <>
Delivered-To: support1@example.com
Received: by mx.example.com (Postfix)
\tid 4DE8420E0B3; Thu, 26 Nov 2026 01:41:28 +0000 (UTC)
Date: Thu, 26 Nov 2026 01:41:28 +0000 (UTC)
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
Subject: Undelivered Mail Returned to Sender
To: support1@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4502D20E087.1795657288/mx.example.com"
Content-Transfer-Encoding: 8bit
Message-Id: <20261126014128.4DE8420E0B3@mx.example.com>

This is a MIME-encapsulated message.

--4502D20E087.1795657288/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<nobody@customer.test>: host 127.0.0.1[127.0.0.1] said: 550 5.1.1
    <nobody@customer.test> User doesn't exist: nobody@customer.test (in reply
    to RCPT TO command)

--4502D20E087.1795657288/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4502D20E087
X-Postfix-Sender: rfc822; support1@example.com
Arrival-Date: Thu, 26 Nov 2026 01:41:28 +0000 (UTC)

Final-Recipient: rfc822; nobody@customer.test
Original-Recipient: rfc822;nobody@customer.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; 127.0.0.1
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.test> User doesn't exist:
    nobody@customer.test

--4502D20E087.1795657288/mx.example.com
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

Return-Path: <support1@example.com>
Received: from [127.0.0.1] (unknown [127.0.0.1])
\tby mx.example.com (Postfix) with ESMTPSA id 4502D20E087;
\tThu, 26 Nov 2026 01:41:28 +0000 (UTC)
From: support1@example.com
Subject: [TS-000001] Printer jam
Message-ID: <ack.TS-000001.1@example.com>
Date: Thu, 26 Nov 2026 01:41:28 +0000 (UTC)

Dear customer ...

--4502D20E087.1795657288/mx.example.com--
"""


def test_postfix_delivery_report_names_the_failed_mail_and_recipient():
    report = parse_mail(POSTFIX_DSN)
    assert report.machine == "bounce"
    assert report.bounced_message_ids == ["<ack.TS-000001.1@example.com>"]
    assert report.bounced_recipients == ["nobody@customer.test"]


def test_postfix_delay_warning_is_machine_mail_not_a_bounce():
    from maildesk.model import Address, OutboundMail

    from .test_routing import DIRECTORY, FakeLookup, ticket as stored_ticket
    from maildesk.workflow.route import route_mail

    notice = (POSTFIX_DSN.replace(b"Undelivered Mail Returned to Sender", b"Delayed Mail (still being retried)")
              .replace(b"Action: failed\nStatus: 5.1.1", b"Action: delayed\nStatus: 4.4.1"))
    parsed_notice = parse_mail(notice)
    assert parsed_notice.machine == "report" and "delayed" in parsed_notice.machine_reason
    ack = OutboundMail(id="o1", message_id="<ack.TS-000001.1@example.com>", kind="ack",
                       sender=Address("support@example.com"), recipients=["nobody@customer.test"], subject="s",
                       text="t", created_at=datetime.now(timezone.utc), ticket="TS-000001", status="sent")
    lookup = FakeLookup([stored_ticket(1, customer="nobody@customer.test",
                                       ids=("<ack.TS-000001.1@example.com>",))], [ack])
    assert route_mail(parsed_notice, lookup, DIRECTORY).kind == "machine"
    # The real failure still is a bounce of that mail.
    failed = route_mail(parse_mail(POSTFIX_DSN), lookup, DIRECTORY)
    assert failed.kind == "bounce" and failed.ticket.number == 1 and failed.bounced == (ack,)
