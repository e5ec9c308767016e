"""Reply splitting and the keyword grammar over many client layouts (no servers)."""
from __future__ import annotations

import pytest

from maildesk.parsers import parse_mail
from maildesk.parsers.commands import (Vocabulary, parse_reply_commands, read_confirmation, read_feedback,
                                       text_without_commands)
from maildesk.parsers.reply import split_reply

from .desk import CORPUS

VOCAB = Vocabulary.build()

# (client, reply text, expected new text)
LAYOUTS = [
    ("gmail en", "#resolve fixed the toner\n\nOn Mon, Nov 23, 2026 at 9:13 AM IT Service Desk <support@example.com>"
                 " wrote:\n> #close\n> We received your request.", "#resolve fixed the toner"),
    ("gmail en wrapped", "Thanks, works.\n\nOn Mon, Nov 23, 2026 at 9:13 AM IT Service Desk\n<support@example.com>"
                         " wrote:\n> reply #resolve", "Thanks, works."),
    ("gmail en two-line wrote", "Agreed.\n\nOn Mon, 23 Nov 2026 at 09:13, IT Service Desk <support@example.com>\n"
                                "wrote:\n\n> Reply 同意 to confirm", "Agreed."),
    ("gmail zh", "#诊断 先看日志\n\nIT 服务台 <support@example.com> 于2026年11月24日周二 10:02写道：\n> #解决",
     "#诊断 先看日志"),
    ("outlook zh", "#方案：调整配额\n\n________________________________\n发件人: IT 服务台 <support@example.com>\n"
                   "发送时间: 2026年11月23日 10:02\n收件人: Alice\n主题: [TS-000021] 邮箱\n\n处理完成后回复 #解决",
     "#方案：调整配额"),
    ("outlook zh no rule", "#执行\n\n发件人：IT 服务台\n发送时间：2026年11月23日 10:02\n主题：x\n\n#关闭", "#执行"),
    ("outlook en", "#execute tonight\n\nFrom: IT Service Desk <support@example.com>\nSent: Monday, November 23, "
                   "2026 10:02 AM\nTo: Bob\nSubject: [TS-000021] x\n\nReply #resolve when done", "#execute tonight"),
    ("outlook original message", "#note called him\n-----Original Message-----\nFrom: Desk\n#close",
     "#note called him"),
    ("qq mail", "＃执行　客户已确认\n\n------------------ 原始邮件 ------------------\n发件人: \"IT 服务台\"<support@"
                "example.com>;\n发送时间: 2026年11月24日(星期二) 上午9:31\n\n回复 #关闭 归档。", "＃执行　客户已确认"),
    ("foxmail", "#resolve done\n------------------ Original ------------------\nFrom: Desk\nDate: Mon\n#close",
     "#resolve done"),
    ("netease 163", "同意\n\n在 2026-11-24 10:02:00，\"IT 服务台\" <support@example.com> 写道：\n>不同意请回复",
     "同意"),
    ("apple mail", "Yes, go ahead.\n\n> On 23 Nov 2026, at 09:13, IT Service Desk <support@example.com> wrote:\n"
                   "> \n> reply no to refuse", "Yes, go ahead."),
    ("iphone signature", "5\n\nSent from my iPhone\n\nOn 23 Nov 2026 Desk wrote:\n> rate 1-5", "5"),
    ("iphone zh signature", "4分，处理得挺快\n\n发自我的iPhone", "4分，处理得挺快"),
    ("dash signature", "#resolve replaced cable\n-- \nAlice Wang\nIT, ext. 402 #close", "#resolve replaced cable"),
    ("outlook mobile", "not fixed\n\nGet Outlook for iOS\n________________________________\nFrom: Desk",
     "not fixed"),
    ("inline > quotes only", "> #close\nmy answer\n> #resolve", "my answer"),
    ("no quote", "just text\nsecond line", "just text\nsecond line"),
]


@pytest.mark.parametrize("client, text, new", LAYOUTS, ids=[c for c, _, _ in LAYOUTS])
def test_split_reply(client, text, new):
    assert split_reply(text).new == new


@pytest.mark.parametrize("client, text, new", LAYOUTS, ids=[c for c, _, _ in LAYOUTS])
def test_quoted_commands_never_count(client, text, new):
    commands = parse_reply_commands(split_reply(text).new, "", VOCAB)
    quoted = parse_reply_commands(text, "", VOCAB)
    assert {c.line for c in commands} <= {c.line for c in quoted}
    assert all(c.name != "close" for c in commands)


