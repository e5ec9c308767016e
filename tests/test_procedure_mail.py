"""Whole procedures by real mail: Dovecot in, aiosmtpd out, replies as real clients write them."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config

from .desk import SUPPORT, ticket, verified, write_config

pytestmark = pytest.mark.integration


def run_once(config):
    with Desk(load_config(config)) as desk:
        return desk.run_once()


def reply(to_msg, sender: str, new_text: str, *, style: str, charset: str = "utf-8", name: str = "") -> bytes:
    """A reply as the named client lays it out: new text on top, the original quoted below."""
    original = to_msg.get_content() if not to_msg.is_multipart() else to_msg.get_body(("plain",)).get_content()
    subject = to_msg["Subject"]
    if style == "gmail":
        body = (f"{new_text}\n\nOn Mon, Nov 23, 2026 at 9:13 AM IT Service Desk <{SUPPORT}> wrote:\n" +
                "\n".join(f"> {line}" for line in original.splitlines()))
        subject = f"Re: {subject}"
    elif style == "outlook-zh":
        body = (f"{new_text}\n\n________________________________\n发件人: IT 服务台 <{SUPPORT}>\n"
                f"发送时间: 2026年11月23日 10:02\n收件人: {sender}\n主题: {subject}\n\n{original}")
        subject = f"回复: {subject}"
    elif style == "qq":
        body = (f"{new_text}\n\n------------------ 原始邮件 ------------------\n发件人: \"IT 服务台\"<{SUPPORT}>;\n"
                f"发送时间: 2026年11月24日(星期二) 上午9:31\n主题: {subject}\n\n{original}")
        subject = f"回复：{subject}"
    else:
        raise ValueError(style)
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["In-Reply-To"] = to_msg["Message-ID"]
    msg["References"] = " ".join(filter(None, [to_msg.get("References"), to_msg["Message-ID"]]))
    msg.set_content(body, charset=charset)
    # Staff mail is DKIM-signed by the company's server and verified by the receiving one.
    return verified(msg.as_bytes()) if sender.endswith("@example.com") else msg.as_bytes()


def last_to(sink, address, kind):
    found = [m for m in sink.messages() if address in m.rcpt_tos and m.message["Message-ID"].startswith(f"<{kind}.")]
    assert found, f"no {kind} mail to {address}: {[(m.rcpt_tos, m.message['Message-ID']) for m in sink.messages()]}"
    return found[-1].message


@pytest.fixture
def config(tmp_path, dovecot, mailbox, smtp_sink):
    return write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                        imap_password=mailbox.password, smtp_port=smtp_sink.port)


def test_chinese_procedure_with_foxmail_qq_and_outlook(config, mailbox, smtp_sink):
    customer = "liuyang@customer.example"
    first = EmailMessage()
    first["From"] = f"刘洋 <{customer}>"
    first["To"] = SUPPORT
    first["Subject"] = "邮箱容量已满，无法收信"
    first["Message-ID"] = make_msgid(domain="customer.example")
    first.set_content("您好，我的邮箱提示容量已满，删除邮件后仍然无法收信。", charset="gbk")
    mailbox.deliver(first.as_bytes())
    run_once(config)
    notify = last_to(smtp_sink, "alice@example.com", "notify")

    mailbox.deliver(reply(notify, "alice@example.com", "＃诊断　先检查配额设置", style="qq", name="Alice Wang"))
    run_once(config)
    relay = last_to(smtp_sink, customer, "relay")
    assert "先检查配额设置" in relay.get_content() and relay["In-Reply-To"] == first["Message-ID"]
    assert "alice" not in relay.as_string().lower()

    mailbox.deliver(reply(notify, "alice@example.com", "#方案：把邮箱配额从 2GB 调到 10GB，并开启自动归档。",
                          style="outlook-zh"))
    run_once(config)
    proposal = last_to(smtp_sink, customer, "proposal")
    assert "把邮箱配额从 2GB 调到 10GB" in proposal.get_content()

    mailbox.deliver(reply(proposal, customer, "同意", style="qq", charset="gb18030"))
    run_once(config)
    assert "CONFIRMED" in last_to(smtp_sink, "alice@example.com", "notify").get_content()  # staff read English

    mailbox.deliver(reply(notify, "alice@example.com", "#解决：配额已调整为 10GB。", style="qq"))
    run_once(config)
    result = last_to(smtp_sink, customer, "result")
    assert "配额已调整为 10GB" in result.get_content() and "mailto:" in result.get_content()

    mailbox.deliver(reply(result, customer, "4分，处理得挺快，就是中间停了一会儿。", style="qq"))
    run_once(config)
    mailbox.deliver(reply(notify, "alice@example.com", "#归档 调整配额并开启自动归档。\n经验：大附件多的部门默认 10GB。",
                          style="outlook-zh"))
    run_once(config)

    t = ticket(config, "TS-000001", password=mailbox.password)
    assert (t["stage"], t["rating"], t["assignee"]) == ("closed", 4, "alice@example.com")
    moves = [(e["from_stage"], e["to_stage"]) for e in t["events"] if e["from_stage"] != e["to_stage"]]
    assert moves == [(None, "received"), ("received", "diagnosing"), ("diagnosing", "proposed"),
                     ("proposed", "executing"), ("executing", "feedback"), ("feedback", "closed")]
    assert all(set(e) >= {"at", "actor", "kind", "from_stage", "to_stage"} for e in t["events"])
    staff_messages = [m for m in t["messages"] if m["from"] == "alice@example.com"]
    assert staff_messages and all(m["internal"] for m in staff_messages)
    # Every mail the customer got came from the desk, in Chinese.
    for m in smtp_sink.messages():
        if customer in m.rcpt_tos:
            assert m.mail_from == SUPPORT and m.message["Content-Language"] == "zh-CN"


def test_english_procedure_with_gmail_and_mailto_rating(config, mailbox, smtp_sink):
    customer = "zhang.wei@customer.example"
    first = EmailMessage()
    first["From"] = f"Zhang Wei <{customer}>"
    first["To"] = SUPPORT
    first["Subject"] = "Cannot print from SAP"
    first["Message-ID"] = make_msgid(domain="customer.example")
    first.set_content("Since this morning SAP print jobs stay in the spool.")
    mailbox.deliver(first.as_bytes())
    run_once(config)
    notify = last_to(smtp_sink, "alice@example.com", "notify")

    mailbox.deliver(reply(notify, "alice@example.com", "#diagnose\nChecking the spooler now.", style="gmail"))
    mailbox.deliver(reply(notify, "alice@example.com", "#resolv restarted it", style="gmail"))
    run_once(config)
    error = last_to(smtp_sink, "alice@example.com", "error")
    assert "#resolve" in error.get_content()
    mailbox.deliver(reply(notify, "alice@example.com", "#RESOLVE restarted the spooler service.", style="gmail"))
    run_once(config)
    result = last_to(smtp_sink, customer, "result")
    assert "How satisfied" in result.get_content()

    mailbox.deliver(reply(result, customer, "not fixed, jobs still stuck", style="gmail"))
    run_once(config)
    assert "NOT SOLVED" in last_to(smtp_sink, "alice@example.com", "notify").get_content()
    mailbox.deliver(reply(notify, "alice@example.com", "#resolve cleared the queue and rebooted.", style="gmail"))
    run_once(config)
    result = last_to(smtp_sink, customer, "result")

    # One click on the "5" link: the client sends exactly what the link says.
    link = next(w for w in result.get_content().split() if w.startswith("mailto:") and "body=5" in w)
    query = parse_qs(urlparse(link).query)
    click = EmailMessage()
    click["From"] = customer
    click["To"] = SUPPORT
    click["Subject"] = query["subject"][0]
    click["Message-ID"] = make_msgid(domain="customer.example")
    click.set_content(query["body"][0])
    mailbox.deliver(click.as_bytes())
    run_once(config)
    t = ticket(config, "TS-000001", password=mailbox.password)
    assert (t["stage"], t["rating"]) == ("feedback", 5)
    assert [e["kind"] for e in t["events"]].count("command-rejected") == 1


def test_feedback_reminder_is_sent_once_across_runs(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port,
                          extra="[feedback]\nreminder_days = 0.00002\nno_rating_days = 0.00004\n")
    first = EmailMessage()
    first["From"] = "wang@cust.example"
    first["To"] = SUPPORT
    first["Subject"] = "Printer"
    first["Message-ID"] = make_msgid(domain="cust.example")
    first.set_content("Jammed.")
    mailbox.deliver(first.as_bytes())
    run_once(config)
    notify = last_to(smtp_sink, "alice@example.com", "notify")
    mailbox.deliver(reply(notify, "alice@example.com", "#resolve removed the paper", style="gmail"))
    run_once(config)
    import time
    time.sleep(2)  # past reminder_days (1.7 s) but the mark needs the reminder first
    for _ in range(3):
        run_once(config)
        time.sleep(2)
    reminders = [m for m in smtp_sink.messages() if m.message["Message-ID"].startswith("<reminder.")]
    assert len(reminders) == 1 and reminders[0].rcpt_tos == ["wang@cust.example"]
    shown = ticket(config, "TS-000001", password=mailbox.password)
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.count("feedback-reminder") == 1 and kinds.count("no-rating") == 1
    # The timers kept the conversation intact and recorded the reminder in it.
    assert shown["messages"][0]["text"] == "Jammed."
    assert [m["kind"] for m in shown["messages"]].count("reminder") == 1


def test_tickets_show_gives_what_was_read_as_new_beside_the_full_text(config, mailbox, smtp_sink):
    customer = "reader@customer.example"
    first = EmailMessage()
    first["From"] = customer
    first["To"] = SUPPORT
    first["Subject"] = "Scanner offline"
    first["Message-ID"] = make_msgid(domain="customer.example")
    first.set_content("The scanner on floor 2 is offline.\n#close\nLessons: none")
    mailbox.deliver(first.as_bytes())
    run_once(config)
    notify = last_to(smtp_sink, "alice@example.com", "notify")
    mailbox.deliver(reply(notify, "alice@example.com", "#diagnose\nOn my way to floor 2.", style="outlook-zh"))
    run_once(config)
    t = ticket(config, "TS-000001", password=mailbox.password)
    assert t["stage"] == "diagnosing"  # the customer's "#close", quoted back by Alice's client, was not obeyed
    staff = [m for m in t["messages"] if m["from"] == "alice@example.com"][0]
    assert staff["new_text"] == "#diagnose\nOn my way to floor 2."
    assert "发件人" in staff["text"] and "#close" in staff["text"]
