"""Turning bytes of uncertain charset into text, without losing characters.

Chinese mail is often labelled ``gb2312`` while it holds GBK or GB18030
characters (镕, 堃, 4-byte GB18030); Big5 mail uses HKSCS additions; some
clients label nothing, or something no codec knows.  The rules: read a
GB-family label as GB18030 (a strict superset), Big5 as Big5-HKSCS, and when
the label fails or is unknown try UTF-8, then GB18030, then Latin-1 (which
never fails), noting what happened.
"""
from __future__ import annotations

import codecs
import re
from email.header import decode_header

_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "gb_2312-80": "gb18030", "csgb2312": "gb18030", "chinese": "gb18030", "x-euc-cn": "gb18030",
    "gb18030": "gb18030", "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs", "big5-hkscs": "big5hkscs", "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8", "ks_c_5601-1987": "cp949", "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874",
    "ascii": "utf-8", "us-ascii": "utf-8",  # plenty of "ascii" mail carries UTF-8 bytes
}
_FALLBACKS = ("utf-8", "gb18030", "latin-1")


def codec_for(label: str | None) -> str | None:
    """Python codec for a MIME charset label, or None when no codec knows it."""
    if not label:
        return None
    label = label.strip().strip('"').lower()
    label = _ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_bytes(data: bytes, label: str | None) -> tuple[str, str | None]:
    """Decode ``data``; returns (text, defect note or None)."""
    codec = codec_for(label)
    if codec:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            pass
    for fallback in _FALLBACKS:
        if fallback == codec:
            continue
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        if label and codec is None:
            return text, f"unknown charset {label!r}, read as {fallback}"
        if label:
            return text, f"text labelled {label!r} is not valid {codec}, read as {fallback}"
        return text, None
    raise AssertionError("latin-1 decodes everything")  # pragma: no cover


_SURROGATES = re.compile(r"[\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def decode_header_text(value) -> str:
    """A header value as one line of text: RFC 2047 words, raw 8-bit, any charset."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    # Raw 8-bit bytes in a header reach us surrogate-escaped (compat32 parsing).
    if _SURROGATES.search(value):
        raw = value.encode("utf-8", "surrogateescape")
        value, _ = decode_bytes(raw, None)
    try:
        parts = decode_header(value)
    except Exception:  # noqa: BLE001 - a broken encoded word stays as written
        parts = [(value, None)]
    text = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            chunk, _ = decode_bytes(chunk, charset or "utf-8")
        text.append(chunk)
    joined = "".join(text)
    return " ".join(_CONTROL.sub(" ", joined).split())
