"""Text from mail made safe to show on a terminal, in a log file or in JSON.

Subjects, names, bodies and Message-IDs are written by strangers.  Printed
raw, an ESC or CSI sequence (``\\x1b]0;...\\x07``, ``\\x1b[2J``, the one-byte
C1 form ``\\x9b``) retitles or clears the operator's terminal, a carriage
return overwrites the line already shown, and bidi overrides (U+202E and
friends) reorder what is read, as in "Trojan Source" (CVE-2021-42574).  Such
characters are written as visible escapes instead (``\\x1b``, ``\\u202e``),
so the operator sees that they were there; every other character, CJK
included, is left as it is.
"""
from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Mapping

# The bidi embeddings, overrides, isolates and marks; the Unicode line and paragraph
# separators (line breaks to some viewers).
_BIDI_AND_SEPARATORS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
# Those, C0 controls, DEL and C1 controls, and lone surrogates (no terminal or UTF-8 file takes them).
_UNSAFE = rf"\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}\ud800-\udfff"
_UNSAFE_ONE_LINE = re.compile(f"[{_UNSAFE}]")
# In multi-line text (message bodies, tracebacks) newlines and tabs are layout, not attacks.
_UNSAFE_MULTI_LINE = re.compile(f"(?![\n\t])[{_UNSAFE}]")
# A JSON writer has already escaped C0 controls, quotes and backslashes; what it leaves raw
# (DEL, C1, bidi, separators) can only stand inside a string literal, where \uXXXX is valid.
_UNSAFE_IN_JSON = re.compile(rf"[\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(text: str) -> str:
    """``text`` as one line of printable text: every control (newlines too) visibly escaped."""
    return _UNSAFE_ONE_LINE.sub(_escape, text)


def multi_line(text: str) -> str:
    """Like ``one_line`` but newlines and tabs stay; a CRLF is a newline, a lone CR is escaped."""
    return _UNSAFE_MULTI_LINE.sub(_escape, text.replace("\r\n", "\n"))


def json_safe(encoded: bytes) -> bytes:
    """UTF-8 JSON with DEL, C1 controls and bidi controls written as ``\\uXXXX`` escapes.

    JSON writers escape C0 controls but pass these through raw (``orjson``, and
    ``json.dumps(ensure_ascii=False)``); readable text such as Chinese stays as it is.
    """
    text = encoded.decode("utf-8")
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


class EscapingFilter(logging.Filter):
    """Escapes the arguments of every log record, so mail data cannot forge or break log lines.

    Log calls put mail data (Message-IDs, addresses, subjects, reasons) into the
    arguments, never into the format string, which is the program's own and may
    hold a deliberate newline.  A traceback that the formatter appends for
    ``exc_info`` keeps its lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: _safe_arg(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_safe_arg(value) for value in record.args)
        if not isinstance(record.msg, str):  # e.g. log.error(exc): the message is data
            record.msg = one_line(str(record.msg))
        return True


def _safe_arg(value):
    # Numbers stay numbers so that %d and %.1f still format them.
    if isinstance(value, numbers.Number):
        return value
    return one_line(value if isinstance(value, str) else str(value))
