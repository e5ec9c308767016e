"""The weekly report end to end: a known week built through real mail, the mail's structure,
exactly-once scheduling across restarts."""
from __future__ import annotations

import json
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config

from .desk import SUPPORT, helpdesk, verified, write_config

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")


def at(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=SH)


def mail(sender, subject, body, in_reply_to=None):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    # Staff mail is DKIM-signed by the company's server and verified by the receiving one.
    return verified(msg.as_bytes()) if sender.endswith("@example.com") else msg.as_bytes()


class Clock:
    def __init__(self):
        self.now = at(16, 0)

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path, dovecot, mailbox, smtp_sink):
    config_path = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                               imap_password=mailbox.password, smtp_port=smtp_sink.port,
                               extra='[sla]\nfirst_response_hours = 4\nresolution_hours = 48\n',
                               leadership=("director@example.com",))
    text = config_path.read_text().replace('[report]\ntimezone = "Asia/Shanghai"\nlanguage = "en"',
                                           '[report]\ntimezone = "Asia/Shanghai"\nlanguage = "zh"\n'
                                           'weekday = "monday"\ntime = "09:00"')
    config_path.write_text(text)
    clock = Clock()

    def step(when, raw=None):
        clock.now = when
        if raw is not None:
            mailbox.deliver(raw)
        with Desk(load_config(config_path), clock=clock) as desk:
            desk.run_once()

    return config_path, clock, step


def notify_id(sink, tag):
    return next(m.message["Message-ID"] for m in sink.messages()
                if m.message["Message-ID"].startswith(f"<notify.{tag}"))


def test_a_known_week_through_real_mail(world, mailbox, smtp_sink):
    config, clock, step = world
    step(at(16, 10), mail("a@cust.example", "打印机卡纸", "三楼打印机卡纸"))
    n1 = notify_id(smtp_sink, "TS-000001")
    step(at(16, 11), mail("alice@example.com", "Re: [TS-000001] 打印机卡纸", "#诊断 马上过去", n1))
    step(at(16, 12), mail("b@cust.example", "VPN 断线", "每小时断一次"))
    step(at(17, 6), mail("alice@example.com", "Re: [TS-000001] 打印机卡纸", "#解决 取出卡纸，清洁搓纸轮", n1))
    result = next(m.message for m in smtp_sink.messages() if m.message["Message-ID"].startswith("<result."))
    step(at(17, 16), mail("a@cust.example", "Re: [TS-000001] 打印机卡纸", "5分，很及时", result["Message-ID"]))
    step(at(18, 2), mail("alice@example.com", "Re: [TS-000001] 打印机卡纸",
                         "#归档 取出卡纸并清洁搓纸轮。\n经验：每月清洁一次搓纸轮。", n1))
    step(at(18, 9), mail("lead@example.com", "本周", "#表扬 Alice Wang 当天解决打印机故障\n#计划 下周巡检全部打印机"))
    step(at(22, 23, 30), mail("c@cust.example", "打印机又卡纸", "二楼"))  # Sunday 23:30 local: week 47
    step(at(23, 0, 30), mail("d@cust.example", "显示器闪烁", "一直闪"))  # Monday 00:30: week 48

    data = json.loads(helpdesk(config, "report", "weekly", "--week", "2026-W47", "--json",
                               password=mailbox.password).stdout)
    assert (data["received"], data["closed"], data["open_at_end"]) == (3, 1, 2)
    assert data["open_by_stage"]["received"] == 2
    assert data["median_first_response_hours"] == 1.0
    assert data["median_resolution_hours"] == 20.0
    assert data["sla_met_rate"] == 1.0
    assert (data["csat_average"], data["csat_responses"], data["csat_requests"]) == (5.0, 1, 1)
    assert data["plans"] == ["下周巡检全部打印机"]
    alice = next(t for t in data["technicians"] if t["email"] == "alice@example.com")
    assert (alice["closed"], alice["on_time_rate"], alice["average_rating"], alice["commendations"],
            alice["warnings"]) == (1, 1.0, 5.0, 1, 0)
    bob = next(t for t in data["technicians"] if t["email"] == "bob@example.com")
    assert (bob["closed"], bob["on_time_rate"], bob["average_rating"]) == (0, None, None)

    # Monday 09:00 in Shanghai: the scheduled report for week 47 goes to leadership, once.
    smtp_sink.clear()
    step(at(23, 9, 5))
    [sent] = [m for m in smtp_sink.messages() if m.rcpt_tos == ["director@example.com"]]
    msg = sent.message
    assert msg["Subject"].startswith("技术服务部周报 2026-W47") and "补发" not in msg["Subject"]
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "受理 3 张，归档 1 张，周末未结 2 张" in text and "经验教训：每月清洁一次搓纸轮。" in text
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 3
    for image in images:
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
        assert image.get_content().startswith(b"\x89PNG")
    assert len(re.findall(r'<img [^>]*alt="[^"]+"', html)) == 3
    [csv_part] = [p for p in msg.iter_attachments() if p.get_content_type() == "text/csv"]
    rows = csv_part.get_content().lstrip("\ufeff").splitlines()
    assert rows[0].startswith("ticket,subject,customer") and len(rows) == 1 + 3
    # Customers are masked everywhere leadership looks.
    for body in (text, html, csv_part.get_content()):
        assert "a@cust.example" not in body and "c@cust.example" not in body
    assert "a***@cust.example" in text and "c***@cust.example" in csv_part.get_content()

    # Restarts and later runs never send week 47 again.
    for when in (at(23, 9, 30), at(24, 12), at(29, 23)):
        step(when)
    assert len([m for m in smtp_sink.messages() if m.rcpt_tos == ["director@example.com"]]) == 1

    # Down over the next Monday morning: week 48 goes out on start, marked late, and only once.
    step(at(30, 15))
    step(at(30, 16))
    late = [m for m in smtp_sink.messages() if m.rcpt_tos == ["director@example.com"]][1:]
    assert len(late) == 1 and "【补发】" in late[0].message["Subject"] and "2026-W48" in late[0].message["Subject"]


