"""Command safety by construction: the desk's own words coming back are never read as new (no servers)."""
from __future__ import annotations

import textwrap
from datetime import timedelta

from maildesk.parsers.own_text import own_lines, without_own_text

from .test_procedure import CUSTOMER, Desk, sent_to

NOTIFY = """New ticket TS-000001 from wang@cust.test.

Subject: Printer jams
Received: 2026-11-23T09:00

----- the customer wrote -----
#close
Lessons: none. The printer on floor three jams every morning since the update.
------------------------------

Reply to this mail to work on the ticket. Your reply goes to the desk, never
straight to the customer."""


def test_a_quoted_stretch_is_found_however_it_was_rewrapped_or_marked():
    rewrapped = "\n".join(textwrap.wrap(NOTIFY.replace("\n", " "), 31))
    for quoted in (NOTIFY, rewrapped, "\n".join("> " + line for line in NOTIFY.splitlines()),
                   NOTIFY.upper(), NOTIFY.replace(" ", "\u3000")):
        reply = "Looking into it now.\n\nSome client's own header\n" + quoted
        kept = without_own_text(reply, [NOTIFY])
        assert "Looking into it now." in kept and "Some client's own header" in kept
        assert "#close" not in kept.lower() and "printer" not in kept.lower()


def test_chinese_text_matches_across_line_breaks():
    sent = "您好：\n\n您的请求“打印机卡纸”（工单 TS-000001）已处理完毕。请回复 1 到 5 分评价本次服务，或回复“未解决”。"
    reply = "5分\n\n您的请求“打印机卡纸”（工单 TS-0000\n01）已处理完毕。请回复 1 到 5 分评价本次服\n务，或回复“未解决”。"
    assert without_own_text(reply, [sent]) == "5分"


def test_short_lines_a_person_types_are_never_taken_for_the_desks():
    sent = "To confirm, reply 同意.\nTo close the case: #close <summary>\nLessons: <what we learned>"
    for typed in ("同意", "#close", "#close Replaced the toner.\nLessons: keep spares.", "ok\nthanks"):
        assert own_lines(typed, [sent]) == set()
    assert without_own_text("anything", []) == "anything"


def test_a_command_inside_the_desks_own_words_is_not_obeyed_in_any_layout():
    desk = Desk()
    desk.receive(CUSTOMER, "#close\nLessons: none. The printer on floor three jams every morning.", "Printer")
    notify = sent_to(desk, "alice@example.com", "notify")[-1]
    # A client whose quote header no pattern knows, quoting without '>' marks.
    desk.now += timedelta(minutes=5)
    desk.reply_to_last("alice@example.com", "Checking the printer.\n\n=== Quoted by ExoticMail 9 ===\n" + notify.text,
                       kind="notify")
    assert desk.stage() == "received"
    relay = sent_to(desk, CUSTOMER, "relay")[-1]
    assert "Checking the printer." in relay.text and "floor three" not in relay.text


def test_close_with_summary_and_lessons_on_one_line():
    desk = Desk()
    desk.receive(CUSTOMER, "声卡没有声音", "声卡故障")
    desk.reply_to_last("alice@example.com", "#解决 重装了声卡驱动", kind="notify")
    desk.reply_to_last(CUSTOMER, "5分")
    desk.reply_to_last("alice@example.com", "#归档 原因：驱动损坏。经验：更新前先备份驱动。", kind="notify")
    t = desk.tickets[1]
    assert t.stage == "closed"
    assert t.summary == "原因：驱动损坏。" and t.lessons == "更新前先备份驱动。"
    desk2 = Desk()
    desk2.receive(CUSTOMER, "VPN", "VPN")
    desk2.reply_to_last("alice@example.com", "#resolve new profile", kind="notify")
    desk2.reply_to_last("alice@example.com", "#close Replaced the VPN profile. Lessons learned: keep a spare.",
                        kind="notify")
    assert (desk2.tickets[1].summary, desk2.tickets[1].lessons) == ("Replaced the VPN profile.", "keep a spare.")


def test_a_refused_command_shows_what_was_read_as_new():
    desk = Desk()
    desk.receive(CUSTOMER, "VPN", "VPN")
    desk.reply_to_last("alice@example.com", "#resolv fixed it\n\nsome odd quote header\n#close", kind="notify")
    error = sent_to(desk, "alice@example.com", "error")[-1]
    assert "#resolv fixed it" in error.text and "some odd quote header" in error.text


def test_a_command_below_a_quote_counts_only_when_the_quote_is_the_desks_own():
    desk = Desk()
    desk.receive(CUSTOMER, "The printer on floor three jams every morning since the update.", "Printer")
    notify = sent_to(desk, "alice@example.com", "notify")[-1]
    quoted = "\n".join("> " + line for line in notify.text.splitlines())
    # Bottom-posted under the desk's own notification: obeyed.
    desk.reply_to_last("alice@example.com", f"On Monday the desk wrote:\n{quoted}\n\n#diagnose\nOn my way.",
                       kind="notify")
    assert desk.stage() == "diagnosing"
    # Below a quote of some other mail: the command is not read (and not relayed).
    other = "> From a vendor thread we were copied on:\n> the fix is simple,\n> just do what they say below"
    desk.reply_to_last("alice@example.com", f"See the vendor's note.\n\n{other}\n#resolve Vendor says fixed",
                       kind="notify")
    assert desk.stage() == "diagnosing"
    assert "Vendor says fixed" not in sent_to(desk, CUSTOMER)[-1].text
    # ...and the technician is told which line was left unread and why, instead of silence.
    error = sent_to(desk, "alice@example.com", "error")[-1]
    assert "#resolve Vendor says fixed" in error.text and "不是本服务台发出的邮件" in error.text
    assert not any("See the vendor's note." in m.text for m in sent_to(desk, CUSTOMER))


def test_the_unread_line_is_explained_in_english_too():
    desk = Desk()
    desk.receive(CUSTOMER, "The printer jams every morning.", "Printer")
    desk.reply_to_last("alice@example.com", "See below.\n\n> Vendor wrote to us:\n> just do this\n#解决 fixed",
                       kind="notify", staff_language="en")
    assert desk.stage() == "received"
    error = sent_to(desk, "alice@example.com", "error")[-1]
    assert "#解决 fixed" in error.text and "below quoted text that is not a mail of this desk" in error.text
