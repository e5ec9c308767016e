"""The keyword grammar: staff commands and customers' answers.  Pure functions.

A staff command is a line of the new text (never the subject) that
starts with ``#`` or the full-width ``＃``, then a keyword, then an optional
``:``/``：`` and text.  Text is NFKC-normalised first (full-width signs,
digits and the ideographic space become plain ones) and matched
case-insensitively.  The vocabulary is configurable; these are the defaults.

Customers need no ``#``: their reply is read as a confirmation, a refusal, a
rating or "not solved", and whatever is ambiguous is left for a person.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_COMMANDS: dict[str, tuple[str, ...]] = {
    "diagnose": ("diagnose", "诊断"),
    "propose": ("propose", "方案"),
    "execute": ("execute", "执行"),
    "resolve": ("resolve", "解决"),
    "close": ("close", "归档", "关闭"),
    "reopen": ("reopen", "重开"),
    "assign": ("assign", "指派"),
    "note": ("note", "备注"),
    "priority": ("priority", "优先级"),
    "plan": ("plan", "计划"),
    "commend": ("commend", "表扬"),
    "warn": ("warn", "警告"),
    # The department's rulebook (risk escalation, appraisal, self-service by mail).
    "risk": ("risk", "上报"),
    "appraise": ("appraise", "考核"),
    "mine": ("mine", "我的"),
    "find": ("find", "查找"),
    "status": ("status", "状态"),
    "help": ("help", "帮助"),
    "myrecord": ("myrecord", "我的记录"),
}
SUPERVISOR_COMMANDS = frozenset({"plan", "commend", "warn", "appraise"})
# Commands that need no ticket: each answer goes to the asking staff member only.
SELF_SERVICE_COMMANDS = frozenset({"mine", "find", "status", "help", "myrecord"})

# Graded rewards and sanctions: level -> words, per record kind.  The first level is the default
# when none is written ("#表扬 Alice 周末恢复了邮件服务器" is a commendation).
RECORD_LEVELS: dict[str, dict[str, tuple[str, ...]]] = {
    "commend": {"commendation": ("表彰", "commendation", "commend"),
                "reward": ("奖励", "reward")},
    "warn": {"verbal": ("口头警告", "口头", "verbal warning", "verbal"),
             "written": ("书面警告", "书面", "written warning", "written"),
             "demotion": ("降职", "demotion", "demote"),
             "termination": ("终止合同", "解除合同", "termination", "terminate")},
}

# Appraisal criteria: criterion -> words ("#考核 alice 任务4 质量5 …", "#appraise alice tasks=4 …").
APPRAISAL_CRITERIA: dict[str, tuple[str, ...]] = {
    "tasks": ("任务完成情况", "任务完成", "任务", "tasks", "task"),
    "quality": ("服务质量", "质量", "quality"),
    "teamwork": ("团队合作", "合作", "teamwork"),
    "learning": ("学习能力", "学习", "learning"),
    "attitude": ("工作态度", "态度", "attitude"),
}
APPRAISAL_COMMENT = ("评语", "意见", "comments", "comment")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class Vocabulary:
    """keyword (lower-case, NFKC) -> command name"""

    keywords: Mapping[str, str]

    @classmethod
    def build(cls, overrides: Mapping[str, tuple[str, ...] | list[str]] | None = None) -> "Vocabulary":
        table = dict(DEFAULT_COMMANDS)
        for name, words in (overrides or {}).items():
            table[name] = tuple(words)
        keywords = {}
        for name, words in table.items():
            for word in words:
                keywords[normalise(word).lower()] = name
        return cls(keywords)

    def words_for(self, name: str) -> list[str]:
        return [k for k, v in self.keywords.items() if v == name]

    def suggest(self, word: str) -> str | None:
        found = difflib.get_close_matches(word.lower(), list(self.keywords), n=1, cutoff=0.6)
        return found[0] if found else None


@dataclass(frozen=True)
class Command:
    name: str | None  # None: not a known keyword
    keyword: str  # as written (normalised)
    argument: str
    line: int  # 0-based line in the new text; -1 for the subject


_LINE = re.compile(r"^\s*#\s*([^\s:#]+)\s*:?\s*(.*?)\s*$")


def parse_commands(new_text: str, vocabulary: Vocabulary) -> list[Command]:
    """Commands in the new text the sender typed, one per line.

    Never from the subject: staff replies repeat the customer's subject, so a
    subject such as "VPN drops #resolve" would otherwise give staff commands
    in the customer's words.
    """
    found: list[Command] = []
    for number, raw in enumerate(normalise(new_text).splitlines()):
        m = _LINE.match(raw)
        if not m:
            continue
        word = m.group(1).lower()
        if word.isdigit():
            continue  # "#3" is a number in a sentence, not a command
        found.append(Command(vocabulary.keywords.get(word), word, m.group(2), number))
    return found


def split_level(kind: str, text: str) -> tuple[str, str]:
    """The level written at the start of a commendation's or warning's reason, and the rest.

    "书面警告 连续两次超时" -> ("written", "连续两次超时"); no level word -> the default level.
    """
    levels = RECORD_LEVELS.get(kind, {})
    stripped = text.strip()
    folded = normalise(stripped).lower()
    words = sorted(((w, level) for level, ws in levels.items() for w in ws), key=lambda x: -len(x[0]))
    for word, level in words:
        if not folded.startswith(word):
            continue
        rest = stripped[len(word):]
        # An English word must end there ("written" is not "writtenly"); Chinese needs no space.
        if word.isascii() and rest[:1].isalnum():
            continue
        return level, rest.strip(" ,，:：;；-—")
    return (next(iter(levels)) if levels else ""), stripped


@dataclass(frozen=True)
class AppraisalAnswer:
    scores: tuple[tuple[str, int], ...]  # (criterion, 1..5), in the order written
    comment: str
    bad: tuple[str, ...]  # criteria written with a score outside 1..5, as written


_SCORE_WORD = "|".join(re.escape(w) for w in sorted((w for ws in APPRAISAL_CRITERIA.values() for w in ws),
                                                    key=len, reverse=True))
_SCORE = re.compile(rf"(?i)(?<![a-z])({_SCORE_WORD})\s*[=:：]?\s*(\d+)(?!\d)")
_COMMENT = re.compile(rf"(?i)(?:{'|'.join(APPRAISAL_COMMENT)})\s*[:：]\s*(.*)$", re.DOTALL)


def read_appraisal(text: str) -> AppraisalAnswer:
    """Scores and comment of one ``#appraise`` line (after the technician's name)."""
    comment = ""
    m = _COMMENT.search(text)  # on the text as written: the comment keeps its own punctuation
    if m:
        comment = m.group(1).strip()
        text = text[:m.start()]
    text = normalise(text)
    by_word = {w.lower(): name for name, ws in APPRAISAL_CRITERIA.items() for w in ws}
    scores: dict[str, int] = {}
    bad = []
    for word, digits in _SCORE.findall(text):
        name = by_word[word.lower()]
        if 1 <= int(digits) <= 5:
            scores[name] = int(digits)
        else:
            bad.append(f"{word}{digits}")
    return AppraisalAnswer(tuple(scores.items()), comment, tuple(bad))


