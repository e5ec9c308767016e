"""Ticket tags and reply prefixes in subjects.

Clients prepend "Re:", "回复：", "AW:", "Fwd:" ... in every language and
some nest them ("RE: 回复: Re[2]:"); the tag ``[TS-000042]`` may sit anywhere,
appear twice, or be removed by the customer.  These functions are pure.
"""
from __future__ import annotations

import re
from urllib.parse import quote, urlencode

# Reply and forward prefixes seen from common clients, English, Chinese
# (simplified and traditional), German, French, Dutch, Nordic, Spanish.
_PREFIXES = (
    "re", "fw", "fwd", "aw", "wg", "antw", "sv", "vs", "tr", "rv", "enc", "res", "r",
    "回复", "答复", "转发", "回覆", "轉寄", "转寄", "答覆", "回信",
)
_PREFIX_RE = re.compile(
    r"^\s*(?:" + "|".join(re.escape(p) for p in sorted(_PREFIXES, key=len, reverse=True)) +
    r")\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)


def tag_pattern(prefix: str) -> re.Pattern[str]:
    """``[TS-000042]`` (any case, any digit count, optional spaces inside the brackets)."""
    # Full-width brackets and digits come from Chinese input methods; \d matches
    # them and int() reads them, so the customer's own text is never normalised.
    return re.compile(r"[\[【［]\s*" + re.escape(prefix) + r"\s*[-－‐]\s*(\d{1,9})\s*[\]】］]", re.IGNORECASE)


def find_tags(subject: str, prefix: str) -> list[int]:
    """Ticket numbers tagged in a subject, in order of appearance, without repeats."""
    found: list[int] = []
    for m in tag_pattern(prefix).finditer(subject):
        number = int(m.group(1))
        if number not in found:
            found.append(number)
    return found


def strip_reply_prefixes(subject: str) -> str:
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX_RE.sub("", subject, count=1)
    return subject.strip()


def clean_subject(subject: str, prefix: str) -> str:
    """The subject as the customer meant it: no reply prefixes, no ticket tags."""
    text = tag_pattern(prefix).sub(" ", subject)
    text = strip_reply_prefixes(re.sub(r"\s+", " ", text).strip())
    # Prefixes may also follow a tag: "[TS-1] Re: Re: printer".
    return re.sub(r"\s+", " ", strip_reply_prefixes(text)).strip()


def tagged_subject(tag: str, subject: str) -> str:
    return f"[{tag}] {subject}".rstrip()


# RFC 6068: an addr-spec in a mailto: URI keeps "@" and the sub-delimiters; "%", "?", "#", "/"
# and the like in a local part are percent-encoded, or a client would read them as URI syntax.
_MAILTO_ADDRESS_SAFE = "@!$'()*+,;:=~"


def reply_link(address: str, subject: str, body: str | None = None) -> str:
    """A ``mailto:`` link that writes to ``address`` with ``subject`` (and ``body``) filled in.

    UTF-8 and percent-encoded as RFC 6068 asks, so a Chinese subject and its ticket tag reach
    the desk as they were.
    """
    fields = {"subject": subject} if body is None else {"subject": subject, "body": body}
    return f"mailto:{quote(address, safe=_MAILTO_ADDRESS_SAFE)}?{urlencode(fields, quote_via=quote, safe='')}"
