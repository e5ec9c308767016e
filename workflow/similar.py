"""Lessons that get reused (总结经验教训): similar closed cases for a new ticket, computed locally.

Each closed case (subject, summary, lessons) is reduced to terms: English
words (lower-case, a light suffix stem, no stop words) and Chinese character
pairs.  An inverted index maps each term to the cases holding it.  A new
ticket's subject and first lines are reduced the same way; a case's score is
a weighted geometric mean of how much of the query's and of the case's weight (IDF)
they share (the query's share weighs three times the case's: a case says more
than a request's subject line), cosine-like without per-case norms going stale
as the index grows.  Terms in more than ``COMMON_SHARE`` of all cases say nothing
about a problem ("please", "问题") and are not looked up at all, which also
keeps a query to a few short posting lists: well under a millisecond at
100,000 cases (``bench/similar.py``).

``CaseIndex`` is pure; ``index_for`` keeps one per store for the daemon's
life, built at its first use and told of cases closed since by ``refresh``.
"""
from __future__ import annotations

import math
import re
import unicodedata
import weakref
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from dataclasses import dataclass

from maildesk.model import Ticket

TOP = 3
# Tuned on tests/data/similar_labelled.json (see test_similar_cases_precision_on_the_labelled_set):
# a case is shown when its score is at least MIN_SCORE and RELATIVE of the best one's.
MIN_SCORE = 0.15
RELATIVE = 0.7
COMMON_SHARE = 0.05
QUERY_CHARS = 600

_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[a-z][a-z0-9]+|[0-9]+[a-z][a-z0-9]*")
_STOP_EN = frozenset("""a an and are as at be been but by can cannot could did do does doesn don dont for from get
gets got had has have hello hi how i if in into is it its me my no not of on or our please since so still that
the their them then there this to too up us was we were what when where which while who why will with would
you your yours dear thanks thank regards best kind help issue problem request again today yesterday morning
since anymore any some all also just very""".split())
_STOP_ZH = frozenset({"您好", "你好", "谢谢", "请问", "麻烦", "一下", "问题", "无法", "不能", "没有", "不了", "我们",
                      "我的", "今天", "现在", "已经", "一直", "还是", "可以", "什么", "怎么", "为什么", "帮忙",
                      "处理", "出现", "时候", "早上", "昨天"})


@lru_cache(maxsize=200_000)  # a desk's vocabulary repeats itself: stem each word once
def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    found = set()
    for run in _CJK.findall(text):
        found.update(run[i:i + 2] for i in range(len(run) - 1))
    for word in _WORD.findall(_CJK.sub(" ", text)):
        if word not in _STOP_EN:
            found.add(_stem(word))
    return {t for t in found if t not in _STOP_ZH}


@dataclass(frozen=True)
class SimilarCase:
    tag: str
    subject: str
    summary: str
    lessons: str
    score: float


def _numpy():
    """numpy, imported with the first index rather than with the daemon: start-up (and the
    installing of its signal handlers) does not wait for it."""
    import numpy

    return numpy