def parse_reply_commands(new_text: str, subject: str, vocabulary: Vocabulary) -> list[Command]:
    """``parse_commands`` for callers that also hold the subject, which is deliberately not read."""
    del subject
    return parse_commands(new_text, vocabulary)


# The same line shape on the text as written (full-width sign and colon allowed), so the argument
# keeps the writer's own punctuation: "原因：驱动损坏" stays as typed.
_RAW_LINE = re.compile(r"^\s*[#＃]\s*[^\s:：#＃]+\s*[:：]?\s*(.*?)\s*$")


def raw_argument(new_text: str, command: Command) -> str:
    """A command's argument as written (full-width punctuation kept), for text people read."""
    lines = new_text.splitlines()
    if 0 <= command.line < len(lines):
        m = _RAW_LINE.match(lines[command.line])
        if m:
            return m.group(1)
    return command.argument


def text_without_commands(new_text: str) -> str:
    """The new text minus command lines, keeping each command's argument as text."""
    out = []
    for raw in new_text.splitlines():
        m = _LINE.match(normalise(raw))
        if m and not m.group(1).isdigit():
            written = _RAW_LINE.match(raw)
            argument = written.group(1) if written else m.group(2)
            if argument:
                out.append(argument)
            continue
        out.append(raw)
    return "\n".join(out).strip()


