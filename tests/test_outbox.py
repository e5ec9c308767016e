"""The outbox: exact messages, loop guards, header safety, SMTP failures (real aiosmtpd)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from maildesk.daemon.config import SmtpConfig
from maildesk.daemon.sender import OutboxSender, build_message
from maildesk.model import Address, OutboundMail, Ticket

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def outbound(i: int = 1, **kw) -> OutboundMail:
    fields = dict(id=f"o{i}", message_id=f"<ack.TS-000001.{i}@example.com>", kind="ack",
                  sender=Address("support@example.com", "IT 服务台"), recipients=[f"c{i}@cust.example"],
                  to_header=[Address(f"c{i}@cust.example", "张三")], subject="[TS-000001] 打印机卡纸",
                  text="您好，我们已收到。", created_at=NOW, ticket="TS-000001", in_reply_to="<c@cust.example>",
                  references=["<c@cust.example>"], language="zh", auto_submitted="auto-replied")
    fields.update(kw)
    return OutboundMail(**fields)


def test_built_message_carries_threading_and_loop_guards():
    msg = message_from_bytes(build_message(outbound()).as_bytes(), policy=default_policy)
    assert msg["Message-ID"] == "<ack.TS-000001.1@example.com>"
    assert msg["In-Reply-To"] == "<c@cust.example>" and msg["References"] == "<c@cust.example>"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Subject"] == "[TS-000001] 打印机卡纸"
    assert msg["From"].addresses[0].display_name == "IT 服务台"
    assert msg["To"].addresses[0].addr_spec == "c1@cust.example"
    assert msg.get_content().strip() == "您好，我们已收到。"
    assert msg["Content-Language"] == "zh-CN"


@pytest.mark.parametrize("subject, name", [
    ("Printer\r\nBcc: victim@evil.example", "Eve\r\nBcc: victim@evil.example"),
    ("Printer\nX-Injected: yes", "Eve\u2028X-Injected: yes"),
    ("Printer\x00\x1b[31m", "Eve\rBcc: x@y.example"),
])
def test_customer_text_cannot_add_headers(subject, name):
    raw = build_message(outbound(subject=subject, to_header=[Address("c1@cust.example", name)])).as_bytes()
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    header_block = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header_block and b"\nX-Injected:" not in header_block
    assert msg["To"].addresses[0].addr_spec == "c1@cust.example"


@pytest.fixture
def store(store_opener):
    with store_opener() as s:
        s.save_ticket(Ticket(number=1, tag="TS-000001", subject="s", customer="c1@cust.example",
                             customer_name="", stage="received", language="zh", created_at=NOW, updated_at=NOW))
        s.commit()
        yield s


def sender_for(sink, store, **kw) -> OutboxSender:
    kw.setdefault("connections", 1)
    config = SmtpConfig(host=sink.host, port=sink.port, security="none", from_address="support@example.com",
                        from_name="Desk", timeout_seconds=5, **kw)
    return OutboxSender(config, store)


def test_sends_over_one_connection_and_marks_each_sent(store, smtp_sink):
    for i in (1, 2, 3):
        store.enqueue(outbound(i))
    store.commit()
    sender = sender_for(smtp_sink, store)
    try:
        assert sender.deliver_due() == (3, 0)
    finally:
        sender.close()
    assert [m.rcpt_tos for m in smtp_sink.messages()] == [["c1@cust.example"], ["c2@cust.example"],
                                                          ["c3@cust.example"]]
    assert {m.mail_from for m in smtp_sink.messages()} == {"support@example.com"}
    assert all(store.outbound(f"o{i}").status == "sent" for i in (1, 2, 3))
    assert store.pending_outbound() == []


def test_temporary_failure_backs_off_and_retries(store, smtp_sink):
    store.enqueue(outbound(1))
    store.commit()
    smtp_sink.reject_with = "451 4.3.0 try again later"
    sender = sender_for(smtp_sink, store, max_attempts=5)
    try:
        assert sender.deliver_due() == (0, 1)
        entry = store.outbound("o1")
        assert entry.status == "pending" and entry.attempts == 1 and "451" in entry.last_error
        assert entry.next_attempt_at > datetime.now(timezone.utc)
        assert sender.deliver_due() == (0, 0)  # not due yet: nothing is hammered
        smtp_sink.reject_with = None
        assert sender.deliver_due(now=entry.next_attempt_at + timedelta(seconds=1)) == (1, 0)
    finally:
        sender.close()
    assert store.outbound("o1").status == "sent"
    assert len(smtp_sink.messages()) == 1


def test_permanent_failure_is_recorded_on_the_ticket_and_never_retried(store, smtp_sink):
    store.enqueue(outbound(1))
    store.commit()
    smtp_sink.refuse_recipients = {"c1@cust.example"}
    sender = sender_for(smtp_sink, store)
    try:
        assert sender.deliver_due() == (0, 1)
        assert sender.deliver_due(now=NOW + timedelta(days=30)) == (0, 0)
    finally:
        sender.close()
    entry = store.outbound("o1")
    assert entry.status == "failed" and "550" in entry.last_error
    [event] = store.get_ticket(1).events
    assert event.kind == "delivery-failed" and "c1@cust.example" in event.detail


def test_gives_up_after_max_attempts(store, smtp_sink):
    store.enqueue(outbound(1))
    store.commit()
    smtp_sink.reject_with = "421 4.7.0 busy"
    sender = sender_for(smtp_sink, store, max_attempts=3)
    later = datetime.now(timezone.utc)
    try:
        for _ in range(3):
            later += timedelta(days=1)
            sender.deliver_due(now=later)
    finally:
        sender.close()
    entry = store.outbound("o1")
    assert entry.status == "failed" and entry.attempts == 3 and "gave up after 3 attempts" in entry.last_error
    assert store.get_ticket(1).events[-1].kind == "delivery-failed"


def test_unreachable_server_defers_everything(store):
    store.enqueue(outbound(1))
    store.commit()

    class Nowhere:
        host, port = "127.0.0.1", 9  # discard port: nothing listens
    sender = sender_for(Nowhere, store)
    try:
        assert sender.deliver_due() == (0, 1)
    finally:
        sender.close()
    assert "cannot reach SMTP server" in sender.unreachable
    assert store.outbound("o1").status == "pending" and store.outbound("o1").attempts == 1


def test_parallel_connections_keep_each_recipients_order(store, smtp_sink):
    for i in range(30):
        store.enqueue(outbound(i, recipients=[f"c{i % 4}@cust.example"], to_header=[],
                               subject=f"mail {i:02d}"))
    store.commit()
    sender = sender_for(smtp_sink, store, connections=3)
    try:
        assert sender.deliver_due() == (30, 0)
    finally:
        sender.close()
    for r in range(4):
        subjects = [m.message["Subject"] for m in smtp_sink.messages() if m.rcpt_tos == [f"c{r}@cust.example"]]
        assert subjects == sorted(subjects) and len(subjects) in (7, 8)


@pytest.mark.parametrize("subject", [
    "[TS-000002] 邮箱容量已满，无法收信",
    "[TS-000002] " + "很长的主题需要折行" * 12,
    "[TS-000002] plain ASCII " + "word " * 30,
    "[TS-000002] Drucker im Büro — Grüße",
])
def test_subjects_survive_encoding_and_folding_exactly(subject):
    raw = build_message(outbound(subject=subject)).as_bytes()
    assert message_from_bytes(raw, policy=default_policy)["Subject"] == subject.strip()
