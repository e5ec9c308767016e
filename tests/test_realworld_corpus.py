"""The real-world corpus (1,182 mails from public mail libraries' test data) through parse and route.

Pure: no servers.  Every mail gets a defined outcome (a ticket, a recorded bounce, machine mail
kept or ignored, or quarantine with a reason that names a defect of the mail), no machine mail
is answered, and decoded subjects and text are never less readable than what Python's own
``email`` package (``policy.default``) makes of the same bytes.
"""
from __future__ import annotations

import email
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy

import pytest

from maildesk.model import Address, InboundMail, OutboundMail, Ticket
from maildesk.parsers.charset import decode_bytes
from maildesk.parsers.headers import parse_addresses
from maildesk.parsers.mime import parse_mail
from maildesk.templates import Renderer
from maildesk.workflow.apply import handle
from maildesk.workflow.intake import DeskContext
from maildesk.workflow.route import Directory, Route, route_mail

from .desk import CORPUS

REAL_WORLD = CORPUS / "real-world"

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
DIRECTORY = Directory(support_address="support@example.com", prefix="TS", technicians=frozenset(),
                      supervisor=None, leadership=frozenset())
OUTCOMES = {"new", "follow-up", "bounce", "machine", "own", "quarantine"}
# The standard library takes seconds on these (a message/rfc822 nested without end, 3,300 encoded
# words in one header); leaving them out of the comparison keeps the module well under a minute.
STD_TOO_SLOW = {"flanker/enclosed-endless.eml", "flanker/long-header.eml"}


class NoTickets:
    def get_ticket(self, number):
        return None

    def ticket_for_message_id(self, message_id):
        return None

    def outbound_by_message_id(self, message_id):
        return None


class OwnMail(NoTickets):
    """A store in which the desk sent ``message_id`` on ticket 7."""

    def __init__(self, message_id: str) -> None:
        self.ticket = Ticket(number=7, tag="TS-000007", subject="x", customer="c@cust.example",
                             customer_name="", stage="received", language="en", created_at=NOW, updated_at=NOW)
        self.sent = OutboundMail(id="o7", message_id=message_id, kind="ack",
                                 sender=Address("support@example.com"), recipients=["c@cust.example"],
                                 to_header=[Address("c@cust.example")], subject="x", text="x",
                                 created_at=NOW, ticket="TS-000007")

    def get_ticket(self, number):
        return self.ticket if number == 7 else None

    def outbound_by_message_id(self, message_id):
        return self.sent if message_id == self.sent.message_id else None


@dataclass
class Case:
    name: str
    raw: bytes
    mail: InboundMail
    route: Route
    # What the standard library (policy.default) reads: the subject (None when it gives up),
    # and per text part (ours, theirs), decoded from the same bytes.
    std_subject: str | None
    std_parts: list[tuple[str, str]]


def standard_library(raw: bytes) -> tuple[str | None, list[tuple[str, str]]]:
    msg = email.message_from_bytes(raw, policy=policy.default)
    try:
        subject = " ".join(str(msg["subject"] or "").split())
    except Exception:  # noqa: BLE001 - the standard library gave up: nothing to be worse than
        subject = None
    parts = []
    for part in [p for p in msg.walk() if p.get_content_maintype() == "text" and not p.is_multipart()][:20]:
        try:
            theirs = part.get_content()
            data = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001 - an unknown charset or a broken part: nothing to compare
            continue
        label = part.get_param("charset")
        parts.append((decode_bytes(data, str(label) if label is not None else None)[0], theirs))
    return subject, parts


def _files() -> list[str]:
    lines = (REAL_WORLD / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[0] for line in lines]


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    if not (REAL_WORLD / "MANIFEST.tsv").is_file():
        pytest.skip(f"no real-world corpus at {REAL_WORLD}")
    found = {}
    for name in _files():
        raw = (REAL_WORLD / name).read_bytes()
        mail = parse_mail(raw)
        std = (None, []) if name in STD_TOO_SLOW else standard_library(raw)
        found[name] = Case(name, raw, mail, route_mail(mail, NoTickets(), DIRECTORY), *std)
    return found


def folder(cases: dict[str, Case], prefix: str) -> list[Case]:
    return [c for name, c in cases.items() if name.startswith(prefix + "/")]


# -- outcomes ------------------------------------------------------------------------------

def test_the_whole_corpus_is_read(cases):
    assert len(cases) == 1182


