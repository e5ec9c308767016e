"""Bytes of uncertain charset to text, without losing characters.

Chinese mail is often labelled ``gb2312`` while it holds GBK or GB18030
characters (镕, 堃, 4-byte GB18030); Big5 mail uses HKSCS additions; some
clients label nothing, or something no codec knows.  The rules:

* a GB-family label is read as GB18030 (a strict superset), Big5 as
  Big5-HKSCS (then cp950), ISO-8859-1 and US-ASCII as what senders really
  write there (Windows-1252, UTF-8);
* valid UTF-8 with multi-byte sequences is UTF-8 whatever the label says,
  when the label's reading is less plausible (UTF-8 hardly ever validates by
  accident; a Latin-1 or GB label on it gives ``Ã©`` or rare characters);
* when the label is missing, unknown or wrong, the charset is guessed from
  evidence, never from a fixed order: UTF-8 first (self-validating), then the
  label's relatives (EUC-JP for text labelled ISO-2022-JP), the charsets the
  mail declares elsewhere (``hints``: the body's charset for raw header
  bytes), Chinese, Japanese, Cyrillic and Western candidates, each read
  strictly and scored for plausibility (see ``_penalty``: mojibake, control
  characters, CJK characters inside Latin words, rare GB2312/Big5 pairs,
  Cyrillic case chaos).  The least implausible reading wins, an earlier
  candidate on a tie.  When none reads cleanly, the byte statistics of
  charset-normalizer add their candidate.  GB18030 accepts most byte soup,
  which is why it must earn its place by score rather than come first.

Everything here is linear in the input; scoring looks at a bounded sample.
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
    "big5-hkscs": "big5hkscs", "unicode-1-1-utf-7": "utf-7", "utf8": "utf-8", "x-unicode-2-0-utf-7": "utf-7",
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874",
    "x-sjis": "cp932", "shift-jis": "cp932", "x-euc-jp": "euc_jp",
    # Mail labelled Latin-1 is written on Windows; "ascii" mail often carries UTF-8.
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8", "ansi_x3.4-1968": "utf-8",
}
# Codecs confused with each other in the wild: what to try after the label's own codec fails.
_RELATIVES = {
    "big5hkscs": ("cp950",), "cp1252": ("latin-1",),
    "iso2022_jp": ("euc_jp", "cp932"), "euc_jp": ("cp932", "iso2022_jp"), "shift_jis": ("cp932", "euc_jp"),
    "cp932": ("euc_jp",), "iso2022_kr": ("cp949",), "euc_kr": ("cp949",),
    "koi8_r": ("koi8_u", "cp1251"), "koi8_u": ("koi8_r", "cp1251"), "cp1251": ("koi8_r",),
    "iso8859_5": ("cp1251", "koi8_r"),
}
# Relatives that are the label's own superset or subset: reading by them is no defect of the mail.
_SILENT_RELATIVES = {"big5hkscs": "cp950", "cp1252": "latin-1"}
# Codecs that are not byte -> text, or that turn ASCII into something else.
_NOT_A_CHARSET = {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined"}
_ASCII_INCOMPATIBLE = ("utf_16", "utf_32", "utf_7", "iso2022", "hz", "cp037", "cp500", "cp1140")
_CJK_CODECS = {"gb18030", "big5hkscs", "cp950", "cp949", "euc_kr", "euc_jp", "shift_jis", "cp932",
               "hz", "iso2022_jp", "iso2022_kr", "gbk", "gb2312", "big5"}
# Codecs whose reading is taken as is when they decode: the label is evidence, except that
# valid UTF-8 beats a less plausible reading (see decode_bytes).
_UNICODE = ("utf_8", "utf_16", "utf_32", "utf_7")

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SURROGATE = re.compile(r"[\udc80-\udcff]")

# -- plausibility ------------------------------------------------------------------------------

_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# Each match is one sign that a reading is wrong.
_IMPLAUSIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff\u2500-\u259f]"  # controls, replacement, private use, box drawing
    f"|(?<=[{_LATIN}])[{_CJK}]{{1,2}}(?=[{_LATIN}])"  # CJK inside a Latin word: Fr鰏che
    "|[\u00c3\u00c2][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"  # UTF-8 read as Latin-1: Ã©
    f"|(?<=[{_LATIN}])[\u00a1-\u00bf\u00d7\u00f7](?=[{_LATIN}])"  # a Latin-1 sign inside a word: G¨¹
    "|[\u00c0-\u00ff]{3,}"  # three accented letters in a row: Cyrillic or CJK read as Latin-1
    "|[\u0430-\u044f\u0451][\u0410-\u042f\u0401]"  # case flipping inside a Cyrillic word: KOI8-R read as cp1251
    "|(?<=[A-Za-z])[\u0400-\u04ff]|[\u0400-\u04ff](?=[A-Za-z])"  # Cyrillic inside a Latin word: Frцsche
    "|锟斤拷"  # U+FFFD once encoded to UTF-8 and read as GBK
)
_CYRILLIC_UPPER = re.compile("[\u0410-\u042f\u0401]")
_CYRILLIC_LOWER = re.compile("[\u0430-\u044f\u0451]")
_RUSSIAN_VOWEL = re.compile("[\u0430\u0435\u0438\u043e\u0443\u044b\u044d\u044e\u044f]")
_CYRILLIC_CODECS = ("koi8_r", "koi8_u", "cp1251", "iso8859_5")
# Double-byte sequences (or single bytes), so that pairs are counted aligned.
_DOUBLE_BYTE = re.compile(rb"[\x81-\xfe][\x30-\x39][\x81-\xfe][\x30-\x39]|[\x81-\xfe][\x40-\x7e\x80-\xfe]|[\x00-\xff]")
# GB2312 level 1 (the 3,755 common hanzi, rows 0xB0-0xD7) and punctuation (rows 0xA1, 0xA3) are
# what Chinese text is made of; other pairs are rare characters, kana, Greek or box drawing.
_GB_COMMON = frozenset([0xA1, 0xA3, *range(0xB0, 0xD8)])
# Big5's frequent characters (0xA440-0xC67E) and its punctuation rows.
_BIG5_COMMON = frozenset(range(0xA1, 0xC7))
SAMPLE_BYTES = 4096
SAMPLE_CHARS = 2000
# Below this, byte statistics say little (charset-normalizer needs text to count).
DETECTOR_MIN_BYTES = 24


def _rare_pairs(data: bytes, common: frozenset[int]) -> int:
    rare = 0
    for match in _DOUBLE_BYTE.finditer(data[:SAMPLE_BYTES]):
        sequence = match.group()
        if len(sequence) > 1 and (sequence[0] not in common or sequence[1] < 0xA1):
            rare += 1  # outside the common rows, or in the GBK/Big5 extension (trail below 0xA1)
    return rare


def _penalty(text: str, codec: str, data: bytes) -> int:
    """How many signs say that ``text`` is not what ``data`` was written as (0: reads cleanly)."""
    sample = text[:SAMPLE_CHARS]
    score = len(_IMPLAUSIBLE.findall(sample))
    if codec == "gb18030":
        score += _rare_pairs(data, _GB_COMMON)
    elif codec in ("big5hkscs", "cp950"):
        score += _rare_pairs(data, _BIG5_COMMON)
    elif codec in _CYRILLIC_CODECS:
        # Russian text is mostly lower case; the wrong Cyrillic table turns the case around.
        upper, lower = len(_CYRILLIC_UPPER.findall(sample)), len(_CYRILLIC_LOWER.findall(sample))
        if upper > lower and upper + lower >= 8:  # a short word may be written in capitals
            score += (upper - lower + 1) // 2
    return score


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


def _python_name(codec: str) -> str:
    # codecs.lookup names some codecs with a hyphen ("utf-7", "utf-8"), most with an underscore.
    return codec.replace("-", "_")


def decode_bytes(data: bytes, label: str | None, hints: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """Decode ``data`` labelled ``label``; returns (text, defect note or None).

    ``hints`` are the other charsets the mail declares (codec names), evidence for a guess.
    """
    codec = codec_for(label)
    if data.isascii() and (codec is None or not _python_name(codec).startswith(_ASCII_INCOMPATIBLE)):
        return data.decode("ascii"), None
    if codec:
        text = _strict(data, codec)
        if text is not None:
            return _utf8_if_more_plausible(data, codec, text, label)
        extension = _SILENT_RELATIVES.get(codec)
        text = _strict(data, extension) if extension else None
        if text is not None:
            return text, None  # the label's own extension (cp950 for Big5, Latin-1 for cp1252): no defect
    text, used = _guess(data, codec, hints)
    if label and label.strip().lower() not in ("us-ascii", "ascii"):
        shown = label.strip()[:40]
        if codec is None:
            return text, f"unknown charset {shown!r}, read as {used}"
        return text, f"text labelled {shown!r} is not valid {codec}, read as {used}"
    return text, None


def _utf8_if_more_plausible(data: bytes, codec: str, text: str, label: str) -> tuple[str, str | None]:
    """The label's reading, unless the bytes are valid UTF-8 that reads better (``Ã©`` under a Latin-1 label)."""
    if _python_name(codec).startswith(_UNICODE):
        return text, None
    utf8 = _strict(data, "utf-8")
    if utf8 is None or utf8 == text or _penalty(utf8, "utf-8", data) >= _penalty(text, codec, data):
        return text, None
    return utf8, f"text labelled {label.strip()[:40]!r} is UTF-8, read as utf-8"


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except Exception:  # noqa: BLE001 - UnicodeError, or a codec that cannot decode at all
        return None


