"""Finding the desk's own words in a reply: quote by construction, whatever the client did.

Header patterns find most quotes, but a client can quote in a layout no
pattern knows: without ``>`` marks, flattened from HTML, re-wrapped to
another width, re-encoded.  The desk, however, knows every mail it sent on a
ticket: they are in the store.  A run of lines in a reply that reads as a
contiguous stretch of one of those mails is the desk's own text coming back,
wherever it stands, and no command in it is obeyed.

Lines are compared on a key that survives what clients do: NFKC, case
folded, zero-width characters, quote marks and all whitespace removed (so
re-wrapping at any width, in Chinese or English, still matches).  A single
short line is never enough: "#close" or "同意" typed by a person also occurs
in the desk's instructions.  A run counts when it spans at least two
non-blank lines and ``MIN_RUN_CHARS`` characters, or one long line.

Pure functions; cost is linear in the reply for each mail sent.
"""
from __future__ import annotations

import re
import unicodedata

MIN_RUN_CHARS = 24  # over at least two lines
MIN_LINE_CHARS = 48  # for a run of one line
MAX_LINES = 2000  # a reply longer than this is only checked this far

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_MARKS_AND_SPACE = re.compile(r"[\s>|]+")


def line_key(line: str) -> str:
    text = unicodedata.normalize("NFKC", line).translate(_INVISIBLE).casefold()
    return _MARKS_AND_SPACE.sub("", text)


def own_lines(text: str, sent_texts: list[str]) -> set[int]:
    """Indices of the lines of ``text`` that belong to a run copied from one of ``sent_texts``."""
    lines = text.split("\n")[:MAX_LINES]
    keys = [line_key(line) for line in lines]
    blobs = [line_key(t) for t in sent_texts if t]
    blobs = [b for b in blobs if b]
    found: set[int] = set()
    if not blobs:
        return found
    i = 0
    while i < len(keys):
        if not keys[i] or not any(keys[i] in b for b in blobs):
            i += 1
            continue
        # Extend the run while the joined keys stay one contiguous stretch of a single sent mail.
        best_end, best_count = i + 1, 1
        for blob in blobs:
            if keys[i] not in blob:
                continue
            joined, j, count = keys[i], i + 1, 1
            end = i + 1
            while j < len(keys):
                if not keys[j]:
                    j += 1
                    continue
                if joined + keys[j] not in blob:
                    break
                joined += keys[j]
                count += 1
                j += 1
                end = j
            if end > best_end:
                best_end, best_count = end, count
        run_chars = sum(len(k) for k in keys[i:best_end])
        if (best_count >= 2 and run_chars >= MIN_RUN_CHARS) or run_chars >= MIN_LINE_CHARS:
            found.update(range(i, best_end))
            i = best_end
        else:
            i += 1
    return found


def without_own_text(text: str, sent_texts: list[str]) -> str:
    """``text`` minus the runs copied from what the desk sent."""
    own = own_lines(text, sent_texts)
    if not own:
        return text
    return "\n".join(line for n, line in enumerate(text.split("\n")) if n not in own).strip("\n")


def lines_below_unproven_quotes(text: str, sent_texts: list[str], is_command) -> set[str]:
    """Command lines written below a ``>`` quote that is not the desk's own mail.

    Text under or between quoted lines is new (bottom-posting, inline
    answers), but a quote of some other mail can carry anything, unmarked
    continuation lines included.  A command there counts only when the quote
    just above it is proven to be the desk's own words.  Returns the
    stripped lines to leave unread.
    """
    unread: set[str] = set()
    block: list[str] = []
    proven: bool | None = None  # None: no quote above yet
    for line in text.split("\n")[:MAX_LINES]:
        if line.lstrip().startswith(">"):
            block.append(line.lstrip().lstrip(">"))
            continue
        if block:
            proven = bool(own_lines("\n".join(block), sent_texts))
            block = []
        if proven is False and is_command(line):
            unread.add(line.strip())
    return unread
