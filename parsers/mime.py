"""Raw bytes -> ``InboundMail``.  Never raises.

mail-parser reads the message (its structure, date and defects); the
standard library takes over where mail-parser gets Chinese wrong: header and
body text are decoded here with the charset rules of ``parsers.charset``
(a ``gb2312`` label read as GB18030, Big5 as HKSCS, unknown labels tried as
UTF-8 then GB18030), because mail-parser replaces what its codec cannot read.
"""
from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timezone
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

import mailparser

from maildesk.model import Address, InboundAttachment, InboundMail, SkippedAttachment
from maildesk.parsers.charset import decode_bytes, decode_header_text
from maildesk.parsers.html import html_to_text
from maildesk.parsers.language import detect_language
from maildesk.parsers.machine import classify

# mail-parser logs every part type it does not know ("rfc822-headers not handled").
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

log = logging.getLogger("maildesk.parse")

_MSGID = re.compile(r"<[^<>\s]+>")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
               "text/plain": ".txt", "text/html": ".html", "application/zip": ".zip",
               "message/rfc822": ".eml", "text/calendar": ".ics"}
MAX_PARTS = 500


def parse_mail(raw: bytes, *, max_attachment_bytes: int = 15 * 2**20,
               max_text_chars: int = 200_000) -> InboundMail:
    key = "sha256:" + hashlib.sha256(raw).hexdigest()
    defects: list[str] = []
    try:
        parsed = mailparser.parse_from_bytes(raw)
        msg = parsed.message
        defects += _mailparser_defects(parsed)
    except Exception as exc:  # noqa: BLE001 - fall back to the standard library
        defects.append(f"mail-parser failed ({exc.__class__.__name__}); read with the standard library")
        parsed = None
        try:
            msg = message_from_bytes(raw, policy=compat32)
        except Exception as exc2:  # noqa: BLE001
            return InboundMail(key=key, message_id=None, sender=None, subject="", text="",
                               defects=[*defects, f"unreadable message: {exc2}"], size=len(raw))
    try:
        return _build(raw, key, msg, parsed, defects, max_attachment_bytes, max_text_chars)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never raise
        log.exception("parsing failed")
        return InboundMail(key=key, message_id=None, sender=None, subject="", text="",
                           defects=[*defects, f"unreadable message: {exc.__class__.__name__}: {exc}"],
                           size=len(raw))


def _build(raw, key, msg: Message, parsed, defects, max_attachment_bytes, max_text_chars) -> InboundMail:
    message_ids = _MSGID.findall(_first(msg, "Message-ID"))
    message_id = message_ids[0] if message_ids else None
    if message_id:
        key = message_id[1:-1]
    sender = _first_address(msg, "From")
    subject = decode_header_text(_first(msg, "Subject"))
    return_path = None
    if msg.get("Return-Path") is not None:
        rp = _addresses(msg, "Return-Path")
        return_path = rp[0].email if rp else ""

    plain: list[str] = []
    html: list[str] = []
    attachments: list[InboundAttachment] = []
    skipped: list[SkippedAttachment] = []
    _walk(msg, plain, html, attachments, skipped, defects, max_attachment_bytes)

    html_text = "\n\n".join(h for h in html if h.strip()) or None
    text = "\n\n".join(p for p in plain if p.strip())
    if not text.strip() and html_text:
        text = html_to_text(html_text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if len(text) > max_text_chars:
        defects.append(f"text cut to {max_text_chars} characters (was {len(text)})")
        text = text[:max_text_chars]

    verdict = classify(msg, sender=sender.email if sender else None, subject=subject, return_path=return_path)
    return InboundMail(
        key=key,
        message_id=message_id,
        sender=sender,
        subject=subject,
        text=text,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        reply_to=_first_address(msg, "Reply-To"),
        date=_date(msg, parsed),
        in_reply_to=_MSGID.findall(_first(msg, "In-Reply-To")),
        references=_MSGID.findall(" ".join(str(v) for v in (msg.get_all("References") or []))),
        html=html_text,
        attachments=attachments,
        skipped_attachments=skipped,
        language=detect_language(subject, text),
        machine=verdict.kind,
        machine_reason=verdict.reason,
        bounced_message_ids=verdict.bounced_message_ids,
        bounced_recipients=verdict.bounced_recipients,
        return_path=return_path,
        auth_results=[decode_header_text(v) for v in (msg.get_all("Authentication-Results") or [])],
        defects=defects,
        size=len(raw),
    )


# -- body and attachments -----------------------------------------------------------------

def _walk(msg: Message, plain, html, attachments, skipped, defects, max_attachment_bytes) -> None:
    parts = 0
    stack = [msg]
    while stack:
        part = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} MIME parts; the rest is ignored")
            return
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            # A forwarded mail is kept whole as an attachment, not read as our body.
            _attach(part, _filename(part) or _inner_subject(part), attachments, skipped, max_attachment_bytes,
                    len(attachments))
            continue
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                if ctype == "multipart/alternative":
                    payload = _preferred_alternative(payload)
                stack.extend(reversed(payload))
            continue
        filename = _filename(part)
        disposition = (part.get_content_disposition() or "").lower()
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            body, note = _text_of(part)
            if note:
                defects.append(note)
            (plain if ctype == "text/plain" else html).append(body)
            continue
        if ctype.startswith("text/") and ctype not in ("text/plain", "text/html") and not filename \
                and disposition != "attachment":
            continue  # report parts (rfc822-headers, delivery-status) are read by the bounce classifier
        _attach(part, filename, attachments, skipped, max_attachment_bytes, len(attachments))