def _guess(data: bytes, failed_codec: str | None, hints: tuple[str, ...] = ()) -> tuple[str, str]:
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    if _mostly_utf8(data):
        return data.decode("utf-8", "maildesk-cp1252"), "utf-8"
    if b"\x00" in data[:SAMPLE_BYTES]:
        return _latin(data), "latin-1"  # binary, not text: no reading is right, none is worth scoring
    return _best_reading(data, _candidates(data, failed_codec, hints), failed_codec, hinted=bool(hints))


def _candidates(data: bytes, failed_codec: str | None, hints: tuple[str, ...]) -> list[str]:
    """Codecs worth trying, strongest evidence first (the earlier one wins a tie)."""
    found: list[str] = []
    if failed_codec:
        found += _RELATIVES.get(failed_codec, ())
    found += [h for h in hints if h != failed_codec]
    found += ["gb18030", "big5hkscs"]
    if re.search(rb"[\xa4\xa5][\xa1-\xf3]", data[:SAMPLE_BYTES]):
        found.append("euc_jp")  # kana rows: Japanese, not Chinese (GB2312 has them at the same place)
    if re.search(rb"[\x82\x83][\x40-\xfc]", data[:SAMPLE_BYTES]):
        found.append("cp932")
    found += ["cp1252", "cp1251", "koi8_r"]
    return list(dict.fromkeys(c for c in found if c and not _python_name(c).startswith(_ASCII_INCOMPATIBLE)))