def test_every_mail_gets_a_defined_outcome(cases):
    assert {c.route.kind for c in cases.values()} <= OUTCOMES
    for case in cases.values():
        assert not any("could not be read" in d for d in case.mail.defects), (case.name, case.mail.defects)


def test_every_quarantine_names_the_defect_of_the_mail(cases):
    reasons = {c.name: c.route.reason for c in cases.values() if c.route.kind == "quarantine"}
    assert reasons
    for name, reason in reasons.items():
        # "no usable sender address (no From header)", "(From names more than one mailbox)",
        # "(From 'bob@extern' has no valid domain)", "(From names no valid mailbox: 'Big Bug bb@bug.com')"
        assert re.fullmatch(r"no usable sender address \((no From header|From .+)\)", reason), (name, reason)


def test_machine_mail_is_never_answered(cases):
    counter = itertools.count(1)
    ctx = DeskContext(directory=DIRECTORY, desk=Address("support@example.com", "IT Service Desk"),
                      renderer=Renderer(), now=NOW, new_id=lambda: f"{next(counter):032x}")
    for case in cases.values():
        if case.mail.machine or case.route.kind in ("bounce", "machine", "quarantine", "own"):
            assert case.route.kind in ("bounce", "machine", "quarantine", "own"), case.name
            effects = handle(case.mail, case.route, ctx)
            assert effects.outbound == [], case.name


def test_sisimai_bounces_are_bounces_and_only_human_forwards_become_tickets(cases):
    sisimai = folder(cases, "sisimai")
    assert len(sisimai) == 642
    tickets = sorted(c.name.split("/", 1)[1] for c in sisimai if c.route.kind == "new")
    assert tickets == [
        # A person forwarding a bounce (or a complaint report) to the desk is asking for help.
        "maildir__bsd__arf-22.eml", "maildir__bsd__arf-23.eml", "maildir__bsd__arf-24.eml",
        "maildir__bsd__lhost-sendmail-14.eml", "maildir__err__make-test-36.eml",
        # Sisimai's own "this is not a bounce" samples.
        "maildir__not__is-not-bounce-01.eml", "maildir__not__is-not-bounce-02.eml",
    ]
    # One report has lost its From header altogether: nobody to attribute it to.
    assert [(c.name, c.route.reason) for c in sisimai if c.route.kind == "quarantine"] == [
        ("sisimai/maildir__bsd__rfc3464-36.eml", "no usable sender address (no From header)")]
    # The rest: bounces, or other machine reports (ARF complaints, SNS notices), never answered.
    assert {c.route.kind for c in sisimai if c.route.kind not in ("new", "quarantine")} == {"bounce", "machine"}
    assert len([c for c in sisimai if c.route.kind == "bounce"]) >= 600


def test_reports_from_a_bare_mailer_daemon_are_bounces(cases):
    bare = [c for c in cases.values()
            if re.search(rb"^From:[^\n]*<(?:MAILER-DAEMON)?>\s*$|^From: *mailer-daemon\s*$", c.raw,
                         re.IGNORECASE | re.MULTILINE)]
    assert len(bare) >= 46
    for case in bare:
        assert case.mail.machine == "bounce", case.name
        assert case.route.kind == "bounce", (case.name, case.route.reason)


def test_a_bounce_is_recorded_on_a_ticket_only_for_mail_the_desk_sent(cases):
    with_ids = [c for c in cases.values() if c.route.kind == "bounce" and c.mail.bounced_message_ids]
    assert len(with_ids) >= 400
    for case in with_ids:
        # About anybody else's mail: recorded nowhere.
        assert case.route.ticket is None
        # About the desk's own mail: on the ticket that sent it.
        own = route_mail(case.mail, OwnMail(case.mail.bounced_message_ids[0]), DIRECTORY)
        assert own.kind == "bounce" and own.ticket is not None and own.ticket.number == 7, case.name


@pytest.mark.parametrize("name, kind", [
    ("sisimai/maildir__bsd__lhost-exim-01.eml", "bounce"),                   # X-Failed-Recipients
    ("mimekit/delivery-status.anonymized.eml", "bounce"),                   # report-type anonymised
    ("sisimai/maildir__bsd__lhost-verizon-02.eml", "bounce"),                # a carrier's post_master
    ("sisimai/maildir__bsd__lhost-x6-01.eml", "bounce"),                     # From: mailer-daemon
    ("sisimai/maildir__bsd__arf-01.eml", "report"),                         # abuse feedback (ARF)
    ("sisimai/maildir__bsd__lhost-amazonses-09.eml", "bounce"),             # Amazon SES via SNS
    ("sisimai/maildir__bsd__lhost-fml-03.eml", "bulk"),                     # mailing list software
])
def test_machine_signals_of_a_careful_gateway(cases, name, kind):
    assert cases[name].mail.machine == kind, cases[name].mail.machine_reason
    assert cases[name].route.kind in ("bounce", "machine")


