"""parse_mail and its helpers: the sample corpus, synthetic edge cases, and fuzzing.

Pure unit tests: no servers, no files written.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildesk.model import Address, InboundMail
from maildesk.parsers import detect_language, html_to_text, parse_mail
from maildesk.parsers import mime

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def mail(*headers: str | bytes, body: str | bytes = b"hello", content_type: str | None = "text/plain; charset=utf-8",
         sender: str | None = "Customer <customer@example.org>", cte: str | None = None) -> bytes:
    """A message from header lines (str or raw bytes) and a body, CRLF line ends."""
    lines: list[bytes] = []
    if sender is not None:
        lines.append(b"From: " + sender.encode())
    lines += [b"To: support@example.com", b"Message-ID: <synthetic.1@example.org>"]
    lines += [h if isinstance(h, bytes) else h.encode() for h in headers]
    if content_type:
        lines.append(b"Content-Type: " + content_type.encode())
    if cte:
        lines.append(b"Content-Transfer-Encoding: " + cte.encode())
    data = body if isinstance(body, bytes) else body.encode()
    return b"\r\n".join(lines) + b"\r\n\r\n" + data


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


# -- the corpus ---------------------------------------------------------------------------

CORPUS_EXPECTATIONS = {
    "01-plain-en.eml": dict(
        sender=("zhang.wei@customer.example", "Zhang Wei"), subject="Cannot print from SAP", language="en",
        message_id="<CAB1234567890@mail.customer.example>",
        text=["SAP print jobs stay in the spool", "HP LaserJet M607, room 402"]),
    "02-gbk-base64-foxmail.eml": dict(
        sender=("liuyang@customer.example", "刘洋"), subject="邮箱容量已满，无法收信", language="zh",
        text=["您好，我的邮箱提示容量已满，删除邮件后仍然无法收信。", "市场部"]),
    "03-gb18030-qq-html.eml": dict(
        sender=("zhangsan@qq.example", "张三"), subject="会议室投影仪没有信号", language="zh",
        text=["三号会议室投影仪显示无信号，换了HDMI线也不行。", "张三"],
        not_text=["<", "font-size", "body{"], html=True),
    "04-multipart-alternative-outlook-zh.eml": dict(
        sender=("chenming@customer.example", "陈明"), subject="办公室网络很慢", language="zh",
        text=["办公室网络很慢，网页经常打不开。拓扑图见附件。"], not_text=["<p>"], html=True,
        attachments=[("网络拓扑.pdf", "application/pdf", b"%PDF-1.4 sample bytes for the attachment test")]),
    "05-reply-gmail-en.eml": dict(
        sender=("zhang.wei@customer.example", "Zhang Wei"), subject="Re: [TS-000017] Cannot print from SAP",
        language="en", text=["It works again after the restart, thank you.\nYou can close it."],
        in_reply_to=["<ack.TS-000017.1@example.com>"],
        references=["<CAB1234567890@mail.customer.example>", "<ack.TS-000017.1@example.com>"]),
    "06-reply-outlook-zh-technician.eml": dict(
        sender=("alice@example.com", "Alice Wang"), subject="回复: [TS-000021] 邮箱容量已满", language="zh",
        text=["#方案：把邮箱配额从 2GB 调到 10GB", "________________________________", "#解决"],
        in_reply_to=["<notify.TS-000021.1@example.com>"]),
    "07-reply-qq-fullwidth.eml": dict(
        sender=("bob@example.com", "李强"), subject="回复：[TS-000021] 邮箱容量已满", language="zh",
        text=["＃执行\u3000客户已确认，今晚十点操作。", "------------------ 原始邮件 ------------------"]),
    "08-rating-reply-zh.eml": dict(
        sender=("liuyang@customer.example", ""), subject="回复：[TS-000021] 请为本次服务评分", language="zh",
        text=["4分，处理得挺快"], in_reply_to=["<feedback.TS-000021.1@example.com>"]),
    "09-autoreply-rfc3834.eml": dict(
        sender=("director@customer.example", "Director"), language="en",
        subject="Automatic reply: [TS-000017] Cannot print from SAP",
        machine="auto-reply", machine_reason="Auto-Submitted", text=["out of the office until 30 November"]),
    "10-autoreply-zh-no-rfc-headers.eml": dict(
        sender=("zhoujie@customer.example", "周杰"), subject="自动回复: 您好", language="zh",
        machine="auto-reply", machine_reason="X-Autoreply", text=["我正在出差"]),
    "11-bounce-dsn.eml": dict(
        sender=("mailer-daemon@mx.example.com", "Mail Delivery System"), language="en",
        subject="Undelivered Mail Returned to Sender", machine="bounce", machine_reason="delivery-status",
        bounced_message_ids=["<ack.TS-000030.1@example.com>"], bounced_recipients=["nobody@customer.example"],
        text=["could not be delivered"], not_text=["Reporting-MTA", "[TS-000030]"]),
    "12-bulk-newsletter.eml": dict(
        sender=("news@vendor.example", "Vendor News"), subject="November product news", language="en",
        machine="bulk", machine_reason="Precedence: bulk", text=["Our November release is out."]),
    "13-no-message-id.eml": dict(
        sender=("oldclient@customer.example", ""), subject="Scanner driver", language="en", message_id=None,
        text=["Need the scanner driver for Windows 11."]),
    "14-raw-utf8-headers.eml": dict(
        sender=("zhaoliu@customer.example", "赵六"), subject="硬盘报警", language="zh",
        text=["服务器硬盘指示灯变红。"]),
    "15-truncated-multipart.eml": dict(
        sender=("broken@customer.example", ""), subject="Broken mail", language="en",
        text=["The keyboard in room 301 types double letters."], defects=["close boundary"]),
    "16-quoted-printable-latin1.eml": dict(
        sender=("jm@kunde.example", "Jürgen Müller"), subject="Drucker im Büro", language="en",
        text=["Der Drucker im Büro druckt nur leere Seiten.", "Grüße\nJürgen Müller"]),
}


def test_every_corpus_mail_has_expectations():
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(CORPUS_EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTATIONS))
def test_corpus_mail(name):
    expected = CORPUS_EXPECTATIONS[name]
    raw = corpus(name)
    parsed = parse_mail(raw)

    assert isinstance(parsed, InboundMail)
    assert parsed.sender == Address(*expected["sender"])
    assert parsed.subject == expected["subject"]
    assert parsed.language == expected["language"]
    assert parsed.size == len(raw)
    assert parsed.to and parsed.to[0].email == "support@example.com"
    for fragment in expected["text"]:
        assert fragment in parsed.text
    for fragment in expected.get("not_text", []):
        assert fragment not in parsed.text
    assert "\ufffd" not in parsed.text + parsed.subject + parsed.sender.name
    assert (parsed.html is not None) == expected.get("html", False)
    assert parsed.machine == expected.get("machine")
    assert expected.get("machine_reason", "") in parsed.machine_reason
    if parsed.machine is None:
        assert parsed.machine_reason == ""
    assert parsed.bounced_message_ids == expected.get("bounced_message_ids", [])
    assert parsed.bounced_recipients == expected.get("bounced_recipients", [])
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == expected.get("attachments", [])
    assert parsed.skipped_attachments == []
    assert parsed.in_reply_to == expected.get("in_reply_to", [])
    assert parsed.references == expected.get("references", [])
    if "message_id" in expected:
        assert parsed.message_id == expected["message_id"]
    if parsed.message_id:
        # Message-ID, sender and body: a reused Message-ID alone does not make a duplicate.
        assert parsed.key.startswith(parsed.message_id[1:-1] + "|" + (parsed.sender.email if parsed.sender else "-"))
    for fragment in expected.get("defects", []):
        assert any(fragment in d for d in parsed.defects), parsed.defects
    if not expected.get("defects"):
        assert parsed.defects == []


def test_corpus_dates_are_aware():
    assert parse_mail(corpus("01-plain-en.eml")).date == datetime(2026, 11, 23, 9, 12, 44,
                                                                   tzinfo=timezone(timedelta(hours=8)))
    assert parse_mail(corpus("12-bulk-newsletter.eml")).date == datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    assert parse_mail(corpus("15-truncated-multipart.eml")).date is None  # no Date header


def test_mail_without_message_id_has_a_stable_content_key():
    raw = corpus("13-no-message-id.eml")
    first, second = parse_mail(raw), parse_mail(raw)
    assert first.message_id is None
    assert first.key == second.key == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert parse_mail(raw + b"\r\nmore").key != first.key


# -- charsets -----------------------------------------------------------------------------

def test_gb2312_label_on_gbk_only_characters_decodes_as_gb18030():
    text = "朱镕基和王堃的打印机坏了"
    raw = mail(f"Subject: {encoded_word(text, 'gbk').replace('gbk', 'gb2312')}",
               content_type='text/plain; charset="gb2312"', cte="base64", body=b64(text.encode("gbk")))
    parsed = parse_mail(raw)
    assert parsed.subject == text
    assert parsed.text == text
    assert parsed.defects == []
    assert parsed.language == "zh"


@pytest.mark.parametrize("label", ["gbk", "x-gbk", "cp936", "euc-cn", "GB2312"])
def test_gb_family_labels(label):
    text = "服务器机房空调漏水，镕"
    parsed = parse_mail(mail(content_type=f"text/plain; charset={label}", cte="8bit", body=text.encode("gbk")))
    assert parsed.text == text


def test_gb18030_four_byte_characters():
    text = "生僻字𠮷和䶮，还有€"
    data = text.encode("gb18030")
    assert len(data) > len(text.encode("gbk", "replace"))  # really holds 4-byte sequences
    for label in ("gb18030", "gb2312"):
        parsed = parse_mail(mail(f"Subject: {encoded_word(text, 'gb18030').replace('gb18030', label)}",
                                 content_type=f"text/plain; charset={label}", cte="base64", body=b64(data)))
        assert parsed.text == text
        assert parsed.subject == text


@pytest.mark.parametrize("label, codec, text", [
    ("gb2312", "gbk", "朱镕基和王堃的电脑坏了"),
    ("GB2312", "gb18030", "生僻字𠀀也要完整"),
    ("gbk", "gbk", "打印机卡纸"),
    ("gb18030", "gb18030", "邮箱𠮷满"),
    ("big5", "big5", "電腦無法開機"),
    ("big5", "big5hkscs", "香港字：嘅咗"),
    ("iso-8859-2", "iso-8859-2", "Zażółć gęślą jaźń"),
    ("iso-8859-1", "iso-8859-1", "Müller Grüße"),
    ("windows-1252", "cp1252", "“quoted” – 5 €"),
    ("us-ascii", "ascii", "plain ascii"),
    ("utf-8", "utf-8", "混合 text ✓"),
])
def test_body_and_subject_charsets_round_trip(label, codec, text):
    parsed = parse_mail(mail(f"Subject: {encoded_word(text, codec).replace(codec, label, 1)}",
                             content_type=f"text/plain; charset={label}", cte="base64", body=b64(text.encode(codec))))
    assert parsed.text == text
    assert parsed.subject == text
    assert parsed.defects == []


def test_gb2312_labelled_encoded_word_in_display_name():
    word = f"=?gb2312?B?{base64.b64encode('朱镕基'.encode('gbk')).decode()}?="
    parsed = parse_mail(mail(f"Subject: {word}", sender=f"{word} <zhu@customer.example>"))
    assert parsed.subject == "朱镕基"
    assert parsed.sender == Address("zhu@customer.example", "朱镕基")


def test_utf8_text_under_a_gb2312_label_is_not_mojibake():
    parsed = parse_mail(mail(content_type="text/plain; charset=gb2312", cte="8bit", body="打印机".encode()))
    assert parsed.text == "打印机"


def test_big5_round_trip_including_hkscs():
    text = "電腦無法開機，請協助處理"
    parsed = parse_mail(mail(f"Subject: {encoded_word(text, 'big5')}", content_type="text/plain; charset=big5",
                             cte="base64", body=b64(text.encode("big5")),
                             sender=f'"{encoded_word("陳大文", "big5")}" <chan@customer.example.hk>'))
    assert parsed.sender == Address("chan@customer.example.hk", "陳大文")
    assert parsed.subject == text
    assert parsed.text == text
    assert parsed.language == "zh"
    hkscs = "佢哋話部機壞咗"  # Cantonese characters only in Big5-HKSCS
    parsed = parse_mail(mail(content_type="text/plain; charset=big5", cte="8bit", body=hkscs.encode("big5hkscs")))
    assert parsed.text == hkscs


@pytest.mark.parametrize("body, expected", [
    ("打印机卡纸了".encode("utf-8"), "打印机卡纸了"),
    ("打印机卡纸了，请尽快处理".encode("gbk"), "打印机卡纸了，请尽快处理"),
    ("Grüße aus Köln".encode("latin-1"), "Grüße aus Köln"),
])
def test_unknown_charset_label_is_guessed_and_noted(body, expected):
    parsed = parse_mail(mail(content_type='text/plain; charset="x-unknown"', cte="8bit", body=body))
    assert parsed.text == expected
    assert any("x-unknown" in d for d in parsed.defects), parsed.defects


def test_wrong_label_is_corrected_without_replacement_characters():
    parsed = parse_mail(mail(content_type="text/plain; charset=utf-8", cte="8bit",
                             body="网络很慢，请检查交换机".encode("gbk")))
    assert parsed.text == "网络很慢，请检查交换机"
    assert any("utf-8" in d and "gb18030" in d for d in parsed.defects)


def test_utf8_with_a_stray_latin1_byte_stays_utf8():
    body = "服务器重启后正常。".encode() + b" Gr\xfc\xdfe"
    parsed = parse_mail(mail(content_type="text/plain; charset=utf-8", cte="8bit", body=body))
    assert parsed.text == "服务器重启后正常。 Grüße"


@pytest.mark.parametrize("raw_subject, expected", [
    ("硬盘报警".encode("utf-8"), "硬盘报警"),
    ("打印机卡纸".encode("gbk"), "打印机卡纸"),
    (b"Caf\xe9 \xff", "Café ÿ"),
])
def test_raw_8bit_subject_falls_back_utf8_gb18030_latin1(raw_subject, expected):
    parsed = parse_mail(mail(b"Subject: " + raw_subject))
    assert parsed.subject == expected


def test_encoded_words_split_inside_a_character_and_mixed_charsets():
    data = "网络拓扑".encode("utf-8")
    first = base64.b64encode(data[:4]).decode()
    second = base64.b64encode(data[4:]).decode()
    raw = mail(f"Subject: =?UTF-8?B?{first}?=\r\n =?UTF-8?B?{second}?= and {encoded_word('電腦', 'big5')}"
               f" =?iso-8859-1?q?M=FCller?=")
    assert parse_mail(raw).subject == "网络拓扑 and 電腦Müller"


def test_subject_with_encoded_line_breaks_stays_one_line():
    parsed = parse_mail(mail("Subject: =?utf-8?q?a=0D=0ABcc:_x@y?=\r\n\tnext\tpart  with   spaces"))
    assert parsed.subject == "a Bcc: x@y next part with spaces"


@given(st.text(max_size=80))
@settings(max_examples=100, deadline=2000, database=None)
def test_any_subject_round_trips_through_rfc2047(subject):
    encoded = Header(subject, "utf-8").encode()
    parsed = parse_mail(mail(f"Subject: {encoded}"))
    expected = " ".join("".join(" " if (ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029\ufeff") else c
                                for c in subject).split(" "))
    while "  " in expected:
        expected = expected.replace("  ", " ")
    assert parsed.subject == expected.strip()
    assert "\n" not in parsed.subject and "\r" not in parsed.subject


# -- headers ------------------------------------------------------------------------------

def test_addresses_ids_date_and_auth_results():
    raw = mail(
        "Cc: =?utf-8?B?5p2O5by6?= <Li.Qiang@Customer.Example>, \"Wang, Fang\" <fang@customer.example>",
        "Reply-To: Helpdesk Team <TEAM@customer.example>",
        "Return-Path: <>",
        "In-Reply-To: <a@x>",
        "References: <r1@x>\r\n <r2\r\n @x> <a@x>",
        "Date: Tue, 24 Nov 2026 10:15:00 -0500",
        "Authentication-Results: mx.example.com;\r\n dkim=pass header.d=customer.example",
        "Authentication-Results: mx2.example.com; spf=fail",
        sender="=?GBK?B?wfXR8w==?= <LiuYang@Customer.Example>",
    )
    parsed = parse_mail(raw)
    assert parsed.sender == Address("liuyang@customer.example", "刘洋")
    assert parsed.cc == [Address("li.qiang@customer.example", "李强"), Address("fang@customer.example", "Wang, Fang")]
    assert parsed.reply_to == Address("team@customer.example", "Helpdesk Team")
    assert parsed.return_path == ""
    assert parsed.in_reply_to == ["<a@x>"]
    assert parsed.references == ["<r1@x>", "<r2@x>", "<a@x>"]
    assert parsed.thread_ids == ["<a@x>", "<r2@x>", "<r1@x>"]
    assert parsed.date == datetime(2026, 11, 24, 15, 15, tzinfo=timezone.utc)
    assert parsed.date.utcoffset() == timedelta(hours=-5)
    assert parsed.auth_results == ["mx.example.com; dkim=pass header.d=customer.example",
                                   "mx2.example.com; spf=fail"]


def test_absent_and_broken_headers():
    parsed = parse_mail(mail("Date: the day after tomorrow", "Message-ID:   <spaced\r\n  id@example.org >"))
    assert parsed.return_path is None
    assert parsed.date is None
    assert parsed.reply_to is None
    assert parsed.message_id == "<synthetic.1@example.org>"  # the first Message-ID header counts
    spaced = parse_mail(b"From: a@b.example\r\nMessage-ID:   <spaced\r\n  id@example.org >\r\n\r\nx")
    assert spaced.message_id == "<spacedid@example.org>"
    assert spaced.key.startswith("spacedid@example.org|a@b.example|")
    bare = parse_mail(b"From: a@b.example\r\nMessage-ID: bare-id@example.org\r\nReturn-Path: <Bounce@X.example>\r\n\r\nx")
    assert bare.message_id == "<bare-id@example.org>"
    assert bare.return_path == "bounce@x.example"


def test_mail_without_from_has_no_sender_but_everything_else():
    parsed = parse_mail(mail("Subject: no sender", sender=None, body="still readable"))
    assert parsed.sender is None
    assert parsed.subject == "no sender"
    assert parsed.text == "still readable"
    assert parsed.message_id == "<synthetic.1@example.org>"


def test_raw_utf8_display_name_and_whole_address_encoded():
    parsed = parse_mail(mail(sender="=?utf-8?B?" + base64.b64encode("张三 <zs@customer.example>".encode()).decode()
                                    + "?="))
    assert parsed.sender == Address("zs@customer.example", "张三")


# -- bodies -------------------------------------------------------------------------------

def test_html_only_mail_becomes_readable_text():
    html = ("<html><head><title>t</title><style>p{color:red}</style>"
            "<script>document.write('evil')</script></head><body><!-- note -->"
            "<h1>Printer</h1><p>Room&nbsp;402 &amp; 403<br>since Monday</p>"
            "<ul><li>HP</li><li>Canon</li></ul>"
            "<p>See <a href=\"https://kb.example/printers\">the guide</a> or "
            "<a href=\"https://kb.example/\">https://kb.example</a></p></body></html>")
    parsed = parse_mail(mail(content_type="text/html; charset=utf-8", body=html))
    assert parsed.html == html
    assert parsed.text == ("Printer\nRoom 402 & 403\nsince Monday\n- HP\n- Canon\n"
                           "See the guide (https://kb.example/printers) or https://kb.example")


def test_plain_text_preferred_over_html_alternative():
    raw = mail(content_type='multipart/alternative; boundary="b"', body=(
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html version</p>\r\n--b--\r\n"))
    parsed = parse_mail(raw)
    assert parsed.text == "plain version"
    assert parsed.html == "<p>html version</p>"


def test_long_single_line_bodies_are_read_whole_and_cut_with_a_note():
    # How long they take is measured by bench/hostile.py, not asserted here.
    line = "x" * 200_000
    parsed = parse_mail(mail(body=line))
    html = parse_mail(mail(content_type="text/html", body="<p>" + "word " * 40_000 + "</p>"))
    assert parsed.text == line and parsed.defects == []
    assert html.text == ("word " * 40_000).strip()
    cut = parse_mail(mail(body="y" * 250_000))
    assert cut.text == "y" * 200_000
    assert any("cut to 200000" in d for d in cut.defects)
    assert len(parse_mail(mail(body="z" * 5000), max_text_chars=100).text) == 100


def test_format_flowed_is_joined():
    body = "This is a long line that \r\nwas wrapped by the client.\r\n> quoted soft \r\n> break\r\n-- \r\nsig"
    parsed = parse_mail(mail(content_type="text/plain; charset=utf-8; format=flowed", body=body))
    assert parsed.text == "This is a long line that was wrapped by the client.\n> quoted soft break\n-- \nsig"


def test_multipart_with_wrong_boundary_still_yields_its_text():
    raw = mail(content_type='multipart/mixed; boundary="declared"', body=(
        "--actual\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe real text\r\n--actual--\r\n"))
    parsed = parse_mail(raw)
    assert parsed.text == "the real text"
    assert any("StartBoundaryNotFoundDefect" in d for d in parsed.defects)


# -- attachments --------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def nested_mail() -> bytes:
    return mail("Subject: nested", content_type='multipart/mixed; boundary="outer"', body=(
        b"This is a multi-part message in MIME format.\r\n"
        b"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
        b"--alt\r\nContent-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64("见截图和附件。".encode("gbk")) +
        b"--alt\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n"
        b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see <img src=\"cid:img1\"></p>\r\n"
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64(PNG) +
        b"--rel--\r\n--alt--\r\n"
        b"--outer\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n"
        b"--inner\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''%E7%BD%91%E7%BB%9C;\r\n filename*1*=%E6%8B%93%E6%89%91.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(b"%PDF-1.7 one") +
        b"--inner\r\nContent-Type: application/octet-stream; name=\"" + encoded_word("报错日志.txt", "utf-8").encode()
        + b"\"\r\nContent-Disposition: attachment; filename=\"" + encoded_word("报错日志.txt", "gb2312").encode()
        + b"\"\r\n\r\nlog line\r\n"
        b"--inner\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: old@customer.example\r\nSubject: =?utf-8?B?5Y6f5aeL6YKu5Lu2?=\r\nMessage-ID: <orig@customer.example>\r\n"
        b"\r\noriginal body\r\n"
        b"--inner--\r\n--outer--\r\n"))


def test_nested_multiparts_give_text_html_and_every_attachment():
    parsed = parse_mail(nested_mail())
    assert parsed.text == "见截图和附件。"
    assert parsed.html == '<p>see <img src="cid:img1"></p>'
    names = [(a.filename, a.content_type) for a in parsed.attachments]
    assert names == [("attachment-1.png", "image/png"), ("网络拓扑.pdf", "application/pdf"),
                     ("报错日志.txt", "application/octet-stream"), ("原始邮件.eml", "message/rfc822")]
    data = {a.filename: a.data for a in parsed.attachments}
    assert data["attachment-1.png"] == PNG
    assert data["网络拓扑.pdf"] == b"%PDF-1.7 one"
    assert data["报错日志.txt"] == b"log line"
    assert b"Message-ID: <orig@customer.example>" in data["原始邮件.eml"]
    assert b"original body" in data["原始邮件.eml"]
    assert "original body" not in parsed.text
    assert parsed.defects == []


def test_attachment_over_the_limit_is_skipped_with_its_reason():
    raw = mail(content_type='multipart/mixed; boundary="b"', body=(
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attachments\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"dump.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(b"\x00" * 5000) +
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"small.txt\"\r\n\r\nsmall\r\n"
        b"--b--\r\n"))
    parsed = parse_mail(raw, max_attachment_bytes=1000)
    assert [(s.filename, s.size, s.reason) for s in parsed.skipped_attachments] == [("dump.bin", 5000, "too-large")]
    assert [(a.filename, a.data) for a in parsed.attachments] == [("small.txt", b"small")]
    assert parsed.text == "see attachments"
    assert len(parse_mail(raw).attachments) == 2  # the default limit is 15 MB


@pytest.mark.parametrize("disposition, expected", [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="C:\\Users\\li\\report.pdf"', "report.pdf"),
    ('attachment; filename="say \\"hi\\".txt"', "say _hi_.txt"),
    ('attachment; filename="report: Q1*Q2?.xlsx"', "report_ Q1_Q2_.xlsx"),
    ('attachment; filename="evil\u202egpj.exe"', "evil_gpj.exe"),
    ('attachment; filename="' + "长" * 300 + '.docx"', "长" * 195 + ".docx"),
    ('attachment; filename="..."', "attachment-1.bin"),
    ("attachment; filename*=gbk''%CD%F8%C2%E7.pdf", "网络.pdf"),
    ("attachment; filename*=''%E7%BD%91.pdf", "网.pdf"),
])
def test_attachment_names_are_decoded_and_sanitised(disposition, expected):
    raw = mail(content_type='multipart/mixed; boundary="b"', body=(
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: {disposition}\r\n\r\ndata\r\n--b--\r\n").encode())
    [attachment] = parse_mail(raw).attachments
    assert attachment.filename == expected
    assert len(attachment.filename) <= 200


def test_raw_utf8_filename():
    raw = mail(content_type='multipart/mixed; boundary="b"', body=(
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: image/jpeg\r\n"
        'Content-Disposition: inline; filename="机房照片.jpg"\r\n\r\ndata\r\n--b--\r\n').encode())
    assert [a.filename for a in parse_mail(raw).attachments] == ["机房照片.jpg"]


def test_long_chinese_name_in_rfc2231_continuations_built_by_a_client():
    long_name = "年度网络设备巡检报告与故障分析汇总表" * 2 + ".xlsx"
    quoted = "".join(f"%{b:02X}" for b in long_name.encode("utf-8"))
    chunks = [quoted[i:i + 60] for i in range(0, len(quoted), 60)]
    params = ";\r\n ".join(f"filename*{i}*={chr(39).join(['utf-8', '', '']) if i == 0 else ''}{chunk}"
                           for i, chunk in enumerate(chunks))
    raw = mail(content_type="multipart/mixed; boundary=b", body=(
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
        f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n {params}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"))
    [attachment] = parse_mail(raw).attachments
    assert (attachment.filename, attachment.data) == (long_name, b"\x00\x01\x02")


def test_attachments_and_forwarded_mail_from_the_standard_library_generator():
    inner = EmailMessage()
    inner["From"] = "x@y.example"
    inner["Subject"] = "原始邮件"
    inner.set_content("forwarded body")
    outer = EmailMessage()
    outer["From"] = "c@customer.example"
    outer["Subject"] = "Fwd: 原始邮件"
    outer.set_content("see below")
    outer.add_alternative("<p>see <b>below</b></p>", subtype="html")
    outer.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="故障报告.pdf")
    outer.add_attachment(b"y", maintype="application", subtype="pdf", filename="")
    outer.add_attachment(inner)
    parsed = parse_mail(outer.as_bytes())
    assert parsed.sender == Address("c@customer.example", "")
    assert parsed.subject == "Fwd: 原始邮件"
    assert parsed.text == "see below"
    assert parsed.html == "<p>see <b>below</b></p>\n"
    assert [a.filename for a in parsed.attachments] == ["故障报告.pdf", "attachment-2.pdf", "原始邮件.eml"]
    assert b"forwarded body" in parsed.attachments[2].data


# -- machine mail -------------------------------------------------------------------------

@pytest.mark.parametrize("headers, machine, reason", [
    (["Subject: Printer", "Auto-Submitted: no"], None, ""),
    (["Subject: Printer", "Auto-Submitted: auto-generated"], "auto-reply", "Auto-Submitted: auto-generated"),
    (["Subject: Printer", "X-Autorespond: yes"], "auto-reply", "X-Autorespond"),
    (["Subject: Printer", "Precedence: junk"], "bulk", "Precedence: junk"),
    (["Subject: Printer", "List-Unsubscribe: <mailto:u@list.example>"], "bulk", "List-Unsubscribe"),
    (["Subject: Printer", "X-Auto-Response-Suppress: All"], None, ""),
    (["Subject: Out of office reply not working", "X-Auto-Response-Suppress: All"], None, ""),
    (["Subject: Automatic reply rules in Outlook"], None, ""),
    (["Subject: RE: Automatic reply: printer", "X-Auto-Response-Suppress: All"], None, ""),
    (["Subject: [EXTERNAL] Automatic reply: printer", "X-Auto-Response-Suppress: All"], "auto-reply",
     "X-Auto-Response-Suppress"),
    (["Subject: [EXTERNAL] Automatic reply: printer"], None, ""),
    (["Subject: Out of Office: printer"], "auto-reply", "Out of Office:"),
    (["Subject: Out of Office AutoReply: printer"], "auto-reply", "AutoReply"),
    (["Subject: Auto: printer"], "auto-reply", "Auto:"),
    (["Subject: =?utf-8?B?6Ieq5YuV5Zue6KaG77ya5Y2w6KGo5qmf?="], "auto-reply", "自動回覆"),  # 自動回覆：印表機
    (["Subject: =?utf-8?B?44CQ6Ieq5Yqo5Zue5aSN44CR5oKo5aW9?="], "auto-reply", "自动回复"),  # 【自动回复】您好
])
def test_machine_classification(headers, machine, reason):
    parsed = parse_mail(mail(*headers))
    assert parsed.machine == machine
    assert reason in parsed.machine_reason
    if machine is None:
        assert parsed.machine_reason == ""


def test_plain_bounce_from_mailer_daemon_with_empty_return_path():
    body = ("I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\r\n"
            "<gone@customer.example>:\r\n550 no mailbox here\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n"
            "From: support@example.com\r\nMessage-ID: <notify.TS-000044.2@example.com>\r\nSubject: x\r\n")
    raw = mail("Return-Path: <>", "Subject: failure notice", body=body, sender="MAILER-DAEMON@mx.customer.example")
    parsed = parse_mail(raw)
    assert parsed.machine == "bounce"
    assert "empty Return-Path" in parsed.machine_reason
    assert parsed.bounced_message_ids == ["<notify.TS-000044.2@example.com>"]
    assert parsed.bounced_recipients == ["gone@customer.example"]
    # The same sender with a real Return-Path is not a bounce.
    assert parse_mail(mail("Return-Path: <x@mx.customer.example>", sender="MAILER-DAEMON@mx.customer.example")).machine is None


def test_dsn_with_the_whole_original_attached():
    raw = mail("Subject: Delivery Status Notification (Failure)",
               content_type='multipart/report; report-type="delivery-status"; boundary="r"', body=(
                   "--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
                   "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
                   "Original-Recipient: rfc822;first@customer.example\r\nFinal-Recipient: rfc822; <First@Customer.Example>\r\n"
                   "Action: failed\r\n\r\nFinal-Recipient: rfc822;second@customer.example\r\nAction: failed\r\n"
                   "--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@example.com\r\n"
                   "Message-ID:\r\n <ack.TS-000050.1@example.com>\r\nSubject: [TS-000050] ack\r\n\r\nack text\r\n--r--\r\n"),
               sender="postmaster@example.net")
    parsed = parse_mail(raw)
    assert parsed.machine == "bounce"
    assert parsed.bounced_message_ids == ["<ack.TS-000050.1@example.com>"]
    assert parsed.bounced_recipients == ["first@customer.example", "second@customer.example"]
    assert parsed.text == "Delivery failed."
    assert [a.filename for a in parsed.attachments] == ["[TS-000050] ack.eml"]


def test_read_receipt_is_machine_mail():
    raw = mail("Subject: Read: printer", content_type='multipart/report; report-type=disposition-notification; boundary="r"',
               body="--r\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n--r\r\n"
                    "Content-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n--r--\r\n")
    parsed = parse_mail(raw)
    assert parsed.machine == "auto-reply"
    assert parsed.attachments == []


# -- language and HTML helpers ------------------------------------------------------------

@pytest.mark.parametrize("texts, expected", [
    (("打印机坏了", ""), "zh"),
    (("Printer broken", "Regards, Zhang Wei 张伟, IT department of the customer company"), "en"),
    (("回复: 邮箱", "Thanks, the mailbox works now. 好的"), "zh"),
    (("", "字"), "en"),
    (("", ""), "en"),
    (("RE: printer", "您好，打印机还是不能用。\n\nBest regards\nLiu Yang\nMarketing Department"), "zh"),
    (("Printer on floor 4 of the 王府井 office is broken, please help us soon",), "en"),
    (("VPN 连接不上", "VPN 每小时断开一次"), "zh"),
])
def test_detect_language(texts, expected):
    assert detect_language(*texts) == expected


@pytest.mark.parametrize("html, expected", [
    ("<p>a</p><p>b</p>", "a\nb"),
    ("<div>a</div><div><br></div><div>b</div>", "a\n\nb"),
    ("<h1>Title</h1>text<blockquote>quote</blockquote>", "Title\ntext\nquote"),
    ("line<br>break<br/>again", "line\nbreak\nagain"),
    ("x &lt; y &amp;&amp; &#20013;&#x6587; &eacute;", "x < y && 中文 é"),
    ("<a href='mailto:a@b.example'>a@b.example</a>", "a@b.example"),
    ("<a href='https://x.example/doc'>doc</a>", "doc (https://x.example/doc)"),
    ("<a href='#top'>top</a>", "top"),
    ("<style>p{}</style><script>if (a<b) x()</script>text", "text"),
    ("<head><title>t</title><body>unclosed head", "unclosed head"),
    ("<!--[if mso]><xml><o:x/></xml><![endif]--><p>Outlook</p>", "Outlook"),
    ("<!-- open comment hides the rest <p>hidden", ""),
    ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>", "a b\nc d"),
    ("a <b and c> d </ e <? f", "a d </ e <? f"),
    ("<p>spaced\n   out\t text</p>", "spaced out text"),
    ("<p>全角\u3000空格</p>", "全角\u3000空格"),
])
def test_html_to_text(html, expected):
    assert html_to_text(html) == expected


@pytest.mark.parametrize("hostile, expected", [
    ("</" * 100_000, "</" * 100_000), ("<" * 200_000, "<" * 200_000), ("<a href=x>y" * 20_000, None),
    ("<!--" * 50_000, ""), ("&#" * 100_000, "&#" * 100_000), ("<?" * 100_000, None), ("<!" * 100_000, None)])
def test_html_to_text_reads_hostile_markup_to_a_defined_text(hostile, expected):
    # The cost of these inputs (and that it grows linearly) is measured by bench/hostile.py.
    text = html_to_text(hostile)
    assert isinstance(text, str) and len(text) <= len(hostile)
    if expected is not None:
        assert text == expected


# -- hostile and broken input -------------------------------------------------------------

def test_hostile_structures_keep_sender_and_text():
    cases = {
        "deep nesting": mail(content_type="multipart/mixed; boundary=b0", body=b"".join(
            b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(3000))
            + b"--b3000\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n"),
        "long parameter list": mail(content_type="text/plain; charset=utf-8" + "; a=b" * 40_000),
        "many encoded words": mail("Subject: " + "=?utf-8?q?ab?= " * 30_000),
        "many parts": mail(content_type="multipart/mixed; boundary=b", body=b"".join(
            b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(3000)) + b"--b--\r\n"),
    }
    for name, raw in cases.items():
        parsed = parse_mail(raw)  # its cost is measured by bench/hostile.py
        assert parsed.sender == Address("customer@example.org", "Customer"), name
    assert parse_mail(cases["many encoded words"]).subject == "ab" * 30_000
    assert "deep text" in parse_mail(cases["deep nesting"]).text
    assert any("nested" in d for d in parse_mail(cases["deep nesting"]).defects)


@pytest.mark.parametrize("raw", [b"", b"\x00" * 64, b"\r\n\r\n", b"not a mail at all", bytes(range(256)) * 4,
                                 b"From: <<<@>>>\r\nContent-Type: multipart/mixed\r\n\r\n--\r\n--\r\n",
                                 b"Content-Type: text/plain; charset=base64\r\n\r\nx",
                                 b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfeh\x00i\x00"])
def test_garbage_never_raises(raw):
    parsed = parse_mail(raw)
    assert isinstance(parsed, InboundMail)
    assert parsed.key.startswith("sha256:")
    assert parsed.size == len(raw)


def test_standard_library_takes_over_when_mail_parser_fails(monkeypatch):
    def broken(raw):
        raise ValueError("boom")

    monkeypatch.setattr(mime.mailparser, "parse_from_bytes", broken)
    parsed = parse_mail(corpus("04-multipart-alternative-outlook-zh.eml"))
    assert parsed.subject == "办公室网络很慢"
    assert parsed.text.startswith("办公室网络很慢，网页经常打不开。")
    assert [a.filename for a in parsed.attachments] == ["网络拓扑.pdf"]
    assert any("mail-parser could not read the message (ValueError: boom)" in d for d in parsed.defects)


def test_a_failure_inside_the_parser_degrades_to_headers_and_raw_text(monkeypatch):
    def broken(self, root):
        raise RuntimeError("bug")

    monkeypatch.setattr(mime._Body, "walk", broken)
    parsed = parse_mail(corpus("02-gbk-base64-foxmail.eml"))
    assert parsed.sender == Address("liuyang@customer.example", "刘洋")
    assert parsed.subject == "邮箱容量已满，无法收信"
    assert "xPq6w6OsztK1xNPKz+TM4cq+yN3Bv9LRwvqjrMm" in parsed.text  # the raw body, still there for staff
    assert any("RuntimeError: bug" in d for d in parsed.defects)


def test_when_nothing_can_be_read_the_result_has_no_sender(monkeypatch):
    def broken(*args):
        raise RuntimeError("headers unreadable")

    monkeypatch.setattr(mime, "_header_fields", broken)
    raw = corpus("01-plain-en.eml")
    parsed = parse_mail(raw)
    assert parsed.sender is None
    assert parsed.key == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert "SAP print jobs stay in the spool" in parsed.text
    assert any("headers unreadable" in d for d in parsed.defects)


def test_non_bytes_input_is_accepted():
    raw = corpus("01-plain-en.eml")
    assert parse_mail(bytearray(raw)).subject == parse_mail(raw.decode()).subject == "Cannot print from SAP"


CORPUS_FILES = [corpus(name) for name in sorted(CORPUS_EXPECTATIONS)]


@st.composite
def mutated_corpus_mail(draw):
    data = bytearray(draw(st.sampled_from(CORPUS_FILES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"--", b"=?", b"?=", b"<", b">", b";", b"\"", b"=",
                                                b"\xe4\xb8", b"\xff", b"boundary=", b"\r\n\r\n", b"*0*="]))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 200))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@given(st.one_of(st.binary(max_size=3000), mutated_corpus_mail()))
@settings(max_examples=1000, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_mail_never_raises_on_random_and_mutated_input(raw):
    parsed = parse_mail(raw, max_text_chars=5000)
    assert isinstance(parsed, InboundMail)
    assert parsed.size == len(raw)
    assert parsed.key
    assert isinstance(parsed.text, str) and len(parsed.text) <= 5000
    assert "\n" not in parsed.subject and "\r" not in parsed.subject
    assert parsed.language in ("zh", "en")
    assert parsed.machine in (None, "bounce", "auto-reply", "bulk")
    for attachment in parsed.attachments:
        assert attachment.filename and "/" not in attachment.filename and len(attachment.filename) <= 200


def test_the_processed_key_is_message_id_sender_and_body():
    mail = b"From: %s\r\nMessage-ID: <same@cust.example>\r\nSubject: s\r\n\r\n%s\r\n"
    victim = parse_mail(mail % (b"wang@cust.example", b"my real request"))
    stranger = parse_mail(mail % (b"eve@evil.example", b"my real request"))
    forged = parse_mail(mail % (b"wang@cust.example", b"something else"))
    assert len({victim.key, stranger.key, forged.key}) == 3
    # The same mail delivered twice, with different trace headers, is one mail.
    again = parse_mail(b"Received: from relay.example\r\n" + mail % (b"wang@cust.example", b"my real request"))
    assert again.key == victim.key


def test_a_from_with_several_mailboxes_names_no_sender():
    for head in (b"From: alice@example.com, eve@evil.test\r\n", b"From: alice@example.com\r\nFrom: eve@evil.test\r\n"):
        parsed = parse_mail(head + b"Message-ID: <m@x>\r\nSubject: s\r\n\r\nbody\r\n")
        assert parsed.sender is None and any("more than one mailbox" in d for d in parsed.defects)
