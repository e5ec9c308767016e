import pytest

from urllib.parse import parse_qs, unquote, urlsplit

from maildesk.parsers.subject import clean_subject, find_tags, reply_link, strip_reply_prefixes, tagged_subject


@pytest.mark.parametrize("subject, tags, clean", [
    ("Cannot print from SAP", [], "Cannot print from SAP"),
    ("Re: [TS-000017] Cannot print from SAP", [17], "Cannot print from SAP"),
    ("RE: 回复: AW: Fwd: [TS-000017] x", [17], "x"),
    ("回复：[TS-000021] 邮箱容量已满，无法收信", [21], "邮箱容量已满，无法收信"),
    ("答复: 转发: [ts-000021] 邮箱", [21], "邮箱"),
    ("[TS-000017] Re: Re[2]: printer", [17], "printer"),
    ("Re:【TS－０００１７】 全角标签", [17], "全角标签"),
    ("[TS-5] and [TS-000006] two tags [TS-5]", [5, 6], "and two tags"),
    ("WG: AW: Drucker", [], "Drucker"),
    ("Regarding: the invoice", [], "Regarding: the invoice"),
    ("Resolution of [XX-000001] issue", [], "Resolution of [XX-000001] issue"),
])
def test_tags_and_clean_subject(subject, tags, clean):
    assert find_tags(subject, "TS") == tags
    assert clean_subject(subject, "TS") == clean


def test_strip_prefixes_is_repeated_and_keeps_chinese_punctuation():
    assert strip_reply_prefixes("Re: RE: 回复：答复: 你好，世界") == "你好，世界"


def test_tagged_subject():
    assert tagged_subject("TS-000042", "Printer") == "[TS-000042] Printer"


@pytest.mark.parametrize("address, subject, body", [
    ("support@example.com", "Re: [TS-000042] 打印机卡纸 & 100% 坏了?", None),
    ("help+desk@example.com", "Re: [TS-000007] a#b/c=d", "5"),
    ("odd%local?part#x@example.com", "Re: [TS-000001] x", "评分 4"),
])
def test_a_reply_link_brings_back_the_address_subject_and_body_it_was_made_with(address, subject, body):
    link = reply_link(address, subject, body)
    assert link.isascii() and " " not in link, "a URI, fit for plain text"
    parts = urlsplit(link)
    assert parts.scheme == "mailto" and unquote(parts.path) == address
    assert "?" not in parts.path and "#" not in link, "no part of the address is read as URI syntax"
    fields = parse_qs(parts.query)
    assert fields["subject"] == [subject]
    assert fields.get("body") == ([body] if body is not None else None)
