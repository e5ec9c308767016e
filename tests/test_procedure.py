"""The six-stage procedure as pure functions: commands, answers, traps, timers (no servers)."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlparse


from maildesk.model import Address, InboundMail
from maildesk.templates import Renderer
from maildesk.workflow.apply import decide, handle
from maildesk.workflow.intake import DeskContext
from maildesk.workflow.procedure import Timers, due_timers
from maildesk.workflow.route import Directory

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
DIRECTORY = Directory(support_address="support@example.com", prefix="TS",
                      technicians=frozenset({"alice@example.com", "bob@example.com"}),
                      supervisor="lead@example.com", leadership=frozenset({"boss@example.com"}),
                      nda_signed=frozenset({"alice@example.com"}),
                      names=(("alice@example.com", "Alice Wang"), ("bob@example.com", "Bob Li")))
CUSTOMER = "liuyang@customer.example"
AUTH_OK = ["mx.example.com; dkim=pass header.d=example.com header.s=sel; dmarc=pass header.from=example.com"]


class Desk:
    """An in-memory desk: decide + handle + apply, exactly as the daemon does, minus I/O."""

    def __init__(self):
        self.tickets = {}
        self.sent = []
        self.plans = []
        self.records = []
        self.now = T0
        self._ids = itertools.count(1)

    # TicketLookup
    def get_ticket(self, number):
        return self.tickets.get(number)

    def ticket_for_message_id(self, mid):
        for t in self.tickets.values():
            if mid in t.message_ids:
                return t.number
        return None

    def outbound_by_message_id(self, mid):
        return None

    def ctx(self, **kw):
        kw.setdefault("authserv_id", "mx.example.com")
        kw.setdefault("staff_language", "zh")
        return DeskContext(directory=DIRECTORY, desk=Address("support@example.com", "IT 服务台"),
                           renderer=Renderer(), now=self.now, new_id=lambda: f"{next(self._ids):016x}" * 2,
                           **kw)

    def receive(self, sender, text, subject="", *, in_reply_to=None, language="zh", auth_results=None, **ctx_kw):
        self.now += timedelta(minutes=10)
        number = len(self.tickets) + 1
        if auth_results is None:
            # Staff mail is signed by the company's server and verified by the receiving one.
            auth_results = AUTH_OK if sender in DIRECTORY.staff else []
        mail = InboundMail(key=f"k{next(self._ids)}", message_id=f"<m{next(self._ids)}@x.example>",
                           sender=Address(sender), subject=subject, text=text, language=language,
                           in_reply_to=[in_reply_to] if in_reply_to else [], auth_results=auth_results)
        ctx = self.ctx(**ctx_kw)
        route = decide(mail, self, ctx)
        effects = handle(mail, route, ctx, number=number, tag=f"TS-{number:06d}")
        if effects.ticket:
            self.tickets[effects.ticket.number] = effects.ticket
        self.sent += effects.outbound
        self.plans += effects.plans
        self.records += effects.records
        return effects

    def reply_to_last(self, sender, text, *, kind=None, to=None, **kw):
        """Reply to the last mail the desk sent to ``to`` (default: the sender)."""
        to = to or sender
        last = [m for m in self.sent if to in m.recipients and (kind is None or m.kind == kind)][-1]
        return self.receive(sender, text, f"Re: {last.subject}", in_reply_to=last.message_id, **kw)

    def stage(self, number=1):
        return self.tickets[number].stage


def sent_to(desk, address, kind=None):
    return [m for m in desk.sent if address in m.recipients and (kind is None or m.kind == kind)]


def test_full_procedure_in_chinese_with_qq_and_outlook_replies():
    desk = Desk()
    desk.receive(CUSTOMER, "您好，我的邮箱提示容量已满，删除邮件后仍然无法收信。", "邮箱容量已满，无法收信")
    assert desk.stage() == "received" and sent_to(desk, CUSTOMER, "ack")

    # QQ Mail: full-width ＃ from the IME, quote header below with a trap keyword.
    desk.reply_to_last("alice@example.com", "＃诊断　正在查看邮箱配额\n\n------------------ 原始邮件 ------------------\n"
                       "发件人: \"IT 服务台\"<support@example.com>;\n\n处理完成后回复 #解决 并写明结果。", kind="notify")
    t = desk.tickets[1]
    assert (t.stage, t.assignee) == ("diagnosing", "alice@example.com")
    relay = sent_to(desk, CUSTOMER, "relay")[-1]
    assert "正在查看邮箱配额" in relay.text and "#" not in relay.text and "alice" not in relay.text

    # Outlook: proposal above the "发件人:/发送时间:" block.
    desk.reply_to_last("alice@example.com", "#方案：把邮箱配额从 2GB 调到 10GB，并开启自动归档。\n\n"
                       "________________________________\n发件人: IT 服务台 <support@example.com>\n"
                       "发送时间: 2026年11月23日 10:02\n\n#归档", kind="notify")
    assert desk.stage() == "proposed"
    proposal = sent_to(desk, CUSTOMER, "proposal")[-1]
    assert "把邮箱配额从 2GB 调到 10GB" in proposal.text and "同意" in proposal.text

    desk.reply_to_last(CUSTOMER, "同意，请今晚操作。\n\n发自我的iPhone")
    assert desk.stage() == "executing"
    assert "同意" in sent_to(desk, "alice@example.com", "notify")[-1].text

    desk.reply_to_last("alice@example.com", "#解决：配额已调整为 10GB，已开启自动归档。", kind="notify")
    assert desk.stage() == "feedback"
    result = sent_to(desk, CUSTOMER, "result")[-1]
    assert "配额已调整为 10GB" in result.text and "mailto:support@example.com?" in result.text

    desk.reply_to_last(CUSTOMER, "4分，处理得挺快，就是中间停了一会儿。\n\n发自我的iPhone")
    t = desk.tickets[1]
    assert (t.stage, t.rating) == ("feedback", 4) and "处理得挺快" in t.rating_comment
    assert sent_to(desk, CUSTOMER, "thanks")

    desk.reply_to_last("alice@example.com", "#归档 调整配额并开启自动归档。\n经验：大附件多的部门默认 10GB 配额。",
                       kind="notify")
    t = desk.tickets[1]
    assert t.stage == "closed"
    assert (t.summary, t.lessons) == ("调整配额并开启自动归档。", "大附件多的部门默认 10GB 配额。")
    stages = [(e.from_stage, e.to_stage) for e in t.events if e.from_stage != e.to_stage]
    assert stages == [(None, "received"), ("received", "diagnosing"), ("diagnosing", "proposed"),
                      ("proposed", "executing"), ("executing", "feedback"), ("feedback", "closed")]
    # Nothing the customer received carries a technician's address.
    for m in sent_to(desk, CUSTOMER):
        assert "alice@example.com" not in m.text and m.sender.email == "support@example.com"


def test_full_procedure_in_english_with_gmail_replies():
    desk = Desk()
    desk.receive("zhang.wei@customer.example", "SAP print jobs stay in the spool.", "Cannot print from SAP",
                 language="en")
    gmail_quote = "\n\nOn Mon, Nov 23, 2026 at 9:13 AM IT Service Desk <support@example.com> wrote:\n> "
    desk.reply_to_last("alice@example.com", "#RESOLVE restarted the spooler, fixed the toner" + gmail_quote +
                       "New ticket. Reply #close", kind="notify")
    assert desk.stage() == "feedback"  # a forward skip: received -> feedback
    result = sent_to(desk, "zhang.wei@customer.example", "result")[-1]
    assert "restarted the spooler" in result.text and "How satisfied" in result.text
    desk.reply_to_last("zhang.wei@customer.example", "not fixed, same error" + gmail_quote + "Reply 5 to rate",
                       language="en")
    assert desk.stage() == "executing"
    alert = sent_to(desk, "alice@example.com", "notify")[-1]
    assert "NOT SOLVED" in alert.text or "仍未解决" in alert.text
    desk.reply_to_last("alice@example.com", "#resolve replaced the fuser unit" + gmail_quote, kind="notify")
    desk.reply_to_last("zhang.wei@customer.example", "★★★★★ great" + gmail_quote + "rate 1", language="en")
    assert desk.tickets[1].rating == 5


def test_a_quoted_template_never_triggers_anything():
    desk = Desk()
    desk.receive(CUSTOMER, "打印机卡纸", "打印机卡纸")
    # The technician only quotes our notification, which mentions #解决.
    desk.reply_to_last("alice@example.com", "我下午过去看看。\n\n在 2026-11-24 10:02:00，\"IT 服务台\" "
                       "<support@example.com> 写道：\n> 处理完成后回复 #解决 并写明结果。\n> #归档", kind="notify")
    assert desk.stage() == "received"
    assert sent_to(desk, CUSTOMER, "relay")[-1].text.count("我下午过去看看") == 1
    # The customer quotes the feedback request (with its mailto links and "5").
    desk.reply_to_last("alice@example.com", "#resolve 已处理", kind="notify")
    desk.reply_to_last(CUSTOMER, "谢谢！\n\n> 请写上 1（非常不满意）到 5（非常满意）的分数")
    assert desk.tickets[1].rating is None and desk.stage() == "feedback"


def test_typo_changes_nothing_and_suggests_the_keyword():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#resolv fixed it", kind="notify")
    assert desk.stage() == "received"
    error = sent_to(desk, "alice@example.com", "error")[-1]
    assert "#resolv" in error.text and "#resolve" in error.text and "已受理" in error.text
    assert "#diagnose / #诊断" in error.text
    assert not sent_to(desk, CUSTOMER, "relay")  # nothing relayed either


def test_a_move_the_stage_table_forbids_is_refused():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#reopen", kind="notify")
    assert desk.stage() == "received"
    assert "不能执行此指令" in sent_to(desk, "alice@example.com", "error")[-1].text


def test_commands_from_strangers_and_customers_are_ignored():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last(CUSTOMER, "#close\n#解决 我自己修好了")
    assert desk.stage() == "received" and len(desk.tickets) == 1
    last_in = [m for m in desk.tickets[1].messages if m.direction == "in"][-1]
    assert last_in.text.startswith("#close") and not last_in.internal  # kept as the customer's message
    tag_subject = sent_to(desk, CUSTOMER, "ack")[-1].subject
    desk.receive("mallory@evil.example", "#close", f"Re: {tag_subject}")
    assert desk.stage() == "received" and desk.tickets[2].customer == "mallory@evil.example"


def test_assignment_requires_a_signed_nda():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("lead@example.com", "#指派 Bob Li", kind="notify")
    assert desk.tickets[1].assignee is None
    assert "保密协议" in sent_to(desk, "lead@example.com", "error")[-1].text
    desk.reply_to_last("lead@example.com", "#assign alice@example.com", kind="notify")
    assert desk.tickets[1].assignee == "alice@example.com"
    # A technician without an NDA may not command at all.
    desk.reply_to_last("bob@example.com", "#诊断", to="alice@example.com", kind="notify")
    assert desk.stage() == "received"
    [refusal] = sent_to(desk, "bob@example.com")
    # One neutral refusal: nothing of the customer's ticket (not even its subject or tag) goes back.
    assert refusal.kind == "refusal" and "保密协议" in refusal.text
    assert "VPN" not in refusal.subject + refusal.text and "TS-000001" not in refusal.subject + refusal.text
    assert refusal.ticket is None


def test_refused_proposal_goes_back_to_diagnosis_and_tells_the_assignee():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#方案 重装客户端", kind="notify")
    desk.reply_to_last(CUSTOMER, "不同意，重装会丢配置")
    assert desk.stage() == "diagnosing"
    assert "不同意" in sent_to(desk, "alice@example.com", "notify")[-1].text
    desk.reply_to_last("alice@example.com", "#方案 先导出配置再重装", kind="notify")
    desk.reply_to_last(CUSTOMER, "什么时候做？")  # unclear: kept, assignee told
    assert desk.stage() == "proposed"
    assert "意思不明确" in sent_to(desk, "alice@example.com", "notify")[-1].text


def test_close_needs_summary_and_lessons():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#resolve done", kind="notify")
    desk.reply_to_last("alice@example.com", "#close done", kind="notify")
    assert desk.stage() == "feedback"
    assert "经验教训" in sent_to(desk, "alice@example.com", "error")[-1].text
    desk.reply_to_last("alice@example.com", "#close Replaced cable.\nLessons learned: label the cables.",
                       kind="notify")
    assert desk.stage() == "closed" and desk.tickets[1].lessons == "label the cables."


def test_notes_are_never_relayed():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#备注 客户是 VIP，电话 138xxxx\n先别回复客户", kind="notify")
    assert not sent_to(desk, CUSTOMER, "relay")
    note = desk.tickets[1].messages[-1]
    assert note.internal and "VIP" in note.text


def test_closed_ticket_reopens_within_the_window_and_links_after_it():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#close 重启路由器\n经验：先查路由器", kind="notify")
    desk.reply_to_last(CUSTOMER, "又断了", kind="closed", reopen_days=14)
    assert desk.stage() == "diagnosing" and len(desk.tickets) == 1
    desk.reply_to_last("alice@example.com", "#close 换了路由器\n经验：老设备及时更换", kind="notify")
    desk.now += timedelta(days=30)
    desk.reply_to_last(CUSTOMER, "又断了", kind="closed", reopen_days=14)
    assert desk.stage(1) == "closed"
    assert desk.tickets[2].linked_to == "TS-000001" and desk.tickets[2].customer == CUSTOMER


def test_supervisor_directives_are_recorded_and_never_tickets():
    desk = Desk()
    desk.receive("lead@example.com", "#计划 下周完成打印机巡检\n#表扬 Alice Wang 周末恢复了邮件服务器\n"
                 "#warn bob@example.com missed two SLA deadlines", "周会")
    assert desk.tickets == {}
    assert [p.text for p in desk.plans] == ["下周完成打印机巡检"]
    assert [(r.kind, r.technician, r.reason) for r in desk.records] == [
        ("commend", "alice@example.com", "周末恢复了邮件服务器"),
        ("warn", "bob@example.com", "missed two SLA deadlines")]
    assert "已记录" in sent_to(desk, "lead@example.com", "directive")[-1].text
    desk.receive("alice@example.com", "#计划 我想休假", "plan")
    assert desk.plans[-1].text == "下周完成打印机巡检" and desk.tickets == {}
    assert "只有主管" in sent_to(desk, "alice@example.com", "error")[-1].text


def test_rating_by_mailto_link():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#解决 重置了密码", kind="notify")
    result = sent_to(desk, CUSTOMER, "result")[-1]
    link = next(line.split("：", 1)[1] for line in result.text.splitlines() if "3 分" in line)
    url = urlparse(link)
    query = parse_qs(url.query)
    assert url.scheme == "mailto" and unquote(url.path) == "support@example.com"
    assert query["body"] == ["3"] and "[TS-000001]" in query["subject"][0]
    desk.receive(CUSTOMER, "", query["subject"][0], in_reply_to=None)
    assert desk.tickets[1].rating == 3


def test_feedback_reminder_once_then_no_rating():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#解决 重置了密码", kind="notify")
    timers = Timers(reminder_days=3, no_rating_days=7, first_response_hours=1000, resolution_hours=1000)

    def tick(days):
        desk.now = T0 + timedelta(days=days)
        effects = due_timers(desk.tickets[1], desk.ctx(), timers)
        if effects:
            desk.tickets[1] = effects.ticket
            desk.sent += effects.outbound
        return effects

    assert tick(1) is None
    assert [m.kind for m in tick(3.5).outbound] == ["reminder"]
    assert tick(4) is None and tick(6) is None  # never a second reminder
    marked = tick(8)
    assert marked.outbound == [] and marked.ticket.events[-1].kind == "no-rating"
    assert tick(30) is None
    assert len(sent_to(desk, CUSTOMER, "reminder")) == 1


def test_sla_alerts_go_once_to_assignee_and_supervisor():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    timers = Timers(first_response_hours=4, resolution_hours=48)
    desk.now = T0 + timedelta(hours=5)
    effects = due_timers(desk.tickets[1], desk.ctx(), timers)
    assert sorted(r for m in effects.outbound for r in m.recipients) == ["alice@example.com", "lead@example.com"]
    desk.tickets[1] = effects.ticket
    desk.now = T0 + timedelta(hours=6)
    assert due_timers(desk.tickets[1], desk.ctx(), timers) is None
    desk.now = T0 + timedelta(hours=50)
    second = due_timers(desk.tickets[1], desk.ctx(), timers)
    assert "48 小时内未解决" in second.outbound[0].text
    desk.tickets[1] = second.ticket
    assert due_timers(desk.tickets[1], desk.ctx(), timers) is None


def test_priority_and_every_template_renders_in_both_languages():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    desk.reply_to_last("alice@example.com", "#优先级 紧急", kind="notify")
    assert desk.tickets[1].priority == "urgent"
    renderer = Renderer()
    assert renderer.keys("zh") == renderer.keys("en")



def test_forged_staff_mail_is_not_obeyed_and_the_supervisor_is_told():
    desk = Desk()
    desk.receive(CUSTOMER, "x", "VPN")
    notify = sent_to(desk, "alice@example.com", "notify")[-1]
    secure = dict(require_authenticated_staff=True, authserv_id="mx.example.com")

    def staff_mail(text, results):
        desk.now += timedelta(minutes=1)
        mail = InboundMail(key=f"f{len(desk.sent)}", message_id=f"<f{len(desk.sent)}@x>",
                           sender=Address("alice@example.com"), subject=f"Re: {notify.subject}", text=text,
                           in_reply_to=[notify.message_id], auth_results=results)
        ctx = desk.ctx(**secure)
        effects = handle(mail, decide(mail, desk, ctx), ctx, number=len(desk.tickets) + 1,
                         tag=f"TS-{len(desk.tickets) + 1:06d}")
        desk.tickets[effects.ticket.number] = effects.ticket
        desk.sent += effects.outbound
        return effects

    # No results, results from another server, or a failing DKIM: all forged.
    for results in ([], ["evil.example; dkim=pass header.d=example.com"],
                    ["mx.example.com; dkim=fail header.d=example.com; dmarc=fail header.from=example.com"]):
        effects = staff_mail("#close done\nLessons: none", results)
        assert effects.outcome == "forged" and desk.stage() == "received"
        assert [m.recipients for m in effects.outbound] == [["lead@example.com"]]
        assert "未通过验证" in effects.outbound[0].text
        assert desk.tickets[1].events[-1].kind == "forged-staff-mail"
    assert not sent_to(desk, CUSTOMER, "relay") and not sent_to(desk, CUSTOMER, "closed")
    # Verified by the receiving server: obeyed.
    staff_mail("#诊断 马上处理", AUTH_OK)
    assert desk.stage() == "diagnosing"
