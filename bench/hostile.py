"""Hostile input benchmark: what the worst-shaped mails cost, and that the cost grows linearly.

    python bench/hostile.py

Each input is built at size n and 2n; the time of each (fastest of three runs) and their ratio are
printed.  A ratio near 2 means linear growth, near 4 quadratic.  Nothing is asserted (the test suite
checks what these inputs are read as; how long that takes is measured here).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maildesk.parsers.html import html_to_text  # noqa: E402
from maildesk.parsers.mime import parse_mail  # noqa: E402
from maildesk.parsers.reply import split_reply  # noqa: E402

HEAD = b"From: Customer <customer@example.org>\r\nTo: support@example.com\r\nSubject: x\r\n"


def _mail(body: bytes, content_type: str = "text/plain; charset=utf-8", extra: bytes = b"") -> bytes:
    return HEAD + extra + b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body


# name -> (what is measured, input built for a size factor k)
CASES = {
    "html '</' repeated": (html_to_text, lambda k: "</" * 50_000 * k),
    "html '<?' repeated": (html_to_text, lambda k: "<?" * 50_000 * k),
    "html '<!' repeated": (html_to_text, lambda k: "<!" * 50_000 * k),
    "html '<' repeated": (html_to_text, lambda k: "<" * 100_000 * k),
    "html open anchors": (html_to_text, lambda k: "<a href=x>y" * 10_000 * k),
    "html open comments": (html_to_text, lambda k: "<!--" * 25_000 * k),
    "html '&#' repeated": (html_to_text, lambda k: "&#" * 50_000 * k),
    "mail one long line": (parse_mail, lambda k: _mail(b"x" * 100_000 * k)),
    "mail deep multipart nesting": (parse_mail, lambda k: _mail(
        b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                 for i in range(1500 * k)) + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % (1500 * k),
        "multipart/mixed; boundary=b0")),
    "mail many parts": (parse_mail, lambda k: _mail(
        b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(1500 * k)) + b"--b--\r\n",
        "multipart/mixed; boundary=b")),
    "mail many encoded words": (parse_mail, lambda k: HEAD.replace(b"Subject: x", b"Subject: " +
                                                                   b"=?utf-8?q?ab?= " * 15_000 * k) + b"\r\nx"),
    "reply many '>' lines": (lambda t: split_reply(t), lambda k: "new\n" + "> quoted line\n" * 20_000 * k),
    "reply many attribution-like lines": (lambda t: split_reply(t),
                                          lambda k: "On 2016-03-03 17:21 Some One <\n" * 5_000 * k),
}


def fastest(run, value, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(value)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    print(f"{'input':36} {'n (ms)':>10} {'2n (ms)':>10} {'ratio':>7}")
    for name, (run, build) in CASES.items():
        one, two = fastest(run, build(1)), fastest(run, build(2))
        print(f"{name:36} {one * 1000:10.1f} {two * 1000:10.1f} {two / one if one else 0:7.2f}")
    print("ratio 2n/n: about 2 is linear growth, about 4 would be quadratic")


if __name__ == "__main__":
    main()
