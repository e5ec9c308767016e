"""The department's rulebook as pure functions: graded rewards and sanctions, risk escalation,
self-service by mail, appraisal answers, report periods and the desk's origin (no servers)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from maildesk.model import Ticket
from maildesk.parsers.commands import read_appraisal, split_level
from maildesk.reports.periods import Period, desk_origin, first_working_day
from maildesk.storage.base import ClosedCase

from .test_procedure import CUSTOMER, Desk, sent_to

SH = ZoneInfo("Asia/Shanghai")


class StoreDesk(Desk):
    """The in-memory desk plus the reads self-service needs (as ``TicketStore`` offers them)."""

    def __init__(self):
        super().__init__()
        self.jobs = {}

    def open_tickets(self, *, with_messages=True):
        return [t for t in self.tickets.values() if t.stage != "closed"]

    def staff_records(self):
        return list(self.records)

    def job_run(self, name, period):
        return self.jobs.get((name, period))

    def record_job_run(self, name, period, *, at, late, detail=""):
        self.jobs[(name, period)] = {"name": name, "period": period, "at": at.isoformat(), "late": late}

    def commit(self):
        pass


def _with_tickets_iter(desk):
    """``Desk.tickets`` is a dict; the store's ``tickets()`` is a method: this reads like the store."""
    class Proxy:
        def __getattr__(self, name):
            return getattr(desk, name)

        def tickets(self, *, with_messages=True, active_since=None):
            return list(desk.tickets.values())

        def closed_cases(self):
            return [ClosedCase(t.tag, t.subject, t.summary, t.lessons)
                    for t in sorted(desk.tickets.values(), key=lambda t: t.number)
                    if t.stage == "closed" and (t.summary or t.lessons)]
    return Proxy()


# -- grammar ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, text, level, rest", [
    ("warn", "书面警告 连续两次超时", "written", "连续两次超时"),
    ("warn", "降职：泄露客户资料", "demotion", "泄露客户资料"),
    ("warn", "termination, data leak", "termination", "data leak"),
    ("warn", "was rude", "verbal", "was rude"),
    ("warn", "writtenly rude", "verbal", "writtenly rude"),
    ("commend", "奖励 周末抢修", "reward", "周末抢修"),
    ("commend", "saved the day", "commendation", "saved the day"),
])
def test_levels_are_read_from_the_reason(kind, text, level, rest):
    assert split_level(kind, text) == (level, rest)


def test_appraisal_answers_in_both_languages_keep_partial_scores():
    zh = read_appraisal("任务4 质量5 合作4 学习3 态度5 评语：主动承担夜班，继续保持")
    assert dict(zh.scores) == {"tasks": 4, "quality": 5, "teamwork": 4, "learning": 3, "attitude": 5}
    assert zh.comment == "主动承担夜班，继续保持"
    en = read_appraisal("tasks=4 quality=5 attitude=9 comment: solid month")
    assert dict(en.scores) == {"tasks": 4, "quality": 5} and en.bad == ("attitude9",)
    assert en.comment == "solid month"
    assert dict(read_appraisal("服务质量：４ 团队合作 5").scores) == {"quality": 4, "teamwork": 5}


# -- rewards and sanctions -------------------------------------------------------------------

def test_commendations_and_warnings_carry_a_level_and_need_a_reason():
    desk = Desk()
    desk.receive("lead@example.com", "#表扬 Alice Wang 奖励 周末抢修邮件服务器，当晚恢复\n"
                 "#警告 bob@example.com 书面警告 连续两次超时未响应", "奖惩")
    assert [(r.kind, r.technician, r.level, r.reason) for r in desk.records] == [
        ("commend", "alice@example.com", "reward", "周末抢修邮件服务器，当晚恢复"),
        ("warn", "bob@example.com", "written", "连续两次超时未响应")]
    done = sent_to(desk, "lead@example.com", "directive")[-1].text
    assert "表扬（奖励）Alice Wang" in done and "警告（书面警告）Bob Li" in done
    desk.receive("lead@example.com", "#warn bob@example.com demotion", "sanction")
    assert len(desk.records) == 2
    assert "#warn" in sent_to(desk, "lead@example.com", "error")[-1].text


# -- risk escalation ---------------------------------------------------------------------------

