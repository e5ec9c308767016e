"""The spine end to end: real Dovecot in, real aiosmtpd out, the real daemon in between."""
from __future__ import annotations

import email
import hashlib
import os
from datetime import datetime, timezone

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config
from maildesk.model import Address, OutboundMail, Ticket
from maildesk.storage.base import open_store

from .desk import CORPUS, SUPPORT, customer_mail, helpdesk, ticket, tickets, verified, write_config

pytestmark = pytest.mark.integration
# Every test here that reaches the store runs on TinyDB and on PostgreSQL (tests/conftest.py).
both_stores = pytest.mark.both_stores


@pytest.fixture
def desk_config(tmp_path, dovecot, mailbox, smtp_sink):
    # Seeded tickets are days old: SLA alerts are tested elsewhere, not here.
    return write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                        imap_password=mailbox.password, smtp_port=smtp_sink.port,
                        extra="[sla]\nfirst_response_hours = 100000\nresolution_hours = 100000\n")


def run_once(config):
    with Desk(load_config(config)) as desk:
        return desk.run_once()


def acks(sink):
    return [m for m in sink.messages() if m.message["X-Helpdesk-Ticket"] and "ack." in m.message["Message-ID"]]


def seed_ticket(config, number: int, customer: str, message_ids: list[str], subject: str, lang="en"):
    """A ticket that exists before the test's mails arrive (as if opened weeks ago)."""
    cfg = load_config(config)
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    with open_store(cfg) as store:
        while store.allocate_ticket_number() < number:
            pass
        store.save_ticket(Ticket(number=number, tag=store.format_tag(number), subject=subject,
                                 customer=customer, customer_name="", stage="received", language=lang,
                                 created_at=now, updated_at=now, message_ids=message_ids))
        for mid in message_ids:
            if "@example.com" in mid:
                store.enqueue(OutboundMail(id=mid, message_id=mid, kind="ack",
                                           sender=Address(SUPPORT), recipients=[customer], subject=subject,
                                           text="", created_at=now, ticket=store.format_tag(number),
                                           status="sent"))
        store.commit()


