"""Real-world mail through real servers: a sample of the corpus delivered to Dovecot, read by
``helpdesk once``, answered (or not) through an aiosmtpd sink that offers SMTPUTF8.

The pure run over the whole corpus is tests/test_realworld_corpus.py; this one shows that what
it promises holds end to end: an internationalised sender gets a ticket and an acknowledgement
over SMTPUTF8, legacy charsets read as written, bounces and reports are never answered, a bounce
of the desk's own mail from a bare ``MAILER-DAEMON`` lands on the ticket, and the only
quarantine names the defect of its mail.
"""
from __future__ import annotations

import pytest

from maildesk.daemon.config import load_config
from maildesk.storage.base import open_store

from .desk import CORPUS, SUPERVISOR, SUPPORT, TECHNICIANS, customer_mail, helpdesk, ticket, tickets, write_config
from .mailservers import SmtpSink

REAL_WORLD = CORPUS / "real-world"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.both_stores,  # on TinyDB and on PostgreSQL (tests/conftest.py)
    pytest.mark.skipif(not (REAL_WORLD / "MANIFEST.tsv").is_file(), reason=f"no real-world corpus at {REAL_WORLD}"),
]

# file -> (customer, subject) of the ticket it opens
TICKETS = {
    "mikel-mail/rfc6532__utf8_headers.eml": ("jdöe@mächine.example", "Säying Hello"),
    "stalwart-mail-parser/legacy__010.eml": ("dwsauder@example.com", "Die Hasen und die Frösche"),
    "rt/emails__russian-subject-no-content-type": ("mitya@fling-wing.example.com", "тест тест"),
    "mimekit/stack-overflow.txt": ("test@test.com", "Message Subject"),
}
MACHINE = [
    "sisimai/maildir__err__make-test-01.eml",      # DSN from "Mail Delivery Subsystem <MAILER-DAEMON>"
    "sisimai/maildir__bsd__lhost-dragonfly-01.eml",  # From: MAILER-DAEMON <>
    "sisimai/maildir__bsd__lhost-exim-01.eml",     # X-Failed-Recipients
    "sisimai/maildir__bsd__lhost-ezweb-02.eml",    # EUC-JP labelled ISO-2022-JP
    "sisimai/maildir__bsd__arf-01.eml",            # abuse feedback report
]
QUARANTINED = "spamscope-mail-parser/mail_test_19.eml"  # From: alice@example.com <bob@example.com>


@pytest.fixture
def sink():
    server = SmtpSink(smtputf8=True).start()
    yield server
    server.stop()


@pytest.fixture
def desk(tmp_path, dovecot, mailbox, sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=sink.port)

    def once(*raws: bytes) -> None:
        mailbox.deliver_many(list(raws))
        helpdesk(config, "once", password=mailbox.password)

    return config, once


def processed(config) -> dict[str, str]:
    with open_store(load_config(config), readonly=True) as store:
        return {r.reason: r.outcome for r in store.processed_records() if r.outcome == "quarantined"}


def test_a_sample_of_real_world_mail_through_the_desk(desk, mailbox, sink):
    config, once = desk
    names = [*TICKETS, *MACHINE, QUARANTINED]
    once(*[(REAL_WORLD / name).read_bytes() for name in names])

    assert mailbox.count("INBOX") == 0
    assert mailbox.count("Helpdesk/Quarantine") == 1
    [reason] = processed(config)
    assert reason == "no usable sender address (From names no valid mailbox: 'alice@example.com <bob@example.com>')"

    listed = tickets(config, password=mailbox.password)
    assert sorted((t["customer"], t["subject"]) for t in listed) == sorted(TICKETS.values())

    acks = [m for m in sink.messages() if m.message["Message-ID"].startswith("<ack.")]
    assert sorted(r for m in acks for r in m.rcpt_tos) == sorted(c for c, _ in TICKETS.values())
    [idn_ack] = [m for m in acks if m.rcpt_tos == ["jdöe@mächine.example"]]
    assert idn_ack.smtputf8
    assert idn_ack.message["To"].addresses[0].addr_spec == "jdöe@mächine.example"
    # Mail went to the four customers and the team, to nobody else: no machine was answered.
    everyone = {r for m in sink.messages() for r in m.rcpt_tos}
    team = {SUPERVISOR, *(address for address, _, _ in TECHNICIANS)}
    assert everyone <= {c for c, _ in TICKETS.values()} | team


def test_a_bounce_of_the_desks_own_ack_from_a_bare_mailer_daemon_lands_on_its_ticket(desk, mailbox, sink):
    config, once = desk
    once(customer_mail("kijitora@cust.test", "Printer jam", "The printer on floor 3 is jammed."))
    [ack] = [m for m in sink.messages() if m.message["Message-ID"].startswith("<ack.")]
    sink.clear()

    dsn = ("From: Mail Delivery Subsystem <MAILER-DAEMON>\r\n"
           f"To: {SUPPORT}\r\nSubject: Returned mail: see transcript for details\r\n"
           "Message-ID: <201801010000.dsn@mx.cust.test>\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           "--b\r\nContent-Type: text/plain\r\n\r\n   ----- The following addresses had permanent fatal errors -----\r\n"
           "<kijitora@cust.test>\r\n"
           "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.cust.test\r\n\r\n"
           "Final-Recipient: RFC822; kijitora@cust.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {SUPPORT}\r\n"
           f"Message-ID: {ack.message['Message-ID']}\r\nSubject: {ack.message['Subject']}\r\n"
           "--b--\r\n").encode()
    once(dsn)

    assert mailbox.count("Helpdesk/Quarantine") == 0
    shown = ticket(config, "TS-000001", password=mailbox.password)
    failed = [e for e in shown["events"] if e["kind"] == "delivery-failed"]
    assert len(failed) == 1 and "kijitora@cust.test" in failed[0]["detail"]
    assert [m for m in sink.messages() if "kijitora@cust.test" in m.rcpt_tos] == []
    assert len(tickets(config, password=mailbox.password)) == 1
