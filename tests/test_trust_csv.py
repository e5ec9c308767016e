"""The weekly report's CSV never carries a live formula: text that customers and staff wrote is
inert in Excel and LibreOffice, the report's own figures stay numbers (CSV injection)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

import pytest

from maildesk.daemon.config import load_config
from maildesk.model import Event, Ticket
from maildesk.reports.metrics import Week, weekly_report
from maildesk.reports import weekly

from .desk import SUPPORT, customer_mail, helpdesk, ticket, write_config

SH = ZoneInfo("Asia/Shanghai")
# What Excel or LibreOffice takes for the start of a formula (Excel reads the full-width signs too).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
AUTHSERV_ID = "mx.example.com"
# What the receiving server stamps on mail whose DKIM signature and DMARC check passed.
STAFF_VERDICT = (f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=example.com; "
                 "dmarc=pass header.from=example.com\r\n").encode()
HOSTILE = [
    '=HYPERLINK("http://evil.test","click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",
    "＋cmd|' /C calc'!A0",
    "－2+3",
    "＠SUM(A1:A9)",
]


def parse_csv(data: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.lstrip("\ufeff"), newline="")))


def assert_inert(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), f"live formula cell {cell!r} in {row}"


# -- the pure parts ----------------------------------------------------------------------

@pytest.mark.parametrize("text", HOSTILE)
def test_a_cell_that_would_be_a_formula_gets_a_leading_quote(text):
    assert weekly.spreadsheet_text(text) == "'" + text


@pytest.mark.parametrize("text", ["", "Printer jam", "打印机卡纸", "TS-000001", "a***@cust.example",
                                  "2026-11-16T10:00+08:00", "x=1+1", "Re: =SUM", " =not a formula to Excel"])
def test_other_text_is_left_as_it_is(text):
    assert weekly.spreadsheet_text(text) == text


def test_ticket_csv_makes_text_inert_and_keeps_figures_numbers(tmp_path):
    config = load_config(write_config(tmp_path, imap_port=1, imap_user="u", imap_password="p", smtp_port=2))
    week = Week(2026, 47, SH)
    created = datetime(2026, 11, 16, 10, tzinfo=SH)
    hostile = Ticket(
        number=1, tag="TS-000001", subject=HOSTILE[0], customer="=evil@cust.example", customer_name="",
        stage="closed", language="en", created_at=created, updated_at=created + timedelta(hours=20),
        assignee="alice@example.com", rating=5, summary="@SUM(A1:A9) cleaned the rollers",
        lessons="+cmd|' /C calc'!A0", events=[
            Event(created, "=evil@cust.example", "created", None, "received"),
            Event(created + timedelta(hours=1.5), "alice@example.com", "diagnose", "received", "diagnosing"),
            Event(created + timedelta(hours=20), "alice@example.com", "resolve", "diagnosing", "feedback"),
            Event(created + timedelta(hours=30), "alice@example.com", "close", "feedback", "closed")])
    report = weekly_report(week, [hostile], [], [], weekly.policy_for(config))
    data = weekly.ticket_csv(report, config, weekly.mask_address).decode("utf-8")
    header, row = parse_csv(data)
    assert_inert([header, row])
    cells = dict(zip(header, row))
    assert cells["subject"] == "'" + HOSTILE[0]
    assert cells["customer"] == "'=***@cust.example"
    assert cells["summary"] == "'@SUM(A1:A9) cleaned the rollers" and cells["lessons"] == "'+cmd|' /C calc'!A0"
    # The report's own figures are numbers, written bare: a spreadsheet still sums them.
    assert (cells["first_response_hours"], cells["resolution_hours"], cells["rating"]) == ("1.5", "20.0", "5")
    line = data.splitlines()[1]
    assert ",1.5,20.0,5," in line


# -- through real mail -------------------------------------------------------------------

def staff_mail(sender: str, subject: str, body: str, in_reply_to: str) -> bytes:
    """A technician's reply as the receiving server hands it over: DKIM and DMARC checked."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    return STAFF_VERDICT + msg.as_bytes()


@pytest.mark.integration
@pytest.mark.both_stores
def test_the_report_mail_csv_carries_no_formula_from_mail(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(
        tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username, imap_password=mailbox.password,
        smtp_port=smtp_sink.port, leadership=("director@example.com",))
    subject = '=HYPERLINK("http://evil.test","click")'
    mailbox.deliver(customer_mail("mallory@cust.example", subject, "Please click the link in the subject."))
    helpdesk(config, "once", password=mailbox.password)
    notify = next(m.message for m in smtp_sink.messages()
                  if "alice@example.com" in m.rcpt_tos and m.message["Message-ID"].startswith("<notify."))
    mailbox.deliver(staff_mail(
        "Alice Wang <alice@example.com>", f"Re: {notify['Subject']}",
        "#close @SUM(A1:A9) removed the jammed paper\nLessons: +cmd|' /C calc'!A0 keep spare rollers",
        notify["Message-ID"]))
    helpdesk(config, "once", password=mailbox.password)
    closed = ticket(config, "TS-000001", password=mailbox.password)
    assert closed["stage"] == "closed" and closed["subject"] == subject
    assert closed["summary"].startswith("@SUM(") and closed["lessons"].startswith("+cmd")

    week = Week.containing(datetime.fromisoformat(closed["created_at"]), SH).label
    helpdesk(config, "report", "weekly", "--week", week, "--send", password=mailbox.password)
    helpdesk(config, "once", password=mailbox.password)
    [report] = [m.message for m in smtp_sink.messages()
                if m.rcpt_tos == ["director@example.com"] and f"report.{week}." in m.message["Message-ID"]]
    [attachment] = [p for p in report.iter_attachments() if p.get_content_type() == "text/csv"]
    rows = parse_csv(attachment.get_content())
    assert_inert(rows)
    [row] = [dict(zip(rows[0], r)) for r in rows[1:] if r[0] == "TS-000001"]
    assert row["subject"] == "'" + subject
    assert row["summary"] == "'" + closed["summary"] and row["lessons"] == "'" + closed["lessons"]
