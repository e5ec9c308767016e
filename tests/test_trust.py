"""Whom the desk believes, tried as a hostile outsider would: through real mail (Dovecot in, aiosmtpd out).

Staff mail is believed only on the receiving server's word (the topmost
``Authentication-Results`` with its authserv-id); customers' answers are held
when that server says their address was forged; commands come only from what
a staff member typed; delivery reports count only for mail the desk sent.
"""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from .desk import (AUTHSERV_ID, SUPPORT, customer_mail, helpdesk, ticket, tickets, verified,
                   write_config)

pytestmark = pytest.mark.integration

CUSTOMER = "wang@cust.test"


@pytest.fixture
def desk(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port,
                          leadership=("director@example.com",), notify_unassigned="team")

    def once(*raws):
        for raw in raws:
            mailbox.deliver(raw)
        return helpdesk(config, "once", password=mailbox.password)

    def show(tag="TS-000001"):
        return ticket(config, tag, password=mailbox.password)

    return config, once, show


def mail_to_desk(sender, subject, body, *, headers=(), name="") -> bytes:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <{sender}>' if name else sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(body)
    raw = msg.as_bytes()
    for header in reversed(headers):  # listed top first, as the mail arrives
        raw = f"{header}\r\n".encode() + raw
    return raw


def kinds(sink, address):
    return [m.message["Message-ID"].split(".")[0].lstrip("<") for m in sink.messages() if address in m.rcpt_tos]


def open_ticket(once, sink, subject="VPN drops every hour", body="Since Monday the VPN drops."):
    once(customer_mail(CUSTOMER, subject, body))
    assert kinds(sink, CUSTOMER) == ["ack"]
    sink.clear()


# -- 1. forged staff mail is not obeyed by default ---------------------------------------------

def test_forged_technician_supervisor_and_leadership_mail_is_not_obeyed_by_default(desk, smtp_sink):
    config, once, show = desk
    assert "require_authenticated_staff" not in config.read_text()  # the shipped default, not a test switch
    open_ticket(once, smtp_sink)
    once(mail_to_desk("alice@example.com", "Re: [TS-000001] VPN drops every hour", "#resolve Fixed"),
         mail_to_desk("lead@example.com", "Re: [TS-000001] VPN drops every hour", "#warn Alice Wang was rude"),
         mail_to_desk("director@example.com", "Re: [TS-000001] VPN drops every hour",
                      "Please reset your password at http://evil.test/reset"))
    t = show()
    assert t["stage"] == "received"
    assert [e["kind"] for e in t["events"]].count("forged-staff-mail") == 3
    assert kinds(smtp_sink, CUSTOMER) == [], "nothing reaches the customer"
    report = helpdesk(config, "report", "weekly", "--json", password="x").stdout
    assert "rude" not in report
    # The supervisor hears of each forgery.
    assert kinds(smtp_sink, "lead@example.com").count("alert") == 3


def test_signed_leadership_text_is_never_relayed_to_the_customer(desk, smtp_sink):
    config, once, show = desk
    open_ticket(once, smtp_sink)
    once(verified(mail_to_desk("director@example.com", "Re: [TS-000001] VPN drops every hour",
                               "Tell him we will buy new routers.")))
    assert kinds(smtp_sink, CUSTOMER) == []
    t = show()
    assert [m for m in t["messages"] if m["from"] == "director@example.com"][0]["internal"] is True


def test_a_signed_technician_is_obeyed(desk, smtp_sink):
    config, once, show = desk
    open_ticket(once, smtp_sink)
    once(verified(mail_to_desk("alice@example.com", "Re: [TS-000001] VPN drops every hour",
                               "#resolve Replaced the router firmware.")))
    assert show()["stage"] == "feedback" and kinds(smtp_sink, CUSTOMER) == ["result"]


def test_the_insecure_mode_must_be_written_down_and_is_warned_about(tmp_path, dovecot, mailbox, smtp_sink):
    base = dict(imap_port=dovecot.port, imap_user=mailbox.username, imap_password=mailbox.password,
                smtp_port=smtp_sink.port)
    no_id = write_config(tmp_path / "noid", **base)
    no_id.write_text(no_id.read_text().replace(f'authserv_id = "{AUTHSERV_ID}"', ""))
    proc = helpdesk(no_id, "once", password=mailbox.password, check=False)
    assert proc.returncode == 2 and "security.authserv_id" in proc.stderr

    insecure = write_config(tmp_path / "insecure", **base)
    insecure.write_text(insecure.read_text().replace(f'authserv_id = "{AUTHSERV_ID}"',
                                                     "require_authenticated_staff = false"))
    for _ in range(2):  # at every start
        proc = helpdesk(insecure, "once", password=mailbox.password)
        assert "WARNING" in proc.stderr and "require_authenticated_staff = false" in proc.stderr
    check = helpdesk(insecure, "check", password=mailbox.password).stdout
    assert "INSECURE" in check.splitlines()[-1]
    secure = write_config(tmp_path / "secure", **base)
    assert "secure" in helpdesk(secure, "check", password=mailbox.password).stdout.splitlines()[-1]