# -- customers' answers -------------------------------------------------------------------

_CONFIRM = ("同意", "确认", "可以", "好的", "没问题", "agree", "no problem", "agreed", "yes", "ok", "okay", "confirm",
            "confirmed", "approve", "approved", "go ahead", "sounds good")
_REJECT = ("不同意", "不可以", "不行", "不确认", "拒绝", "不好", "不要", "disagree", "no", "reject", "rejected",
           "decline", "not ok", "don't", "do not")
_NOT_SOLVED = ("还是不行", "未解决", "没解决", "没有解决", "仍然不行", "依然不行", "还没好", "没有好", "问题依旧",
               "not fixed", "not solved", "still broken", "still not working", "not resolved", "doesn't work",
               "does not work", "still failing", "still happening")
_RATING_WORDS = (
    ("非常不满意", 1), ("很不满意", 1), ("不满意", 2), ("非常满意", 5), ("很满意", 5), ("满意", 4), ("一般", 3),
    ("very dissatisfied", 1), ("very unsatisfied", 1), ("dissatisfied", 2), ("unsatisfied", 2),
    ("very satisfied", 5), ("satisfied", 4), ("excellent", 5), ("great", 5), ("good", 4), ("poor", 2),
    ("terrible", 1),
)
_RATING_WITH_UNIT = re.compile(r"(?<![\d.])([1-5])\s*(分|星|颗星|stars?|points?|/\s*5)", re.IGNORECASE)
_RATING_ALONE = re.compile(r"^\W*([1-5])(?![\d.])")


@dataclass(frozen=True)
class CustomerAnswer:
    kind: str  # confirm | reject | rating | not-solved | unclear
    rating: int | None = None
    comment: str = ""
    alternatives: tuple[str, ...] = field(default_factory=tuple)


def _has(text: str, phrase: str) -> bool:
    if re.search(r"[\u4e00-\u9fff]", phrase):
        return phrase in text
    return re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text) is not None


def _strip_phrases(text: str, phrases) -> str:
    for phrase in sorted(phrases, key=len, reverse=True):
        text = text.replace(phrase, " ")
    return text


def read_confirmation(new_text: str) -> CustomerAnswer:
    """A reply to a proposal: confirm, reject, or unclear."""
    text = normalise(new_text).lower()
    first = " ".join(text.split("\n")[:3])
    rejects = [p for p in _REJECT if _has(first.replace("no problem", " "), p)]
    # "不同意" contains "同意": look for confirmations only outside the refusals.
    confirms = [p for p in _CONFIRM if _has(_strip_phrases(first, rejects), p)]
    if rejects and not confirms:
        return CustomerAnswer("reject", comment=new_text.strip())
    if confirms and not rejects:
        return CustomerAnswer("confirm", comment=new_text.strip())
    return CustomerAnswer("unclear", comment=new_text.strip(), alternatives=tuple(confirms + rejects))


def read_feedback(new_text: str, subject: str = "") -> CustomerAnswer:
    """A reply to a feedback request: a rating 1-5, "not solved", or unclear."""
    text = normalise(new_text).lower()
    if any(_has(text, p) for p in _NOT_SOLVED):
        return CustomerAnswer("not-solved", comment=new_text.strip())
    rating = _rating(text)
    if rating is None and not text.strip():
        # The mailto: links put the score at the end of the subject: "[TS-000021] 评分 4".
        m = re.search(r"(?<![\d.])([1-5])\s*$", normalise(subject).rpartition("]")[2])
        rating = int(m.group(1)) if m else None
    if rating is not None:
        return CustomerAnswer("rating", rating=rating, comment=new_text.strip())
    return CustomerAnswer("unclear", comment=new_text.strip())


def _rating(text: str) -> int | None:
    stars = text.count("★")
    if 1 <= stars <= 5:
        return stars
    # "4分", "5 stars", "4/5" anywhere; a bare digit only where a rating stands: first.
    m = _RATING_WITH_UNIT.search(text) or _RATING_ALONE.match(text)
    if m:
        return int(m.group(1))
    for phrase, value in _RATING_WORDS:
        if _has(text, phrase):
            return value
    return None
