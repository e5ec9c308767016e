"""Mail written by machines: auto-replies, bounces and bulk mail are never answered.

Decisions, in order:

* **bounce**: a ``multipart/report; report-type=delivery-status`` (RFC 3464),
  or mail from ``MAILER-DAEMON``/``postmaster`` with an empty Return-Path.
  The Message-IDs of the returned mail are read from its
  ``text/rfc822-headers`` or ``message/rfc822`` part, so the failure can be
  put on the right ticket.
* **auto-reply**: ``Auto-Submitted`` other than ``no`` (RFC 3834),
  ``X-Autoreply``/``X-Autorespond``, ``X-Auto-Response-Suppress`` together
  with an out-of-office subject (Outlook sets that header on plain mail too, so
  alone it proves nothing), or a subject such as "Automatic reply:",
  "Out of Office", "自动回复".
* **bulk**: ``Precedence: bulk|list|junk``, ``List-Id``, ``List-Unsubscribe``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message

from maildesk.parsers.charset import decode_header_text

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)|auto:|out of (the )?office|abwesenheit|"
    r"réponse automatique|自动回复|自動回覆|自动答复|自動回復|休假|不在办公室)",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]+>")
_RECIPIENT = re.compile(r"^(?:final|original)-recipient:\s*[^;]*;\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$",
                        re.IGNORECASE | re.MULTILINE)


@dataclass
class MachineVerdict:
    kind: str | None = None
    reason: str = ""
    bounced_message_ids: list[str] = field(default_factory=list)
    bounced_recipients: list[str] = field(default_factory=list)


def classify(msg: Message, *, sender: str | None, subject: str, return_path: str | None) -> MachineVerdict:
    content_type = msg.get_content_type()
    report_type = (msg.get_param("report-type") or "")
    report_type = report_type.lower() if isinstance(report_type, str) else ""
    if (content_type == "multipart/report" and report_type == "delivery-status") or \
            (sender and _DAEMON.match(sender) and return_path in ("", None)):
        verdict = MachineVerdict("bounce", "delivery status notification" if content_type == "multipart/report"
                                 else f"from {sender}")
        _read_bounce(msg, verdict)
        return verdict
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return MachineVerdict("auto-reply", f"Auto-Submitted: {auto}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _header(msg, name):
            return MachineVerdict("auto-reply", name)
    if _AUTO_SUBJECT.match(subject):
        return MachineVerdict("auto-reply", "auto-reply subject")
    precedence = _header(msg, "Precedence").lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        return MachineVerdict("auto-reply" if precedence == "auto_reply" else "bulk", f"Precedence: {precedence}")
    for name in ("List-Id", "List-Unsubscribe"):
        if _header(msg, name):
            return MachineVerdict("bulk", name)
    return MachineVerdict()


def _header(msg: Message, name: str) -> str:
    try:
        return decode_header_text(msg.get(name, "")).strip()
    except Exception:  # noqa: BLE001
        return ""


def _read_bounce(msg: Message, verdict: MachineVerdict) -> None:
    for part in msg.walk():
        ctype = part.get_content_type()
        try:
            if ctype == "message/rfc822":
                inner = part.get_payload()
                inner = inner[0] if isinstance(inner, list) and inner else inner
                if isinstance(inner, Message):
                    verdict.bounced_message_ids += _MSGID.findall(str(inner.get("Message-ID", "")))
            elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
                text = part.get_payload(decode=True) or b""
                for line in text.decode("utf-8", "replace").splitlines():
                    if line.lower().startswith("message-id:"):
                        verdict.bounced_message_ids += _MSGID.findall(line)
            elif ctype in ("message/delivery-status", "message/global-delivery-status"):
                payload = part.get_payload()
                if isinstance(payload, list):
                    text = "\n".join(str(p) for p in payload)
                else:
                    text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
                verdict.bounced_recipients += [r.lower() for r in _RECIPIENT.findall(text)
                                               if r.lower() not in verdict.bounced_recipients]
        except Exception:  # noqa: BLE001 - a damaged report still counts as a bounce
            continue
    verdict.bounced_message_ids = list(dict.fromkeys(verdict.bounced_message_ids))
    verdict.bounced_recipients = list(dict.fromkeys(verdict.bounced_recipients))
