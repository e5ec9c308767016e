"""Customers with internationalised or odd addresses: they are served, and never stop the outbox.

A sender address with a Chinese local part, a Cyrillic letter in its domain or
an invisible character used to make the outbox raise ``UnicodeEncodeError`` on
its acknowledgement, so ``helpdesk once`` failed every time and nobody else got
mail either.  The integration tests drive the real command line against
Dovecot and an aiosmtpd sink that offers SMTPUTF8 (RFC 6531) or not.
"""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, message_from_string
from email.message import EmailMessage
from email.policy import SMTPUTF8
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid

import pytest

from maildesk.daemon.config import Config, SmtpConfig, load_config
from maildesk.daemon.sender import OutboxSender, PlainText, build_message, header_safe, outgoing, wire_address
from maildesk.model import Address, OutboundMail, Ticket
from maildesk.parsers import parse_mail
from maildesk.storage.base import open_store

from .desk import SUPERVISOR, SUPPORT, customer_mail, helpdesk, ticket, tickets, write_config
from .mailservers import SmtpSink

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)

CHINESE = "用户@例子.中国"                  # UTF-8 local part and domain: needs SMTPUTF8
CYRILLIC = "alice@ex\u0430mple.test"      # ASCII local part, IDN domain: goes out as xn--
CYRILLIC_WIRE = "alice@xn--exmple-4nf.test"
HIDDEN = "ali\u200bce@cust.test"          # a zero-width space in the local part: needs SMTPUTF8
ORDINARY = ("olga@cust.test", "omar@cust.test")


# -- building (pure) ----------------------------------------------------------------------

def parsed(raw: bytes) -> EmailMessage:
    """As an RFC 6532 reader sees it: headers in UTF-8 (the bytes parser would leave escapes)."""
    return message_from_string(raw.decode("utf-8"), policy=default_policy)


def outbound(recipient: str, **kw) -> OutboundMail:
    fields = dict(id="o1", message_id="<ack.TS-000001.1@example.com>", kind="ack",
                  sender=Address(SUPPORT, "IT 服务台"), recipients=[recipient],
                  to_header=[Address(recipient, "张三")], subject="[TS-000001] 打印机卡纸",
                  text="您好，我们已收到。", created_at=NOW, ticket="TS-000001",
                  in_reply_to="<c@cust.test>", references=["<c@cust.test>"], language="zh",
                  auto_submitted="auto-replied")
    fields.update(kw)
    return OutboundMail(**fields)


def test_ascii_addresses_keep_the_fast_compat32_message():
    assert isinstance(build_message(outbound("c1@cust.test")), PlainText)
    assert not outgoing(outbound("c1@cust.test"), None, SUPPORT).smtputf8


@pytest.mark.parametrize("text", ["您好，我们已收到。\n" * 40, "Hello,\nwe got it.\n", "", "no newline at the end 结尾"])
def test_the_plain_text_part_is_byte_for_byte_what_mimetext_makes(text):
    from email.mime.text import MIMEText

    assert PlainText(text).as_bytes() == MIMEText(text, "plain", "utf-8").as_bytes()


# Around the point where one encoded word no longer fits on the Subject line (78 characters).
SUBJECTS = ["Printer jam", "打印机", "长" * 14, "长" * 15, "长" * 16, "长" * 17, "a" * 40 + "中",
            "VPN 每小时断开一次 " * 6, "tab\tand  spaces 中", "é" * 31]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_fast_wire_form_is_what_the_email_generator_writes(subject):
    from email.header import Header
    from email.policy import compat32

    mail = outbound("c1@cust.test", subject=f"[TS-000001] {subject}", references=[f"<r{i}.{'x' * 40}@cust.test>"
                                                                               for i in range(4)])
    out = outgoing(mail, None, SUPPORT)
    assert out.wire == out.message.as_bytes(policy=compat32.clone(linesep="\r\n"))
    # And the subject is what the library's own encoder writes for it, folded or not (on one
    # line, without control characters: header_safe).
    value = header_safe(f"[TS-000001] {subject}")
    line = value if value.isascii() else Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")
    assert f"Subject: {line}\r\n".encode() in out.wire
    assert parsed(out.wire)["Subject"] == value


def test_an_idn_domain_behind_an_ascii_local_part_goes_out_in_its_idna_form():
    out = outgoing(outbound(CYRILLIC), None, SUPPORT)
    assert out.recipients == [CYRILLIC_WIRE] and not out.smtputf8
    raw = out.message.as_bytes()
    assert raw.isascii()
    assert message_from_bytes(raw, policy=default_policy)["To"].addresses[0].addr_spec == CYRILLIC_WIRE
    # The Cyrillic letter names another domain than the Latin look-alike, and stays so.
    assert wire_address(CYRILLIC) != "alice@example.test"


