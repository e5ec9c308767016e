"""Separating what a person just wrote from what their client quoted below it.

Commands and ratings are read only from the new text: our own mails mention
the keywords (``#resolve``, "reply 同意"), so a quoted template must never
trigger anything.  The new text ends at the first of:

* a quote header: "On … wrote:" (possibly wrapped onto two lines),
  "… 于2026年11月24日周二 10:02写道：", "在 2026-11-24 10:02:00，… 写道：",
  Outlook's "From:/Sent:" or "发件人:/发送时间:" block (with or without the
  "____" rule above it), "-----Original Message-----",
  "------------------ 原始邮件 ------------------", Foxmail's "Original";
* a signature: the "-- " delimiter, "Sent from my iPhone", "发自我的iPhone",
  "Get Outlook for iOS", "发自网易邮箱大师" and the like.

Lines starting with ">" are quoted wherever they stand.  Pure functions.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WROTE_END = re.compile(r"(wrote|writes|schrieb|a écrit|escribió|写道|寫道)\s*[:：]?\s*$", re.IGNORECASE)
_ON_START = re.compile(r"^(on|am|le|el|在)\s", re.IGNORECASE)
_CN_WROTE = re.compile(r"(于|於).{4,80}(写道|寫道)\s*[:：]\s*$")
_SEPARATORS = re.compile(
    r"^\s*(-{2,}\s*(original message|original|forwarded message|原始邮件|原始郵件|转发邮件|reply above this line)"
    r"\s*-{2,}|_{10,}|-{10,}|={10,})\s*$",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^\s*\*?(from|发件人|寄件者|von|de)\s*\*?\s*[:：]", re.IGNORECASE)
_HEADER_FOLLOW = re.compile(
    r"^\s*\*?(sent|date|to|subject|发送时间|发送日期|日期|时间|收件人|主题|寄件日期|傳送時間|gesendet|envoyé|enviado)"
    r"\s*\*?\s*[:：]", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^\s*(--|—|sent from my \w+.*|sent from (mail|outlook) for .*|get outlook for .*|sent from outlook.*|"
    r"发自我的\s*\S+|从我的\s*\S+\s*发送|发自网易邮箱.*|发自\s*(qq|163|126)?\s*邮箱.*|发自手机.*|"
    r"sent from (yahoo|samsung|huawei|xiaomi|my huawei).*|获取\s*outlook.*)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReplyParts:
    new: str  # what the sender wrote now, without signature
    quoted: str  # everything below the quote header, and ">" lines
    signature: str


def split_reply(text: str) -> ReplyParts:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _quote_start(lines)
    head, quoted = lines[:cut], lines[cut:]
    new_lines: list[str] = []
    quote_lines: list[str] = []
    for line in head:
        (quote_lines if line.lstrip().startswith(">") else new_lines).append(line)
    signature: list[str] = []
    for i, line in enumerate(new_lines):
        if _SIGNATURE.match(unicodedata.normalize("NFKC", line)):
            signature = new_lines[i:]
            new_lines = new_lines[:i]
            break
    return ReplyParts(
        new="\n".join(new_lines).strip("\n").rstrip(),
        quoted="\n".join(quote_lines + quoted).strip("\n"),
        signature="\n".join(signature).strip("\n"),
    )


def _quote_start(lines: list[str]) -> int:
    for i, raw in enumerate(lines):
        line = unicodedata.normalize("NFKC", raw).strip()
        if not line:
            continue
        if _SEPARATORS.match(line):
            return i
        if _CN_WROTE.search(line) or (line.startswith("在") and _WROTE_END.search(line)):
            return i
        if _WROTE_END.search(line) and (_ON_START.match(line) or "<" in line or "@" in line):
            return i
        # "On Mon, 23 Nov 2026 at 09:13, Desk <support@example.com>" / "wrote:" on the next line
        if _ON_START.match(line) and i + 1 < len(lines) and \
                _WROTE_END.search(unicodedata.normalize("NFKC", lines[i + 1]).strip()) and \
                len(lines[i + 1].strip()) < 40:
            return i
        if _HEADER_LINE.match(line):
            following = [unicodedata.normalize("NFKC", x).strip() for x in lines[i + 1:i + 5] if x.strip()]
            if following and _HEADER_FOLLOW.match(following[0]):
                return i
    return len(lines)