@both_stores
def test_every_corpus_mail_has_its_outcome(desk_config, mailbox, smtp_sink):
    # Tickets the corpus replies refer to, as if opened earlier.
    seed_ticket(desk_config, 17, "zhang.wei@customer.example", ["<ack.TS-000017.1@example.com>"],
                "SAP printing")
    seed_ticket(desk_config, 21, "liuyang@customer.example",
                ["<notify.TS-000021.1@example.com>", "<feedback.TS-000021.1@example.com>"], "邮箱配额",
                lang="zh")
    seed_ticket(desk_config, 30, "nobody@customer.example", ["<ack.TS-000030.1@example.com>"], "Mouse")
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) == 16
    for f in files:
        raw = f.read_bytes()
        # The technicians' mails in the corpus are signed by their company's server (example.com).
        staff = any(line.lower().startswith(b"from:") and b"@example.com" in line.lower()
                    for line in raw.split(b"\n\n", 1)[0].splitlines())
        mailbox.deliver(verified(raw) if staff else raw)

    summary = run_once(desk_config)
    assert summary.handled == 16
    assert mailbox.count("INBOX") == 0

    by_subject = {t["subject"]: t for t in tickets(desk_config, password=mailbox.password)}
    new = {s: t for s, t in by_subject.items() if t["id"] not in ("TS-000017", "TS-000021", "TS-000030")}
    assert set(new) == {
        "Cannot print from SAP", "邮箱容量已满，无法收信", "会议室投影仪没有信号", "办公室网络很慢",
        "Scanner driver", "硬盘报警", "Broken mail", "Drucker im Büro",
    }

    show = lambda tag: ticket(desk_config, tag, password=mailbox.password)  # noqa: E731
    gbk = show(new["邮箱容量已满，无法收信"]["id"])
    assert "删除邮件后仍然无法收信" in gbk["messages"][0]["text"]
    assert gbk["customer"] == "liuyang@customer.example"
    html = show(new["会议室投影仪没有信号"]["id"])["messages"][0]["text"]
    assert "无信号" in html and "<" not in html and "font-size" not in html
    outlook = show(new["办公室网络很慢"]["id"])
    assert outlook["messages"][0]["attachments"] == ["网络拓扑.pdf"]
    latin = show(new["Drucker im Büro"]["id"])["messages"][0]["text"]
    assert "Büro" in latin and "Grüße" in latin and "Müller" in latin
    broken = show(new["Broken mail"]["id"])["messages"][0]["text"]
    assert "types double letters" in broken

    # Replies joined their tickets instead of opening new ones.
    t17 = show("TS-000017")
    assert any("It works again after the restart" in m["text"] for m in t17["messages"])
    t21 = show("TS-000021")
    assert (t21["stage"], t21["assignee"]) == ("proposed", "alice@example.com")
    texts = [m["text"] for m in t21["messages"]]
    assert any("把邮箱配额从 2GB 调到 10GB" in t for t in texts)  # technician (Outlook)
    # Bob (QQ, full-width) has no NDA: his mail is refused and nothing of it joins the customer's ticket.
    assert not any("客户已确认，今晚十点操作" in t for t in texts)
    assert "refused-no-nda" in [e["kind"] for e in t21["events"]]
    assert any("4分" in t for t in texts)  # customer's rating reply
    # The bounce is recorded on the ticket of the mail that failed.
    t30 = show("TS-000030")
    assert [e["kind"] for e in t30["events"]] == ["delivery-failed"]

    # Acknowledgements: one per new ticket, none for machines, in the customer's language.
    # An ack and a team notification per new ticket, a notification per customer follow-up
    # (corpus 05 and 08), Alice's proposal relayed to the customer (06), and a neutral refusal to Bob,
    # who has no NDA on record (07); run_once returns only after the server's 250s.
    sent = smtp_sink.messages()
    assert len(sent) == 2 * len(new) + 2 + 2
    proposal = next(m for m in sent if m.message["Message-ID"].startswith("<proposal.TS-000021"))
    assert proposal.rcpt_tos == ["liuyang@customer.example"]
    assert "把邮箱配额从 2GB 调到 10GB" in proposal.message.get_content()
    assert "alice@example.com" not in proposal.data.decode("utf-8", "replace")
    refusal = next(m for m in sent if m.rcpt_tos == ["bob@example.com"])
    assert "confidentiality agreement" in refusal.message.get_content()
    sent = [m for m in sent if m not in (proposal, refusal)]
    ack_to = sorted(m.rcpt_tos[0] for m in sent if m.message["Auto-Submitted"] == "auto-replied")
    assert ack_to == sorted(t["customer"] for t in new.values())
    for m in sent:
        assert m.message["Auto-Submitted"] in ("auto-replied", "auto-generated")
        assert m.message["X-Auto-Response-Suppress"] == "All"
        assert m.mail_from == SUPPORT
        for machine in ("director@customer.example", "zhoujie@customer.example", "news@vendor.example",
                        "mailer-daemon@mx.example.com"):
            assert machine not in m.rcpt_tos
    zh_ack = next(m for m in sent if m.rcpt_tos == ["zhaoliu@customer.example"])
    assert zh_ack.message["Subject"] == f"[{new['硬盘报警']['id']}] 硬盘报警"
    assert "您好" in zh_ack.message.get_content()
    en_ack = next(m for m in sent if m.rcpt_tos == ["jm@kunde.example"])
    assert "We have received your request" in en_ack.message.get_content()

    # Everything left the inbox; nothing was quarantined; a second run changes nothing.
    assert mailbox.count("Helpdesk/Processed") == 16
    before = len(smtp_sink.messages())
    again = run_once(desk_config)
    assert again.handled == 0 and len(smtp_sink.messages()) == before


@both_stores
def test_mail_without_message_id_processed_twice_gives_one_ticket(desk_config, mailbox, smtp_sink):
    raw = (CORPUS / "13-no-message-id.eml").read_bytes()
    mailbox.deliver(raw)
    run_once(desk_config)
    mailbox.deliver(raw)  # the same bytes again, e.g. restored from a backup
    summary = run_once(desk_config)
    assert summary.outcomes == {"duplicate": 1}
    assert [t["subject"] for t in tickets(desk_config, password=mailbox.password)] == ["Scanner driver"]