def test_preview_file_and_manual_send(world, mailbox, smtp_sink, tmp_path):
    config, clock, step = world
    step(at(16, 10), mail("a@cust.example", "Printer jam", "jammed"))
    out = tmp_path / "week.html"
    proc = helpdesk(config, "report", "weekly", "--week", "2026-W47", "--out", str(out), password=mailbox.password)
    assert "wrote" in proc.stdout
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and "cid:" not in page
    assert "技术服务部周报 2026-W47" in page
    proc = helpdesk(config, "report", "weekly", "--week", "2026-W47", "--send", password=mailbox.password)
    assert "director@example.com" in proc.stdout
    helpdesk(config, "once", password=mailbox.password)
    # (Week 46's report went out by itself at the first run: it was due that Monday 09:00.)
    assert [m.rcpt_tos for m in smtp_sink.messages() if "report.2026-W47" in m.message["Message-ID"]] == [
        ["director@example.com"]]


def test_archived_tickets_stay_reachable_by_reply_tag_and_report(world, mailbox, smtp_sink, store_kind):
    from .desk import ticket, tickets
    config, clock, step = world
    step(at(16, 10), mail("old@cust.example", "旧打印机", "卡纸"))
    ack = next(m.message for m in smtp_sink.messages() if m.rcpt_tos == ["old@cust.example"])
    n1 = notify_id(smtp_sink, "TS-000001")
    step(at(16, 11), mail("alice@example.com", "Re: [TS-000001] 旧打印机", "#归档 换了搓纸轮\n经验：定期清洁", n1))
    # Forty days later housekeeping has moved the closed ticket out of memory ...
    step(datetime(2026, 12, 26, 10, tzinfo=SH))
    if store_kind == "tinydb":  # the PostgreSQL store keeps closed tickets in their table
        store_path = load_config(config).storage_path
        assert (store_path.parent / "helpdesk.archive" / "index.jsonl").exists()
        from maildesk.storage.store import TicketStore
        with TicketStore(store_path, readonly=True) as store:
            assert "1" not in store._raw("tickets")
    # ... yet it is shown, listed, reported, and a late reply to it is linked to it.
    assert ticket(config, "TS-000001", password=mailbox.password)["stage"] == "closed"
    step(datetime(2026, 12, 26, 11, tzinfo=SH), mail("old@cust.example", "Re: 旧打印机", "又卡纸了", ack["Message-ID"]))
    listing = {t["id"]: t for t in tickets(config, password=mailbox.password)}
    assert sorted(listing) == ["TS-000001", "TS-000002"]
    detail = ticket(config, "TS-000002", password=mailbox.password)
    assert (detail["customer"], detail["linked_to"]) == ("old@cust.example", "TS-000001")
    assert [e["detail"] for e in detail["events"] if e["kind"] == "created"] == ["continues closed ticket TS-000001"]
    data = json.loads(helpdesk(config, "report", "weekly", "--week", "2026-W47", "--json",
                               password=mailbox.password).stdout)
    assert (data["received"], data["closed"]) == (1, 1)
