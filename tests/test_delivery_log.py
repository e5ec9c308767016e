"""Sent marks by delivery log, one store commit per batch; plain mails written without the email generator."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from aiosmtplib.email import flatten_message
from aiosmtplib.protocol import normalize_message_line_endings

from maildesk.daemon.config import SmtpConfig
from maildesk.daemon.sender import OutboxSender, build_message, plain_wire_bytes
from maildesk.model import Address, OutboundMail

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


def mail(i: int, **kw) -> OutboundMail:
    fields = dict(id=f"m{i}", message_id=f"<ack.TS-{i:06d}.x{i}@example.com>", kind="ack",
                  sender=Address("support@example.com", "IT Service Desk"), recipients=[f"c{i}@cust.example"],
                  to_header=[Address(f"c{i}@cust.example", "Ann")], subject=f"[TS-{i:06d}] Printer jams",
                  text="Hello,\nwe have your request.\n.\n", created_at=NOW, ticket=f"TS-{i:06d}")
    fields.update(kw)
    return OutboundMail(**fields)


@pytest.mark.parametrize("changes", [
    {},
    {"subject": "[TS-000001] 打印机卡纸，" * 6, "to_header": [Address("c1@cust.example", "王小明")]},
    {"references": [f"<ref{i}.{'a' * 30}@cust.example>" for i in range(10)], "in_reply_to": "<r@cust.example>",
     "reply_to": "support@example.com", "text": "中文正文\r\n第二行"},
])
def test_plain_mail_bytes_are_exactly_what_the_email_generator_writes(changes):
    message = build_message(mail(1, **changes))
    assert plain_wire_bytes(message) == normalize_message_line_endings(flatten_message(message))


def test_rich_mail_is_left_to_the_generator():
    assert plain_wire_bytes(build_message(mail(1, html="<p>hi</p>"))) is None


@pytest.mark.integration
@pytest.mark.both_stores
def test_marks_left_by_a_killed_desk_are_folded_in_and_only_the_uncertain_mail_is_sent_again(store_opener, smtp_sink,
                                                                                            store_kind, tmp_path):
    with store_opener() as store:
        for i in (1, 2, 3):
            store.enqueue(mail(i))
        store.commit()
        # What a desk killed mid-round leaves behind: 1 accepted and logged, 2 on the wire, 3 not begun
        # (and no commit of the marks: the store still says all three are pending).
        dead = store.delivery_log()
        dead.sending("m1")
        dead.sent("m1", NOW)
        dead.sending("m2")
        dead.close()

    config = SmtpConfig(host=smtp_sink.host, port=smtp_sink.port, security="none",
                        from_address="support@example.com", from_name="IT Service Desk")
    with store_opener() as store:
        sender = OutboxSender(config, store, clock=lambda: NOW)
        try:
            assert store.outbound("m1").status == "sent" and store.outbound("m1").sent_at == NOW
            assert sender.deliver_due() == (2, 0)
        finally:
            sender.close()
        assert not store.pending_outbound()
    assert sorted(r for m in smtp_sink.messages() for r in m.rcpt_tos) == ["c2@cust.example", "c3@cust.example"]
    with store_opener(readonly=True) as store:
        assert {m.id: m.status for m in store.outbox()} == {"m1": "sent", "m2": "sent", "m3": "sent"}
        log = store.delivery_log()
        try:
            left = log.read()
        finally:
            log.close()
    assert not left.sent and not left.uncertain, "emptied once the store holds the marks"
    if store_kind == "tinydb":  # a file beside the store's
        assert (tmp_path / "var" / "helpdesk.json.sending").read_bytes() == b""


@pytest.mark.integration
@pytest.mark.both_stores
@pytest.mark.parametrize("pipelining", [True, False])
def test_refusals_and_rejections_read_the_same_with_and_without_pipelining(store_opener, pipelining):
    from tests.mailservers import SmtpSink

    sink = SmtpSink(pipelining=pipelining).start()
    try:
        sink.refuse_recipients = {"gone@cust.example", "c2@cust.example"}
        config = SmtpConfig(host=sink.host, port=sink.port, security="none", from_address="support@example.com",
                            from_name="IT Service Desk", timeout_seconds=5)
        with store_opener() as store:
            store.enqueue(mail(1, recipients=["c1@cust.example", "gone@cust.example"]))
            store.enqueue(mail(2))
            store.enqueue(mail(3))
            store.commit()
            sender = OutboxSender(config, store, clock=lambda: NOW)
            try:
                assert sender.deliver_due() == (2, 1)
                sink.reject_with = "451 4.3.0 try again later"
                store.enqueue(mail(4))
                assert sender.deliver_due() == (0, 1)
                sink.reject_with = "554 5.6.0 content refused"
                store.update_outbound(replace(store.outbound("m4"), next_attempt_at=None))
                assert sender.deliver_due() == (0, 1)
            finally:
                sender.close()
            one, two, three, four = (store.outbound(f"m{i}") for i in (1, 2, 3, 4))
            assert one.status == "sent" and "gone@cust.example: 550" in one.last_error
            assert two.status == "failed" and "c2@cust.example: 550" in two.last_error
            assert three.status == "sent"
            assert four.status == "failed" and four.last_error.startswith("554") and four.attempts == 2
        assert [m.rcpt_tos for m in sink.messages()] == [["c1@cust.example"], ["c3@cust.example"]]
    finally:
        sink.stop()


@pytest.mark.integration
@pytest.mark.both_stores
def test_a_refused_content_between_pipelined_mails_costs_only_that_mail(store_opener):
    """The next mail's envelope travels with each mail's content: a refusal in between is that mail's alone."""
    from tests.mailservers import SmtpSink

    sink = SmtpSink().start()
    try:
        sink.reject_content_to = {"c3@cust.example"}
        config = SmtpConfig(host=sink.host, port=sink.port, security="none", from_address="support@example.com",
                            from_name="IT Service Desk", timeout_seconds=5)
        with store_opener() as store:
            for i in range(1, 7):
                store.enqueue(mail(i))
            store.commit()
            sender = OutboxSender(config, store, clock=lambda: NOW)
            try:
                assert sender.deliver_due() == (5, 1)
            finally:
                sender.close()
            assert {m.id: m.status for m in store.outbox()} == {
                "m1": "sent", "m2": "sent", "m3": "failed", "m4": "sent", "m5": "sent", "m6": "sent"}
            assert store.outbound("m3").last_error.startswith("554")
        received = sink.messages()
        assert [m.rcpt_tos for m in received] == [[f"c{i}@cust.example"] for i in (1, 2, 4, 5, 6)]
        assert [m.message["Message-ID"] for m in received] == [f"<ack.TS-{i:06d}.x{i}@example.com>"
                                                               for i in (1, 2, 4, 5, 6)]
    finally:
        sink.stop()


