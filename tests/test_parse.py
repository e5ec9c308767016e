"""Parsing: every corpus mail, every charset trap, broken MIME (no servers)."""
from __future__ import annotations

import base64
import time
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildesk.model import InboundMail
from maildesk.parsers import detect_language, html_to_text, parse_mail

from .desk import CORPUS


def corpus(name: str) -> InboundMail:
    return parse_mail((CORPUS / name).read_bytes())


# -- the corpus, one expectation per file ------------------------------------------------

@pytest.mark.parametrize("name, sender, subject, language, text_has", [
    ("01-plain-en.eml", "zhang.wei@customer.example", "Cannot print from SAP", "en", "HP LaserJet M607"),
    ("02-gbk-base64-foxmail.eml", "liuyang@customer.example", "邮箱容量已满，无法收信", "zh", "删除邮件后仍然无法收信"),
    ("03-gb18030-qq-html.eml", "zhangsan@qq.example", "会议室投影仪没有信号", "zh", "换了HDMI线也不行"),
    ("04-multipart-alternative-outlook-zh.eml", "chenming@customer.example", "办公室网络很慢", "zh", "拓扑图见附件"),
    ("05-reply-gmail-en.eml", "zhang.wei@customer.example", "Re: [TS-000017] Cannot print from SAP", "en",
     "It works again"),
    ("06-reply-outlook-zh-technician.eml", "alice@example.com", "回复: [TS-000021] 邮箱容量已满", "zh", "#方案："),
    ("07-reply-qq-fullwidth.eml", "bob@example.com", "回复：[TS-000021] 邮箱容量已满", "zh", "＃执行"),
    ("08-rating-reply-zh.eml", "liuyang@customer.example", "回复：[TS-000021] 请为本次服务评分", "zh", "4分"),
    ("13-no-message-id.eml", "oldclient@customer.example", "Scanner driver", "en", "Windows 11"),
    ("14-raw-utf8-headers.eml", "zhaoliu@customer.example", "硬盘报警", "zh", "指示灯变红"),
    ("15-truncated-multipart.eml", "broken@customer.example", "Broken mail", "en", "types double letters"),
    ("16-quoted-printable-latin1.eml", "jm@kunde.example", "Drucker im Büro", "en", "Grüße"),
])
def test_corpus_mail_decodes(name, sender, subject, language, text_has):
    m = corpus(name)
    assert m.sender.email == sender
    assert m.subject == subject
    assert m.language == language
    assert text_has in m.text
    assert "\ufffd" not in m.text + m.subject
    assert m.machine is None


def test_display_names_decode_from_any_charset():
    assert corpus("02-gbk-base64-foxmail.eml").sender.name == "刘洋"
    assert corpus("03-gb18030-qq-html.eml").sender.name == "张三"
    assert corpus("14-raw-utf8-headers.eml").sender.name == "赵六"
    assert corpus("16-quoted-printable-latin1.eml").sender.name == "Jürgen Müller"


def test_html_only_mail_becomes_readable_text():
    m = corpus("03-gb18030-qq-html.eml")
    assert m.text == "三号会议室投影仪显示无信号，换了HDMI线也不行。\n\n张三"
    assert "<b>" in m.html


def test_plain_part_is_preferred_and_rfc2231_attachment_kept():
    m = corpus("04-multipart-alternative-outlook-zh.eml")
    assert m.text == "办公室网络很慢，网页经常打不开。拓扑图见附件。\n\n陈明"
    [att] = m.attachments
    assert (att.filename, att.content_type) == ("网络拓扑.pdf", "application/pdf")
    assert att.data.startswith(b"%PDF-1.4")


def test_threading_headers():
    m = corpus("05-reply-gmail-en.eml")
    assert m.message_id == "<CAB99887766@mail.customer.example>"
    assert m.key == "CAB99887766@mail.customer.example"
    assert m.in_reply_to == ["<ack.TS-000017.1@example.com>"]
    assert m.references == ["<CAB1234567890@mail.customer.example>", "<ack.TS-000017.1@example.com>"]
    assert m.thread_ids == ["<ack.TS-000017.1@example.com>", "<CAB1234567890@mail.customer.example>"]


@pytest.mark.parametrize("name, kind, reason_has", [
    ("09-autoreply-rfc3834.eml", "auto-reply", "Auto-Submitted"),
    ("10-autoreply-zh-no-rfc-headers.eml", "auto-reply", "X-Autoreply"),
    ("11-bounce-dsn.eml", "bounce", "delivery status"),
    ("12-bulk-newsletter.eml", "bulk", "Precedence"),
])
def test_machine_mail_is_recognised(name, kind, reason_has):
    m = corpus(name)
    assert m.machine == kind and reason_has in m.machine_reason


