"""Reply-splitter benchmark: split_reply (and html_to_text) over every case of the public reply corpus.

    python bench/reply.py              # from the project root, or from anywhere
    python bench/reply.py --repeat 20

The corpus is ../shared/corpus/replies beside the project root (the one run.py scores).  Every case is
turned into the splitter's input as the workflow does it (.txt as is, .eml through parse_mail, .html
through html_to_text), then split_reply is timed on it; for the HTML cases html_to_text is timed too.
Each mail is timed ``--repeat`` times and its fastest run kept (the noise of a shared machine only ever
adds time).  Prints the number of cases and median / p95 / max per mail.  Nothing is asserted; without
the corpus it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "replies"
sys.path.insert(0, str(REPO))

from maildesk.parsers.html import html_to_text  # noqa: E402
from maildesk.parsers.mime import parse_mail  # noqa: E402
from maildesk.parsers.reply import split_reply  # noqa: E402


def fastest(function, argument, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - started)
    return best


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (f"{label:<14} {len(ms):>4} mails   median {statistics.median(ms):.3f} ms   p95 {p95:.3f} ms   "
            f"max {ms[-1]:.3f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="runs per mail; the fastest counts (default 10)")
    args = parser.parse_args()
    cases_file = CORPUS / "cases.json"
    if not cases_file.is_file():
        print(f"no reply corpus at {CORPUS}: nothing to time")
        return 0
    cases = [c for c in json.loads(cases_file.read_text(encoding="utf-8")) if not c.get("exclude")]
    split_times: list[float] = []
    html_times: list[float] = []
    for case in cases:
        raw = (CORPUS / case["file"]).read_bytes()
        if case["kind"] == "eml":
            text = parse_mail(raw).text
        elif case["kind"] == "html":
            html = raw.decode("utf-8", "replace")
            html_times.append(fastest(html_to_text, html, args.repeat))
            text = html_to_text(html)
        else:
            text = raw.decode("utf-8", "replace")
        split_times.append(fastest(split_reply, text, args.repeat))
    print(f"reply corpus {CORPUS}: {len(cases)} cases, fastest of {args.repeat} runs per mail")
    print(summary("split_reply", split_times))
    if html_times:
        print(summary("html_to_text", html_times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