@pytest.mark.integration
@pytest.mark.both_stores
def test_a_connection_lost_after_a_content_leaves_the_announced_mail_unsent(store_opener):
    """The server goes away after a mail's content while the next one's envelope is out: nothing
    half-sent is taken, and the next round sends the rest once each."""
    from tests.mailservers import SmtpSink

    sink = SmtpSink().start()
    try:
        sink.drop_after_content_to = {"c2@cust.example"}
        config = SmtpConfig(host=sink.host, port=sink.port, security="none", from_address="support@example.com",
                            from_name="IT Service Desk", timeout_seconds=5)
        with store_opener() as store:
            for i in range(1, 5):
                store.enqueue(mail(i))
            store.commit()
            sender = OutboxSender(config, store, clock=lambda: NOW)
            try:
                assert sender.deliver_due() == (1, 1), "m1 sent; m2 lost with the connection; m3, m4 wait"
                assert [m.rcpt_tos for m in sink.messages()] == [["c1@cust.example"]]
                assert store.outbound("m3").status == store.outbound("m4").status == "pending"
                assert store.outbound("m3").attempts == 0, "the announced mail was never tried"
                sink.drop_after_content_to = set()
                store.update_outbound(replace(store.outbound("m2"), next_attempt_at=None))
                assert sender.deliver_due() == (3, 0)
            finally:
                sender.close()
            assert {m.status for m in store.outbox()} == {"sent"}
        assert [m.rcpt_tos for m in sink.messages()] == [[f"c{i}@cust.example"] for i in (1, 2, 3, 4)]
    finally:
        sink.stop()
