"""Mail cannot drive the operator's terminal or forge log lines: control, escape and bidi
characters from mail are shown as visible escapes by ``tickets list/show`` (text and JSON) and
in the log, and readable text (Chinese included) stays as it is."""
from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import sys
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from .desk import REPO, SUPPORT, env_for, helpdesk, write_config

# Raw characters that must never reach a terminal or a log line: C0 controls but tab and
# newline, DEL, C1 controls, bidi embeddings/overrides/isolates, line and paragraph separators.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# The same for one-line text: a newline or tab inside a subject or a log record is a forgery.
UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.fixture
def printable():
    from maildesk import printable
    return printable


# -- the escaping function ---------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("\x1b[2J", "\\x1b[2J"),
    ("\x9b31m", "\\x9b31m"),
    ("\x85", "\\x85"),
    ("\x00\x7f", "\\x00\\x7f"),
    ("ok\rFAKE", "ok\\rFAKE"),
    ("a\nb\tc", "a\\nb\\tc"),
    ("\u202egnp.exe", "\\u202egnp.exe"),
    ("\u2066x\u2067y\u2068z\u2069", "\\u2066x\\u2067y\\u2068z\\u2069"),
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("x\u2028y\u2029", "x\\u2028y\\u2029"),
])
def test_one_line_escapes_controls_visibly(printable, raw, shown):
    assert printable.one_line(raw) == shown
    assert not UNSAFE_ONE_LINE.search(printable.one_line(raw))


@pytest.mark.parametrize("text", ["打印机卡纸，请尽快处理", "Grüße, Łódź", "Ünïcödé — “quoted” ✓ 😀",
                                  "日本語 한국어 العربية עברית", "C:\\Users\\wang", ""])
def test_printable_text_is_left_untouched(printable, text):
    assert printable.one_line(text) == text
    assert printable.multi_line(text) == text


def test_multi_line_keeps_layout_but_escapes_the_rest(printable):
    body = "第一行\r\n\tindented\nsecond\rFAKE\x1b[2J\u202eend"
    assert printable.multi_line(body) == "第一行\n\tindented\nsecond\\rFAKE\\x1b[2J\\u202eend"


def test_json_output_escapes_what_the_writer_left_raw(printable):
    import orjson

    value = {"subject": "打印机 \x85\x9b\u202e\u2066\u2028 \x1b", "n": 1}
    raw = printable.json_safe(orjson.dumps(value))
    assert not UNSAFE_ONE_LINE.search(raw.decode("utf-8"))
    assert "打印机".encode() in raw and b"\\u0085\\u009b\\u202e\\u2066\\u2028" in raw
    assert json.loads(raw) == value
    plain = json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert json.loads(printable.json_safe(plain)) == value


def test_log_filter_escapes_arguments_keeps_numbers_and_tracebacks(printable):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(printable.EscapingFilter())
    log = logging.getLogger("maildesk.test-trust-terminal")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.warning('mail message_id=%s from=%s reason="%s" uid=%d ms=%.1f',
                    "<a\x1b]0;pwned\x07@x>", "eve@evil.test", "bad\r\nINFO forged line \u202e", 7, 1.25)
        log.info("map %(subject)s", {"subject": "打印机\n\x9b"})
        log.error(ValueError("junk\nINFO forged"))
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed for %s", "x\ny")
    finally:
        log.handlers[:] = []
        log.setLevel(logging.NOTSET)
    lines = out.getvalue().splitlines()
    assert lines[0] == ('WARNING mail message_id=<a\\x1b]0;pwned\\x07@x> from=eve@evil.test '
                        'reason="bad\\r\\nINFO forged line \\u202e" uid=7 ms=1.2')
    assert lines[1] == "INFO map 打印机\\n\\x9b"
    assert lines[2] == "ERROR junk\\nINFO forged"
    assert lines[3] == "ERROR failed for x\\ny"
    # The formatter's traceback keeps its own lines.
    assert lines[4] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"


def test_the_command_lines_log_setup_escapes_records_and_tracebacks(tmp_path):
    from maildesk.cli import setup_logging

    root = logging.getLogger("maildesk")
    saved = root.handlers[:], root.level, root.propagate
    log_file = tmp_path / "logs" / "helpdesk.log"
    try:
        setup_logging("info", log_file)
        log = logging.getLogger("maildesk.intake")
        log.info("mail message_id=%s from=%s", "<x\x1b[2J\r\n2026-01-01T00:00:00Z INFO forged@x>", "a@b.test")
        try:
            raise ValueError("bad subject \x1b]0;pwned\x07 \u202e")
        except ValueError:
            log.exception("could not handle %s", "<y@x>")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level, root.propagate = saved
    text = log_file.read_text(encoding="utf-8")
    assert raw_characters(text, UNSAFE) == []
    lines = text.splitlines()
    assert lines[0].endswith("INFO maildesk.intake: mail message_id=<x\\x1b[2J\\r\\n2026-01-01T00:00:00Z "
                             "INFO forged@x> from=a@b.test")
    assert lines[1].endswith("ERROR maildesk.intake: could not handle <y@x>")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad subject \\x1b]0;pwned\\x07 \\u202e"