def _preferred_alternative(parts: list) -> list:
    """Of alternatives, the plain text one (HTML kept only when there is no plain text)."""
    plain = [p for p in parts if isinstance(p, Message) and p.get_content_type() == "text/plain"]
    others = [p for p in parts if isinstance(p, Message) and p.get_content_type() != "text/html"
              and p.get_content_type() != "text/plain"]
    if plain:
        # Keep the HTML too: it is stored for reference, the text comes from the plain part.
        html = [p for p in parts if isinstance(p, Message) and p.get_content_type() == "text/html"]
        return plain[:1] + html[:1] + others
    return parts


def _text_of(part: Message) -> tuple[str, str | None]:
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return decode_bytes(data, part.get_content_charset())


def _attach(part: Message, filename: str, attachments, skipped, max_bytes: int, index: int) -> None:
    ctype = part.get_content_type()
    try:
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            data = inner.as_bytes() if isinstance(inner, Message) else (part.get_payload(decode=True) or b"")
        else:
            data = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        data = b""
    name = _safe_name(filename) or f"attachment-{index + 1}{_EXTENSIONS.get(ctype, '.bin')}"
    if ctype == "message/rfc822" and not name.lower().endswith(".eml"):
        name += ".eml"
    if len(data) > max_bytes:
        skipped.append(SkippedAttachment(name, len(data), "too-large"))
        return
    attachments.append(InboundAttachment(name, ctype, data))


def _filename(part: Message) -> str:
    name = None
    try:
        name = part.get_filename()  # RFC 2231 (incl. continuations) via the standard library
    except Exception:  # noqa: BLE001
        name = None
    if name is None:
        name = part.get_param("name")
        if isinstance(name, tuple):  # an RFC 2231 triple
            try:
                from email.utils import collapse_rfc2231_value
                name = collapse_rfc2231_value(name)
            except Exception:  # noqa: BLE001
                name = None
    return decode_header_text(name) if name else ""


def _inner_subject(part: Message) -> str:
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    if isinstance(inner, Message):
        return decode_header_text(inner.get("Subject", "")) or "message"
    return "message"


def _safe_name(name: str) -> str:
    name = _UNSAFE_NAME.sub("_", name).strip(" ._")
    return name[:200]


# -- headers -----------------------------------------------------------------------------

def _raw_values(msg: Message, name: str) -> list[str]:
    # raw_items() keeps raw 8-bit header bytes (as surrogates) that get() would
    # already have replaced; decode_header_text() reads them as UTF-8 or GB18030.
    name = name.lower()
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower() == name]
    except Exception:  # noqa: BLE001
        return [str(v) for v in (msg.get_all(name) or [])]


def _first(msg: Message, name: str) -> str:
    values = _raw_values(msg, name)
    return values[0] if values else ""


def _addresses(msg: Message, name: str) -> list[Address]:
    values = _raw_values(msg, name)
    found: list[Address] = []
    try:
        pairs = getaddresses([str(v) for v in values])
    except Exception:  # noqa: BLE001
        return found
    for display, email in pairs:
        email = decode_header_text(email).strip().strip("<>").lower()
        if "@" not in email:
            continue
        found.append(Address(email, decode_header_text(display)))
    return found


def _first_address(msg: Message, name: str) -> Address | None:
    found = _addresses(msg, name)
    return found[0] if found else None


def _date(msg: Message, parsed) -> datetime | None:
    value = msg.get("Date")
    if value:
        try:
            when = parsedate_to_datetime(str(value))
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        except (TypeError, ValueError, IndexError):
            pass
    return None


def _mailparser_defects(parsed) -> list[str]:
    notes: list[str] = []
    for entry in getattr(parsed, "defects", None) or []:
        if isinstance(entry, dict):
            for part, items in entry.items():
                for item in items:
                    if "CharsetDecodeDefect" in item:
                        continue  # our own decoding replaces mail-parser's
                    notes.append(f"{part}: {item}")
    return notes