@pytest.mark.parametrize("address", [CHINESE, HIDDEN, "bob@ex\u200bample.test", "bob@例子。中国"])
def test_addresses_without_an_exact_ascii_form_need_smtputf8_and_stay_exact(address):
    # Python's IDNA codec maps a zero-width space to nothing and 。 to a dot: "ex\u200bample.test"
    # would become example.test, someone else's domain.  Such domains are sent as they are.
    assert wire_address(address) == address
    out = outgoing(outbound(address), None, SUPPORT)
    assert out.smtputf8 and out.recipients == [address]
    raw = out.message.as_bytes()
    msg = parsed(raw)
    assert msg["To"].addresses[0].addr_spec == address
    assert msg["To"].addresses[0].display_name == "张三"
    assert msg["Subject"] == "[TS-000001] 打印机卡纸"
    assert msg.get_content().strip() == "您好，我们已收到。"
    to_line = [line for line in raw.splitlines() if line.startswith(b"To:")]
    assert to_line == [f"To: 张三 <{address}>".encode()], "raw UTF-8 (RFC 6532), no encoded words"


def test_an_international_message_is_rebuilt_identically_after_a_crash():
    mail = outbound(CHINESE)
    first, again = build_message(mail).as_bytes(), build_message(mail).as_bytes()
    assert first == again
    assert parsed(first)["Message-ID"] == mail.message_id


@pytest.mark.parametrize("name", ["Eve\r\nBcc: victim@evil.example", "Eve\u2028X-Injected: yes"])
def test_customer_text_cannot_add_headers_to_an_international_message(name):
    raw = build_message(outbound(CHINESE, to_header=[Address(CHINESE, name)],
                                 subject=f"Printer\r\nBcc: {name}")).as_bytes()
    msg = parsed(raw)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg["To"].addresses[0].addr_spec == CHINESE


# -- the sender on a real server ---------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.both_stores
def test_a_mail_the_smtp_client_refuses_fails_alone_and_the_connection_serves_the_next(store_opener, smtp_sink):
    reported = []
    with store_opener() as store:
        store.save_ticket(Ticket(number=1, tag="TS-000001", subject="s", customer="c@cust.test", customer_name="",
                                 stage="received", language="zh", created_at=NOW, updated_at=NOW))
        # aiosmtplib raises ValueError rather than put a space on a command line (it could smuggle
        # parameters): an error no SMTP exception class covers.
        store.enqueue(outbound("bad addr@cust.test"))
        store.enqueue(outbound("c@cust.test", id="o2", message_id="<ack.TS-000001.2@example.com>"))
        store.commit()
        config = SmtpConfig(host=smtp_sink.host, port=smtp_sink.port, security="none", from_address=SUPPORT,
                            from_name="Desk", timeout_seconds=5, connections=1)
        sender = OutboxSender(config, store, on_permanent_failure=lambda mail, reason: reported.append(mail.id))
        try:
            assert sender.deliver_due() == (1, 1)
            assert sender.deliver_due() == (0, 0)
        finally:
            sender.close()
        bad = store.outbound("o1")
        assert bad.status == "failed" and bad.last_error.startswith("cannot send the message: ValueError")
        assert store.outbound("o2").status == "sent"
        assert [e.kind for e in store.get_ticket(1).events] == ["delivery-failed"]
    assert reported == ["o1"]
    assert [m.rcpt_tos for m in smtp_sink.messages()] == [["c@cust.test"]]


# -- the parser keeps these addresses exactly ----------------------------------------------

def international_mail(sender: str, subject: str, body: str, *, name: str = "") -> bytes:
    """A customer's mail as an SMTPUTF8 client writes it: the From line in raw UTF-8.

    (tests/desk.py's ``customer_mail`` uses the default policy, which cannot write such
    an address: it raises, or turns a local part into an encoded word.)
    """
    msg = EmailMessage(policy=SMTPUTF8)
    msg["From"] = f'"{name}" <{sender}>' if name else sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain="mail.cust.test")
    msg.set_content(body)
    return msg.as_bytes()


@pytest.mark.parametrize("address", [CHINESE, CYRILLIC, HIDDEN])
def test_the_parser_keeps_every_character_of_the_sender(address):
    mail = parse_mail(international_mail(address, "Hello", "help", name="Ünal"))
    assert mail.sender.email == address and mail.sender.name == "Ünal"


# -- through real mail ----------------------------------------------------------------------

@pytest.fixture
def ascii_only_sink():
    sink = SmtpSink(smtputf8=False).start()
    yield sink
    sink.stop()


def desk_config(tmp_path, dovecot, mailbox, sink, **kw):
    return write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                        imap_password=mailbox.password, smtp_port=sink.port, notify_unassigned="none", **kw)


def deliver_customers(mailbox, addresses):
    mailbox.deliver_many([international_mail(a, f"Printer {i}", "It jams.") if not a.isascii()
                          else customer_mail(a, f"Printer {i}", "It jams.") for i, a in enumerate(addresses)])


