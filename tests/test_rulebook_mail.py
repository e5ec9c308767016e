"""The department's rulebook by real mail: Dovecot in, aiosmtpd out, the real command line.

No late report for weeks before the desk existed; graded rewards and sanctions kept on the
record and shown by ``staff``; risks escalated to leadership at once; self-service answers to
the asking staff member only; appraisal mail, answers and the leadership summary."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config

from .desk import REPO, helpdesk, write_config
from .test_report_mail import mail

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
DIRECTOR = "director@example.com"


def at(month, day, hour, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path, dovecot, mailbox, smtp_sink):
    config_path = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                               imap_password=mailbox.password, smtp_port=smtp_sink.port, leadership=(DIRECTOR,))
    clock = Clock(at(11, 18, 15))  # a Wednesday afternoon

    def step(when, *raws):
        clock.now = when
        for raw in raws:
            mailbox.deliver(raw)
        with Desk(load_config(config_path), clock=clock) as desk:
            desk.run_once()

    return config_path, step


def to(sink, address, kind=None):
    return [m.message for m in sink.messages() if address in m.rcpt_tos and
            (kind is None or m.message["Message-ID"].startswith(f"<{kind}."))]


@pytest.mark.both_stores
def test_a_new_desk_sends_no_late_report_for_the_weeks_before_it_started(world, smtp_sink):
    config, step = world
    step(at(11, 18, 15))  # first start on a Wednesday: week 46 ended before the desk existed
    step(at(11, 18, 16), mail("a@cust.example", "Printer jam", "third floor"))
    step(at(11, 19, 9))
    assert to(smtp_sink, DIRECTOR) == []
    step(at(11, 23, 9, 5))  # Monday 09:05: the week the desk started is reported, on time
    [report] = to(smtp_sink, DIRECTOR)
    assert "2026-W47" in report["Subject"] and "late" not in report["Subject"].lower()
    step(at(11, 30, 15))  # down over the next Monday: that week is caught up, marked late, once
    step(at(11, 30, 16))
    reports = to(smtp_sink, DIRECTOR)
    assert len(reports) == 2 and "2026-W48" in reports[1]["Subject"] and "late" in reports[1]["Subject"].lower()


def test_the_demo_opens_without_a_late_report():
    proc = subprocess.run([sys.executable, "-m", "maildesk", "demo"], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "补发" not in proc.stdout and "director@example.com" not in proc.stdout.split("2. Zhang")[0]


@pytest.mark.both_stores
def test_rewards_sanctions_risks_and_self_service_by_mail(world, mailbox, smtp_sink):
    config, step = world
    customer = "liuyang@customer.example"
    step(at(11, 23, 10), mail(customer, "数据库备份失败", "每晚的备份任务都失败了"))
    [notify] = to(smtp_sink, "alice@example.com", "notify")
    step(at(11, 24, 11), mail("alice@example.com", "Re: " + notify["Subject"],
                              "#诊断\n#上报 备份已连续三天失败，存在数据丢失风险", notify["Message-ID"]))
    # The risk reaches leadership at once, once, with the customer masked.
    [risk] = to(smtp_sink, DIRECTOR, "risk")
    body = risk.get_content()
    assert "备份已连续三天失败，存在数据丢失风险" in body and "[TS-000001]" in risk["Subject"]
    assert customer not in body and "l***@customer.example" in body
    assert not [m for m in to(smtp_sink, customer) if "风险" in m.get_content()]

    step(at(11, 24, 12), mail("lead@example.com", "奖惩", "#表扬 Alice Wang 奖励 当天定位备份故障\n"
                                                         "#警告 bob@example.com 书面警告 连续两次超时未响应"))
    [done] = to(smtp_sink, "lead@example.com", "directive")
    assert "commendation (reward) for Alice Wang" in done.get_content()  # staff read English here
    assert "warning (written warning) for Bob Li" in done.get_content()

    # Self-service: each answer to the asker only; another member's record is never sent.
    smtp_sink.clear()
    step(at(11, 24, 13), mail("alice@example.com", "我的", "#我的记录\n#我的\n#状态 TS-000001\n#查找 备份"))
    answers = [m for m in smtp_sink.messages()]
    assert [m.rcpt_tos for m in answers] == [["alice@example.com"]]
    text = answers[0].message.get_content()
    assert "当天定位备份故障" in text and "连续两次超时" not in text
    assert text.count("TS-000001") >= 3 and "Stage:    diagnosing" in text
    smtp_sink.clear()
    step(at(11, 24, 14), mail("bob@example.com", "help", "#help\n#find 备份\n#myrecord"))
    [answer] = [m for m in smtp_sink.messages()]
    assert answer.rcpt_tos == ["bob@example.com"]
    text = answer.message.get_content()
    assert "数据库备份" not in text and "NDA" in text and "连续两次超时未响应" in text
    assert "#diagnose" not in text and "当天定位" not in text
    # A customer writing the same words gets a ticket, nothing of anybody's.
    smtp_sink.clear()
    step(at(11, 24, 15), mail("eve@other.example", "find", "#find 备份\n#myrecord"))
    assert [m.message["Message-ID"].split(".")[0] for m in smtp_sink.messages() if
            m.rcpt_tos == ["eve@other.example"]] == ["<ack"]
    assert not [m for m in smtp_sink.messages() if "当天定位" in m.message.get_content()]

    # The record on the command line, and the week's risks in the report.
    alice = json.loads(helpdesk(config, "staff", "show", "alice@example.com", "--json",
                                password=mailbox.password).stdout)
    assert [(r["kind"], r["level"], r["reason"], r["by"]) for r in alice["records"]] == [
        ("commend", "reward", "当天定位备份故障", "lead@example.com")]
    listing = helpdesk(config, "staff", "list", password=mailbox.password).stdout
    assert "bob@example.com" in listing and "warned 1" in listing
    rows = json.loads(helpdesk(config, "staff", "list", "--json", password=mailbox.password).stdout)
    bob = next(r for r in rows if r["email"] == "bob@example.com")
    assert bob["by_level"] == {"warn:written": 1} and bob["nda_signed"] is None
    missing = helpdesk(config, "staff", "show", "nobody@example.com", password=mailbox.password, check=False)
    assert missing.returncode == 1 and "not on the team" in missing.stderr
    week = json.loads(helpdesk(config, "report", "weekly", "--week", "2026-W48", "--json",
                               password=mailbox.password).stdout)
    assert [(r["ticket"], r["text"]) for r in week["risks"]] == [("TS-000001", "备份已连续三天失败，存在数据丢失风险")]
    alice_card = next(t for t in week["technicians"] if t["email"] == "alice@example.com")
    assert alice_card["commendation_levels"] == ["reward"]
    step(at(11, 30, 9, 5))
    [report] = [m for m in to(smtp_sink, DIRECTOR, "report") if "2026-W48" in m["Subject"]]
    text = report.get_body(("plain",)).get_content()
    html = report.get_body(("html",)).get_content()
    assert "Technical problems and risks reported this week:" in text and "存在数据丢失风险" in html
    assert "+ reward: 当天定位备份故障" in text and "! written warning: 连续两次超时未响应" in text
    assert customer not in text and customer not in html and "l***@customer.example" in text


@pytest.mark.both_stores
def test_appraisal_mail_answers_by_reply_and_the_leadership_summary(world, mailbox, smtp_sink):
    config, step = world
    customer = "wang@cust.example"
    step(at(11, 18, 16), mail(customer, "VPN 断线", "每小时断一次"))
    [notify] = to(smtp_sink, "alice@example.com", "notify")
    step(at(11, 18, 17), mail("alice@example.com", "Re: x", "#resolve 更换了证书", notify["Message-ID"]))
    [result] = to(smtp_sink, customer, "result")
    step(at(11, 18, 18), mail(customer, "Re: x", "5分", result["Message-ID"]))
    step(at(11, 19, 9), mail("alice@example.com", "Re: x", "#close 证书过期。\nLessons: 提前一个月续期证书",
                             notify["Message-ID"]))
    step(at(11, 20, 9), mail("lead@example.com", "奖惩", "#commend alice reward renewed the VPN certificate"))
    step(at(12, 7, 8))
    assert to(smtp_sink, "lead@example.com", "appraisal") == []  # due Monday 7 December 09:00
    step(at(12, 7, 9, 5))
    [appraisal] = to(smtp_sink, "lead@example.com", "appraisal")
    assert appraisal["Subject"].startswith("Performance appraisal 2026-11") and "late" not in appraisal["Subject"]
    text = appraisal.get_content()
    alice, bob = text.split("==== Alice Wang")[1].split("==== Bob Li")
    assert "closed 1; on time against the SLA: 100%" in alice and "average rating: 5.0 (1 rating(s))" in alice
    assert "lessons learned written: 1" in alice and "+ reward: renewed the VPN certificate" in alice
    assert bob.count("no data") == 5  # nothing invented
    assert customer not in text

    # Answers by reply: a partial one is kept and the rest asked for.
    smtp_sink.clear()
    step(at(12, 7, 10), mail("lead@example.com", "Re: " + appraisal["Subject"],
                             "#appraise alice tasks=4 quality=5", appraisal["Message-ID"]))
    [ask] = to(smtp_sink, "lead@example.com", "selfservice")
    assert "Still missing: teamwork, learning, attitude" in ask.get_content()
    assert to(smtp_sink, DIRECTOR, "appraisal-summary") == []
    step(at(12, 7, 11), mail("lead@example.com", "Re: " + appraisal["Subject"],
                             "#考核 Alice Wang 合作4 学习3 态度5 评语：证书问题处理及时\n"
                             "#appraise bob tasks=3 quality=3 teamwork=3 learning=3 attitude=3",
                             appraisal["Message-ID"]))
    step(at(12, 7, 12))
    [summary] = to(smtp_sink, DIRECTOR, "appraisal-summary")
    body = summary.get_content()
    assert "2026-11" in summary["Subject"] and "证书问题处理及时" in body and "4.2" in body
    assert customer not in body
    shown = json.loads(helpdesk(config, "staff", "show", "alice@example.com", "--json",
                                password=mailbox.password).stdout)
    assert shown["appraisals"] == [{"period": "2026-11", "comments": ["证书问题处理及时"], "scores": {
        "tasks": 4, "quality": 5, "teamwork": 4, "learning": 3, "attitude": 5}}]

    # Restarts never repeat either mail; downtime over the next due time catches up once, marked late.
    for when in (at(12, 7, 13), at(12, 20, 9)):
        step(when)
    assert to(smtp_sink, "lead@example.com", "appraisal") == []  # (the sink was cleared after the first)
    step(datetime(2027, 1, 6, 10, tzinfo=SH))
    step(datetime(2027, 1, 6, 11, tzinfo=SH))
    appraisals = [m for m in smtp_sink.messages() if m.message["Message-ID"].startswith("<appraisal.")]
    assert [m.message["Subject"] for m in appraisals] == [
        "Performance appraisal 2026-12: please score each technician (sent late)"]
    assert len(to(smtp_sink, DIRECTOR, "appraisal-summary")) == 1


@pytest.mark.both_stores
def test_internal_and_external_requests_are_told_apart(world, mailbox, smtp_sink):
    config, step = world
    text = config.read_text()
    config.write_text(text.replace('[team]\n', '[team]\ninternal_domains = ["corp.example"]\n', 1))
    step(at(11, 23, 10), mail("colleague@corp.example", "Laptop slow", "my laptop is slow"),
         mail("buyer@cust.example", "Invoice portal down", "cannot log in"))
    inside = to(smtp_sink, "colleague@corp.example", "ack")[0].get_content()
    outside = to(smtp_sink, "buyer@cust.example", "ack")[0].get_content()
    assert "has your internal request" in inside and "Thank you for contacting" not in inside
    assert "Thank you for contacting" in outside and "internal" not in outside
    for tag in ("TS-000001", "TS-000002"):
        notify = next(m for m in to(smtp_sink, "alice@example.com", "notify") if tag in m["Subject"])
        step(at(11, 23, 12 if tag.endswith("1") else 14), mail("alice@example.com", "Re: x", "#diagnose",
                                                               notify["Message-ID"]))
    data = json.loads(helpdesk(config, "report", "weekly", "--week", "2026-W48", "--json",
                               password=mailbox.password).stdout)
    assert data["by_origin"]["internal"]["received"] == 1 and data["by_origin"]["external"]["received"] == 1
    assert data["by_origin"]["internal"]["median_first_response_hours"] == 2.0
    assert data["by_origin"]["external"]["median_first_response_hours"] == 4.0
    step(at(11, 30, 9, 5))
    [report] = [m for m in to(smtp_sink, DIRECTOR, "report") if "2026-W48" in m["Subject"]]
    text = report.get_body(("plain",)).get_content()
    html = report.get_body(("html",)).get_content()
    assert "Internal requests (colleagues) and external ones (customers):" in text
    assert "colleagues (internal)" in html and "customers (external)" in html
    assert "colleague@corp.example" not in text and "buyer@cust.example" not in html


@pytest.mark.both_stores
def test_similar_closed_cases_in_the_new_ticket_notification(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port)
    # One daemon over all steps: the case closed while it runs joins its index.
    with Desk(load_config(config)) as desk:
        def run_once():
            desk.run_once()
            desk.mailbox.close()  # run_once connects afresh each time

        mailbox.deliver(mail("a@cust.example", "VPN disconnects every hour", "Since Monday the VPN drops hourly."))
        run_once()
        [notify] = to(smtp_sink, "alice@example.com", "notify")
        assert "Similar closed cases" not in notify.get_content()
        mailbox.deliver(mail("alice@example.com", "Re: x", "#close Renewed the expired VPN gateway certificate.\n"
                             "Lessons: track certificate expiry dates", notify["Message-ID"]))
        run_once()
        mailbox.deliver(mail("b@other.example", "VPN keeps dropping", "My VPN connection disconnects every hour"))
        mailbox.deliver(mail("c@other.example", "打印机卡纸", "三楼打印机卡纸"))
        run_once()
    vpn = next(m for m in to(smtp_sink, "alice@example.com", "notify") if "TS-000002" in m["Subject"])
    text = vpn.get_content()
    assert "Similar closed cases" in text and "TS-000001 VPN disconnects every hour" in text
    assert "Lessons: track certificate expiry dates" in text
    printer = next(m for m in to(smtp_sink, "alice@example.com", "notify") if "TS-000003" in m["Subject"])
    assert "Similar closed cases" not in printer.get_content()
    # The customer's acknowledgement says nothing of other customers' cases.
    assert "certificate" not in to(smtp_sink, "b@other.example", "ack")[0].get_content()


@pytest.mark.both_stores
def test_monthly_summary_on_the_first_working_day(world, mailbox, smtp_sink):
    config, step = world
    step(at(11, 18, 16), mail("a@cust.example", "三楼打印机卡纸", "卡纸"), mail("b@cust.example", "二楼打印机卡纸", "卡"),
         mail("c@cust.example", "打印机又卡纸", "卡纸了"))
    notes = {m["Subject"][1:10]: m for m in to(smtp_sink, "alice@example.com", "notify")}
    step(at(11, 18, 17), mail("alice@example.com", "Re: x", "#归档 清洁搓纸轮。\n经验：每月清洁一次搓纸轮。",
                              notes["TS-000001"]["Message-ID"]))
    step(at(11, 18, 18), mail("alice@example.com", "Re: x", "#risk 搓纸轮老化，整批打印机可能都要更换",
                              notes["TS-000002"]["Message-ID"]))
    step(at(12, 1, 8))
    assert to(smtp_sink, "lead@example.com", "monthly") == []  # due Tuesday 1 December 09:00
    step(at(12, 1, 9, 5))
    step(at(12, 2, 9, 5))
    [lead] = to(smtp_sink, "lead@example.com", "monthly")
    [alice] = to(smtp_sink, "alice@example.com", "monthly")
    assert to(smtp_sink, "bob@example.com", "monthly") == []  # no NDA: no customer subjects
    text = lead.get_content()
    assert lead["Subject"] == "Monthly work summary 2026-11" and text == alice.get_content()
    assert "经验：" not in text and "Lessons: 每月清洁一次搓纸轮。" in text
    assert "TS-000001, TS-000002, TS-000003" in text
    assert "搓纸轮老化，整批打印机可能都要更换" in text and "No appraisal has been scored yet." in text
    assert "a@cust.example" not in text and "cust.example" not in text
    # December: 1 January 2027 is a Friday; the desk was down until the Monday after.
    step(datetime(2027, 1, 4, 10, tzinfo=SH))
    step(datetime(2027, 1, 4, 11, tzinfo=SH))
    subjects = [m["Subject"] for m in to(smtp_sink, "lead@example.com", "monthly")]
    assert subjects == ["Monthly work summary 2026-11", "Monthly work summary 2026-12 (sent late)"]
