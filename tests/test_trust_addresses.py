"""CVE-2023-27043: a From line the lenient address parser misreads never names the wrong person.

``email.utils.getaddresses`` before Python 3.13/3.12.6/3.11.10 reads
``alice@example.com <eve@evil.test>`` as alice (then eve); the strict mode of the fixed
versions, and ``parsers.headers.strict_getaddresses`` on the others, reject it.  Both paths
are tested: the standard library's where this Python has it, the fallback always.
"""
from __future__ import annotations

import base64
import email
from datetime import datetime, timezone
from email.utils import format_datetime, getaddresses, make_msgid

import pytest

from maildesk.daemon.config import load_config
from maildesk.parsers import headers
from maildesk.storage.base import open_store

from .desk import CORPUS, SUPPORT, customer_mail, helpdesk, ticket, tickets, write_config

AUTHSERV_ID = "mx.example.com"
# The receiving server's verdict for mail from the company's domain: DKIM and DMARC passed.
STAFF_VERDICT = (f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=example.com; "
                 "dmarc=pass header.from=example.com\r\n").encode()


def b64_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


# Each of these is read as alice (or as junk) by the lenient parser: none may yield an address.
ATTACKS = [
    "alice@example.test <eve@evil.test>",
    "alice@example.test<eve@evil.test>",
    "alice@example.test <eve@evil.test",
    '"Alice" <alice@example.test>eve@evil.test',
    "Alice <alice@example.test> <eve@evil.test>",
    "Alice <alice@example.test>(x) eve@evil.test",
    "eve@evil.test <alice@example.test>",
    "alice@example.test;<eve@evil.test>",
    "alice@example.test:<eve@evil.test>",
    'alice@example.test"<eve@evil.test>',
    "alice@example.test)<eve@evil.test>",
    "alice@example.test(<eve@evil.test>",
    "alice@example.test>eve@evil.test",
    "alice@example.test@evil.test",
    "alice@example.test (Alice",
    "alice@example.test )Alice(",
    "=?utf-8?q?Alice?= alice@example.test <eve@evil.test>",
    b64_word("alice@example.test <eve@evil.test>"),  # the whole line in one encoded word
]

LEGITIMATE = [
    ('"Wang, Alice" <alice@example.test>', [("alice@example.test", "Wang, Alice")]),
    (f"{b64_word('王小明')} <wang@cust.cn>", [("wang@cust.cn", "王小明")]),
    ("王小明 <wang@cust.cn>", [("wang@cust.cn", "王小明")]),
    ("alice@example.test (Alice)", [("alice@example.test", "Alice")]),
    ("alice@example.test", [("alice@example.test", "")]),
    ("Alice@Example.TEST", [("alice@example.test", "")]),
    ("<alice@example.test>", [("alice@example.test", "")]),
    ("Alice Wang\r\n <alice@example.test>", [("alice@example.test", "Alice Wang")]),
    ('")Alice((" <alice@example.test>', [("alice@example.test", ")Alice((")]),
    (r'"Jane \"Doe\", Jr" <jane@example.net>', [("jane@example.net", 'Jane "Doe", Jr')]),
    (b64_word("王小明 <wang@cust.cn>"), [("wang@cust.cn", "王小明")]),
    ("undisclosed-recipients:;", []),
    ('a@x.test, "C, D" <c@z.test>, Bob <b@y.test>',
     [("a@x.test", ""), ("c@z.test", "C, D"), ("b@y.test", "Bob")]),
    ("Team: a@x.test, b@y.test;", [("a@x.test", ""), ("b@y.test", "")]),
    # A display name that looks like an address names nobody: the address is eve's.
    ('"alice@example.test" <eve@evil.test>', [("eve@evil.test", "alice@example.test")]),
]


@pytest.fixture(params=["stdlib-strict", "fallback"])
def parser(request, monkeypatch):
    """parse_addresses with the standard library's strict mode, then with the fallback."""
    if request.param == "stdlib-strict":
        if not headers.STDLIB_STRICT:
            pytest.skip("this Python's getaddresses has no strict mode (CVE-2023-27043 unfixed)")
        chosen = headers.stdlib_strict_getaddresses
    else:
        chosen = headers.strict_getaddresses
    monkeypatch.setattr(headers, "address_pairs", chosen)
    return chosen


def pairs(addresses):
    return [(a.email, a.name) for a in addresses]


@pytest.mark.parametrize("value", ATTACKS)
def test_a_misleading_header_yields_no_address(parser, value):
    assert headers.parse_addresses([value]) == []
    assert headers.first_address([value]) is None


@pytest.mark.parametrize("value, expected", LEGITIMATE)
def test_legitimate_headers_read_as_before(parser, value, expected):
    assert pairs(headers.parse_addresses([value])) == expected


def test_several_header_values_are_read_together(parser):
    assert pairs(headers.parse_addresses(["a@x.test", "Bob <b@y.test>"])) == [("a@x.test", ""), ("b@y.test", "Bob")]
    # One misleading value makes the whole field unusable, as in CPython's strict mode.
    assert headers.parse_addresses(["alice@example.test <eve@evil.test>", "b@y.test"]) == []


def test_this_python_uses_its_own_strict_mode_when_it_has_one():
    import inspect

    has_strict = "strict" in inspect.signature(getaddresses).parameters
    assert headers.STDLIB_STRICT == has_strict
    assert headers.address_pairs is (headers.stdlib_strict_getaddresses if has_strict
                                     else headers.strict_getaddresses)