def test_a_risk_goes_to_leadership_once_masked_and_stays_on_the_ticket():
    desk = Desk()
    desk.receive(CUSTOMER, "数据库每晚备份失败", "备份失败")
    desk.now += timedelta(hours=30)
    desk.reply_to_last("alice@example.com", "#诊断\n#上报 备份已连续三天失败，存在数据丢失风险", kind="notify")
    [risk] = sent_to(desk, "boss@example.com", "risk")
    assert risk.recipients == ["boss@example.com"] and risk.subject.startswith("【风险上报】 [TS-000001]")
    assert "备份已连续三天失败" in risk.text and "问题确认中" in risk.text and "30." in risk.text
    assert CUSTOMER not in risk.text and "l***@customer.example" in risk.text
    t = desk.tickets[1]
    assert [e.detail for e in t.events if e.kind == "risk"] == ["备份已连续三天失败，存在数据丢失风险"]
    # Nothing of a risk report reaches the customer.
    assert not [m for m in desk.sent if CUSTOMER in m.recipients and "风险" in m.text]
    desk.reply_to_last("alice@example.com", "#备注 已联系 DBA", kind="notify")
    assert len(sent_to(desk, "boss@example.com", "risk")) == 1
    desk.reply_to_last("alice@example.com", "#risk", kind="notify")
    assert len(sent_to(desk, "boss@example.com", "risk")) == 1
    assert "#risk" in sent_to(desk, "alice@example.com", "error")[-1].text


def test_only_staff_with_an_nda_report_risks_on_customer_tickets():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("bob@example.com", "#risk the VPN certificate expires tomorrow", kind="ack", to=CUSTOMER)
    assert not sent_to(desk, "boss@example.com", "risk")


# -- self-service -------------------------------------------------------------------------------

def _ask(desk, sender, text, subject="question"):
    desk.receive(sender, text, subject)
    return sent_to(desk, sender, "selfservice")[-1]


def _world():
    desk = StoreDesk()
    desk.receive(CUSTOMER, "打印机卡纸", "三楼打印机卡纸")
    desk.reply_to_last("alice@example.com", "#诊断", kind="notify")
    desk.receive("wang@customer.example", "VPN drops", "VPN drops every hour")
    desk.reply_to_last("alice@example.com", "#归档 Replaced the router firmware.\nLessons: keep firmware current",
                       kind="notify", to="alice@example.com")
    desk.receive("zhao@customer.example", "邮箱满了", "邮箱容量已满")
    return desk


def test_mine_lists_my_open_tickets_overdue_first_to_me_only():
    desk = _world()
    desk.tickets[3].assignee = "alice@example.com"
    desk.tickets[3].events.append(desk.tickets[3].events[0].__class__(desk.now, "desk", "sla-alert",
                                                                       "received", "received", "resolution: 48h"))
    reader = _with_tickets_iter(desk)
    from maildesk.workflow.apply import decide, handle
    from maildesk.model import Address, InboundMail
    mail = InboundMail(key="q1", message_id="<q1@example.com>", sender=Address("alice@example.com"), subject="q",
                       text="#mine", auth_results=["mx.example.com; dkim=pass header.d=example.com; "
                                                   "dmarc=pass header.from=example.com"])
    ctx = desk.ctx()
    effects = handle(mail, decide(mail, reader, ctx), ctx)
    [out] = effects.outbound
    assert out.recipients == ["alice@example.com"] and effects.ticket is None
    lines = [line for line in out.text.splitlines() if "TS-0000" in line]
    assert lines[0].strip().startswith("【已超时】TS-000003") and "TS-000001" in lines[1]
    assert "TS-000002" not in out.text  # closed