def _reads_as_russian(text: str) -> bool:
    """Several Cyrillic letters, mostly lower case, with vowels: words, not a table read wrongly.

    GB2312 reads such KOI8-R bytes cleanly too (``тест`` is 耘釉), but real Chinese read
    as KOI8-R hits its box-drawing rows at once; a clean Cyrillic reading is the better one.
    """
    sample = text[:SAMPLE_CHARS]
    lower = len(_CYRILLIC_LOWER.findall(sample))
    return lower >= 4 and lower >= len(_CYRILLIC_UPPER.findall(sample)) and bool(_RUSSIAN_VOWEL.search(sample))


def _best_reading(data: bytes, candidates: list[str], failed_codec: str | None,
                  hinted: bool = False) -> tuple[str, str]:
    best: tuple[int, int, str, str] | None = None
    for order, codec in enumerate(candidates):
        text = _latin(data) if codec == "cp1252" else _strict(data, codec)
        if text is None:
            continue
        score = _penalty(text, codec, data)
        if score == 0 and not hinted and codec in _CYRILLIC_CODECS and _reads_as_russian(text):
            score = -1
        if best is None or (score, order) < best[:2]:
            best = (score, order, text, "latin-1" if codec == "cp1252" else codec)
        if score < 0 or (score == 0 and codec not in ("gb18030", "big5hkscs", *_CYRILLIC_CODECS)):
            break  # nothing later can beat a clean reading of stronger evidence
    if failed_codec in _CJK_CODECS:
        # Mostly readable Chinese with a damaged byte beats Latin-1 mojibake.
        text = data.decode(failed_codec, "replace")
        score = _penalty(text, failed_codec, data)
        if best is None or score < best[0]:
            best = (score, -1, text, f"{failed_codec} (damaged bytes replaced)")
    if best is None:  # no candidate at all (cp1252 is always one): Latin-1 reads any bytes
        return _latin(data), "latin-1"
    if best[0] > 0 and len(data) >= DETECTOR_MIN_BYTES:
        detected = _detected(data)
        if detected and detected not in candidates:
            text = _strict(data, detected)
            if text is not None and _penalty(text, detected, data) < best[0]:
                best = (0, 0, text, detected)
    return best[2], best[3]


def _detected(data: bytes) -> str | None:
    """charset-normalizer's verdict from byte statistics, as one more candidate."""
    try:
        from charset_normalizer import from_bytes
        match = from_bytes(data[:SAMPLE_BYTES]).best()
    except Exception:  # noqa: BLE001 - a detector failure leaves the other candidates
        return None
    return codec_for(match.encoding) if match is not None else None


def _latin(data: bytes) -> str:
    return data.decode("cp1252", "maildesk-latin1")