# -- the fallback on its own, on every Python -------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (["alice@example.test <eve@evil.test>"], [("", "")]),
    (["alice@example.test, <eve@evil.test>"], [("", "alice@example.test"), ("", "eve@evil.test")]),
    (['"Wang, Alice" <alice@example.test>'], [("Wang, Alice", "alice@example.test")]),
    (['"Alice, alice@example.org" <bob@example.com>'], [("Alice, alice@example.org", "bob@example.com")]),
    ([r"Pete(A nice \) chap) <pete(his account)@silly.test(his host)>"],
     [("Pete (A nice ) chap his account his host)", "pete@silly.test")]),
    (["alice@example.test )Alice("], [("", "")]),
    (["alice@example.test (Alice))"], [("", "")]),
    (["alice@[192.0.2.1]"], [("", "")]),
    # Commas in comments count, as in CPython's strict mode: such a header is refused.
    (["alice@example.test (Wang, Alice)"], [("", "")]),
    (["undisclosed-recipients:;"], [("", "")]),
    (["foo: ;", '"Jason R. Mastaler" <jason@dom.ain>'], [("", ""), ("Jason R. Mastaler", "jason@dom.ain")]),
    (["a@x.test", "b@y.test"], [("", "a@x.test"), ("", "b@y.test")]),
])
def test_fallback_follows_cpythons_strict_rules(value, expected):
    assert headers.strict_getaddresses(value) == expected


def header_samples() -> list[list[str]]:
    samples = [[v] for v in ATTACKS] + [[v] for v, _ in LEGITIMATE]
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        msg = email.message_from_bytes(path.read_bytes())
        for name in ("from", "to", "cc", "reply-to"):
            values = [str(v) for v in msg.get_all(name) or []]
            if values:
                samples.append(values)
    return samples


def test_fallback_agrees_with_the_standard_library_strict_mode():
    if not headers.STDLIB_STRICT:
        pytest.skip("this Python's getaddresses has no strict mode to compare with")
    differ = []
    for values in header_samples():
        try:
            expected = getaddresses(values, strict=True)
        except RecursionError:  # a corpus header built to exhaust the lenient parser's stack
            continue
        if headers.strict_getaddresses(values) != expected:
            differ.append((values, expected, headers.strict_getaddresses(values)))
    assert differ == []


# -- through real mail -------------------------------------------------------------------

def resolve_mail(from_line: str, subject: str, in_reply_to: str) -> bytes:
    """A ``#resolve`` reply with the From line exactly as given, stamped by the receiving server
    as verified for example.com."""
    head = (f"From: {from_line}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(datetime.now(timezone.utc))}\r\n"
            f"Message-ID: {make_msgid(domain='evil.test')}\r\nIn-Reply-To: {in_reply_to}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    return STAFF_VERDICT + head.encode("utf-8") + b"#resolve Fixed\r\n"


@pytest.mark.integration
@pytest.mark.both_stores
@pytest.mark.parametrize("from_line", ["alice@example.com <eve@evil.test>",
                                       '"Alice Wang" <alice@example.com>eve@evil.test'])
def test_a_from_line_that_fools_the_lenient_parser_does_not_act_as_staff(tmp_path, dovecot, mailbox, smtp_sink,
                                                                         from_line):
    config = write_config(
        tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username, imap_password=mailbox.password,
        smtp_port=smtp_sink.port)
    customer = "carol@cust.example"
    mailbox.deliver(customer_mail(customer, "Printer jam", "The printer on floor 3 is jammed."))
    helpdesk(config, "once", password=mailbox.password)
    notify = next(m.message for m in smtp_sink.messages()
                  if "alice@example.com" in m.rcpt_tos and m.message["Message-ID"].startswith("<notify."))
    subject = f"Re: {notify['Subject']}"
    assert "[TS-000001]" in subject

    mailbox.deliver(resolve_mail(from_line, subject, notify["Message-ID"]))
    helpdesk(config, "once", password=mailbox.password)
    first = ticket(config, "TS-000001", password=mailbox.password)
    assert first["stage"] == "received", "the mail must not act as alice"
    assert all(e["actor"] != "alice@example.com" for e in first["events"])
    assert not [m for m in smtp_sink.messages() if customer in m.rcpt_tos
                and not m.message["Message-ID"].startswith("<ack.")], "nothing but the ack reaches the customer"
    # The mail has no usable sender: it waits in the quarantine folder, on no ticket.
    assert mailbox.count("Helpdesk/Quarantine") == 1
    with open_store(load_config(config), readonly=True) as store:
        [reason] = [r.reason for r in store.processed_records() if r.outcome == "quarantined"]
    assert "no usable sender" in reason
    for listed in tickets(config, password=mailbox.password):
        detail = ticket(config, listed["id"], password=mailbox.password)
        assert all("#resolve" not in m["text"] for m in detail["messages"])

    # The same command from alice's own, well-formed From line does act: the test setup is sound.
    mailbox.deliver(resolve_mail("Alice Wang <alice@example.com>", subject, notify["Message-ID"]))
    helpdesk(config, "once", password=mailbox.password)
    assert ticket(config, "TS-000001", password=mailbox.password)["stage"] == "feedback"
    assert [m for m in smtp_sink.messages()
            if customer in m.rcpt_tos and m.message["Message-ID"].startswith("<result.")]