# -- 3. the customer's subject gives no staff commands --------------------------------------------

@pytest.mark.parametrize("subject", ["VPN drops #resolve", "VPN 断线 ＃执行", "VPN drops #priority"])
def test_commands_never_come_from_the_customers_subject(desk, smtp_sink, subject):
    config, once, show = desk
    open_ticket(once, smtp_sink, subject=subject)
    once(verified(mail_to_desk("alice@example.com", f"Re: [TS-000001] {subject}",
                               "Could you send me a screenshot of the error?")))
    t = show()
    assert t["stage"] == "received"
    assert not [e for e in t["events"] if e["kind"] == "command-rejected"]
    assert kinds(smtp_sink, CUSTOMER) == ["relay"]  # the question reached the customer
    assert kinds(smtp_sink, "alice@example.com") == []  # and no error mail came back


# -- 4. Authentication-Results cannot be fooled --------------------------------------------------

@pytest.mark.parametrize("headers", [
    # The server's own verdict on top; a forged pass the sender wrote lies below it.
    [f"Authentication-Results: {AUTHSERV_ID}; dkim=none; dmarc=fail header.from=example.com",
     f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"],
    # A quoted SPF property that reads like a DKIM pass to a naive ';' split.
    [f'Authentication-Results: {AUTHSERV_ID}; spf=pass '
     f'smtp.mailfrom="x;dkim=pass header.d=example.com;"@evil.test'],
    # A comment that reads like one.
    [f"Authentication-Results: {AUTHSERV_ID}; spf=fail (dkim=pass header.d=example.com) smtp.mailfrom=evil.test"],
    # Any failure in the trusted header wins over a pass.
    [f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"],
    # Another server's verdict, or none at all.
    ["Authentication-Results: mx.evil.test; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"],
    [],
])
def test_authentication_results_cannot_be_fooled(desk, smtp_sink, headers):
    config, once, show = desk
    open_ticket(once, smtp_sink)
    once(mail_to_desk("alice@example.com", "Re: [TS-000001] VPN drops every hour", "#resolve Fixed",
                      headers=headers))
    assert show()["stage"] == "received" and kinds(smtp_sink, CUSTOMER) == []


# -- 6. a technician without an NDA sees and writes nothing of a customer's ticket --------------------

def test_a_technician_without_nda_gets_one_neutral_refusal(desk, smtp_sink):
    config, once, show = desk
    open_ticket(once, smtp_sink, subject="Salary data of Wang Lei cannot be opened")
    once(verified(mail_to_desk("bob@example.com", "[TS-000001]", "#diagnose")),
         verified(mail_to_desk("bob@example.com", "Re: [TS-000001]", "Dear customer, send me your password.")))
    to_bob = [m for m in smtp_sink.messages() if m.rcpt_tos == ["bob@example.com"]]
    assert len(to_bob) == 2
    for m in to_bob:
        text = m.data.decode("utf-8", "replace")
        assert "Salary" not in text and "Wang Lei" not in text and "TS-000001" not in text
        assert "NDA" in m.message.get_content()
    assert kinds(smtp_sink, CUSTOMER) == []
    t = show()
    assert t["stage"] == "received"
    assert not any("password" in m["text"] for m in t["messages"])


# -- 7. customers' answers are held when the server says the sender was forged ----------------------------

def test_a_forged_customer_answer_is_held_and_the_ack_echoes_nothing(desk, smtp_sink):
    config, once, show = desk
    open_ticket(once, smtp_sink)
    once(verified(mail_to_desk("alice@example.com", "Re: [TS-000001] VPN drops every hour",
                               "#propose Replace the router on Friday.")))
    assert show()["stage"] == "proposed"
    smtp_sink.clear()
    dmarc_fail = [f"Authentication-Results: {AUTHSERV_ID}; dkim=none; dmarc=fail header.from=cust.test"]
    once(mail_to_desk(CUSTOMER, "Re: [TS-000001] VPN drops every hour", "同意", headers=dmarc_fail))
    t = show()
    assert t["stage"] == "proposed"
    assert t["events"][-1]["kind"] == "customer-answer-held" or \
        "customer-answer-held" in [e["kind"] for e in t["events"]]
    [notice] = [m for m in smtp_sink.messages() if m.rcpt_tos == ["alice@example.com"]]
    assert "could not verify" in notice.message.get_content()

    # A new request in the customer's name, phishing for a click from the support address.
    smtp_sink.clear()
    once(mail_to_desk(CUSTOMER, "Mandatory password reset: http://evil.test/reset", "Click the link.",
                      name="IT Security http://evil.test", headers=dmarc_fail))
    [ack] = [m for m in smtp_sink.messages() if m.rcpt_tos == [CUSTOMER]]
    raw = ack.data.decode("utf-8", "replace")
    assert "evil.test" not in raw and "password reset" not in raw.lower() and "IT Security" not in raw
    assert "TS-000002" in ack.message["Subject"]


def test_a_verified_or_unjudged_customer_answer_counts(desk, smtp_sink):
    config, once, show = desk
    open_ticket(once, smtp_sink)
    once(verified(mail_to_desk("alice@example.com", "Re: [TS-000001] VPN drops every hour",
                               "#propose Replace the router on Friday.")))
    once(mail_to_desk(CUSTOMER, "Re: [TS-000001] VPN drops every hour", "同意",
                      headers=[f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=cust.test"]))
    assert show()["stage"] == "executing"


# -- 8. delivery reports count only for mail the desk sent ------------------------------------------

def test_a_forged_delivery_report_cannot_write_onto_a_victims_ticket(desk, smtp_sink):
    config, once, show = desk
    victim_id = make_msgid(domain="cust.test")
    once(customer_mail(CUSTOMER, "VPN drops", "help", message_id=victim_id))
    dsn = (f"From: MAILER-DAEMON@evil.test\r\nTo: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           f"Message-ID: {make_msgid(domain='evil.test')}\r\nMIME-Version: 1.0\r\n"
           f'Content-Type: multipart/report; report-type="delivery-status"; boundary="b"\r\n\r\n'
           f"--b\r\nContent-Type: text/plain\r\n\r\nYour account will be closed; reply with your password.\r\n"
           f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; evil.test\r\n\r\n"
           f"Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {victim_id}\r\nSubject: VPN drops\r\n"
           f"--b--\r\n").encode()
    smtp_sink.clear()
    once(dsn)
    t = show()
    assert "delivery-failed" not in [e["kind"] for e in t["events"]]
    assert not any("password" in m["text"] for m in t["messages"])
    assert [m for m in smtp_sink.messages() if "director@example.com" not in m.rcpt_tos] == []


# -- 9. a stranger cannot pre-empt a victim's mail by reusing its Message-ID -------------------------------

def test_a_reused_message_id_does_not_swallow_another_senders_mail(desk, smtp_sink, mailbox):
    config, once, show = desk
    shared_id = make_msgid(domain="cust.test")
    once(customer_mail("stranger@evil.test", "first", "x", message_id=shared_id))
    once(customer_mail(CUSTOMER, "My real request", "help", message_id=shared_id))
    customers = sorted(t["customer"] for t in tickets(config, password=mailbox.password))
    assert customers == sorted([CUSTOMER, "stranger@evil.test"])
    # The very same mail delivered twice (with different trace headers) is still one ticket.
    same = customer_mail("twice@cust.test", "Twice", "once only")
    once(b"Received: from a.example by mx\r\n" + same, b"Received: from b.example by mx\r\n" + same)
    assert [t["customer"] for t in tickets(config, password=mailbox.password)].count("twice@cust.test") == 1


# -- 10. the desk never answers its own aliases or mailer daemons ------------------------------------------

def test_plus_aliases_and_mailer_daemons_are_never_answered(desk, smtp_sink, mailbox):
    config, once, show = desk
    once(customer_mail("support+loop@example.com", "Loop?", "x"),
         customer_mail("MAILER-DAEMON@mx.cust.test", "Returned mail", "x"),
         customer_mail("postmaster@cust.test", "Delivery problem", "x"))
    to = [r for m in smtp_sink.messages() for r in m.rcpt_tos]
    assert not {"support+loop@example.com", "mailer-daemon@mx.cust.test", "postmaster@cust.test"} & set(to)
    assert tickets(config, password=mailbox.password) == []


# -- 2. look-alike and invisible characters never make staff ----------------------------------------------

@pytest.mark.parametrize("sender", ["alice@ex\u0430mple.com", "ali\u200bce@example.com", "\uff41lice@example.com"])
def test_a_look_alike_of_a_staff_address_is_a_customer(desk, smtp_sink, sender):
    from email.policy import SMTPUTF8

    config, once, show = desk
    open_ticket(once, smtp_sink)
    msg = EmailMessage(policy=SMTPUTF8)
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = "Re: [TS-000001] VPN drops every hour"
    msg["Message-ID"] = make_msgid(domain="cust.test")
    msg.set_content("#resolve Fixed, log in at http://evil.test to confirm")
    # Even signed and verified for its own (look-alike) domain, it is somebody else's mail.
    once(verified(msg.as_bytes()))
    assert show()["stage"] == "received"
    assert kinds(smtp_sink, CUSTOMER) == []