def test_bounce_names_the_failed_mail_and_recipient():
    m = corpus("11-bounce-dsn.eml")
    assert m.bounced_message_ids == ["<ack.TS-000030.1@example.com>"]
    assert m.bounced_recipients == ["nobody@customer.example"]


def test_mail_without_message_id_is_keyed_by_its_bytes():
    raw = (CORPUS / "13-no-message-id.eml").read_bytes()
    first, second = parse_mail(raw), parse_mail(raw)
    assert first.message_id is None
    assert first.key == second.key and first.key.startswith("sha256:") and len(first.key) == 71
    assert parse_mail(raw + b"\n").key != first.key


def test_truncated_multipart_is_read_with_a_defect_noted():
    m = corpus("15-truncated-multipart.eml")
    assert any("CloseBoundaryNotFound" in d for d in m.defects)


# -- charsets -------------------------------------------------------------------------------

def single_part(body: bytes, charset: str, *, subject: str = "Subject: test", cte: str = "base64") -> bytes:
    payload = base64.b64encode(body) if cte == "base64" else body
    return (f"From: a@cust.example\r\n{subject}\r\nMessage-ID: <x@cust.example>\r\n"
            f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            ).encode() + payload + b"\r\n"


def encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


@pytest.mark.parametrize("label, codec, text", [
    ("gb2312", "gbk", "朱镕基和王堃的电脑坏了"),  # GBK-only characters under a gb2312 label
    ("GB2312", "gb18030", "生僻字𠀀也要完整"),  # a 4-byte GB18030 character
    ("gbk", "gbk", "打印机卡纸"),
    ("gb18030", "gb18030", "邮箱𠮷满"),
    ("big5", "big5", "電腦無法開機"),
    ("big5", "big5hkscs", "香港字：嘅咗"),  # HKSCS additions under a plain big5 label
    ("iso-8859-2", "iso-8859-2", "Zażółć gęślą jaźń"),
    ("iso-8859-1", "iso-8859-1", "Müller Grüße"),
    ("utf-8", "utf-8", "混合 text ✓"),
])
def test_body_charsets_round_trip(label, codec, text):
    m = parse_mail(single_part(text.encode(codec), label,
                               subject=f"Subject: {encoded_word(text, codec if codec != 'gbk' else 'gbk')}"))
    assert m.text == text
    assert m.subject == text
    assert not [d for d in m.defects if "charset" in d]


def test_gb2312_labelled_encoded_word_with_gbk_characters():
    word = f"=?gb2312?B?{base64.b64encode('朱镕基'.encode('gbk')).decode()}?="
    m = parse_mail(single_part(b"x", "utf-8", subject=f"Subject: {word}") .replace(
        b"From: a@cust.example", f"From: {word} <a@cust.example>".encode()))
    assert m.subject == "朱镕基" and m.sender.name == "朱镕基"


def test_unknown_charset_is_tried_as_utf8_then_gb18030_with_a_note():
    m = parse_mail(single_part("未知字符集".encode("gb18030"), "x-unknown-charset"))
    assert m.text == "未知字符集"
    assert any("x-unknown-charset" in d for d in m.defects)
    m = parse_mail(single_part("plain ✓".encode(), "bogus"))
    assert m.text == "plain ✓"


def test_mislabelled_utf8_is_not_turned_into_mojibake():
    m = parse_mail(single_part("打印机".encode("utf-8"), "gb2312"))
    # Valid GB18030 as well? If the bytes happened to be, the label wins; here they are not.
    assert m.text == "打印机"


# -- broken and hostile input ----------------------------------------------------------------