# -- through real mail -------------------------------------------------------------------

def encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


NAME = "Mallory\x1b]0;pwned\x07 \u202eyroll\u2069aM"
SUBJECT = "打印机 \x1b[2J\x9b31m \u202egnp.exe\u202c \u2066x\u2069 卡纸"
BODY = ("第一行 \x1b]0;pwned\x07\n"
        "line two\twith a tab\n"
        "innocent\rFAKE: all is fine\n"
        "\x9b2J\u202eevil\u202c \u2067rtl\u2069 打印机卡纸\n")
# A Message-ID may hold any bytes between its brackets: ESC and BEL raw, C1 and U+202E as UTF-8.
MESSAGE_ID = b"<id.\x1b]0;pwned\x07.\xc2\x9b.\xe2\x80\xae.x@cust.example>"


def hostile_mail() -> bytes:
    head = (f"From: {encoded_word(NAME)} <mallory@cust.example>\r\n"
            f"To: {SUPPORT}\r\n"
            f"Subject: {encoded_word(SUBJECT)}\r\n"
            f"Date: {format_datetime(datetime.now(timezone.utc))}\r\n").encode("ascii")
    head += b"Message-ID: " + MESSAGE_ID + b"\r\n"
    head += (b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n")
    return head + base64.encodebytes(BODY.encode("utf-8")).replace(b"\n", b"\r\n")


def helpdesk_output(config, *args: str, password: str) -> str:
    """stdout of the real command line, bytes decoded as they are (no newline translation,
    which would hide a lone CR)."""
    proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), *args], capture_output=True,
                          timeout=60, env=env_for(password), cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return proc.stdout.decode("utf-8")


def raw_characters(text: str, pattern=UNSAFE) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in pattern.findall(text)})


@pytest.mark.integration
@pytest.mark.both_stores
def test_hostile_characters_from_mail_reach_neither_terminal_nor_log(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none",
                          extra='file = "log/helpdesk.log"\n')
    mailbox.deliver(hostile_mail())
    helpdesk(config, "once", password=mailbox.password)

    log_text = (config.parent / "log" / "helpdesk.log").read_bytes().decode("utf-8")
    assert raw_characters(log_text, UNSAFE) == []
    # Every line of the log is a whole record: nothing from the mail started a line of its own.
    for line in log_text.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) maildesk", line), line
    [intake_line] = [line for line in log_text.splitlines() if "message_id=<id." in line]
    assert "<id.\\x1b]0;pwned\\x07.\\x9b.\\u202e.x@cust.example>" in intake_line
    assert "from=mallory@cust.example" in intake_line

    shown = helpdesk_output(config, "tickets", "show", "TS-000001", password=mailbox.password)
    assert raw_characters(shown) == []
    assert "打印机" in shown and "卡纸" in shown and "第一行" in shown
    assert "\\u202egnp.exe" in shown and "\\x1b]0;pwned\\x07" in shown
    assert "line two\twith a tab\n" in shown, "the body's own tabs and newlines stay readable"
    assert "\\u202eyroll\\u2069aM <mallory@cust.example>" in shown

    listed = helpdesk_output(config, "tickets", "list", password=mailbox.password)
    assert raw_characters(listed, UNSAFE) == [] and "打印机" in listed and "\\u202egnp.exe" in listed

    for args in (("tickets", "show", "TS-000001", "--json"), ("tickets", "list", "--json")):
        output = helpdesk_output(config, *args, password=mailbox.password)
        assert raw_characters(output, UNSAFE) == [], args
        assert "打印机" in output, "Chinese stays readable in JSON"
        # The escapes are JSON's own: a program reading the JSON gets the mail's text back.
        data = json.loads(output)
        first = data if isinstance(data, dict) else data[0]
        assert "\u202egnp.exe" in first["subject"]
    detail = json.loads(helpdesk_output(config, "tickets", "show", "TS-000001", "--json",
                                        password=mailbox.password))
    assert detail["messages"][0]["message_id"] == MESSAGE_ID.decode("utf-8")
    assert "\x1b]0;pwned\x07" in detail["messages"][0]["text"]
