"""Separating what a person just wrote from what their client quoted.

Commands and ratings are read only from the new text: our own mails mention
the keywords (``#resolve``, "reply 同意"), so a quoted template must never
trigger anything, and a reply written below or between quoted lines must
still count.

Clients quote in two ways, and the splitter tells them apart:

* prefixed: every quoted line starts with ``>`` (Gmail, Apple Mail,
  Thunderbird, and HTML mails once ``html_to_text`` has marked their quote
  containers).  The quoted lines and the attribution above them ("On … wrote:",
  "Am … schrieb …:", "… 于…写道：") are quote; text after or between such
  blocks is new (bottom-posting, inline answers).
* bare: a quote header, then the old mail as it was (Outlook's "From:/Sent:"
  block in any language, "-----Original Message-----", "原始邮件", an
  attribution followed by unprefixed text, HTML flattened without marks).
  Nothing tells the old text from new text below it, so everything from the
  header on is quote.

The words of those headers (field names, verbs, separator phrases, device
signatures) live in ``quote_vocabulary``; this module only knows layouts.
A ``>`` line is taken for a quote unless it reads as part of the sentence
around it (``>= 5 users``, ``> 50%``, or a lone ``>`` line inside a paragraph
of a mail that quotes nothing else): a quote comes in blocks, or below an
attribution.

The signature starts at the "-- " delimiter or at a whole-line device phrase
("Sent from my iPhone", "发自我的iPhone"); a rule after a quoted block starts a
list footer.  Pure functions, linear in the number of lines.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from maildesk.parsers import quote_vocabulary as vocab


@dataclass(frozen=True)
class ReplyParts:
    new: str  # what the sender wrote now, without signature
    quoted: str  # quote headers, quoted lines, and everything below a bare quote header
    signature: str


# -- patterns compiled from the vocabulary -------------------------------------------------

def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces, where a word boundary cannot be asked for."""
    code = ord(ch)
    return (0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF
            or 0x3040 <= code <= 0x30FF or 0x1100 <= code <= 0x11FF)


def _phrase(text: str) -> str:
    """A vocabulary phrase as a pattern: escaped, any run of spaces, word-bounded where the script has words."""
    text = unicodedata.normalize("NFKC", text)
    body = r"\s+".join(re.escape(word) for word in text.split())
    if text[:1].isalnum() and not _is_cjk(text[0]):
        body = r"(?<![^\W_])" + body
    if text[-1:].isalnum() and not _is_cjk(text[-1]):
        body += r"(?![^\W_])"
    return body


def _alternation(phrases) -> str:
    unique = sorted({unicodedata.normalize("NFKC", p) for p in phrases}, key=len, reverse=True)
    return "(?:" + "|".join(_phrase(p) for p in unique) + ")"


def _field_roles() -> dict[str, str]:
    roles: dict[str, str] = {}
    for fields in vocab.HEADER_FIELDS.values():
        for role, names in fields.items():
            for name in names:
                roles.setdefault(_casefold(name), role)
    return roles


def _casefold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_ROLE_OF_FIELD = _field_roles()
_FIELD_NAMES = _alternation(n for fields in vocab.HEADER_FIELDS.values() for names in fields.values() for n in names)
# "From: x", "*From:* x", "De : x", "发件人：x" (NFKC made the colon ASCII)
_FIELD = re.compile(rf"^[*_]*\s*(?P<name>{_FIELD_NAMES})\s*[*_]*\s*:(?!//)", re.IGNORECASE)
# how far into a line the colon of a field can be: the longest name, bold marks and spaces
_FIELD_REACH = max(len(n) for fields in vocab.HEADER_FIELDS.values() for names in fields.values() for n in names) + 8
# the same labels anywhere in a line, for Outlook blocks flattened onto one line
_FIELD_INLINE = re.compile(rf"(?:^|(?<=[\s*_]))(?P<name>{_FIELD_NAMES})\s*[*_]*\s*:(?!//)", re.IGNORECASE)

_VERB_ENDINGS = tuple(sorted({_casefold(v) for verbs in vocab.ATTRIBUTION_VERBS.values() for v in verbs},
                             key=len, reverse=True))