# -- addresses -----------------------------------------------------------------------------

def test_a_huge_to_header_costs_only_itself(cases):
    case = cases["mimekit/stack-overflow.txt"]
    assert case.mail.sender == Address("test@test.com", "test")
    assert any("To header nested too deeply" in d for d in case.mail.defects)
    assert case.route.kind == "new"


def test_an_address_as_its_own_display_name_keeps_the_sender(cases):
    case = cases["mimekit/issue358.txt"]
    assert case.mail.sender.email == "jang.abcdef@xyzlinux12345678.it"
    assert case.route.kind == "new"
    # A display name naming *another* address stays unreadable (CVE-2023-27043).
    for name in ("spamscope-mail-parser/mail_test_19.eml", "spamscope-mail-parser/mail_test_15.eml"):
        assert cases[name].mail.sender is None and cases[name].route.kind == "quarantine"


def test_an_internationalised_sender_gets_a_ticket(cases):
    case = cases["mikel-mail/rfc6532__utf8_headers.eml"]
    assert case.mail.sender == Address("jdöe@mächine.example", "Jöhn Doe")
    assert case.mail.subject == "Säying Hello"
    assert case.route.kind == "new"


# -- charsets ------------------------------------------------------------------------------

_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_MOJIBAKE = re.compile(
    f"(?<=[{_LATIN}])[{_CJK}]{{1,2}}(?=[{_LATIN}])"         # CJK inside a Latin word: Fr鰏che
    "|[\u00c3\u00c2][\u0080-\u00bf]"                          # UTF-8 read as Latin-1: Ã©
    "|锟斤拷")                                                 # U+FFFD once encoded and read as GBK


def badness(text: str) -> int:
    """Replacement characters plus signs of mojibake: what makes text less readable."""
    return text.count("\ufffd") + len(_MOJIBAKE.findall(text))


def test_subjects_are_never_worse_than_the_standard_library(cases):
    worse = [(c.name, c.mail.subject, c.std_subject) for c in cases.values()
             if c.std_subject is not None and badness(c.mail.subject) > badness(c.std_subject)]
    assert worse == []


def test_text_parts_are_never_worse_than_the_standard_library(cases):
    pairs = [(c.name, ours, theirs) for c in cases.values() for ours, theirs in c.std_parts]
    assert len(pairs) > 1500
    worse = [(name, badness(ours), badness(theirs)) for name, ours, theirs in pairs if badness(ours) > badness(theirs)]
    assert worse == []


_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")
_KANA = re.compile("[\u3040-\u30ff]")


def test_no_latin_or_cyrillic_text_is_read_as_chinese(cases):
    """Chinese characters appear only where the mail holds CJK text (as the standard library reads it
    where it can, or where it gives up with replacement characters and ours reads Japanese)."""
    invented = []
    for case in cases.values():
        if case.std_subject is not None and _HAN.search(case.mail.subject) and not _HAN.search(case.std_subject):
            invented.append((case.name, "subject", case.mail.subject[:60]))
        their_text = "".join(theirs for _, theirs in case.std_parts)
        if _HAN.search(case.mail.text) and not _HAN.search(their_text) and not (
                "\ufffd" in their_text and _KANA.search(case.mail.text)):
            invented.append((case.name, "text", case.mail.text[:60]))
    assert invented == []


@pytest.mark.parametrize("name, field, expected", [
    # Raw Latin-1 in a subject (Outlook 2000, Eudora), also inside an encoded word.
    ("stalwart-mail-parser/legacy__010.eml", "subject", "Die Hasen und die Frösche"),
    ("stalwart-mail-parser/legacy__020.eml", "subject", "Die Hasen und die Frösche (Microsoft Outlook 00)"),
    ("stalwart-mail-parser/legacy__009.eml", "subject", "Die Hasen und die Frösche"),
    ("mikel-mail/error_emails__invalid_subject_characters.eml", "subject",
     "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro"),
    # Undeclared KOI8-R.
    ("rt/emails__russian-subject-no-content-type", "subject", "тест тест"),
    ("rt/emails__russian-subject-no-content-type", "text", "ТЕСТ"),
    # EUC-JP labelled ISO-2022-JP.
    ("sisimai/maildir__bsd__lhost-ezweb-02.eml", "text", "次のあて先へのメッセージはエラーのため送信できませんでした。"),
    # Raw GBK from a Chinese spammer's client, and UTF-8 labelled GB2312.
    ("spamscope-mail-parser/mail_test_9.eml", "subject", "我把镜头拉近些，你们看看这个是什么"),
    ("spamscope-mail-parser/mail_test_12.eml", "text", "你好！我公司可代开各类增值税发票"),
])
def test_mislabelled_and_undeclared_text_reads_as_written(cases, name, field, expected):
    assert getattr(cases[name].mail, field).startswith(expected)