@both_stores
def test_customer_replies_join_their_ticket_and_strangers_get_their_own(desk_config, mailbox, smtp_sink):
    mailbox.deliver(customer_mail("wang@cust.example", "VPN drops every hour", "VPN disconnects.",
                                  message_id="<first@cust.example>"))
    run_once(desk_config)
    ack = next(m for m in smtp_sink.wait_for(2) if m.rcpt_tos == ["wang@cust.example"]).message
    tag = ack["Subject"].split("]")[0].lstrip("[")
    assert tag == "TS-000001" and ack["In-Reply-To"] == "<first@cust.example>"

    # 1) reply by In-Reply-To with the tag removed and Chinese prefixes
    mailbox.deliver(customer_mail("wang@cust.example", "回复: 答复: VPN drops every hour", "Still dropping.",
                                  in_reply_to=ack["Message-ID"]))
    # 2) reply by subject tag only, with a different prefix
    mailbox.deliver(customer_mail("Wang@Cust.Example", f"AW: Fwd: [{tag}] VPN", "Log attached."))
    # 3) a stranger with the same tag and threading: a new ticket, nothing disclosed
    mailbox.deliver(customer_mail("eve@other.example", f"Re: [{tag}] VPN drops every hour", "Show me",
                                  in_reply_to=ack["Message-ID"]))
    smtp_sink.clear()
    run_once(desk_config)

    listing = {t["id"]: t for t in tickets(desk_config, password=mailbox.password)}
    assert sorted(listing) == ["TS-000001", "TS-000002"]
    assert listing["TS-000002"]["customer"] == "eve@other.example"
    first = ticket(desk_config, "TS-000001", password=mailbox.password)
    inbound = [m["text"] for m in first["messages"] if m["direction"] == "in"]
    assert inbound == ["VPN disconnects.", "Still dropping.", "Log attached."]

    to_eve = [m for m in smtp_sink.messages() if "eve@other.example" in m.rcpt_tos]
    assert len(to_eve) == 1
    body = to_eve[0].message.get_content()
    assert "TS-000002" in to_eve[0].message["Subject"] and "TS-000001" not in to_eve[0].message["Subject"]
    assert "TS-000001" not in body and "VPN disconnects" not in body and "wang@" not in body
    # The customer's follow-ups reached the team, not another acknowledgement.
    assert not [m for m in smtp_sink.messages() if "wang@cust.example" in m.rcpt_tos]


@both_stores
def test_cli_contract_json_fields(desk_config, mailbox, smtp_sink, store_kind):
    mailbox.deliver((CORPUS / "04-multipart-alternative-outlook-zh.eml").read_bytes())
    helpdesk(desk_config, "once", password=mailbox.password)
    listing = tickets(desk_config, password=mailbox.password)
    assert len(listing) == 1
    t = listing[0]
    assert set(t) >= {"id", "subject", "customer", "stage", "assignee", "created_at", "updated_at", "rating"}
    assert (t["id"], t["customer"], t["stage"], t["assignee"], t["rating"]) == (
        "TS-000001", "chenming@customer.example", "received", None, None)
    assert t["created_at"].endswith("+08:00")  # ISO 8601 with offset, in the configured zone
    detail = ticket(desk_config, "TS-000001", password=mailbox.password)
    first = detail["messages"][0]
    assert set(first) >= {"direction", "from", "to", "date", "text", "internal", "attachments"}
    assert (first["direction"], first["from"], first["internal"]) == ("in", "chenming@customer.example", False)
    assert first["attachments"] == ["网络拓扑.pdf"]
    assert [m["direction"] for m in detail["messages"]] == ["in", "out", "out"]
    assert set(detail["events"][0]) >= {"at", "actor", "kind", "from_stage", "to_stage"}
    # The attachment is kept in the store, content-addressed: its name is the SHA-256 of its bytes.
    with open_store(load_config(desk_config), readonly=True) as store:
        [kept] = store.get_ticket(1).messages[0].attachments
        data = store.attachments.get(kept.sha256)
    assert data.startswith(b"%PDF-1.4") and hashlib.sha256(data).hexdigest() == kept.sha256
    if store_kind == "tinydb":  # the TinyDB store keeps it as a file beside its database
        store_dir = desk_config.parent / "var"
        blobs = [p for p in (store_dir / "helpdesk.attachments").rglob("*") if p.is_file()]
        assert len(blobs) == 1 and blobs[0].read_bytes() == data


@both_stores
def test_oversized_and_unreadable_mail_is_quarantined_with_its_reason(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, max_message_mb=0.05)
    big = customer_mail("big@cust.example", "Huge log", "x" * 80_000)
    no_from = b"To: support@example.com\r\nSubject: who am I\r\nMessage-ID: <anon@x>\r\n\r\nhello\r\n"
    fine = customer_mail("ok@cust.example", "Fine", "A normal request.")
    for raw in (big, no_from, fine):
        mailbox.deliver(raw)
    summary = run_once(config)
    assert summary.quarantined == 2 and summary.outcomes.get("ticket") == 1
    assert mailbox.count("Helpdesk/Quarantine") == 2 and mailbox.count("Helpdesk/Processed") == 1
    with open_store(load_config(config), readonly=True) as store:
        reasons = sorted(r.reason for r in store.processed_records() if r.outcome == "quarantined")
    assert "larger than the limit" in reasons[0] and "no usable sender" in reasons[1]
    assert [m.rcpt_tos for m in smtp_sink.messages() if m.message["Auto-Submitted"] == "auto-replied"] == [
        ["ok@cust.example"]]