def test_find_status_help_and_myrecord_by_role_and_nda():
    desk = _world()
    reader = _with_tickets_iter(desk)
    from maildesk.workflow.apply import decide, handle
    from maildesk.model import Address, InboundMail
    auth = ["mx.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"]

    def ask(sender, text):
        mail = InboundMail(key=text + sender, message_id=f"<{len(text)}@example.com>", sender=Address(sender),
                           subject="q", text=text, auth_results=auth)
        ctx = desk.ctx()
        effects = handle(mail, decide(mail, reader, ctx), ctx)
        assert all(o.recipients == [sender] for o in effects.outbound)
        desk.records += effects.records
        return effects.outbound[-1].text

    found = ask("alice@example.com", "#find router firmware")
    assert "TS-000002" in found and "keep firmware current" in found and "TS-000001" not in found
    assert "TS-000001" in ask("alice@example.com", "#查找 打印机")
    assert "TS-000003" in ask("alice@example.com", "#find 邮箱容量")
    status = ask("lead@example.com", "#状态 TS-000001")
    assert "三楼打印机卡纸" in status and CUSTOMER in status and "问题确认中" in status
    # Leadership sees customers masked; a technician without an NDA sees nothing of customers.
    assert "l***@customer.example" in ask("boss@example.com", "#status TS-000001")
    refused = ask("bob@example.com", "#status TS-000001\n#find 打印机")
    assert "TS-000001" not in refused and "三楼" not in refused and "NDA" in refused
    assert "没有工单" in ask("lead@example.com", "#status TS-000099")
    # Help by role.
    alice_help = ask("alice@example.com", "#help")
    assert "#diagnose" in alice_help and "#risk" in alice_help and "#appraise" not in alice_help
    assert "#appraise" in ask("lead@example.com", "#帮助") and "#考核" in ask("lead@example.com", "#帮助")
    bob_help = ask("bob@example.com", "#help")
    assert "#diagnose" not in bob_help and "#myrecord" in bob_help
    # My record: mine only.
    ask("lead@example.com", "#commend Alice Wang reward fixed the mail server on Sunday\n"
                            "#warn bob@example.com written missed two SLA deadlines")
    alice = ask("alice@example.com", "#myrecord")
    assert "fixed the mail server" in alice and "missed two SLA" not in alice
    bob = ask("bob@example.com", "#我的记录")
    assert "missed two SLA" in bob and "fixed the mail server" not in bob and "书面警告" in bob


def test_customers_get_no_self_service_and_forged_staff_none_either():
    desk = _world()
    reader = _with_tickets_iter(desk)
    from maildesk.workflow.apply import decide, handle
    from maildesk.model import Address, InboundMail
    ctx = desk.ctx()
    mail = InboundMail(key="c", message_id="<c@x.example>", sender=Address("eve@other.example"), subject="hi",
                       text="#find 打印机")
    assert decide(mail, reader, ctx).kind == "new"
    forged = InboundMail(key="f", message_id="<f@x.example>", sender=Address("alice@example.com"), subject="hi",
                         text="#find 打印机", auth_results=[])
    route = decide(forged, reader, ctx)
    assert route.kind == "forged"
    effects = handle(forged, route, ctx, number=9, tag="TS-000009")
    # It becomes a ticket like any stranger's mail: no answer, nothing of other tickets.
    assert not [o for o in effects.outbound if o.kind == "selfservice" or "三楼" in o.text]


def test_appraisal_answer_keeps_partial_scores_and_asks_for_the_rest():
    desk = _world()
    desk.jobs[("appraisal", "2026-10")] = {"at": "x"}
    reader = _with_tickets_iter(desk)
    from maildesk.workflow.apply import decide, handle
    from maildesk.model import Address, InboundMail
    auth = ["mx.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"]

    def ask(sender, text, in_reply_to=None):
        mail = InboundMail(key=text, message_id=f"<{hash(text)}@example.com>", sender=Address(sender),
                           subject="Re: 考核", text=text, auth_results=auth,
                           in_reply_to=[in_reply_to] if in_reply_to else [])
        ctx = desk.ctx()
        effects = handle(mail, decide(mail, reader, ctx), ctx)
        desk.records += effects.records
        return effects

    e = ask("lead@example.com", "#考核 alice 任务４ 质量5 评语：响应及时，态度好", "<appraisal.2026-11.abc@example.com>")
    [record] = e.records
    assert (record.technician, record.period, dict(record.scores)) == ("alice@example.com", "2026-11",
                                                                      {"tasks": 4, "quality": 5})
    assert record.reason == "响应及时，态度好"  # as written, full-width comma kept
    text = e.outbound[-1].text
    assert "尚缺" in text and "团队合作" in text and "学习能力" in text and "工作态度" in text
    e = ask("lead@example.com", "#考核 Alice Wang 合作4 学习3 态度5", "<appraisal.2026-11.abc@example.com>")
    assert "已完整" in e.outbound[-1].text and "Bob Li" in e.outbound[-1].text
    # Not a reply: the latest appraisal mail sent decides the period.
    e = ask("lead@example.com", "#appraise bob tasks=3")
    assert e.records[0].period == "2026-10"
    # Only the supervisor appraises.
    e = ask("alice@example.com", "#appraise bob tasks=1", "<appraisal.2026-11.abc@example.com>")
    assert not e.records and "只有主管" in e.outbound[-1].text


# -- periods and the desk's origin ----------------------------------------------------------------