def test_eudora_raw_bytes_inside_encoded_words_belong_to_the_word(cases):
    names = [a.name for a in cases["stalwart-mail-parser/legacy__009.eml"].mail.to]
    assert names == ["Jürgen Schmürgen"]


def test_utf7_labels_decode():
    assert decode_bytes(b"Fr+AOQ-sche", "unicode-1-1-utf-7") == ("Fräsche", None)
    assert decode_bytes(b"Fr+AOQ-sche", "UTF-7") == ("Fräsche", None)


# -- the same rules on small made-up samples (no corpus needed) ---------------------------------

def _with_subject(raw_subject: bytes, *, body: bytes = b"hello", charset: str | None = None) -> bytes:
    content_type = f"Content-Type: text/plain; charset={charset}\r\n" if charset else ""
    return (b"From: Customer <c@cust.example>\r\nTo: support@example.com\r\nMessage-ID: <x1@cust.example>\r\n"
            b"Subject: " + raw_subject + b"\r\n" + content_type.encode() + b"\r\n" + body)


@pytest.mark.parametrize("raw_subject, charset, expected", [
    ("Grüße aus Köln".encode("latin-1"), None, "Grüße aus Köln"),                # raw Latin-1, no label anywhere
    ("Привет, принтер не работает".encode("koi8_r"), None, "Привет, принтер не работает"),
    ("Привет, принтер не работает".encode("cp1251"), None, "Привет, принтер не работает"),
    ("打印机卡纸了，请尽快处理".encode("gbk"), None, "打印机卡纸了，请尽快处理"),       # raw GBK from a Chinese client
    ("朱镕基的打印机".encode("gbk"), "gb2312", "朱镕基的打印机"),                   # the body's label is the evidence
    ("Fr\xf6sche".encode("latin-1"), "iso-8859-1", "Fr\xf6sche"),
    ("тест".encode("koi8_r"), "koi8-r", "тест"),
])
def test_raw_header_bytes_are_read_from_evidence(raw_subject, charset, expected):
    assert parse_mail(_with_subject(raw_subject, charset=charset)).subject == expected


def test_an_undeclared_body_follows_the_charset_of_its_raw_headers():
    raw = _with_subject("тест".encode("koi8_r"), body="ТЕСТ".encode("koi8_r"))
    assert parse_mail(raw).text == "ТЕСТ"


@pytest.mark.parametrize("data, label, expected", [
    ("次のあて先へのメッセージはエラーのため送信できませんでした。".encode("euc_jp"), "iso-2022-jp",
     "次のあて先へのメッセージはエラーのため送信できませんでした。"),
    ("Grüße".encode("utf-8"), "iso-8859-1", "Grüße"),               # UTF-8 under a Latin-1 label: not Grã¼ãÿe
    ("网络很慢".encode("utf-8"), "gb2312", "网络很慢"),
])
def test_a_wrong_label_is_corrected_and_noted(data, label, expected):
    text, note = decode_bytes(data, label)
    assert text == expected
    assert note and label in note


@pytest.mark.parametrize("value, expected", [
    ("bob@x.test <bob@x.test>", ["bob@x.test"]),
    ("BOB@x.test <bob@x.test>", ["bob@x.test"]),
    ("jang.abcdef@xyzlinu <jang.abcdef@xyzlinux12345678.it>", ["jang.abcdef@xyzlinux12345678.it"]),  # cut off
    ("alice@example.test <eve@evil.test>", []),
    ("eve@evil.test <alice@example.test>", []),
    ("alice@example.test <alice@example.test.evil.test>", []),
    ("a@x.test <a@x.test>, eve@evil.test <b@y.test>", []),
])
def test_an_address_shown_as_its_own_name_is_that_mailbox_and_nothing_else(value, expected):
    assert [a.email for a in parse_addresses([value])] == expected