_OPENER = re.compile(rf"^{_alternation(o for openers in vocab.ATTRIBUTION_OPENERS.values() for o in openers)}",
                     re.IGNORECASE)

_DECORATION = "-_=*~"
_SEPARATOR = re.compile(
    rf"^[\s{re.escape(_DECORATION)}\[\]]*{_alternation(s for seps in vocab.SEPARATORS.values() for s in seps)}"
    rf"[\s{re.escape(_DECORATION)}\[\]:]*$", re.IGNORECASE)


def prepare() -> None:
    """Build now what is otherwise built at its first use (the daemon does, at start, not at a mail)."""
    _device_pattern()


@functools.cache
def _device_pattern() -> re.Pattern[str]:
    """A whole line that is one of the device phrases, "{device}" standing for a known device and model.

    Built at its first use, not at import: every device name pasted into every phrase makes a
    48 KB pattern, about 0.15 s of compiling that a process reading no replies need not pay."""
    # No word boundaries around the device ("发自我的iPhone", "iPhoneから送信"): the line is matched whole anyway.
    names = sorted({unicodedata.normalize("NFKC", d) for d in vocab.DEVICES}, key=len, reverse=True)
    device = (r"\s*(?:" + "|".join(r"\s+".join(map(re.escape, d.split())) for d in names) + r")"
              r"(?:\s+[\w+'-]{1,15}){0,4}\s*")  # "iPhone 15 Pro", "Wiko RIDGE FAB 4G"
    alternatives = {device.join(_phrase(part.strip()) for part in phrase.split("{device}"))
                    for phrases in vocab.DEVICE_SIGNATURES.values() for phrase in phrases}
    return re.compile(r"^(?:" + "|".join(sorted(alternatives, key=len, reverse=True)) + r")\s*[.!]?$", re.IGNORECASE)

# The first two characters a device phrase can start with: most lines are ruled out without the regex.
_DEVICE_STARTS = frozenset(
    _casefold(start)[:2]
    for phrases in vocab.DEVICE_SIGNATURES.values() for phrase in phrases
    for start in ([phrase] if not phrase.startswith("{device}") else
                  [device + phrase[len("{device}"):] for device in vocab.DEVICES]))

# -- layout patterns (language-independent) --------------------------------------------------

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                                     "\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"), None)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'"})
_QUOTE_MARK = re.compile(r"^\s*(?:>|[A-Z]{1,3}>(?=\s|$))")
# ">= 5 users", "> 50%", ">5ms": a comparison written in the new text, not a quote mark.
# A quoted numbered list ("> 2. Restart") is still a quote.
_COMPARISON = re.compile(r"^\s*(?:>=|=>|>\s*[-+]?\d+(?:[.,]\d+)?(?![.)]\s)(?:\s*(?:%|[^\W\d_]|$)))")
_RULE = re.compile(r"^[\s_=~*-]*$")
_SIG_DELIMITER = re.compile(r"^(?:--|—|–)$")
_TRAILING_LINK = re.compile(r"\s*(?:<[^<>\s]+>|\([^()\s]+\))$")
_DIGIT = re.compile(r"\d")
_ANGLE_ADDRESS = re.compile(r"<[^<>\s]*@")
_ADDRESS_AT_END = re.compile(r"<[^<>]*@[^<>]*>\s*:$")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_CLOCK = re.compile(r"(?<!\d)\d{1,2}[:.h]\d{2}(?!\d)")
_NUMERIC_DATE = re.compile(r"(?<!\d)\d{1,4}[-/.]\s?\d{1,2}[-/.]\s?\d{1,4}(?!\d)")
# Old Gmail: "2013/7/20 Name <addr>" and "2016-03-03 17:21 GMT+01:00 Name <addr>:", colon optional.
_OLD_GMAIL = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b.*(?:GMT[+-]\d|<[^<>\s]+@[^<>\s]+>:?$)")

