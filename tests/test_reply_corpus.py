"""The reply splitter against the public reply corpus, scored by the corpus's own run.py (no servers).

The corpus lives beside the project at ../shared/corpus/replies (CI has it there too); without it the test
is skipped.  run.py is imported, not run: its ``evaluate`` turns every case into the splitter's input
(.txt as is, .eml through parse_mail, .html through html_to_text), classifies ``split_reply(text).new``
(ok / kept-quote / lost / error) and injects "#close injected" at the start of every quoted part to check
that no quoted command can count.  The thresholds are the targets of the splitter.  One kind of case is
not held against it: where run.py cannot find the end of a quote header and so inserts the command above
the header, in the new text (see ``_injected_above_header``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from maildesk.parsers.commands import Vocabulary, parse_reply_commands
from maildesk.parsers.html import html_to_text
from maildesk.parsers.mime import parse_mail
from maildesk.parsers.reply import quote_header_end, split_reply

REPLIES = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "replies"

MIN_OK_RATE = 0.95
MAX_LOST_RATE = 0.02


def _load_scorer():
    """run.py as a module, without the side effects it sets up for a command-line run."""
    saved_flag, saved_env = sys.dont_write_bytecode, os.environ.get("PYTHONDONTWRITEBYTECODE")
    try:
        spec = importlib.util.spec_from_file_location("reply_corpus_run", REPLIES / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved_flag
        if saved_env is None:
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        else:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved_env
    return module


@pytest.fixture(scope="module")
def scorer():
    if not (REPLIES / "run.py").is_file() or not (REPLIES / "cases.json").is_file():
        pytest.skip(f"no reply corpus at {REPLIES}")
    return _load_scorer()


@pytest.fixture(scope="module")
def cases(scorer):
    return json.loads((REPLIES / "cases.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def results(scorer, cases):
    api = (split_reply, parse_mail, html_to_text, parse_reply_commands, Vocabulary.build())
    scored = [r for r in scorer.evaluate(cases, REPLIES / "fixtures", api) if r["class"] != "excluded"]
    assert scored, "the corpus has no scored case"
    return scored


@pytest.fixture(scope="module")
def inputs(cases):
    """Case id -> the case with the splitter's input text, made as run.py makes it."""
    made = {}
    for case in cases:
        raw = (REPLIES / case["file"]).read_bytes()
        if case["kind"] == "eml":
            text = parse_mail(raw).text
        elif case["kind"] == "html":
            text = html_to_text(raw.decode("utf-8", "replace"))
        else:
            text = raw.decode("utf-8", "replace")
        made[case["id"]] = dict(case, text=text)
    return made


def _ids(results, predicate):
    return [r["id"] for r in results if predicate(r)]


def test_no_case_raises(results):
    assert _ids(results, lambda r: r["class"] == "error") == []


def test_ok_rate(results):
    classes = Counter(r["class"] for r in results)
    assert classes["ok"] / len(results) >= MIN_OK_RATE, (
        classes, _ids(results, lambda r: r["class"] != "ok"))


def test_new_text_is_rarely_lost(results):
    lost = _ids(results, lambda r: r["class"] == "lost")
    assert len(lost) / len(results) <= MAX_LOST_RATE, lost


def test_quoted_commands_never_count(results, scorer, inputs):
    quoted = [r for r in results if "safe" in r]
    assert quoted, "no quoted case was scored for command safety"
    # A case whose labelled quote start is not in the splitter's input cannot be checked; it must not happen
    # silently (html_to_text keeps the quote header lines as the labels have them).
    assert _ids(results, lambda r: "not found" in r.get("warning", "")) == []
    unsafe = [r for r in quoted if not r["safe"] and not _injected_above_header(r, scorer, inputs)]
    assert [r["id"] for r in unsafe] == []


def _injected_above_header(result, scorer, inputs) -> bool:
    """Did run.py put its command above the quote header, in the new text, because it could not find the
    header's end?  (An old-Gmail "2016-03-03 17:21 GMT+01:00 Name" line without address or colon.)  The
    splitter sees a header starting at the labelled quote start, so the line above it is new text."""
    case = inputs[result["id"]]
    lines = scorer.lines_of(case["text"])
    q = scorer.find_quote_start(lines, case["quote_start"], case.get("quote_line_hint"))
    return (q is not None and scorer.header_end(lines, q) == q and not lines[q].lstrip().startswith(">")
            and quote_header_end(lines[q:]) > 0)