@both_stores
def test_ack_rate_limit_per_sender(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, ack_limit_per_hour=3,
                          notify_unassigned="none")
    for i in range(8):
        mailbox.deliver(customer_mail("flood@cust.example", f"Request {i}", "help"))
    mailbox.deliver(customer_mail("calm@cust.example", "One request", "help"))
    run_once(config)
    assert len(tickets(config, password=mailbox.password)) == 9
    to = [m.rcpt_tos[0] for m in smtp_sink.messages()]
    assert to.count("flood@cust.example") == 3 and to.count("calm@cust.example") == 1


@both_stores
def test_smtp_outage_keeps_mail_in_outbox_until_the_server_returns(desk_config, mailbox, smtp_sink):
    smtp_sink.stop()
    mailbox.deliver(customer_mail("patient@cust.example", "Monitor flickers", "It flickers."))
    proc = helpdesk(desk_config, "once", password=mailbox.password, check=False)
    assert proc.returncode == 4 and "smtp:" in proc.stderr and "stays in the outbox" in proc.stderr
    assert [t["customer"] for t in tickets(desk_config, password=mailbox.password)] == ["patient@cust.example"]
    smtp_sink.start()
    import time
    time.sleep(2.5)  # the configured retry delay (0.02 min) must have passed
    helpdesk(desk_config, "once", password=mailbox.password)
    assert "patient@cust.example" in [r for m in smtp_sink.wait_for(2) for r in m.rcpt_tos]


@both_stores
def test_second_instance_on_the_same_store_exits_with_a_clear_message(desk_config, mailbox, store_kind):
    with Desk(load_config(desk_config)):
        proc = helpdesk(desk_config, "once", password=mailbox.password, check=False)
    assert proc.returncode == 3
    # The message names the holder: the TinyDB lock file knows the process, the PostgreSQL lease the desk.
    holder = {"tinydb": "process (pid", "postgres": "desk ("}[store_kind]
    assert f"in use by another helpdesk {holder}" in proc.stderr and f"pid {os.getpid()})" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unusable_config_and_server_give_one_line_and_non_zero(tmp_path, dovecot, mailbox, smtp_sink):
    bad = tmp_path / "bad.toml"
    bad.write_text('[imap]\nhost = "mail.example.net"\nport = 143\nsecurity = "none"\nusername = "u"\n'
                   'password = "p"\n', encoding="utf-8")
    proc = helpdesk(bad, "once", password="x", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("helpdesk: config: imap.security") and "loopback" in proc.stderr
    wrong = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                         imap_password="wrong-password", smtp_port=smtp_sink.port)
    proc = helpdesk(wrong, "once", password="wrong-password", check=False)
    assert proc.returncode == 4 and "login" in proc.stderr and proc.stderr.count("\n") == 1
    assert "wrong-password" not in proc.stderr


@both_stores
def test_a_mail_committed_under_the_old_key_before_an_upgrade_is_not_handled_twice(desk_config, mailbox, smtp_sink):
    # Earlier versions keyed processed mail by the bare Message-ID; a mail committed that way but still
    # in the inbox when the desk was upgraded only leaves the inbox now.
    raw = customer_mail("early@cust.example", "Handled before the upgrade", "The printer jams.")
    mid = email.message_from_bytes(raw)["Message-ID"].strip()
    with open_store(load_config(desk_config)) as store:
        store.record_processed(mid[1:-1], "ticket", ticket="TS-000001", reason="", at=datetime.now(timezone.utc))
        store.commit()
    mailbox.deliver(raw)
    summary = run_once(desk_config)
    assert mailbox.count("INBOX") == 0 and summary.outcomes.get("duplicate") == 1
    assert tickets(desk_config, password=mailbox.password) == [] and smtp_sink.messages() == []
    # A different mail reusing nothing of it is handled as usual.
    mailbox.deliver(customer_mail("later@cust.example", "After the upgrade", "The scanner is down."))
    run_once(desk_config)
    assert [t["subject"] for t in tickets(desk_config, password=mailbox.password)] == ["After the upgrade"]