def test_no_from_header_gives_no_sender():
    m = parse_mail(b"To: support@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
    assert m.sender is None and m.text == "body"


def test_encoded_newlines_never_reach_the_subject():
    m = parse_mail(b"From: a@cust.example\r\nSubject: =?utf-8?q?a=0D=0ABcc:_x@y?=\r\n\r\nhi\r\n")
    assert m.subject == "a Bcc: x@y"
    assert "\n" not in m.subject and "\r" not in m.subject


def test_a_200kb_line_is_read_quickly_and_text_is_capped():
    line = ("长" * 100_000 + "x" * 100_000).encode("utf-8")
    raw = single_part(line, "utf-8", cte="8bit")
    started = time.perf_counter()
    m = parse_mail(raw, max_text_chars=150_000)
    elapsed = time.perf_counter() - started
    assert len(m.text) == 150_000 and any("cut to 150000" in d for d in m.defects)
    assert elapsed < 5  # a generous bound: this guards against quadratic behaviour, not speed


def build_multipart(parts: list[tuple[str, bytes, dict]]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "c@cust.example"
    msg["To"] = "support@example.com"
    msg["Subject"] = "attachments"
    msg.set_content("see attached")
    for filename, data, kw in parts:
        msg.add_attachment(data, maintype=kw.get("maintype", "application"),
                           subtype=kw.get("subtype", "octet-stream"), filename=filename)
    return msg.as_bytes()


def test_oversized_attachment_is_skipped_with_its_reason():
    raw = build_multipart([("small.txt", b"ok", {}), ("huge.iso", b"\0" * 50_000, {})])
    m = parse_mail(raw, max_attachment_bytes=10_000)
    assert [a.filename for a in m.attachments] == ["small.txt"]
    [skipped] = m.skipped_attachments
    assert (skipped.filename, skipped.size, skipped.reason) == ("huge.iso", 50_000, "too-large")


def test_chinese_attachment_names_rfc2231_continuations_and_rfc2047():
    long_name = "年度网络设备巡检报告与故障分析汇总表" * 2 + ".xlsx"
    quoted = "".join(f"%{b:02X}" for b in long_name.encode("utf-8"))
    chunks = [quoted[i:i + 60] for i in range(0, len(quoted), 60)]
    params = ";\r\n ".join(f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{c}"
                           for i, c in enumerate(chunks))
    word = f"=?GB2312?B?{base64.b64encode('故障截图.png'.encode('gbk')).decode()}?="
    raw = ("From: c@cust.example\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
           f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n {params}\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
           f"--b\r\nContent-Type: image/png; name=\"{word}\"\r\nContent-Disposition: attachment; "
           f"filename=\"{word}\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n").encode()
    m = parse_mail(raw)
    assert [a.filename for a in m.attachments] == [long_name, "故障截图.png"]
    assert m.text == "hello"


def test_attachment_names_cannot_escape_a_folder():
    m = parse_mail(build_multipart([("../../etc/passwd", b"x", {}), ("", b"y", {"subtype": "pdf"})]))
    names = [a.filename for a in m.attachments]
    assert "/" not in names[0] and not names[0].startswith(".")
    assert names[1].startswith("attachment-")


def test_nested_multiparts_and_forwarded_mail():
    inner = EmailMessage()
    inner["From"] = "x@y.example"
    inner["Subject"] = "原始邮件"
    inner.set_content("forwarded body")
    outer = EmailMessage()
    outer["From"] = "c@cust.example"
    outer["Subject"] = "Fwd: 原始邮件"
    outer.set_content("see below")
    outer.add_alternative("<p>see <b>below</b></p>", subtype="html")
    outer.add_attachment(inner)
    m = parse_mail(outer.as_bytes())
    assert m.text == "see below"
    assert [a.filename for a in m.attachments] == ["原始邮件.eml"]
    assert b"forwarded body" in m.attachments[0].data


def test_html_to_text_drops_scripts_styles_and_keeps_links():
    html = ("<html><head><title>t</title><style>p{color:red}</style><script>alert(1)</script></head>"
            "<body><p>Hello&nbsp;<b>world</b></p><!-- hidden --><ul><li>one</li><li>two</li></ul>"
            "<a href='https://example.com/kb/1'>the article</a><br>bye</body></html>")
    text = html_to_text(html)
    assert "alert" not in text and "color" not in text and "hidden" not in text and "<" not in text
    assert text.splitlines() == ["Hello world", "- one", "- two", "the article (https://example.com/kb/1)",
                                 "bye"]


@pytest.mark.parametrize("texts, expected", [
    (("Cannot print",), "en"),
    (("邮箱容量已满",), "zh"),
    (("Printer on floor 4 of the 王府井 office is broken, please help us soon",), "en"),
    (("VPN 连接不上", "VPN 每小时断开一次"), "zh"),
])
def test_language(texts, expected):
    assert detect_language(*texts) == expected


# -- fuzzing: never raise -------------------------------------------------------------------

_CORPUS_BYTES = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw):
    assert isinstance(parse_mail(raw), InboundMail)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_CORPUS_BYTES), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8)),
                                                 max_size=8))
def test_mutated_corpus_never_raises(raw, edits):
    data = bytearray(raw)
    for position, chunk in edits:
        position %= max(1, len(data))
        data[position:position + len(chunk)] = chunk
    m = parse_mail(bytes(data))
    assert isinstance(m, InboundMail) and isinstance(m.text, str)
