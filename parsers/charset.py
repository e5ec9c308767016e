"""Bytes of uncertain charset to text, without losing characters.

Chinese mail is often labelled ``gb2312`` while it holds GBK or GB18030
characters (镕, 堃, 4-byte GB18030); Big5 mail uses HKSCS additions; some
clients label nothing, or something no codec knows.  The rules:

* a GB-family label is read as GB18030 (a strict superset), Big5 as
  Big5-HKSCS (then cp950), ISO-8859-1 and US-ASCII as what senders really
  write there (Windows-1252, UTF-8);
* when the label is missing, unknown or wrong, try UTF-8, then GB18030, then
  Latin-1.  GB18030 accepts most byte soup, so its result is only taken when
  it reads like Chinese (see ``_reads_as_chinese``); UTF-8 with a few stray
  Latin-1 bytes stays UTF-8.

Everything here is linear in the input.
"""
from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "x-euc-cn": "gb18030", "gb_2312-80": "gb18030", "gb_2312": "gb18030", "csgb2312": "gb18030",
    "chinese": "gb18030", "ms936": "gb18030", "windows-936": "gb18030", "hz-gb-2312": "hz",
    "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs", "csbig5": "big5hkscs",
    "big5-hkscs": "big5hkscs", "unicode-1-1-utf-7": "utf-7", "utf8": "utf-8",
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874",
    # Mail labelled Latin-1 is written on Windows; "ascii" mail often carries UTF-8.
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8", "ansi_x3.4-1968": "utf-8",
}
# What to try after the label's own codec fails, before the generic fallbacks.
_SECOND_CHOICE = {"big5hkscs": "cp950", "cp1252": "latin-1"}
# Codecs that are not byte -> text, or that turn ASCII into something else.
_NOT_A_CHARSET = {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined"}
_ASCII_INCOMPATIBLE = ("utf_16", "utf_32", "utf_7", "iso2022", "hz", "cp037", "cp500", "cp1140")
_CJK_CODECS = {"gb18030", "big5hkscs", "cp950", "cp949", "euc_kr", "euc_jp", "shift_jis", "cp932",
               "hz", "iso2022_jp", "iso2022_kr", "gbk", "gb2312", "big5"}

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SURROGATE = re.compile(r"[\udc80-\udcff]")


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when no usable codec knows it."""
    if not label or len(label) > 64:
        return None
    label = label.strip().strip("\"'").lower()
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    # codecs.lookup also knows bytes->bytes codecs such as "base64" or "zlib".
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_A_CHARSET:
        return None
    return info.name


def decode_bytes(data: bytes, label: str | None) -> tuple[str, str | None]:
    """Decode ``data`` labelled ``label``; returns (text, defect note or None)."""
    codec = codec_for(label)
    if data.isascii() and (codec is None or not codec.startswith(_ASCII_INCOMPATIBLE)):
        return data.decode("ascii"), None
    if codec:
        for candidate in (codec, _SECOND_CHOICE.get(codec)):
            if candidate:
                text = _strict(data, candidate)
                if text is not None:
                    return text, None
    text, used = _guess(data, codec)
    if label and label.strip().lower() not in ("us-ascii", "ascii"):
        shown = label.strip()[:40]
        if codec is None:
            return text, f"unknown charset {shown!r}, read as {used}"
        return text, f"text labelled {shown!r} is not valid {codec}, read as {used}"
    return text, None


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except Exception:  # noqa: BLE001 - UnicodeError, or a codec that cannot decode at all
        return None


def _guess(data: bytes, failed_codec: str | None) -> tuple[str, str]:
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    if _mostly_utf8(data):
        return data.decode("utf-8", "maildesk-cp1252"), "utf-8"
    if failed_codec != "gb18030" and _reads_as_chinese(data):
        text = _strict(data, "gb18030")
        if text is not None:
            return text, "gb18030"
    if failed_codec in _CJK_CODECS:
        # Mostly readable Chinese with a damaged byte beats Latin-1 mojibake.
        return data.decode(failed_codec, "replace"), f"{failed_codec} (damaged bytes replaced)"
    return data.decode("cp1252", "maildesk-latin1"), "latin-1"


def _mostly_utf8(data: bytes) -> bool:
    """UTF-8 with a few stray single bytes (a Latin-1 signature pasted into UTF-8 text)."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = len(_NON_ASCII.findall(text)) - bad
    return good >= 2 and bad * 3 <= good


def _reads_as_chinese(data: bytes) -> bool:
    """Whether the 8-bit bytes are mostly GB2312 pairs, as real Chinese text is.

    Latin-1 or Windows-1252 text also decodes as GB18030 (``Mü`` is a valid
    pair), but hardly ever as GB2312, whose pairs both lie in 0xA1-0xFE.
    """
    text = data.decode("gb2312", "replace")
    bad = text.count("\ufffd")
    good = len(_NON_ASCII.findall(text)) - bad
    return good >= 1 and bad * 5 <= good


def _cp1252_then_latin1(error: UnicodeDecodeError) -> tuple[str, int]:
    # The five bytes Windows-1252 leaves undefined are read as Latin-1.
    return error.object[error.start:error.end].decode("latin-1"), error.end


def _stray_bytes_as_cp1252(error: UnicodeDecodeError) -> tuple[str, int]:
    chunk = error.object[error.start:error.end]
    return chunk.decode("cp1252", "maildesk-latin1"), error.end


codecs.register_error("maildesk-latin1", _cp1252_then_latin1)
codecs.register_error("maildesk-cp1252", _stray_bytes_as_cp1252)


# -- headers -------------------------------------------------------------------------------

def decode_8bit(value: str) -> str:
    """Raw 8-bit bytes in a header (kept as surrogate escapes by the parser) as text.

    UTF-8 first, then GB18030 (Chinese clients that send raw GBK), then Latin-1.
    """
    if value.isascii() or not _SURROGATE.search(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    for codec in ("utf-8", "gb18030"):
        text = _strict(raw, codec)
        if text is not None:
            return text
    return raw.decode("latin-1")


# RFC 2047 encoded word.  The encoded text may not hold "?" or whitespace by the
# RFC; some clients put spaces in it anyway, so only "?" ends it.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,80})\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"[ \t\r\n]+")


def decode_encoded_words(text: str) -> str:
    """Decode RFC 2047 encoded words in any charset, in linear time.

    Whitespace between adjacent encoded words is dropped, and adjacent words in
    the same charset are decoded together, because clients split multi-byte
    characters across words.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending_charset: str | None = None
    pending = bytearray()
    position = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset)[0])
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(text):
        between = text[position:match.start()]
        adjacent = pending_charset is not None and (not between or _FOLD.fullmatch(between))
        if not adjacent:
            flush()
            out.append(between)
        charset = match.group(1).split("*", 1)[0].lower()
        data = _decode_word(match.group(2), match.group(3))
        if data is None:
            flush()
            out.append(match.group(0))
        else:
            if charset != pending_charset:
                flush()
                pending_charset = charset
            pending += data
        position = match.end()
    flush()
    out.append(text[position:])
    return "".join(out)


def _decode_word(encoding: str, encoded: str) -> bytes | None:
    try:
        if encoding in "bB":
            compact = "".join(encoded.split())
            return binascii.a2b_base64(compact + "=" * (-len(compact) % 4))
        return binascii.a2b_qp(encoded.encode("utf-8", "surrogateescape"), header=True)
    except (binascii.Error, ValueError):
        return None
