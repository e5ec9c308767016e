"""Raw bytes -> ``InboundMail``.  Never raises.

mail-parser reads the message first (its structure, and its diagnostics of
address, date and Received headers).  What the helpdesk keeps is then taken
from the parsed ``email.message.Message`` with this package's own decoding,
because mail-parser gets Chinese mail wrong: a ``gb2312`` label on GBK text
and raw 8-bit headers come out with replacement characters.  Where
mail-parser cannot read a message, or would be slow on it (thousands of
encoded words: it decodes headers in quadratic time), the standard library
parser reads it alone, with the ``compat32`` policy: it keeps header values
raw for our charset rules and never raises on reading a malformed header.

Bad input degrades step by step, each step noted in ``defects``: hostile
MIME headers are cut short before parsing; a structure too deeply nested to
take apart is read as headers plus raw text; a message nothing can parse
still gives an ``InboundMail`` with ``sender=None`` and whatever text the
bytes hold.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import re
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

import mailparser

from maildesk.model import Address, InboundAttachment, InboundMail, SkippedAttachment
from maildesk.parsers.charset import codec_for, decode_bytes, guess_codec
from maildesk.parsers.headers import (
    Headers, header_text, message_id, message_ids, mime_header, parse_addresses, parse_date,
    parse_return_path, unfold,
)
from maildesk.parsers.html import html_to_text
from maildesk.parsers.language import detect_language
from maildesk.parsers.machine import classify_machine

# mail-parser logs at WARNING for every part type it does not handle ("Email content
# 'mixed' not handled") and at ERROR for headers it cannot decode: noise for a daemon
# that records its own defects.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)

MAX_PARTS = 1000
# A real Content-Type/Content-Disposition, even with a long RFC 2231 name, stays
# far below this; the standard library re-parses them in quadratic time.
MAX_MIME_HEADER = 8 * 1024
# mail-parser decodes each header with email.header.decode_header, quadratic in
# the number of encoded words.
MAX_ENCODED_WORDS = 2000
# The standard parser checks every line against every open boundary; past this
# many checks the message is not taken apart.
MAX_BOUNDARY_WORK = 2_000_000
# HTML converted to text at most (the text is cut to max_text_chars anyway).
MIN_HTML_CHARS = 2_000_000
MAX_FILENAME = 200

_EXTENSIONS = {
    "application/pdf": ".pdf", "application/zip": ".zip", "application/gzip": ".gz",
    "application/msword": ".doc", "application/vnd.ms-excel": ".xls", "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/json": ".json", "application/xml": ".xml", "application/x-7z-compressed": ".7z",
    "application/x-rar-compressed": ".rar", "application/vnd.rar": ".rar", "application/ics": ".ics",
    "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/gif": ".gif", "image/bmp": ".bmp",
    "image/webp": ".webp", "image/tiff": ".tif", "image/svg+xml": ".svg", "image/heic": ".heic",
    "text/plain": ".txt", "text/html": ".html", "text/csv": ".csv", "text/calendar": ".ics",
    "text/x-vcard": ".vcf", "text/vcard": ".vcf", "text/xml": ".xml",
    "message/rfc822": ".eml", "message/global": ".eml", "audio/mpeg": ".mp3", "video/mp4": ".mp4",
}
_RETURNED_MAIL = ("message/rfc822", "message/global")
# Report metadata, read by parsers.machine; kept as attachments only when named.
_REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status", "message/disposition-notification",
                 "message/global-disposition-notification", "message/rfc822-headers", "message/global-headers",
                 "text/rfc822-headers")
_NEWLINE = re.compile(r"\r\n?")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069/\\:*?"<>|]+')
_BOUNDARY_PARAM = re.compile(rb'boundary\s*=\s*("[^"\r\n]*"|[^\s;]+)')
_CLOSE_DELIMITER = re.compile(rb"\n--([^\r\n]*?)--[ \t]*\r?(?=\n|$)")


def parse_mail(raw: bytes, *, max_attachment_bytes: int = 15 * 2**20,
               max_text_chars: int = 200_000) -> InboundMail:
    """Everything the helpdesk needs from one raw message.  Never raises."""
    defects: list[str] = []
    data = _as_bytes(raw, defects)
    try:
        return _parse(data, defects, max_attachment_bytes, max_text_chars)
    except Exception as exc:  # noqa: BLE001 - never raise: degrade and say why
        log.warning("parsing a mail of %d bytes failed", len(data), exc_info=True)
        defects.append(f"the MIME structure could not be read ({_name(exc)}); read as headers and raw text")
    try:
        return _headers_and_raw_text(data, defects, max_text_chars)
    except Exception as exc:  # noqa: BLE001
        defects.append(f"the headers could not be read ({_name(exc)})")
    return _unreadable(data, defects, max_text_chars)


def _as_bytes(raw, defects: list[str]) -> bytes:
    if isinstance(raw, bytes):
        return raw
    try:
        if isinstance(raw, str):
            return raw.encode("utf-8", "surrogateescape")
        return bytes(raw)
    except Exception:  # noqa: BLE001
        defects.append(f"input of type {type(raw).__name__} is not a mail")
        return b""


def _name(exc: BaseException) -> str:
    try:
        detail = str(exc)[:200]
    except Exception:  # noqa: BLE001 - an exception whose message cannot be shown
        detail = ""
    return f"{exc.__class__.__name__}: {detail}" if detail else exc.__class__.__name__


# -- reading the structure ----------------------------------------------------------------

def _parse(raw: bytes, defects: list[str], max_attachment_bytes: int, max_text_chars: int) -> InboundMail:
    lowered = raw.lower()
    source = _cut_long_mime_headers(raw, lowered, defects)
    if _boundary_work(lowered) > MAX_BOUNDARY_WORK:
        return _too_deep(raw, defects, max_text_chars)
    parsed = None
    encoded_words = source.count(b"=?")
    if encoded_words > MAX_ENCODED_WORDS:
        defects.append(f"{encoded_words} encoded words: read with the standard library only")
    else:
        try:
            parsed = mailparser.parse_from_bytes(source)
        except Exception as exc:  # noqa: BLE001 - the standard library takes over
            if isinstance(exc.__cause__, RecursionError):
                return _too_deep(raw, defects, max_text_chars)
            defects.append(f"mail-parser could not read the message ({_name(exc)}); "
                           f"read with the standard library")
    msg = parsed.message if parsed is not None else None
    if msg is None:
        try:
            msg = BytesParser(policy=compat32).parsebytes(source)
        except RecursionError:
            return _too_deep(raw, defects, max_text_chars)
    return _build(raw, msg, parsed, defects, max_attachment_bytes, max_text_chars)


def _too_deep(raw: bytes, defects: list[str], max_text_chars: int) -> InboundMail:
    defects.append("MIME parts nested too deeply to take apart; read as headers and raw text")
    return _headers_and_raw_text(raw, defects, max_text_chars)


def _cut_long_mime_headers(raw: bytes, lowered: bytes, defects: list[str]) -> bytes:
    """``raw`` with every Content-Type/-Disposition header cut to MAX_MIME_HEADER bytes."""
    cuts: list[tuple[int, int]] = []
    for name in (b"content-type:", b"content-disposition:"):
        start = lowered.find(name)
        while start != -1:
            end = start + len(name)
            if start == 0 or lowered[start - 1] == 0x0A:
                end = _header_end(lowered, start)
                if end - start > MAX_MIME_HEADER:
                    cuts.append((start + MAX_MIME_HEADER, end))
            start = lowered.find(name, end)
    if not cuts:
        return raw
    defects.append(f"{len(cuts)} MIME header(s) longer than {MAX_MIME_HEADER} bytes cut short")
    pieces, position = [], 0
    for cut_from, cut_to in sorted(cuts):
        pieces.append(raw[position:cut_from])
        position = cut_to
    pieces.append(raw[position:])
    return b"".join(pieces)


def _header_end(data: bytes, start: int) -> int:
    position = start
    while True:
        newline = data.find(b"\n", position)
        if newline == -1 or newline + 1 >= len(data) or data[newline + 1] not in (0x20, 0x09):
            return len(data) if newline == -1 else newline
        position = newline + 1


def _boundary_work(lowered: bytes) -> int:
    """Roughly how many boundary checks the standard parser will make: nesting depth x lines."""
    if lowered.count(b"boundary") <= 50:
        return 0
    return _nesting_depth(lowered) * lowered.count(b"\n")


def _nesting_depth(lowered: bytes) -> int:
    """The most multipart boundaries open at once, from where each is declared and closed.

    Many boundaries side by side (a digest of forwarded mails) are cheap to
    parse; only boundaries opened inside each other cost per line.
    """
    closes: dict[bytes, list[int]] = {}
    for match in _CLOSE_DELIMITER.finditer(lowered):
        closes.setdefault(match.group(1), []).append(match.start())
    events: list[tuple[int, int]] = []
    for match in _BOUNDARY_PARAM.finditer(lowered):
        opened = match.start()
        positions = closes.get(match.group(1).strip(b'"'), [])
        index = bisect.bisect_right(positions, opened)
        events.append((opened, 1))
        if index < len(positions):
            events.append((positions[index], -1))
    depth = deepest = 0
    for _, step in sorted(events):
        depth += step
        deepest = max(deepest, depth)
    return deepest


# -- building the result ------------------------------------------------------------------

def delivery_key(mid: str | None, sender: Address | None, raw: bytes) -> str:
    """What makes two deliveries the same mail: Message-ID, sender and body.

    The Message-ID alone is chosen by the sender, so a stranger who sends
    first with somebody else's Message-ID would make that person's mail look
    "already handled".  The body digest tells a true duplicate (the same mail
    delivered twice, with different trace headers) from a different mail
    reusing an id.  Without a Message-ID, the whole message decides.
    """
    if not mid:
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    normalised = raw.replace(b"\r\n", b"\n")
    head_end = normalised.find(b"\n\n")
    body = normalised[head_end + 2:] if head_end != -1 else b""
    digest = hashlib.sha256(body).hexdigest()[:24]
    return f"{mid[1:-1]}|{sender.email if sender else '-'}|{digest}"


def _header_fields(raw: bytes, headers: Headers, defects: list[str]) -> dict:
    mid = message_id(headers.first("message-id"))
    if mid is None and headers.first("message-id") is not None:
        defects.append("Message-ID header holds no usable id")
    senders = _addresses(headers, "from", defects) or _mail_system(headers)
    # Several mailboxes in From (or several From lines) name no single author: nobody to believe.
    sender = senders[0] if len(senders) == 1 else None
    if len(senders) > 1:
        defects.append("From names more than one mailbox")
    elif not senders and headers.first("from") is not None:
        shown = " ".join(header_text(headers.first("from"), headers.hints).split())[:80]
        defects.append(f"From names no valid mailbox: {shown!r}")
    elif not senders:
        head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        if re.search(rb"^from:", head, re.IGNORECASE | re.MULTILINE):
            # "quite Delivered-To: ..." above it: the parser (like every strict one) stops there.
            defects.append("From header below a malformed header line, which ends the header block")
        else:
            defects.append("no From header")
    reply_to = _addresses(headers, "reply-to", defects)
    return dict(
        key=delivery_key(mid, sender, raw),
        message_id=mid,
        sender=sender,
        subject=headers.text("subject"),
        to=_addresses(headers, "to", defects),
        cc=_addresses(headers, "cc", defects),
        reply_to=reply_to[0] if reply_to else None,
        date=parse_date(headers.first("date")),
        in_reply_to=message_ids(headers.all("in-reply-to")),
        references=message_ids(headers.all("references")),
        return_path=parse_return_path(headers.all("return-path")),
        auth_results=[unfold(v) for v in headers.all("authentication-results")],
        size=len(raw),
        thread_index=headers.text("thread-index") or None,
    )


def _addresses(headers: Headers, name: str, defects: list[str]) -> list[Address]:
    """One address header, read on its own: a header too deeply nested to parse costs only itself."""
    try:
        return parse_addresses(headers.all(name), headers.hints)
    except RecursionError:
        defects.append(f"{name.title()} header nested too deeply to read; ignored")
        return []


# "MAILER-DAEMON", "Mail Delivery Subsystem <MAILER-DAEMON>", "MAILER-DAEMON <>", "<>": the mail
# system itself, unqualified (sendmail and others leave the domain off their own reports).
_MAIL_SYSTEM_FROM = re.compile(
    r'^\s*(?:"?(?P<name>[^"<>]*?)"?\s*)?<?\s*(?P<local>mailer-daemon|postmaster|)\s*>?\s*(?:\([^()]*\))?\s*$',
    re.IGNORECASE)
_DAEMON_NAME = re.compile(r"^(mailer[- ]daemon|postmaster)$", re.IGNORECASE)


def _mail_system(headers: Headers) -> list[Address]:
    """The unqualified sender of a mail system's own report, as ``mailer-daemon``/``postmaster``.

    Such a From names no mailbox anybody could reply to; routing treats the mail as a
    report (``parsers.machine``) and never answers it.
    """
    values = headers.all("from")
    if len(values) != 1:
        return []
    match = _MAIL_SYSTEM_FROM.match(header_text(values[0], headers.hints))
    if match is None:
        return []
    name, local = (match.group("name") or "").strip(), match.group("local").lower()
    if not local:
        # "<>" or "MAILER-DAEMON <>": the null sender, written into From.
        if "<" not in values[0] or (name and not _DAEMON_NAME.match(name) and "deliver" not in name.lower()):
            return []
        local = "mailer-daemon"
    return [Address(local, name)]


# Charsets that say nothing about raw bytes elsewhere in the mail.
_NO_EVIDENCE = ("ascii", "utf-8", "utf_8")
_WORD_CHARSET = re.compile(r"=\?([^?\s*]{1,40})[?*]")
MAX_HINTS = 4


def declared_charsets(msg: Message) -> tuple[str, ...]:
    """The charsets the mail declares, as codecs: its text parts' first, then its encoded words'.

    The evidence for reading its undeclared bytes: a Latin-1 mail's raw subject is Latin-1,
    a KOI8-R mail's raw sender name is KOI8-R.
    """
    found: list[str] = []
    stack, seen = [msg], 0
    while stack and seen < 50 and len(found) < MAX_HINTS:
        part = stack.pop()
        seen += 1
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        charset = mime_header(part, "content-type")[1].get("charset")
        codec = codec_for(charset) if charset else None
        if codec and codec not in _NO_EVIDENCE:
            found.append(codec)
    for name, value in msg.raw_items():
        if len(found) < MAX_HINTS and "=?" in str(value) and str(name).lower() in ("subject", "from", "to", "cc"):
            for label in _WORD_CHARSET.findall(str(value)):
                codec = codec_for(label)
                if codec and codec not in _NO_EVIDENCE:
                    found.append(codec)
    if not found:
        # Nothing declared: the raw 8-bit bytes of the headers are the evidence for the body
        # (a KOI8-R subject, a KOI8-R body), pooled so that one guess speaks for both.
        raw = b" ".join(str(value).encode("utf-8", "surrogateescape") for name, value in msg.raw_items()
                        if str(name).lower() in ("subject", "from", "to"))
        guessed = guess_codec(raw)
        if guessed:
            found.append(guessed)
    return tuple(dict.fromkeys(found))[:MAX_HINTS]


def _build(raw: bytes, msg: Message, parsed, defects: list[str], max_attachment_bytes: int,
           max_text_chars: int) -> InboundMail:
    hints = declared_charsets(msg)
    headers = Headers(msg, hints)
    fields = _header_fields(raw, headers, defects)
    body = _Body(max_attachment_bytes, max_text_chars, hints)
    body.walk(msg)
    text = body.text()
    defects += body.defects
    defects += _mailparser_header_defects(parsed)
    text = _cut(text, max_text_chars, defects)
    return _finish(msg, headers, fields, text, body.html(), body.attachments, body.skipped, defects)


def _finish(msg, headers, fields, text, html, attachments, skipped, defects) -> InboundMail:
    verdict = classify_machine(msg, headers, sender=fields["sender"], subject=fields["subject"],
                               return_path=fields["return_path"], text=text)
    return InboundMail(
        **fields,
        text=text,
        html=html,
        attachments=attachments,
        skipped_attachments=skipped,
        language=detect_language(fields["subject"], text),
        machine=verdict.kind,
        machine_reason=verdict.reason,
        bounced_message_ids=verdict.bounced_message_ids,
        bounced_recipients=verdict.bounced_recipients,
        defects=list(dict.fromkeys(defects)),
    )


def _headers_and_raw_text(raw: bytes, defects: list[str], max_text_chars: int) -> InboundMail:
    """The headers, and the body as text without taking its MIME parts apart."""
    msg = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    charset = mime_header(msg, "content-type")[1].get("charset")
    hints = tuple(c for c in [codec_for(charset)] if c and c not in _NO_EVIDENCE)
    headers = Headers(msg, hints)
    fields = _header_fields(raw, headers, defects)
    payload = msg.get_payload()
    data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    text = _NEWLINE.sub("\n", decode_bytes(data, charset, hints)[0]).strip("\n")
    return _finish(msg, headers, fields, _cut(text, max_text_chars, defects), None, [], [], defects)


def _unreadable(raw: bytes, defects: list[str], max_text_chars: int) -> InboundMail:
    key = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        text = decode_bytes(body or head, None)[0][:max_text_chars]
    except Exception:  # noqa: BLE001
        text = ""
    return InboundMail(key=key, message_id=None, sender=None, subject="", text=text,
                       defects=list(dict.fromkeys(defects)) or ["unreadable message"], size=len(raw))


def _cut(text: str, max_text_chars: int, defects: list[str]) -> str:
    text = text.replace("\x00", "")
    if len(text) > max_text_chars:
        defects.append(f"text cut to {max_text_chars} characters (was {len(text)})")
        text = text[:max_text_chars]
    return text


def _mailparser_header_defects(parsed) -> list[str]:
    """mail-parser's findings on address, date and Received headers.

    Its per-part entries repeat the standard library's defects (reported from
    the parts themselves) or its own charset trouble, which our decoding replaces.
    """
    notes: list[str] = []
    for entry in getattr(parsed, "defects", None) or []:
        if not isinstance(entry, dict):
            continue
        for where, items in entry.items():
            if "/" in str(where):
                continue
            notes += [str(item)[:300] for item in items or []]
    return notes


# -- body and attachments -----------------------------------------------------------------

class _Body:
    """Walks the MIME tree once: text and HTML parts, attachments, defects."""

    def __init__(self, max_attachment_bytes: int, max_text_chars: int, hints: tuple[str, ...] = ()) -> None:
        self.hints = hints
        self.max_attachment_bytes = max_attachment_bytes
        self.max_html_chars = max(MIN_HTML_CHARS, max_text_chars * 10)
        self.plain: list[str] = []
        self.html_parts: list[str] = []
        self.attachments: list[InboundAttachment] = []
        self.skipped: list[SkippedAttachment] = []
        self.defects: list[str] = []

    def walk(self, root: Message) -> None:
        stack = [root]
        seen = 0
        while stack:
            part = stack.pop()
            seen += 1
            if seen > MAX_PARTS:
                self.defects.append(f"more than {MAX_PARTS} MIME parts; the rest is ignored")
                return
            content_type = part.get_content_type()
            self._note_defects(part, content_type)
            payload = part.get_payload()
            if content_type.startswith("message/"):
                self._message_part(part, content_type)
            elif isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            elif content_type.startswith("multipart/"):
                recovered = _recover_multipart(payload) if part is root else None
                if recovered is not None:
                    stack.append(recovered)
                else:
                    self._text_part(part, "text/plain", {})  # no parts found: its text is the body
            else:
                self._leaf(part, content_type, part is root)

    def _leaf(self, part: Message, content_type: str, is_root: bool) -> None:
        disposition, disposition_params = mime_header(part, "content-disposition", self.hints)
        params = mime_header(part, "content-type", self.hints)[1]
        filename = _filename(disposition_params, params, self.hints)
        if content_type in ("text/plain", "text/html") and disposition != "attachment" \
                and (not filename or is_root):
            self._text_part(part, content_type, params)
        elif content_type in _REPORT_PARTS and not filename:
            return
        else:
            self._attach(filename, content_type, _payload_bytes(part))

    def _message_part(self, part: Message, content_type: str) -> None:
        filename = _filename(mime_header(part, "content-disposition", self.hints)[1],
                             mime_header(part, "content-type", self.hints)[1], self.hints)
        if content_type in _RETURNED_MAIL:
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                subject = Headers(inner, self.hints).text("subject")
                self._attach(filename or f"{subject or 'message'}.eml", content_type, _message_bytes(inner))
                return
        if content_type in _REPORT_PARTS and not filename:
            return
        self._attach(filename, content_type, _payload_bytes(part))

    def _text_part(self, part: Message, content_type: str, params: dict[str, str]) -> None:
        text, note = decode_bytes(_payload_bytes(part), params.get("charset"), self.hints)
        if note:
            self.defects.append(f"{content_type} part: {note}")
        if content_type == "text/html":
            self.html_parts.append(text)
            return
        text = _NEWLINE.sub("\n", text)
        if params.get("format", "").lower() == "flowed":
            text = _unflow(text, params.get("delsp", "").lower() == "yes")
        self.plain.append(text)

    def _attach(self, filename: str, content_type: str, data: bytes) -> None:
        number = len(self.attachments) + len(self.skipped) + 1
        name = safe_filename(filename, f"attachment-{number}{_EXTENSIONS.get(content_type, '.bin')}")
        if content_type in _RETURNED_MAIL and not name.lower().endswith(".eml"):
            name = safe_filename(name[:MAX_FILENAME - 4] + ".eml", name)
        if len(data) > self.max_attachment_bytes:
            # "too-large" is rendered by templates/*/skipped_attachment.txt in the reader's language.
            self.skipped.append(SkippedAttachment(name, len(data), "too-large"))
        else:
            self.attachments.append(InboundAttachment(name, content_type, data))

    def _note_defects(self, part: Message, content_type: str) -> None:
        for defect in getattr(part, "defects", None) or []:
            doc = (type(defect).__doc__ or "").strip().splitlines()
            detail = str(defect) or (doc[0] if doc else "")
            self.defects.append(f"{content_type} part: {detail.rstrip('.')} ({type(defect).__name__})")

    def text(self) -> str:
        text = "\n\n".join(t.strip("\n") for t in self.plain if t.strip())
        if not text and self.html_parts:
            html = "\n".join(self.html_parts)
            if len(html) > self.max_html_chars:
                self.defects.append(f"HTML of {len(html)} characters: only the first {self.max_html_chars} "
                                    f"turned into text")
                html = html[:self.max_html_chars]
            text = html_to_text(html)
        return text

    def html(self) -> str | None:
        html = "\n".join(h for h in self.html_parts if h.strip())
        return html or None


def _recover_multipart(payload: str) -> Message | None:
    """A multipart whose declared boundary never occurs, re-read with the one it uses."""
    if not isinstance(payload, str):
        return None
    first = payload.lstrip("\r\n").split("\n", 1)[0].strip()
    if not first.startswith("--") or len(first) < 3 or len(first) > 72:
        return None
    boundary = first[2:]
    head = f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
    recovered = BytesParser(policy=compat32).parsebytes(
        (head + payload).encode("utf-8", "surrogateescape"))
    return recovered if recovered.is_multipart() else None


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - undecodable transfer encoding: keep the raw bytes
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _message_bytes(inner: Message) -> bytes:
    try:
        return inner.as_bytes(policy=compat32.clone(mangle_from_=False))
    except Exception:  # noqa: BLE001
        try:
            return inner.as_string().encode("utf-8", "surrogateescape")
        except Exception:  # noqa: BLE001
            return b""


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: soft line breaks (a trailing space) joined again."""
    out: list[str] = []
    pending: list[str] = []
    pending_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        if pending and depth != pending_depth:
            out.append(_quoted(pending_depth, "".join(pending)))
            pending = []
        if content.endswith(" ") and content != "-- ":
            pending.append(content[:-1] if delsp else content)
            pending_depth = depth
            continue
        pending.append(content)
        out.append(_quoted(depth, "".join(pending)))
        pending = []
    if pending:
        out.append(_quoted(pending_depth, "".join(pending)))
    return "\n".join(out)


def _quoted(depth: int, text: str) -> str:
    return ">" * depth + " " + text if depth else text


# -- file names -----------------------------------------------------------------------------

def _filename(disposition_params: dict[str, str], type_params: dict[str, str], hints: tuple[str, ...] = ()) -> str:
    name = disposition_params.get("filename") or type_params.get("name") or ""
    return header_text(name, hints) if name else ""


def safe_filename(name: str, fallback: str) -> str:
    """A name safe to show and to store under: the last path component only, no control
    characters, at most 200 characters (the extension kept), never empty or hidden."""
    components = [c for c in re.split(r"[\\/]", name) if c.strip(" .")]
    name = components[-1] if components else ""
    name = " ".join(_UNSAFE_NAME.sub("_", name).split()).strip(" ._")
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[:MAX_FILENAME - len(extension) - 1].rstrip(" ._") + "." + extension
        else:
            name = name[:MAX_FILENAME].rstrip(" ._")
    return name or fallback