def acks_to(sink, recipient):
    return [m for m in sink.messages() if m.rcpt_tos == [recipient]]


def lose_attachment(config: Config, sha256: str) -> None:
    """Take an attachment's bytes away behind the store's back, as a cleaned-up disk or a partial restore does.

    The ``Store`` interface rightly has no way to do it, so this reaches where each store keeps them.
    """
    if config.storage_url:  # the PostgreSQL store: a row of its attachments table
        import psycopg
        with psycopg.connect(config.storage_url, autocommit=True) as conn:
            assert conn.execute("DELETE FROM attachments WHERE sha256 = %s", (sha256,)).rowcount == 1
    else:  # the TinyDB store: a file in the folder beside its database
        with open_store(config, readonly=True) as store:
            store.attachments.path_for(sha256).unlink()


def ticket_of(config, mailbox, customer):
    [entry] = [t for t in tickets(config, password=mailbox.password) if t["customer"] == customer]
    return ticket(config, entry["id"], password=mailbox.password)


@pytest.mark.integration
@pytest.mark.both_stores
def test_international_customers_are_acknowledged_over_smtputf8(tmp_path, dovecot, mailbox, smtp_sink):
    config = desk_config(tmp_path, dovecot, mailbox, smtp_sink)
    deliver_customers(mailbox, [CHINESE, ORDINARY[0], CYRILLIC, HIDDEN, ORDINARY[1]])
    helpdesk(config, "once", password=mailbox.password)  # exit status 0, or it raises with the stderr
    assert {t["customer"] for t in tickets(config, password=mailbox.password)} == {
        CHINESE, CYRILLIC, HIDDEN, *ORDINARY}, "the desk keeps each address exactly"
    for customer, envelope, needs_utf8 in [(CHINESE, CHINESE, True), (HIDDEN, HIDDEN, True),
                                           (CYRILLIC, CYRILLIC_WIRE, False),
                                           (ORDINARY[0], ORDINARY[0], False), (ORDINARY[1], ORDINARY[1], False)]:
        [ack] = acks_to(smtp_sink, envelope)
        assert ack.smtputf8 == needs_utf8, customer
        assert ack.message["To"].addresses[0].addr_spec == envelope
        assert ack.mail_from == SUPPORT


@pytest.mark.integration
@pytest.mark.both_stores
def test_without_smtputf8_only_the_mail_that_needs_it_fails_and_is_reported_once(tmp_path, dovecot, mailbox,
                                                                                 ascii_only_sink):
    sink = ascii_only_sink
    config = desk_config(tmp_path, dovecot, mailbox, sink)
    deliver_customers(mailbox, [CHINESE, ORDINARY[0], CYRILLIC, ORDINARY[1]])
    helpdesk(config, "once", password=mailbox.password)
    helpdesk(config, "once", password=mailbox.password)  # nothing retried, nothing reported twice
    for envelope in (ORDINARY[0], ORDINARY[1], CYRILLIC_WIRE):
        assert len(acks_to(sink, envelope)) == 1, envelope
    assert not any(m.smtputf8 for m in sink.messages())
    failed = [e for e in ticket_of(config, mailbox, CHINESE)["events"] if e["kind"] == "delivery-failed"]
    assert len(failed) == 1 and "SMTPUTF8" in failed[0]["detail"] and CHINESE in failed[0]["detail"]
    [report] = acks_to(sink, SUPERVISOR)
    body = report.message.get_content()
    assert CHINESE in body and "SMTPUTF8" in body


@pytest.mark.integration
@pytest.mark.both_stores
def test_a_mail_that_cannot_be_built_is_failed_and_reported_once_while_others_go_out(tmp_path, dovecot,
                                                                                     mailbox, smtp_sink):
    config = desk_config(tmp_path, dovecot, mailbox, smtp_sink, leadership=("boss@example.com",))
    # The weekly report is queued with its charts and CSV in the attachment folder ...
    helpdesk(config, "report", "weekly", "--send", password=mailbox.password)
    with open_store(load_config(config), readonly=True) as store:
        [report] = [m for m in store.outbox() if m.kind == "report"]
    # ... and one of them is lost before it is sent (a cleaned-up disk, a partial restore).
    lose_attachment(load_config(config), report.parts[-1].sha256)
    deliver_customers(mailbox, ORDINARY)
    helpdesk(config, "once", password=mailbox.password)
    helpdesk(config, "once", password=mailbox.password)  # nothing retried, nothing reported twice
    for envelope in ORDINARY:
        assert len(acks_to(smtp_sink, envelope)) == 1, envelope
    assert acks_to(smtp_sink, "boss@example.com") == []
    with open_store(load_config(config), readonly=True) as store:
        entry = store.outbound(report.id)
    assert entry.status == "failed" and "FileNotFoundError" in entry.last_error
    [told] = acks_to(smtp_sink, SUPERVISOR)
    assert "FileNotFoundError" in told.message.get_content()