def test_periods_and_first_working_day():
    nov = Period.containing("monthly", datetime(2026, 11, 30, 20, tzinfo=timezone.utc), SH)
    assert nov.label == "2026-12"  # 04:00 on 1 December in Shanghai
    q = Period.parse("2026-Q4", SH)
    assert (q.start.month, q.end.year, q.end.month, q.previous().label, q.next().label) == (10, 2027, 1,
                                                                                            "2026-Q3", "2027-Q1")
    assert Period.parse("2026-01", SH).previous().label == "2025-12"
    assert first_working_day(datetime(2026, 11, 1).date()).isoformat() == "2026-11-02"  # a Sunday


def test_origin_is_the_first_start_or_the_first_ticket_and_never_changes():
    desk = StoreDesk()
    now = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
    assert desk_origin(desk, now) == now
    assert desk_origin(desk, now + timedelta(days=30)) == now
    old = StoreDesk()
    old.tickets[1] = Ticket(1, "TS-000001", "x", CUSTOMER, "", "closed", "zh", now - timedelta(days=90),
                            now - timedelta(days=80))
    assert desk_origin(old, now) == now - timedelta(days=90)


# -- similar closed cases ------------------------------------------------------------------------

def labelled_set():
    import json
    from pathlib import Path
    return json.loads((Path(__file__).parent / "data" / "similar_labelled.json").read_text(encoding="utf-8"))


def similar_case_scores(data):
    """Precision of what the notification would show, and how many requests get a right case."""
    from maildesk.workflow.similar import CaseIndex
    index = CaseIndex()
    for c in data["cases"]:
        index.add(c["id"], c["subject"], c["summary"], c["lessons"])
    topic = {c["id"]: c["topic"] for c in data["cases"]}
    right = wrong = helped = false_alarms = 0
    for q in data["queries"]:
        found = index.query(f"{q['subject']}\n{q['text']}")
        good = [f for f in found if topic[f.tag] == q["topic"]]
        right, wrong = right + len(good), wrong + len(found) - len(good)
        helped += bool(good)
        false_alarms += q["topic"] is None and bool(found)
    return right / (right + wrong), helped, false_alarms


def test_similar_cases_precision_on_the_labelled_set():
    data = labelled_set()
    pairs = sum(1 for q in data["queries"] for c in data["cases"] if c["topic"] == q["topic"])
    assert pairs >= 50 and len({c["topic"] for c in data["cases"]}) >= 20
    precision, helped, false_alarms = similar_case_scores(data)
    asked = sum(1 for q in data["queries"] if q["topic"])
    print(f"similar cases: precision {precision:.3f}, {helped}/{asked} requests shown a right case, "
          f"{false_alarms} unrelated requests shown any")
    assert precision >= 0.9 and helped >= 0.9 * asked and false_alarms <= 1


def test_similar_cases_follow_closing_and_reopening():
    from maildesk.workflow.similar import CaseIndex
    index = CaseIndex()
    index.add("TS-000001", "VPN disconnects every hour", "Renewed the gateway certificate.", "Track expiry dates.")
    index.add("TS-000002", "打印机卡纸", "清洁搓纸轮。", "每月清洁。")
    [case] = index.query("My VPN keeps disconnecting every hour")
    assert case.tag == "TS-000001" and case.lessons == "Track expiry dates."
    assert [c.tag for c in index.query("三楼打印机又卡纸了")] == ["TS-000002"]
    index.remove("TS-000001")
    assert index.query("My VPN keeps disconnecting every hour") == []
    assert index.query("") == [] and index.query("please help") == []


# -- monthly summary ------------------------------------------------------------------------------

def test_monthly_summary_averages_the_appraisal_and_lists_open_risks():
    from maildesk.model import Event, StaffRecord
    from maildesk.reports.monthly import monthly_summary
    nov = Period.parse("2026-11", SH)
    t0 = datetime(2026, 11, 10, 2, tzinfo=timezone.utc)
    open_ticket = Ticket(1, "TS-000001", "备份失败", CUSTOMER, "", "diagnosing", "zh", t0, t0,
                         events=[Event(t0 + timedelta(hours=1), "alice@example.com", "risk", "diagnosing",
                                       "diagnosing", "可能丢数据")])
    closed = Ticket(2, "TS-000002", "打印机卡纸", CUSTOMER, "", "closed", "zh", t0, t0, summary="清洁", lessons="每月清洁",
                    assignee="alice@example.com",
                    events=[Event(t0 + timedelta(hours=2), "alice@example.com", "close", "received", "closed")])
    records = [StaffRecord(t0, "lead@example.com", "appraisal", "alice@example.com", "", period="2026-11",
                           scores=(("tasks", 4), ("quality", 5))),
               StaffRecord(t0, "lead@example.com", "appraisal", "bob@example.com", "", period="2026-11",
                           scores=(("tasks", 2),)),
               StaffRecord(t0 + timedelta(days=1), "lead@example.com", "appraisal", "alice@example.com", "",
                           period="2026-11", scores=(("tasks", 5),))]
    s = monthly_summary(nov, [open_ticket, closed], records,
                        (("alice@example.com", "Alice Wang"), ("bob@example.com", "Bob Li")))
    assert (s.received, s.closed, [lesson.tag for lesson in s.lessons]) == (2, 1, ["TS-000002"])
    assert s.appraisal_period == "2026-11"
    assert s.averages == {"tasks": 3.5, "quality": 5.0, "teamwork": None, "learning": None, "attitude": None}
    assert [(r.tag, r.text) for r in s.open_risks] == [("TS-000001", "可能丢数据")]
    assert monthly_summary(Period.parse("2026-10", SH), [], records, ()).appraisal_period == ""