_MAX_ATTRIBUTION = 300  # characters of an attribution joined from its lines
_MAX_BARE_ATTRIBUTION = 80  # characters of "Name wrote:" without a date or address
_ATTRIBUTION_LINES = 4  # non-blank lines an attribution may be wrapped over
_ATTRIBUTION_SPAN = 6  # physical lines (blank ones included) it may span
_MAX_SEPARATOR = 120  # characters of a separator line, its rules included
_MAX_HEADER_LINES = 24  # lines of a "From:/Sent:/To:/Cc:/Subject:" block, wrapped values included
_WRAP_WIDTH = 50  # a quoted line this long may have been wrapped by a client that lost the '>'


def _key(line: str) -> str:
    """A line as compared: NFKC, no zero-width or direction marks, plain apostrophes, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", line).translate(_ZERO_WIDTH).translate(_APOSTROPHES).split())


def _undecorated(key: str) -> str:
    """Without the rules and bold marks around a header ("---- On … wrote ----", "- Le … a écrit :")."""
    return key.strip(_DECORATION + " ")


# -- the splitter ------------------------------------------------------------------------------

NEW, BLANK, QUOTE, SIGNATURE = "new", "blank", "quote", "signature"


def split_reply(text: str) -> ReplyParts:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    roles, cut = _Classifier(lines).run()
    new_lines: list[str | None] = []
    quote_lines: list[str] = []
    signature: list[str] = []
    for line, role in zip(lines[:cut], roles):
        if role == QUOTE:
            quote_lines.append(line)
            new_lines.append(None)  # where a quote was taken out
        elif role == SIGNATURE:
            signature.append(line)
        elif role == BLANK:
            (signature if signature else new_lines).append(line)
        else:
            new_lines.append(line)
    return ReplyParts(
        new=_join_new(new_lines),
        quoted="\n".join(quote_lines + lines[cut:]).strip("\n"),
        signature="\n".join(signature).strip("\n"),
    )


def quote_header_end(lines: list[str]) -> int:
    """How many of these lines (the top of a quoted mail) are its header: an attribution ("On … wrote:"),
    a separator ("Begin forwarded message:") and/or a "From:/Sent:" block; 0 when there is none.

    ``html_to_text`` leaves these lines unprefixed above the ``> `` lines of a quote container, as a text
    client writes them."""
    classifier = _Classifier(lines)
    first = classifier._next_nonblank(0)
    if first is None:
        return 0
    end = classifier._header_at(first)
    return end if end is not None else 0


def _join_new(lines: list[str | None]) -> str:
    """The new lines; where a quote was taken out, the blank lines around it become one."""
    out: list[str] = []
    gap = False  # blank lines or a removed quote since the last text line
    removed = False
    blanks: list[str] = []
    for line in lines:
        if line is None:
            removed = True
            gap = True
        elif not line.strip():
            blanks.append(line)
            gap = True
        else:
            if out and gap:
                out.extend([""] if removed or not blanks else blanks)
            out.append(line)
            gap, removed, blanks = False, False, []
    return "\n".join(out).strip("\n").rstrip()


class _Classifier:
    """One pass over the lines: a role per line up to the cut, where a bare quote starts."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.keys = [_key(line) for line in lines]
        self.n = len(lines)
        self.marked = [bool(_QUOTE_MARK.match(line)) for line in lines]
        self.may_end: list[bool | None] = [None] * self.n  # memo of _may_end_attribution
        self.field_roles: list[str | None | bool] = [False] * self.n  # memo of _field_role (False: not yet)
        self.block_end = self._quote_blocks()
        self.block_count = sum(1 for i in range(self.n) if self.marked[i] and (i == 0 or not self.marked[i - 1]))

    # -- quote blocks ----------------------------------------------------------------------

    def _quote_blocks(self) -> list[int]:
        """For every '>' line, the end (exclusive) of the run of consecutive '>' lines it belongs to."""
        ends = [0] * self.n
        i = self.n - 1
        while i >= 0:
            ends[i] = (ends[i + 1] if i + 1 < self.n and self.marked[i + 1] else i + 1) if self.marked[i] else 0
            i -= 1
        return ends

    def _block_is_quote(self, start: int, end: int, after_header: bool) -> bool:
        """Is this run of '>' lines a quote, or new text that happens to start with '>'?"""
        if after_header:
            return True
        if all(_COMPARISON.match(line) for line in self.lines[start:end]):
            return False
        if end - start > 1:
            return True
        # One '>' line: new text only inside a paragraph of a mail that quotes nothing else.
        inside_paragraph = (start > 0 and self.keys[start - 1] and not self.marked[start - 1]
                            and end < self.n and self.keys[end] and not self.marked[end])
        return not (inside_paragraph and self.block_count == 1)

    def _rewrapped(self, i: int) -> bool:
        """An unprefixed line between two '>' lines, right after a long one: a client re-wrapped the quote."""
        return (0 < i < self.n - 1 and self.marked[i - 1] and self.marked[i + 1] and bool(self.keys[i])
                and len(self.keys[i - 1]) >= _WRAP_WIDTH)

    # -- the pass ----------------------------------------------------------------------------

    def run(self) -> tuple[list[str], int]:
        roles: list[str] = []
        in_signature = False
        last_text_role = None  # role of the last non-blank line
        after_header = False
        i = 0
        while i < self.n:
            key = self.keys[i]
            if not key:
                roles.append(BLANK)
                i += 1
                continue
            if self.marked[i]:
                end = self.block_end[i]
                if self._block_is_quote(i, end, after_header):
                    roles.extend([QUOTE] * (end - i))
                    i = end
                    # lines a client re-wrapped without '>' and the '>' lines after them
                    while i < self.n and self._rewrapped(i):
                        end = self.block_end[i + 1]
                        roles.extend([QUOTE] * (end - i))
                        i = end
                    last_text_role = QUOTE
                    after_header = False
                    continue
            after_header = False
            header_end = self._header_at(i)
            if header_end is not None:
                following = self._next_nonblank(header_end)
                if following is not None and self.marked[following]:
                    roles.extend([QUOTE] * (header_end - i))
                    i = header_end
                    after_header = True
                    last_text_role = QUOTE
                    continue
                return roles, i
            if in_signature or self._signature_starts(i, last_text_role):
                in_signature = True
                roles.append(SIGNATURE)
            else:
                roles.append(NEW)
            last_text_role = roles[-1]
            i += 1
        return roles, self.n

    def _next_nonblank(self, i: int) -> int | None:
        while i < self.n:
            if self.keys[i]:
                return i
            i += 1
        return None

    def _signature_starts(self, i: int, last_text_role: str | None) -> bool:
        key = self.keys[i]
        if _SIG_DELIMITER.match(key):
            return True
        if last_text_role == QUOTE and _RULE.match(key) and len(key) >= 2:
            return True  # a rule below a quoted block: the list footer of the quoted mail
        if len(key) <= 80 and key[:2].casefold() in _DEVICE_STARTS \
                and _device_pattern().match(_TRAILING_LINK.sub("", key)):
            return True
        return False

    # -- quote headers -----------------------------------------------------------------------

    def _header_at(self, i: int) -> int | None:
        """End (exclusive) of a quote header starting at line i, or None."""
        key = self.keys[i]
        if self.marked[i]:
            return None
        decorated = key[0] in _DECORATION or key[-1] in _DECORATION
        if (decorated or key.endswith(":")) and len(key) <= _MAX_SEPARATOR and _SEPARATOR.match(key) \
                and (sum(key.count(c) for c in _DECORATION) >= 2 or key.endswith(":")):
            return self._after_fields(i + 1)
        if _RULE.match(key) and len(key) >= 3:
            # "____" / "-----" / "====": only as the top of a header (a table rule stays text)
            following = self._next_nonblank(i + 1)
            if following is not None and following - i <= 2 and not _RULE.match(self.keys[following]):
                end = self._header_at(following)
                if end is not None:
                    return end
                if self._field_role(following) == vocab.FROM:
                    return self._after_fields(following)
            return None
        if self._field_role(i) is not None:
            end = self._field_block(i)
            if end is not None:
                return end
        return self._attribution_at(i)

    def _field_role(self, i: int) -> str | None:
        """The role of the header field line i starts with ("from", "date" …), "" for an unknown one, or None."""
        role = self.field_roles[i]
        if role is False:
            key = self.keys[i]
            match = _FIELD.match(key) if ":" in key[:_FIELD_REACH] and not self.marked[i] else None
            role = self.field_roles[i] = _ROLE_OF_FIELD.get(_casefold(match.group("name")), "") if match else None
        return role

    def _field_block(self, i: int) -> int | None:
        """End of a "From:/Sent:/To:/Subject:" block starting at i: a sender and a date field, or three kinds
        of field one of which is either, so "From: room 301 / To: room 405" in a mail stays text."""
        roles: set[str] = set()
        fields = 0
        continuation = 0
        j = i
        while j < self.n and j - i < _MAX_HEADER_LINES and self.keys[j] and not self.marked[j]:
            role = self._field_role(j)
            if role is not None:
                roles.add(role)
                fields += 1
                continuation = 0
            elif continuation < 2:
                continuation += 1  # a wrapped value: "From: Name" / "<long-address@example.com>"
            else:
                break
            j += 1
        if fields == 1:
            # Outlook's block flattened onto one line: "From: x Sent: y To: z Subject: w"
            inline = {_ROLE_OF_FIELD.get(_casefold(m.group("name")), "")
                      for m in _FIELD_INLINE.finditer(self.keys[i])}
            if len(inline) >= 3 and vocab.FROM in inline:
                return i + 1
            return None
        if {vocab.FROM, vocab.DATE} <= roles or (len(roles - {""}) >= 3 and roles & {vocab.FROM, vocab.DATE}):
            return j - continuation  # trailing unlabelled lines are the quoted body, not wrapped values
        return None

    def _after_fields(self, i: int) -> int:
        """Past the header fields that follow a separator line, if any."""
        following = self._next_nonblank(i)
        if following is not None and following - i <= 1 and self._field_role(following) is not None:
            end = self._field_block(following)
            if end is not None:
                return end
            j = following
            while j < self.n and j - following < _MAX_HEADER_LINES and self._field_role(j) is not None:
                j += 1
            return j
        return i

    def _attribution_at(self, i: int) -> int | None:
        """End of an attribution line ("On … wrote:") starting at line i, wrapped over up to 4 lines."""
        key = _undecorated(self.keys[i])
        if len(key) <= _MAX_BARE_ATTRIBUTION and key.endswith(":") and _ends_with_verb(key):
            # "Bob Smith wrote:" with neither date nor address: an attribution only right above a '>' quote
            following = self._next_nonblank(i + 1)
            if following is not None and self.marked[following]:
                return i + 1
        if not self._may_start_attribution(i):
            return None
        if _OLD_GMAIL.match(_undecorated(self.keys[i])):
            return i + 1
        nonblank = 0
        for j in range(i, min(self.n, i + _ATTRIBUTION_SPAN)):
            if not self.keys[j]:
                continue
            if len(self.keys[j]) > _MAX_ATTRIBUTION:
                break
            if self.marked[j] and not (j > i and self._open_angle(i, j)):
                break  # a '>' line ends it, unless it closes a wrapped "<address"
            nonblank += 1
            if nonblank > _ATTRIBUTION_LINES:
                break
            if not self._may_end_attribution(j):
                continue
            joined = self._joined(i, j + 1)
            if not _is_attribution(joined):
                continue
            if self._later_start(i, j) is not None:
                return None  # the attribution starts below line i: line i is text
            return j + 1
        return None

    def _joined(self, start: int, end: int) -> str:
        """Lines start..end-1 as one attribution line (a '>' closing a wrapped "<address" loses its mark)."""
        parts = []
        for k in range(start, end):
            key = self.keys[k]
            if key:
                parts.append(key[1:].strip() if self.marked[k] else key)
        return _undecorated(" ".join(parts))

    def _open_angle(self, start: int, end: int) -> bool:
        """Is an "<address" opened in lines start..end-1 still unclosed?"""
        joined = " ".join(self.keys[start:end])
        return joined.count("<") > joined.count(">")

    def _may_start_attribution(self, i: int) -> bool:
        key = _undecorated(self.keys[i])
        if not key or key[0] in "<([":
            return False
        return bool(_DIGIT.search(key, 0, 40) or "@" in key or "<" in key or _OPENER.match(key))

    def _may_end_attribution(self, j: int) -> bool:
        known = self.may_end[j]
        if known is None:
            key = _undecorated(self.keys[j])
            known = self.may_end[j] = key.endswith(":") or _ends_with_verb(key)
        return known

    def _later_start(self, i: int, j: int) -> int | None:
        """A line below i where the attribution ending at j starts on its own, not joined to the line above."""
        candidate = None
        for k in range(i + 1, j + 1):
            if self.keys[k] and self._may_start_attribution(k) and _is_attribution(self._joined(k, j + 1)):
                candidate = k
        if candidate is None:
            return None
        start = candidate
        while start > i:
            above = start - 1
            while above > i and not self.keys[above]:
                above -= 1
            if not self._continues(above, start):
                return start
            start = above
        return None

    def _continues(self, above: int, below: int) -> bool:
        """Does line `below` continue the attribution begun on line `above` (a wrapped line)?"""
        upper, lower = _undecorated(self.keys[above]), _undecorated(self.keys[below])
        if not upper:
            return False
        if upper[-1] in "<(,\"'" or upper.count("<") > upper.count(">"):
            return True
        return bool(_OPENER.match(upper)) or lower[:1].islower()