class CaseIndex:
    def __init__(self) -> None:
        np = _numpy()

        self._postings: dict[str, list[int]] = defaultdict(list)
        self._arrays: dict = {}  # postings as arrays, rebuilt when a list grew
        self._cases: list[tuple[str, str, str, str] | None] = []  # tag, subject, summary, lessons
        self._sizes: list[int] = []  # terms per case
        self._size_array = np.zeros(0)
        self._slot: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def _idf(self, term: str) -> float:
        return math.log(1 + len(self._slot) / (1 + len(self._postings.get(term, ()))))

    def _array(self, term: str):
        np = _numpy()
        postings = self._postings[term]
        found = self._arrays.get(term)
        if found is None or len(found) != len(postings):
            found = self._arrays[term] = np.fromiter(postings, dtype=np.int64, count=len(postings))
        return found

    def add(self, tag: str, subject: str, summary: str, lessons: str) -> None:
        if tag in self._slot:
            self.remove(tag)
        found = terms(f"{subject}\n{summary}\n{lessons}")
        slot = len(self._cases)
        for term in found:
            self._postings[term].append(slot)
        self._cases.append((tag, subject, summary, lessons))
        self._sizes.append(max(1, len(found)))
        self._slot[tag] = slot

    def add_ticket(self, ticket: Ticket) -> None:
        if ticket.stage == "closed" and (ticket.summary or ticket.lessons):
            self.add(ticket.tag, ticket.subject, ticket.summary, ticket.lessons)

    def remove(self, tag: str) -> None:
        slot = self._slot.pop(tag, None)
        if slot is not None:
            self._cases[slot] = None  # its postings are skipped from now on

    def query(self, text: str, top: int = TOP, minimum: float = MIN_SCORE) -> list[SimilarCase]:
        wanted = terms(text[:QUERY_CHARS])
        if not wanted or not self._slot:
            return []
        common = max(50, COMMON_SHARE * len(self._slot))
        looked = [(t, self._idf(t)) for t in wanted if 0 < len(self._postings.get(t, ())) <= common]
        if not looked:
            return []
        total = sum(self._idf(t) for t in wanted)
        np = _numpy()
        if len(self._size_array) != len(self._sizes):
            self._size_array = np.asarray(self._sizes, dtype=np.float64)
        # Every case sharing a term, with the query weight it shares and how many terms: one pass
        # in C over the posting lists, however long.
        arrays = [self._array(t) for t, _ in looked]
        slots = np.concatenate(arrays)
        weights = np.repeat(np.fromiter((w for _, w in looked), dtype=np.float64, count=len(looked)),
                            [len(a) for a in arrays])
        shared = np.bincount(slots, weights=weights, minlength=len(self._cases))
        count = np.bincount(slots, minlength=len(self._cases))
        # One word in common ("office", "floor") is chance; two make a problem alike.
        candidates = np.flatnonzero(count >= min(2, len(wanted)))
        if not len(candidates):
            return []
        scores = (shared[candidates] / total) ** 0.75 * \
            np.minimum(1.0, count[candidates] / self._size_array[candidates]) ** 0.25
        keep = top * 4  # a few spare for cases removed since
        if len(scores) > keep:
            head = np.argpartition(-scores, keep)[:keep]
            order = head[np.argsort(-scores[head], kind="stable")]
        else:
            order = np.argsort(-scores, kind="stable")
        best = float(scores[order[0]])
        found = []
        for i in order:
            score, case = float(scores[i]), self._cases[int(candidates[i])]
            if case is None:
                continue
            if score < minimum or score < RELATIVE * best or len(found) == top:
                break
            found.append(SimilarCase(*case, score=round(score, 3)))
        return found

    def matching(self, text: str, limit: int = 10) -> list[str]:
        """Tags of the cases holding every term of ``text`` (``#find``), newest first."""
        wanted = terms(text)
        if not wanted or any(t not in self._postings for t in wanted):
            return []
        ordered = sorted(wanted, key=lambda t: len(self._postings[t]))
        found = set(self._postings[ordered[0]])
        for term in ordered[1:]:
            found &= set(self._postings[term])
            if not found:
                return []
        tags = []
        for slot in sorted(found, reverse=True):
            case = self._cases[slot]
            if case is not None:
                tags.append(case[0])
                if len(tags) == limit:
                    break
        return tags

    def freeze(self) -> None:
        """Make every posting list an array now (after a bulk build), not at the first query."""
        for term in self._postings:
            self._array(term)
        np = _numpy()
        self._size_array = np.asarray(self._sizes, dtype=np.float64)


# -- one index per store, for the daemon's life ---------------------------------------------------

_INDEXES: "weakref.WeakKeyDictionary[object, CaseIndex]" = weakref.WeakKeyDictionary()


def index_for(store) -> CaseIndex | None:
    """The store's case index, built at its first use; None for a lookup that lists no tickets."""
    if not callable(getattr(store, "closed_cases", None)):
        return None
    try:
        found = _INDEXES.get(store)
    except TypeError:  # not weak-referenceable
        return None
    if found is None:
        found = CaseIndex()
        for case in store.closed_cases():  # four fields per case, never whole tickets
            found.add(case.tag, case.subject, case.summary, case.lessons)
        found.freeze()
        _INDEXES[store] = found
    return found


def note_closed(store, tickets: Iterable[Ticket]) -> None:
    """Cases closed (or reopened) since the index was built: only if it was built already."""
    found = _INDEXES.get(store)
    if found is None:
        return
    for t in tickets:
        if t.stage == "closed":
            found.add_ticket(t)
        else:
            found.remove(t.tag)