def _mostly_utf8(data: bytes) -> bool:
    """UTF-8 with a few stray single bytes (a Latin-1 signature pasted into UTF-8 text)."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = len(_NON_ASCII.findall(text)) - bad
    return good >= 2 and bad * 3 <= good


def _cp1252_then_latin1(error: UnicodeDecodeError) -> tuple[str, int]:
    # The five bytes Windows-1252 leaves undefined are read as Latin-1.
    return error.object[error.start:error.end].decode("latin-1"), error.end


def _stray_bytes_as_cp1252(error: UnicodeDecodeError) -> tuple[str, int]:
    chunk = error.object[error.start:error.end]
    return chunk.decode("cp1252", "maildesk-latin1"), error.end


codecs.register_error("maildesk-latin1", _cp1252_then_latin1)
codecs.register_error("maildesk-cp1252", _stray_bytes_as_cp1252)


def guess_codec(data: bytes) -> str | None:
    """The codec the 8-bit ``data`` most plausibly is in, when it is a legacy one (None for UTF-8,
    Latin-1 or no clear answer): evidence for the undeclared rest of the same mail."""
    if data.isascii():
        return None
    used = _guess(data, None)[1]
    return None if used in ("utf-8", "latin-1") or " " in used else used


# -- headers -------------------------------------------------------------------------------

def decode_8bit(value: str, hints: tuple[str, ...] = ()) -> str:
    """Raw 8-bit bytes in a header (kept as surrogate escapes by the parser) as text.

    Guessed as a body is (``_guess``), with ``hints`` (the charsets the mail declares,
    the body's first) tried right after UTF-8: a Latin-1 subject in a Latin-1 mail is
    Latin-1, raw GBK from a Chinese client reads as the Chinese it is.
    """
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return _guess(value.encode("utf-8", "surrogateescape"), None, hints)[0]


# RFC 2047 encoded word.  The encoded text may not hold "?" or whitespace by the
# RFC; some clients put spaces in it anyway, so only "?" ends it.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,80})\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"[ \t\r\n]+")


def decode_encoded_words(text: str, hints: tuple[str, ...] = ()) -> str:
    """Decode RFC 2047 encoded words in any charset, in linear time.

    Whitespace between adjacent encoded words is dropped, and adjacent words in
    the same charset are decoded together, because clients split multi-byte
    characters across words.  Raw 8-bit bytes (surrogate escapes) inside an
    encoded word belong to that word's charset, as Eudora writes them; those
    outside any word are guessed once for the whole value (``decode_8bit``).
    """
    raw_outside = _SURROGATE.search(text) is not None
    if "=?" not in text:
        return decode_8bit(text, hints) if raw_outside else text
    outside = _outside_decoder(text, hints) if raw_outside else (lambda chunk: chunk)
    out: list[str] = []
    pending_charset: str | None = None
    pending = bytearray()
    position = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset, hints)[0])
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(text):
        between = text[position:match.start()]
        adjacent = pending_charset is not None and (not between or _FOLD.fullmatch(between))
        if not adjacent:
            flush()
            out.append(outside(between))
        charset = match.group(1).split("*", 1)[0].lower()
        data = _decode_word(match.group(2), match.group(3))
        if data is None:
            flush()
            out.append(outside(match.group(0)))
        else:
            if charset != pending_charset:
                flush()
                pending_charset = charset
            pending += data
        position = match.end()
    flush()
    out.append(outside(text[position:]))
    return "".join(out)


def _outside_decoder(text: str, hints: tuple[str, ...]):
    """How to read the raw bytes outside the encoded words of ``text``: one guess for all of them."""
    raw = _ENCODED_WORD.sub(" ", text).encode("utf-8", "surrogateescape")
    used = _guess(raw, None, hints)[1]

    def decode(chunk: str) -> str:
        if not _SURROGATE.search(chunk):
            return chunk
        data = chunk.encode("utf-8", "surrogateescape")
        if used == "latin-1":
            return _latin(data)
        if used == "utf-8":
            return data.decode("utf-8", "maildesk-cp1252")
        return data.decode(used.split(" ", 1)[0], "replace")

    return decode


def _decode_word(encoding: str, encoded: str) -> bytes | None:
    try:
        if encoding in "bB":
            compact = "".join(encoded.split())
            if not compact.isascii():
                return None  # raw bytes in base64 are no base64
            return binascii.a2b_base64(compact + "=" * (-len(compact) % 4))
        return binascii.a2b_qp(encoded.encode("utf-8", "surrogateescape"), header=True)
    except (binascii.Error, ValueError):
        return None