def _ends_with_verb(text: str) -> bool:
    """Does the line end with an attribution verb ("… wrote", "… a écrit :", "…写道：")?"""
    # str.endswith over the verbs, not a regex search: searching a long line would try the whole
    # alternation of verbs at every character.
    tail = text.rstrip(" :").casefold()
    if not tail.endswith(_VERB_ENDINGS):
        return False
    for verb in _VERB_ENDINGS:
        if tail.endswith(verb):
            before = tail[-len(verb) - 1:-len(verb)]
            if not (before.isalnum() and verb[0].isalnum() and not _is_cjk(verb[0])):
                return True
    return False


def _contains_verb(text: str) -> bool:
    """Is an attribution verb anywhere in the text ("Name <addr> schrieb am …:")?"""
    folded = text.casefold()
    for verb in _VERB_ENDINGS:
        start = folded.find(verb)
        while start >= 0:
            end = start + len(verb)
            bounded = not verb[0].isalnum() or _is_cjk(verb[0]) or not folded[start - 1:start].isalnum()
            bounded = bounded and (not verb[-1].isalnum() or _is_cjk(verb[-1]) or not folded[end:end + 1].isalnum())
            if bounded:
                return True
            start = folded.find(verb, start + 1)
    return False


def _is_attribution(text: str) -> bool:
    """Is this (joined) line an attribution: "On <date>, <name> wrote:" and its kin in other languages?

    A verb alone is not enough ("I tried the 2 steps as you wrote:" is text): the line must also carry a
    date or time, the sender's address, or open like an attribution ("On", "Am", "Le" …) with a number."""
    if not text or len(text) > _MAX_ATTRIBUTION:
        return False
    dated = bool(_CLOCK.search(text) or _NUMERIC_DATE.search(text) or _YEAR.search(text))
    addressed = "@" in text
    if _ends_with_verb(text):
        return dated or addressed or bool(_OPENER.match(text) and _DIGIT.search(text))
    if not text.endswith(":"):
        return False
    # The verb inside the line ("Am 25.06.2015 um 10:55 schrieb Test user:", "Name <addr> schrieb am Di.,
    # 16. Aug. 2016 um 12:52 Uhr:"): only with a time or date, and an opener or an <address>, so that
    # "On Monday I wrote 3 tickets:" stays text.
    if dated and (_OPENER.match(text) or _ANGLE_ADDRESS.search(text)) and _contains_verb(text):
        return True
    # verbless, a date and the sender's address at the end: "24.11.2017, 16:32, "Name" <addr>:",
    # "2017-11-24 16:32 GMT+01:00 Name <addr>:", "Thu, 26 Jun 2014 14:00:51 +0400 от Name <addr>:"
    return dated and bool(_ADDRESS_AT_END.search(text)) and not _FIELD.match(text)
