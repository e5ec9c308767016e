"""Mail written by machines: auto-replies, bounces and bulk mail are never answered.

Checked in this order; the first signal found decides, and is named in the
verdict's ``reason``:

* **bounce**: ``multipart/report; report-type=delivery-status`` (RFC 3464), or
  From ``MAILER-DAEMON@``/``postmaster@`` with an empty Return-Path (``<>``).
  The Message-IDs of the returned mail are read from its
  ``text/rfc822-headers`` or ``message/rfc822`` part (for reports without
  one, from ``Message-ID:`` lines quoted in the text), the failed recipients
  from the ``Final-Recipient`` fields, so the failure can be put on the
  right ticket.
* **auto-reply**: ``Auto-Submitted`` other than ``no`` (RFC 3834);
  ``X-Autoreply``/``X-Autorespond``; ``Precedence: auto_reply``; a read
  receipt (``report-type=disposition-notification``); a subject that starts
  with an auto-reply marker followed by a colon or the end of the subject
  ("Automatic reply:", "Auto:", "Out of Office:", "自动回复:", "自動回覆:").
  A colon is required because customers of an IT desk write subjects such as
  "Out of office reply not working".
  ``X-Auto-Response-Suppress`` alone proves nothing: Outlook puts it on
  ordinary mail too.  Together with such a marker it lets the marker stand
  after tags that gateways prepend ("[EXTERNAL] Automatic reply: ..."), never
  after a reply prefix ("RE: Automatic reply: ..." is a person answering).
* **bulk**: ``Precedence: bulk|list|junk``, ``List-Id``, ``List-Unsubscribe``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from maildesk.model import Address
from maildesk.parsers.charset import decode_bytes
from maildesk.parsers.headers import Headers, header_text, message_ids, split_params

_MARKER = (r"automatic\s+reply|auto[-\s]?reply|autoreply|auto[-\s]?response|automatic\s+response"
           r"|out\s+of\s+(?:the\s+)?office(?:\s+auto[-\s]?reply)?|abwesenheitsnotiz|automatische\s+antwort"
           r"|r[ée]ponse\s+automatique|respuesta\s+autom[áa]tica|resposta\s+autom[áa]tica"
           r"|risposta\s+automatica|自动回复|自動回覆|自動回復|自动答复|自動答覆|自動応答")
# The marker, then a colon, a closing bracket or the end of the subject; "Auto:" needs its colon.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:[\[【(（]\s*(?:" + _MARKER + r")\s*[\]】)）]|(?:" + _MARKER + r")\s*(?:[:：]|$)|auto\s*[:：])",
    re.IGNORECASE,
)
_GATEWAY_TAGS = re.compile(r"^(?:\s*[\[【][^\]】]{1,40}[\]】])+")
_DAEMONS = ("mailer-daemon", "postmaster")
_QUOTED_MESSAGE_ID = re.compile(r"^\s*message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_QUOTED_RECIPIENT = re.compile(r"^<([^<>\s@]+@[^<>\s]+)>:", re.MULTILINE)
_REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status")
_HEADER_PARTS = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_RETURNED_MAIL = ("message/rfc822", "message/global")
# A report is small; a huge one is not read part by part.
_MAX_REPORT_PARTS = 200


@dataclass
class MachineVerdict:
    kind: str | None = None  # "bounce" | "auto-reply" | "bulk" | None
    reason: str = ""
    bounced_message_ids: list[str] = field(default_factory=list)
    bounced_recipients: list[str] = field(default_factory=list)


def classify_machine(msg: Message, headers: Headers, *, sender: Address | None, subject: str,
                     return_path: str | None, text: str = "") -> MachineVerdict:
    """Whether ``msg`` was written by a machine, and which signal says so."""
    content_type = msg.get_content_type()
    report_type = ""
    if content_type == "multipart/report":
        report_type = split_params(headers.first("content-type") or "")[1].get("report-type", "").lower()

    reason = ""
    if report_type == "delivery-status":
        reason = "delivery status notification (Content-Type: multipart/report; report-type=delivery-status)"
    elif sender and sender.email.partition("@")[0] in _DAEMONS and return_path == "":
        reason = f"From {sender.email} with empty Return-Path"
    if reason:
        verdict = MachineVerdict("bounce", reason)
        _read_report(msg, verdict, text)
        return verdict

    auto_submitted = headers.text("Auto-Submitted")
    # The keyword may carry parameters and comments: "auto-replied; owner-email=..." or "no (human)".
    if auto_submitted and re.split(r"[;(\s]", auto_submitted, maxsplit=1)[0].lower() != "no":
        return MachineVerdict("auto-reply", f"Auto-Submitted: {auto_submitted[:100]}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = headers.text(name)
        if value and value.lower() not in ("no", "false", "0"):
            return MachineVerdict("auto-reply", f"{name}: {value[:100]}")
    precedence = headers.text("Precedence").lower()
    if precedence == "auto_reply":
        return MachineVerdict("auto-reply", "Precedence: auto_reply")
    if report_type == "disposition-notification":
        return MachineVerdict("auto-reply", "read receipt (Content-Type: multipart/report; "
                                            "report-type=disposition-notification)")
    marker = _AUTO_SUBJECT.match(subject)
    if marker:
        return MachineVerdict("auto-reply", f"subject starts with {marker.group().strip()!r}")
    if headers.first("X-Auto-Response-Suppress") is not None:
        tags = _GATEWAY_TAGS.match(subject)
        marker = _AUTO_SUBJECT.match(subject[tags.end():]) if tags else None
        if marker:
            return MachineVerdict("auto-reply", f"X-Auto-Response-Suppress and subject marker "
                                                f"{marker.group().strip()!r}")

    if precedence in ("bulk", "list", "junk"):
        return MachineVerdict("bulk", f"Precedence: {precedence}")
    for name in ("List-Id", "List-Unsubscribe"):
        if headers.first(name) is not None:
            return MachineVerdict("bulk", name)
    return MachineVerdict()


def _read_report(msg: Message, verdict: MachineVerdict, text: str) -> None:
    ids: list[str] = []
    recipients: list[str] = []
    stack = [msg]
    seen = 0
    while stack and seen < _MAX_REPORT_PARTS:
        part = stack.pop()
        seen += 1
        content_type = part.get_content_type()
        payload = part.get_payload()
        try:
            if content_type in _RETURNED_MAIL or content_type in _HEADER_PARTS:
                ids += _returned_ids(part, payload)
            elif content_type in _REPORT_PARTS:
                recipients += _final_recipients(part, payload)
            elif part.is_multipart() and isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
        except Exception:  # noqa: BLE001 - a damaged report part still leaves a bounce
            continue
    if not ids and text:
        ids = _QUOTED_MESSAGE_ID.findall(text)
    if not recipients and text:
        recipients = [r.lower() for r in _QUOTED_RECIPIENT.findall(text)]
    verdict.bounced_message_ids = message_ids(ids) if ids else []
    verdict.bounced_recipients = list(dict.fromkeys(recipients))


def _returned_ids(part: Message, payload) -> list[str]:
    if isinstance(payload, list):
        inner = [p for p in payload if isinstance(p, Message)]
    else:
        # text/rfc822-headers is a text part holding a header block.
        data = part.get_payload(decode=True) or b""
        inner = [HeaderParser(policy=compat32).parsestr(decode_bytes(data, None)[0], headersonly=True)]
    found: list[str] = []
    for message in inner[:1]:
        found += Headers(message).all("message-id")
    return found


def _final_recipients(part: Message, payload) -> list[str]:
    if isinstance(payload, list):
        blocks = [Headers(p) for p in payload if isinstance(p, Message)]
    else:
        data = part.get_payload(decode=True) or b""
        blocks = [Headers(HeaderParser(policy=compat32).parsestr(block, headersonly=True))
                  for block in re.split(r"\r?\n\s*\r?\n", decode_bytes(data, None)[0])]
    found = []
    for block in blocks:
        values = block.all("final-recipient") or block.all("original-recipient")
        for value in values:
            address = header_text(value).rpartition(";")[2].strip().strip("<>").lower()
            if "@" in address:
                found.append(address)
    return found
