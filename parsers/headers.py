"""Header values as the helpdesk needs them: decoded, one line, typed.

Values are read raw (``Message.raw_items``) rather than through
``Message.get``: for a header holding raw 8-bit bytes the standard library
hands out a ``Header`` object whose text has the bytes replaced, and its
parameter helpers (``get_param``, ``get_filename``) re-parse the header on
every call in quadratic time.  Everything here is linear in the value.
"""
from __future__ import annotations

import inspect
import re
from datetime import datetime, timezone
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from maildesk.model import Address
from maildesk.parsers.charset import decode_8bit, decode_bytes, decode_encoded_words

# Longest Message-ID we accept (RFC 5322 line limit); longer ones are junk, not identity.
MAX_ID_LENGTH = 998

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_SPACES = re.compile(r" {2,}")
_LINE_BREAK = re.compile(r"\r?\n|\r")
_BRACKETED = re.compile(r"<([^<>]*)>")


class Headers:
    """Raw header values by lower-case name, in message order.

    ``hints`` are the charsets the mail declares (codec names, the body's first): the
    evidence for reading raw 8-bit bytes in its headers (see ``charset.decode_8bit``).
    """

    def __init__(self, msg: Message, hints: tuple[str, ...] = ()) -> None:
        self.hints = hints
        self._values: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            self._values.setdefault(str(name).strip().lower(), []).append(str(value))

    def all(self, name: str) -> list[str]:
        return self._values.get(name.lower(), [])

    def first(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        return values[0] if values else None

    def text(self, name: str) -> str:
        """The first value of ``name`` as one decoded line ("" when absent)."""
        value = self.first(name)
        return header_text(value, self.hints) if value is not None else ""


def header_text(value: str, hints: tuple[str, ...] = ()) -> str:
    """One line of text: raw 8-bit and RFC 2047 decoded, control characters made spaces."""
    text = decode_encoded_words(value, hints)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def unfold(value: str) -> str:
    """RFC 5322 unfolding: the line breaks go, the whitespace after them stays."""
    return _LINE_BREAK.sub("", decode_8bit(value)).strip()


# -- addresses ----------------------------------------------------------------------------

# CVE-2023-27043: the lenient parser reads ``alice@example.test <eve@evil.test>`` as two
# addresses, alice first, so an outsider could pass as staff.  Python 3.13 (and the security
# releases 3.12.6, 3.11.10) parse strictly and return ('', '') for a header they reject; older
# ones get the same rules from ``strict_getaddresses``.
STDLIB_STRICT = "strict" in inspect.signature(getaddresses).parameters


def parse_addresses(values: list[str], hints: tuple[str, ...] = ()) -> list[Address]:
    """The addresses of a header; none at all when the header is malformed in a way that
    could make it name someone other than the writer meant (``strict_getaddresses``).

    One exception to strictness names nobody else: a bare address as the display name
    of the very same mailbox (``bob@x.test <bob@x.test>``, or a cut-off copy of it, as
    some clients write when there is no name) is that mailbox.

    A header nested deeper than the standard library's parser can follow raises
    ``RecursionError``; callers read each header on its own so that one such header
    costs nothing but itself.
    """
    if not values:
        return []
    texts = [_CONTROL.sub(" ", decode_8bit(v, hints)) for v in values]
    found = _to_addresses(address_pairs(texts), hints)
    if not found and any("=?" in t for t in texts):
        # Some senders encode the whole "name <address>" as one encoded word.
        found = _to_addresses(address_pairs([_CONTROL.sub(" ", decode_encoded_words(t, hints)) for t in texts]),
                              hints)
    if not found:
        same = [_address_as_its_own_name(t) for t in texts]
        if all(same):
            found = [a for a in same if a]
    return found


# ``bob@x.test <bob@x.test>``: an unquoted display name that is (a prefix of) the address itself.
_ADDRESS_AS_NAME = re.compile(r"^\s*([^\s<>\"(),;:\\\[\]]+@[^\s<>\"(),;:\\\[\]]*)\s*<([^\s<>\"(),;:\\\[\]@]+@[^\s<>\"(),;:\\\[\]@]+)>\s*$")


def _address_as_its_own_name(text: str) -> Address | None:
    match = _ADDRESS_AS_NAME.match(text)
    if match is None:
        return None
    name, email = match.group(1).lower(), match.group(2).lower()
    # Only the same mailbox: "alice@a.test <eve@b.test>" stays unreadable (CVE-2023-27043), and so
    # does a whole domain shown in front of a longer one ("alice@a.test <alice@a.test.evil.test>").
    if len(name) < len(email) // 2 or not email.startswith(name) or len(email) > 320 \
            or email[len(name):len(name) + 1] == ".":
        return None
    return Address(email, "")


def stdlib_strict_getaddresses(values: list[str]) -> list[tuple[str, str]]:
    return getaddresses(values, strict=True)


def strict_getaddresses(values: list[str]) -> list[tuple[str, str]]:
    """``getaddresses(values, strict=True)`` of the Pythons that have it, for those that don't.

    The same rules as CPython's fix (gh-102988), so that a header reads the same on every
    Python: values whose comments do not balance, or that parse into more or fewer addresses
    than they have commas outside quoted strings plus one, yield ``[('', '')]`` as a whole;
    an address holding ``[`` (a domain literal, or the remains of a failed parse) becomes
    ``('', '')``.  The forms that fool the lenient parser all fail the count:
    ``alice@a.test <eve@b.test>``, ``"Alice" <alice@a.test>eve@b.test``,
    ``Alice <alice@a.test> <eve@b.test>``, ``alice@a.test;<eve@b.test>``.
    """
    values = [str(v) for v in values]
    if not all(_comments_balance(v) for v in values):
        return [("", "")]
    pairs = [("", "") if "[" in address else (name, address) for name, address in _lenient_getaddresses(values)]
    # A comma in a quoted display name ("Wang, Alice") separates nothing.
    expected = sum(1 + _outside_quoted_strings(v).count(",") for v in values)
    return pairs if len(pairs) == expected else [("", "")]


def _lenient_getaddresses(values: list[str]) -> list[tuple[str, str]]:
    return getaddresses(values, strict=False) if STDLIB_STRICT else getaddresses(values)


def _outside_quoted_strings(text: str) -> str:
    """``text`` without its "quoted strings" (an unterminated one is kept, as CPython does)."""
    kept = []
    start, opened, escaped = 0, None, False
    for pos, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if opened is None:
                opened = pos
            else:
                kept.append(text[start:opened])
                start, opened = pos + 1, None
    kept.append(text[start:])
    return "".join(kept)


def _comments_balance(text: str) -> bool:
    depth, escaped = 0, False
    for char in _outside_quoted_strings(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def first_address(values: list[str], hints: tuple[str, ...] = ()) -> Address | None:
    found = parse_addresses(values, hints)
    return found[0] if found else None


# How parse_addresses reads a header: the standard library's strict mode where it has one.
address_pairs = stdlib_strict_getaddresses if STDLIB_STRICT else strict_getaddresses


def _to_addresses(pairs: list[tuple[str, str]], hints: tuple[str, ...] = ()) -> list[Address]:
    found = []
    for name, email in pairs:
        email = email.strip().strip("<>").lower()
        if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
            continue
        found.append(Address(email, header_text(name, hints)))
    return found


def parse_return_path(values: list[str]) -> str | None:
    """The bare Return-Path address; "" for the null sender ``<>``; None when absent."""
    if not values:
        return None
    text = "".join(header_text(values[0]).split())
    if text.startswith("<"):
        end = text.find(">")
        text = text[1:end] if end != -1 else text[1:]
    return text.lower()


# -- message ids --------------------------------------------------------------------------

def message_ids(values: list[str]) -> list[str]:
    """``<...>`` ids in header order, whitespace removed, without repeats."""
    ids: list[str] = []
    for value in values:
        text = decode_8bit(value)
        found = ["".join(inner.split()) for inner in _BRACKETED.findall(text)]
        if not any(found):
            # Broken clients write the id without brackets.
            found = [token.strip("<>,;") for token in text.split() if "@" in token and token[0] != "("]
        ids.extend(f"<{i}>" for i in found if i and len(i) <= MAX_ID_LENGTH)
    return list(dict.fromkeys(ids))


def message_id(value: str | None) -> str | None:
    if value is None:
        return None
    ids = message_ids([value])
    return ids[0] if ids else None


# -- dates --------------------------------------------------------------------------------

def parse_date(value: str | None) -> datetime | None:
    """An aware datetime; a date without zone (or "-0000") is taken as UTC."""
    if value is None:
        return None
    text = header_text(value)
    if not text or len(text) > 200:
        return None
    try:
        when = parsedate_to_datetime(text)
    except Exception:  # noqa: BLE001 - TypeError/ValueError/OverflowError on junk dates
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


# -- MIME parameters ----------------------------------------------------------------------

_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:\\.|[^"\\])*"?|[^;]*)', re.S)
_SECTION = re.compile(r"^(.+?)\*(\d{1,3})?(\*)?$")
# Only \\ and \" are unescaped, as email.utils.unquote does: clients write Windows
# paths into quoted file names without doubling the backslashes.
_ESCAPE = re.compile(r'\\([\\"])')


def split_params(value: str, hints: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """A MIME header's main value (lower case) and its parameters, RFC 2231 resolved.

    ``filename*=utf-8''%E7%BD%91.pdf`` and continuations (``name*0*=``,
    ``name*1*=``) are decoded with the charset rules of ``parsers.charset``;
    an extended parameter wins over a plain one of the same name.
    """
    value = decode_8bit(value, hints)
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[bool, str]]] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"'):
            raw = _ESCAPE.sub(r"\1", raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:])
        extended = _SECTION.match(name)
        if extended and "*" in name:
            base, index, star = extended.groups()
            number = int(index) if index is not None else 0
            encoded = star is not None or index is None
            sections.setdefault(base, {}).setdefault(number, (encoded, raw))
        else:
            params.setdefault(name, raw)
    for base, parts in sections.items():
        params[base] = _join_sections(parts)
    return main.strip().lower(), params


def _join_sections(parts: dict[int, tuple[bool, str]]) -> str:
    charset = None
    data = bytearray()
    order = sorted(parts)
    for number in order:
        encoded, raw = parts[number]
        if encoded:
            if number == order[0] and raw.count("'") >= 2:
                charset, _, raw = raw.split("'", 2)
            data += unquote_to_bytes(raw)
        else:
            data += raw.encode("utf-8", "surrogateescape")
    return decode_bytes(bytes(data), charset or None)[0]


def mime_header(msg: Message, name: str, hints: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """``split_params`` of the part's own header ``name`` ("" and {} when absent)."""
    name = name.lower()
    for key, value in msg.raw_items():
        if str(key).lower() == name:
            return split_params(str(value), hints)
    return "", {}