# -- configuration -------------------------------------------------------------------------------

def _config(tmp_path, extra_team="", extra=""):
    from maildesk.daemon.config import load_config
    path = tmp_path / "c.toml"
    path.write_text(f"""
[imap]
host = "127.0.0.1"
port = 143
security = "none"
username = "u"
password = "p"
[smtp]
host = "127.0.0.1"
port = 25
security = "none"
from_address = "support@example.com"
[team]
supervisor = "lead@example.com"
{extra_team}
[report]
weekday = "tuesday"
time = "08:30"
timezone = "Europe/Berlin"
[security]
authserv_id = "mx.example.com"
{extra}
""", encoding="utf-8")
    return load_config(path)


def test_appraisal_and_internal_domain_keys(tmp_path):
    from maildesk.daemon.config import ConfigError
    c = _config(tmp_path, 'internal_domains = ["Example.com"]')
    assert c.team.internal_domains == ("example.com",)
    # The appraisal's schedule follows the weekly report's unless written.
    assert (c.appraisal.period, c.appraisal.weekday, c.appraisal.time.isoformat(), c.appraisal.timezone.key) == (
        "monthly", "tuesday", "08:30:00", "Europe/Berlin")
    c = _config(tmp_path, extra='[appraisal]\nperiod = "quarterly"\nweekday = "friday"\n')
    assert (c.appraisal.period, c.appraisal.weekday) == ("quarterly", "friday")
    with pytest.raises(ConfigError, match="appraisal.period"):
        _config(tmp_path, extra='[appraisal]\nperiod = "weekly"\n')
    with pytest.raises(ConfigError, match="internal_domains"):
        _config(tmp_path, 'internal_domains = ["not a domain"]')
    with pytest.raises(ConfigError, match="commands.risk"):
        _config(tmp_path, extra='[commands]\nrisk = []\n')
    c = _config(tmp_path, extra='[commands]\nrisk = ["risk", "上报", "风险"]\n')
    from maildesk.parsers.commands import Vocabulary, parse_commands
    vocabulary = Vocabulary.build(dict(c.procedure.commands))
    assert [x.name for x in parse_commands("#风险 服务器过热", vocabulary)] == ["risk"]


def test_a_risk_never_rides_on_a_mail_for_the_customer():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#resolve renewed the certificate\n#risk the CA itself expires in May",
                       kind="notify")
    assert desk.stage() == "received" and not sent_to(desk, CUSTOMER, "result")
    assert "#risk" in sent_to(desk, "alice@example.com", "error")[-1].text
    # (Worded anew: text the desk itself sent, such as the error mail's quote, is never read as new.)
    desk.reply_to_last("alice@example.com", "#上报\n根证书五月到期，所有 VPN 客户端届时都会断开", kind="notify")
    assert not [m for m in desk.sent if CUSTOMER in m.recipients and "五月" in m.text]
    assert "根证书五月到期" in sent_to(desk, "boss@example.com", "risk")[-1].text


def test_a_reply_quoting_the_desk_unrecognisably_gives_no_scores():
    """The desk's own examples never start a line with "#": pasted back unquoted, they are no command."""
    from maildesk.parsers.commands import Vocabulary, parse_commands
    from maildesk.templates import Renderer
    renderer = Renderer()
    for lang in ("zh", "en"):
        text = renderer.render("appraisal", lang, period="2026-11", appraisals=[], late=False,
                               labels=renderer.labels("record_levels", lang), criteria=())
        assert parse_commands(text, Vocabulary.build()) == []