def test_corpus_technician_replies():
    outlook = parse_mail((CORPUS / "06-reply-outlook-zh-technician.eml").read_bytes())
    [cmd] = parse_reply_commands(split_reply(outlook.text).new, outlook.subject, VOCAB)
    assert (cmd.name, cmd.argument) == ("propose", "把邮箱配额从 2GB 调到 10GB,并开启自动归档。")
    qq = parse_mail((CORPUS / "07-reply-qq-fullwidth.eml").read_bytes())
    [cmd] = parse_reply_commands(split_reply(qq.text).new, qq.subject, VOCAB)
    assert (cmd.name, cmd.argument) == ("execute", "客户已确认,今晚十点操作。")
    gmail = parse_mail((CORPUS / "05-reply-gmail-en.eml").read_bytes())
    assert split_reply(gmail.text).new == "It works again after the restart, thank you.\nYou can close it."


@pytest.mark.parametrize("line, name, argument", [
    ("#diagnose", "diagnose", ""),
    ("#DIAGNOSE", "diagnose", ""),
    ("  #Resolve: fixed the toner", "resolve", "fixed the toner"),
    ("#RESOLVE fixed the toner", "resolve", "fixed the toner"),
    ("#方案：重装驱动", "propose", "重装驱动"),
    ("＃执行", "execute", ""),
    ("＃解决：更换了硒鼓", "resolve", "更换了硒鼓"),
    ("#指派 alice@example.com", "assign", "alice@example.com"),
    ("#assign: Alice Wang", "assign", "Alice Wang"),
    ("#优先级 高", "priority", "高"),
    ("#表扬 bob@example.com 周末加班恢复了服务器", "commend", "bob@example.com 周末加班恢复了服务器"),
    ("# close", "close", ""),
    ("#归档：已处理。经验：定期清理", "close", "已处理。经验:定期清理"),
    ("#resolv", None, ""),
])
def test_command_lines(line, name, argument):
    [cmd] = parse_reply_commands(line, "", VOCAB)
    assert (cmd.name, cmd.argument) == (name, argument)


def test_typos_get_the_nearest_keyword():
    assert VOCAB.suggest("resolv") == "resolve"
    assert VOCAB.suggest("diagnos") == "diagnose"
    assert VOCAB.suggest("方按") in ("方案", None)
    assert VOCAB.suggest("xyzzy") is None


def test_not_commands():
    assert parse_reply_commands("Ticket #3 is related\nsee #42 too", "", VOCAB) == []
    assert parse_reply_commands("I use C# daily", "Issue #42", VOCAB) == []
    # The subject repeats the customer's words: it never gives a command.
    for subject in ("Re: [TS-000001] VPN drops #resolve", "回复：打印机 ＃执行", "Re: printer #priority"):
        assert parse_reply_commands("done", subject, VOCAB) == []


def test_vocabulary_is_configurable():
    vocab = Vocabulary.build({"resolve": ["fixed", "搞定"]})
    assert [c.name for c in parse_reply_commands("#搞定\n#fixed", "", vocab)] == ["resolve", "resolve"]
    assert parse_reply_commands("#resolve", "", vocab)[0].name is None


def test_text_without_commands_keeps_arguments():
    assert text_without_commands("#resolve replaced the toner\nPlease test.\n#priority high") == \
        "replaced the toner\nPlease test.\nhigh"


@pytest.mark.parametrize("text, kind", [
    ("同意", "confirm"), ("确认，请安排", "confirm"), ("好的，可以", "confirm"), ("Agree.", "confirm"),
    ("yes please", "confirm"), ("OK, go ahead", "confirm"), ("No problem, go ahead", "confirm"),
    ("不同意", "reject"), ("不同意，太贵了", "reject"), ("No.", "reject"), ("I disagree", "reject"),
    ("不行", "reject"),
    ("什么时候开始？", "unclear"), ("yes and no", "unclear"), ("", "unclear"),
])
def test_confirmation(text, kind):
    assert read_confirmation(text).kind == kind


@pytest.mark.parametrize("text, kind, rating", [
    ("5", "rating", 5), ("4分，处理得挺快", "rating", 4), ("★★★★", "rating", 4), ("★★★☆☆", "rating", 3),
    ("满意", "rating", 4), ("非常满意！", "rating", 5), ("不满意", "rating", 2), ("satisfied", "rating", 4),
    ("Very satisfied, thanks", "rating", 5), ("５", "rating", 5), ("3/5 - slow", "rating", 3),
    ("Rating: 2 stars", "rating", 2),
    ("还是不行", "not-solved", None), ("问题未解决", "not-solved", None), ("Not fixed, same error", "not-solved", None),
    ("thanks!", "unclear", None), ("The meeting is at 3 pm", "unclear", None), ("10", "unclear", None),
])
def test_feedback(text, kind, rating):
    answer = read_feedback(text)
    assert (answer.kind, answer.rating) == (kind, rating)


def test_feedback_from_a_mailto_subject_when_the_body_is_empty():
    assert read_feedback("", "Re: [TS-000021] 评分 4").rating == 4
    assert read_feedback("", "[TS-000021] rating: 5").rating == 5
