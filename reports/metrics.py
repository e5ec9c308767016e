"""Weekly report metrics: pure functions over tickets, events and staff records.

A report covers one ISO week in the configured time zone: Monday 00:00 to the
next Monday 00:00, local time, so a ticket created Sunday 23:30 in Shanghai
belongs to that week even though it is Sunday 15:30 UTC.

Definitions (each one is what the leadership report says it is):

* received: tickets created in the week;
* closed: tickets moved to ``closed`` in the week;
* open at end: tickets created before the week's end whose stage at that
  moment (replaying their events) was not ``closed``, counted by stage;
* first response: from creation to the first action by staff (a command, a
  relayed reply); reported for tickets received in the week that had one;
* resolution: from creation to the move to ``feedback`` (or straight to
  ``closed``); reported for moves made in the week;
* SLA met: a ticket resolved in the week whose first response and
  resolution were both within the configured hours;
* ratings: "rated" events in the week; the response rate divides them by
  the feedback requests made in the week.
"""
from __future__ import annotations

import re
import statistics
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from maildesk.model import STAGES, Event, PlanItem, StaffRecord, Ticket

RESOLVED = ("feedback", "closed")
# Carried-over cases the report lists by name (overdue first, then the oldest); the rest are counted.
CARRIED_LISTED = 30
REOPEN_KINDS = ("reopened", "reopen", "customer-not-solved")
NOT_STAFF_ACTIONS = ("command-rejected",)


@dataclass(frozen=True)
class Week:
    year: int
    week: int
    tz: ZoneInfo

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo) -> "Week":
        m = re.fullmatch(r"(\d{4})-?W(\d{1,2})", text.strip(), re.IGNORECASE)
        if not m:
            raise ValueError(f"week {text!r} is not of the form YYYY-Www")
        year, week = int(m.group(1)), int(m.group(2))
        date.fromisocalendar(year, week, 1)  # raises ValueError for week 54 and the like
        return cls(year, week, tz)

    @classmethod
    def containing(cls, moment: datetime, tz: ZoneInfo) -> "Week":
        iso = moment.astimezone(tz).isocalendar()
        return cls(iso.year, iso.week, tz)

    @classmethod
    def last_complete(cls, now: datetime, tz: ZoneInfo) -> "Week":
        return cls.containing(now, tz).previous()

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1), time(0), self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1) + timedelta(days=7), time(0), self.tz)

    def previous(self, n: int = 1) -> "Week":
        monday = date.fromisocalendar(self.year, self.week, 1) - timedelta(weeks=n)
        iso = monday.isocalendar()
        return Week(iso.year, iso.week, self.tz)

    def next(self) -> "Week":
        return self.previous(-1)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Policy:
    """What the report measures against, from the configuration."""

    first_response_hours: float = 4
    resolution_hours: float = 48
    technicians: tuple[tuple[str, str], ...] = ()  # (address, name)
    staff: frozenset[str] = frozenset()
    # team.internal_domains: requests from colleagues, told apart from customers' in the report.
    internal_domains: frozenset[str] = frozenset()

    def origin(self, customer: str) -> str:
        return "internal" if customer.rpartition("@")[2] in self.internal_domains else "external"


@dataclass(frozen=True)
class OriginFigures:
    """The week's volume, times and ratings for one kind of requester (internal or external)."""

    received: int
    median_first_response_hours: float | None
    median_resolution_hours: float | None
    resolved: int
    csat_average: float | None
    csat_responses: int


@dataclass
class TechnicianScore:
    email: str
    name: str
    closed: int = 0
    resolved: int = 0
    on_time_rate: float | None = None
    average_rating: float | None = None
    ratings: int = 0
    reopened: int = 0
    commendations: int = 0
    warnings: int = 0
    commendation_notes: list[str] = field(default_factory=list)
    warning_notes: list[str] = field(default_factory=list)
    # The level of each note above, in the same order ("reward", "written", ...).
    commendation_levels: list[str] = field(default_factory=list)
    warning_levels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClosedCase:
    tag: str
    subject: str
    customer: str
    assignee: str | None
    summary: str
    lessons: str
    rating: int | None
    resolution_hours: float | None


@dataclass(frozen=True)
class OpenCase:
    tag: str
    subject: str
    customer: str
    stage: str
    assignee: str | None
    age_days: float
    overdue: bool
    priority: str


@dataclass(frozen=True)
class TicketRow:
    """A ticket received or closed in the week, as the report's CSV lists it.

    The hours are computed by the store from the ticket's events, so nothing after the store needs a
    ticket's history: at a million stored tickets a week holds some 20,000 of them.
    """

    number: int
    tag: str
    subject: str
    customer: str
    stage: str
    assignee: str | None
    priority: str
    created_at: datetime
    first_response_hours: float | None  # to the first action by staff
    resolution_hours: float | None  # to the last move to feedback (or straight to closed)
    rating: int | None
    summary: str
    lessons: str

    @classmethod
    def of(cls, t: Ticket, staff: frozenset[str]) -> "TicketRow":
        fr = first_response(t, staff)
        res = resolution_events(t)
        return cls(t.number, t.tag, t.subject, t.customer, t.stage, t.assignee, t.priority, t.created_at,
                   _hours(t.created_at, fr.at) if fr else None, _hours(t.created_at, res[-1].at) if res else None,
                   t.rating, t.summary, t.lessons)


@dataclass(frozen=True)
class Risk:
    """A technical problem or risk reported on a ticket (``#risk``)."""

    tag: str
    subject: str
    customer: str
    at: datetime
    reporter: str
    text: str
    stage: str  # the ticket's stage now


@dataclass(frozen=True)
class Recurring:
    term: str
    count: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Suggestion:
    kind: str  # growing-topic | slow-stage | overdue | low-csat | sla-missed | unrated
    params: dict


@dataclass(frozen=True)
class WeekCounts:
    label: str
    received: int
    closed: int
    open_at_end: int


@dataclass
class WeeklyReport:
    week: str
    start: datetime
    end: datetime
    received: int
    closed: int
    open_at_end: int
    open_by_stage: dict[str, int]
    median_first_response_hours: float | None
    p90_first_response_hours: float | None
    median_resolution_hours: float | None
    p90_resolution_hours: float | None
    resolved: int
    sla_met_rate: float | None
    csat_average: float | None
    csat_responses: int
    csat_requests: int
    csat_response_rate: float | None
    csat_distribution: dict[int, int]
    comments: list[tuple[str, int, str]]  # (tag, rating, comment)
    trend: list[WeekCounts]
    closed_cases: list[ClosedCase]
    recurring: list[Recurring]
    # The open cases the report names (the first CARRIED_LISTED, overdue first, then the oldest), and
    # how many there are: at a million tickets some 60,000, which nobody reads one by one.
    carried_over: list[OpenCase]
    carried_over_count: int
    overdue_count: int
    plans: list[PlanItem]
    suggestions: list[Suggestion]
    technicians: list[TechnicianScore]
    stage_wait_hours: dict[str, float]
    tickets_of_week: list[TicketRow]
    risks: list[Risk] = field(default_factory=list)
    # {"internal": ..., "external": ...} when team.internal_domains is configured, else empty.
    by_origin: dict[str, OriginFigures] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "week": self.week, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "received": self.received, "closed": self.closed, "open_at_end": self.open_at_end,
            "open_by_stage": self.open_by_stage,
            "median_first_response_hours": _round(self.median_first_response_hours),
            "p90_first_response_hours": _round(self.p90_first_response_hours),
            "median_resolution_hours": _round(self.median_resolution_hours),
            "p90_resolution_hours": _round(self.p90_resolution_hours),
            "resolved": self.resolved, "sla_met_rate": _round(self.sla_met_rate),
            "csat_average": _round(self.csat_average), "csat_responses": self.csat_responses,
            "csat_requests": self.csat_requests, "csat_response_rate": _round(self.csat_response_rate),
            "csat_distribution": {str(k): v for k, v in self.csat_distribution.items()},
            "trend": [vars(w) for w in self.trend],
            "recurring": [{"term": r.term, "count": r.count, "tickets": list(r.tags)} for r in self.recurring],
            "carried_over": self.carried_over_count,
            "overdue": self.overdue_count,
            "plans": [p.text for p in self.plans],
            "suggestions": [{"kind": s.kind, **s.params} for s in self.suggestions],
            "stage_wait_hours": {k: _round(v) for k, v in self.stage_wait_hours.items()},
            "by_origin": {k: {name: _round(v) if isinstance(v, float) else v for name, v in vars(f).items()}
                          for k, f in self.by_origin.items()},
            "risks": [{"ticket": r.tag, "at": r.at.isoformat(), "by": r.reporter, "text": r.text, "stage": r.stage}
                      for r in self.risks],
            "technicians": [
                {"email": t.email, "name": t.name, "closed": t.closed, "resolved": t.resolved,
                 "on_time_rate": _round(t.on_time_rate), "average_rating": _round(t.average_rating),
                 "reopened": t.reopened, "commendations": t.commendations, "warnings": t.warnings,
                 "commendation_levels": t.commendation_levels, "warning_levels": t.warning_levels}
                for t in self.technicians
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- single-ticket facts -------------------------------------------------------------------

def stage_at(ticket: Ticket, moment: datetime) -> str | None:
    """The ticket's stage just before ``moment`` (None if it did not exist yet)."""
    if ticket.created_at >= moment:
        return None
    stage = "received"
    for e in ticket.events:
        if e.at >= moment:
            break
        if e.to_stage:
            stage = e.to_stage
    return stage


def first_response(ticket: Ticket, staff: frozenset[str]) -> Event | None:
    for e in ticket.events:
        if e.actor in staff and e.kind not in NOT_STAFF_ACTIONS:
            return e
    return None


def resolution_events(ticket: Ticket) -> list[Event]:
    return [e for e in ticket.events
            if e.to_stage in RESOLVED and e.from_stage not in RESOLVED and e.from_stage is not None]


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- topics ---------------------------------------------------------------------------------

_STOP = {"the", "and", "for", "with", "from", "not", "can", "cannot", "can't", "does", "doesn't", "will", "won't",
         "our", "your", "you", "are", "has", "have", "this", "that", "please", "help", "need", "issue", "problem",
         "request", "again", "when", "after", "into", "all", "any", "new", "still"}
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_WORD = re.compile(r"[a-z][a-z0-9+#.-]{2,}")
_CJK_STOP = {"无法", "不能", "问题", "一下", "麻烦", "请问", "没有", "不了", "已满"}


def topics(subject: str) -> set[str]:
    """Terms a subject is about: English words and Chinese character pairs."""
    text = subject.lower()
    terms = {w.strip(".-") for w in _WORD.findall(text)} - _STOP
    for run in _CJK_RUN.findall(subject):
        terms.update(run[i:i + 2] for i in range(len(run) - 1))
    return {t for t in terms if t and t not in _CJK_STOP}


def _join_pairs(terms: list[str]) -> list[str]:
    """Chinese pairs seen in the same tickets join up: 打印 + 印机 -> 打印机."""
    terms = sorted(set(terms))
    changed = True
    while changed:
        changed = False
        for a in terms:
            for b in terms:
                if a != b and _CJK_RUN.fullmatch(a) and _CJK_RUN.fullmatch(b) and len(b) >= 2 \
                        and a.endswith(b[:-1]):
                    terms = sorted((set(terms) - {a, b}) | {a + b[-1]})
                    changed = True
                    break
            if changed:
                break
    return terms


def recurring_topics(tickets: Iterable[Ticket | TicketRow], minimum: int = 3, limit: int = 5) -> list[Recurring]:
    by_term: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, set[str]] = {}  # subjects repeat ("打印机卡纸"): each is read once
    for t in tickets:
        terms = seen.get(t.subject)
        if terms is None:
            terms = seen[t.subject] = topics(t.subject)
        for term in terms:
            by_term[term].append(t.tag)
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for term, tags in by_term.items():
        if len(set(tags)) >= minimum:
            groups[tuple(sorted(set(tags)))].append(term)
    found = []
    for tags, terms in groups.items():
        # Words that always come together ("print", "sap") are one problem, shown once.
        joined = sorted(_join_pairs(terms), key=lambda term: (-len(term), term))
        found.append(Recurring(" / ".join(joined[:3]), len(tags), tags))
    found.sort(key=lambda r: (-r.count, -len(r.term), r.term))
    # A pair inside a longer recurring term with the same tickets says nothing new.
    kept: list[Recurring] = []
    for r in found:
        if not any(r.tags == k.tags and r.term in k.term for k in kept):
            kept.append(r)
    return kept[:limit]


# -- the report -----------------------------------------------------------------------------

def weekly_report(week: Week, tickets: Sequence[Ticket], records: Sequence[StaffRecord],
                  plans: Sequence[PlanItem], policy: Policy, now: datetime | None = None) -> WeeklyReport:
    start, end = week.start, week.end
    now = now or end
    window = week.previous(8).start
    # Tickets closed before the nine weeks shown, and untouched since, change no figure.
    tickets = [t for t in tickets if t.created_at < end and not (
        t.stage == "closed" and t.events and t.events[-1].at < window and t.created_at < window)]
    received = [t for t in tickets if start <= t.created_at < end]
    closed_in_week = [t for t in tickets if any(e.to_stage == "closed" and e.from_stage != "closed"
                                                and start <= e.at < end for e in t.events)]
    open_by_stage = {s: 0 for s in STAGES if s != "closed"}
    carried: list[OpenCase] = []
    for t in tickets:
        if t.created_at >= end:
            continue
        stage = stage_at(t, end)
        if stage is None or stage == "closed":
            continue
        open_by_stage[stage] += 1
        age = _hours(t.created_at, end) / 24
        carried.append(OpenCase(t.tag, t.subject, t.customer, stage, t.assignee, age,
                                age * 24 > policy.resolution_hours, t.priority))
    carried.sort(key=lambda c: (not c.overdue, -c.age_days))

    first_responses = []
    for t in received:
        e = first_response(t, policy.staff)
        if e is not None:
            first_responses.append(_hours(t.created_at, e.at))

    # One resolution per ticket and week: the last, when "not solved" sent it back in between.
    resolutions: list[tuple[Ticket, float, bool]] = []
    for t in tickets:
        in_week = [e for e in resolution_events(t) if start <= e.at < end]
        if in_week:
            hours = _hours(t.created_at, in_week[-1].at)
            fr = first_response(t, policy.staff)
            fr_ok = fr is not None and _hours(t.created_at, fr.at) <= policy.first_response_hours
            resolutions.append((t, hours, fr_ok and hours <= policy.resolution_hours))
    resolution_hours = [h for _, h, _ in resolutions]

    ratings: list[tuple[Ticket, int]] = []
    requests = 0
    for t in tickets:
        for e in t.events:
            if not (start <= e.at < end):
                continue
            if e.kind == "rated" and e.detail.isdigit():
                ratings.append((t, int(e.detail)))
            elif e.kind == "feedback-requested":
                requests += 1
    distribution = {score: 0 for score in range(1, 6)}
    for _, score in ratings:
        distribution[score] += 1

    trend = _trend(week, tickets)

    scores = _scorecard(week, tickets, records, policy, resolutions, ratings)
    stage_wait = _stage_wait(tickets, start, end)
    report = WeeklyReport(
        week=week.label, start=start, end=end,
        received=len(received), closed=len(closed_in_week), open_at_end=sum(open_by_stage.values()),
        open_by_stage=open_by_stage,
        median_first_response_hours=statistics.median(first_responses) if first_responses else None,
        p90_first_response_hours=percentile(first_responses, 90),
        median_resolution_hours=statistics.median(resolution_hours) if resolution_hours else None,
        p90_resolution_hours=percentile(resolution_hours, 90),
        resolved=len(resolutions),
        sla_met_rate=(sum(1 for *_, ok in resolutions if ok) / len(resolutions)) if resolutions else None,
        csat_average=(sum(s for _, s in ratings) / len(ratings)) if ratings else None,
        csat_responses=len(ratings), csat_requests=requests,
        csat_response_rate=(len(ratings) / requests) if requests else None,
        csat_distribution=distribution,
        comments=[(t.tag, s, t.rating_comment) for t, s in ratings if t.rating_comment],
        trend=trend,
        closed_cases=[ClosedCase(t.tag, t.subject, t.customer, t.assignee, t.summary, t.lessons, t.rating,
                                 next((_hours(t.created_at, e.at) for e in resolution_events(t)), None))
                      for t in sorted(closed_in_week, key=lambda t: t.number)],
        recurring=recurring_topics(received + [t for t in closed_in_week if t not in received]),
        carried_over=carried[:CARRIED_LISTED],
        carried_over_count=len(carried),
        overdue_count=sum(1 for c in carried if c.overdue),
        plans=[p for p in plans if start <= p.at < end],
        suggestions=[],
        technicians=scores,
        stage_wait_hours=stage_wait,
        tickets_of_week=[TicketRow.of(t, policy.staff) for t in
                         sorted({t.number: t for t in received + closed_in_week}.values(), key=lambda t: t.number)],
    )
    report.suggestions = _suggestions(report, week, tickets)
    report.risks = risks_between(tickets, start, end)
    if policy.internal_domains:
        report.by_origin = _by_origin(received, resolutions, ratings, policy)
    return report


def _by_origin(received, resolutions, ratings, policy: Policy) -> dict[str, OriginFigures]:
    found = {}
    for origin in ("internal", "external"):
        mine = [t for t in received if policy.origin(t.customer) == origin]
        responses = [_hours(t.created_at, e.at) for t in mine if (e := first_response(t, policy.staff))]
        solved = [h for t, h, _ in resolutions if policy.origin(t.customer) == origin]
        scores = [s for t, s in ratings if policy.origin(t.customer) == origin]
        found[origin] = OriginFigures(
            received=len(mine),
            median_first_response_hours=statistics.median(responses) if responses else None,
            median_resolution_hours=statistics.median(solved) if solved else None, resolved=len(solved),
            csat_average=sum(scores) / len(scores) if scores else None, csat_responses=len(scores))
    return found


def risks_between(tickets: Iterable[Ticket], start: datetime, end: datetime) -> list[Risk]:
    """Risks reported from ``start`` to ``end``, in the order they were reported."""
    found = [Risk(t.tag, t.subject, t.customer, e.at, e.actor, e.detail, t.stage)
             for t in tickets for e in t.events if e.kind == "risk" and start <= e.at < end]
    return sorted(found, key=lambda r: r.at)


def _trend(week: Week, tickets: Sequence[Ticket]) -> list[WeekCounts]:
    """Received, closed and open at the end of each of the nine weeks, in one pass per ticket."""
    weeks = [week.previous(back) for back in range(8, -1, -1)]
    bounds = [w.start for w in weeks] + [weeks[-1].end]
    received = [0] * 9
    closed = [0] * 9
    open_at_end = [0] * 9
    for t in tickets:
        i = bisect_right(bounds, t.created_at) - 1
        if 0 <= i < 9:
            received[i] += 1
        stage, events, k = "received", t.events, 0
        for j, boundary in enumerate(bounds[1:]):
            while k < len(events) and events[k].at < boundary:
                e = events[k]
                if e.to_stage:
                    if e.to_stage == "closed" and e.from_stage != "closed" and e.at >= bounds[j]:
                        closed[j] += 1
                    stage = e.to_stage
                k += 1
            if t.created_at < boundary and stage != "closed":
                open_at_end[j] += 1
    return [WeekCounts(w.label, received[i], closed[i], open_at_end[i]) for i, w in enumerate(weeks)]


def _scorecard(week: Week, tickets, records, policy: Policy, resolutions, ratings) -> list[TechnicianScore]:
    scores = {email: TechnicianScore(email, name) for email, name in policy.technicians}
    start, end = week.start, week.end
    for t in tickets:
        s = scores.get(t.assignee or "")
        if s is None:
            continue
        for e in t.events:
            if not (start <= e.at < end):
                continue
            if e.to_stage == "closed" and e.from_stage != "closed":
                s.closed += 1
            if e.kind in REOPEN_KINDS:
                s.reopened += 1
    on_time: dict[str, list[bool]] = defaultdict(list)
    for t, _hours_, ok in resolutions:
        if t.assignee in scores:
            on_time[t.assignee].append(ok)
    rated: dict[str, list[int]] = defaultdict(list)
    for t, score in ratings:
        if t.assignee in scores:
            rated[t.assignee].append(score)
    for email, s in scores.items():
        if on_time[email]:
            s.resolved = len(on_time[email])
            s.on_time_rate = sum(on_time[email]) / len(on_time[email])
        if rated[email]:
            s.ratings = len(rated[email])
            s.average_rating = sum(rated[email]) / len(rated[email])
    for r in records:
        s = scores.get(r.technician)
        if s is None or not (start <= r.at < end):
            continue
        if r.kind == "commend":
            s.commendations += 1
            s.commendation_notes.append(r.reason)
            s.commendation_levels.append(r.level or "commendation")
        elif r.kind == "warn":
            s.warnings += 1
            s.warning_notes.append(r.reason)
            s.warning_levels.append(r.level or "verbal")
    return list(scores.values())


def _stage_wait(tickets, start: datetime, end: datetime) -> dict[str, float]:
    """Average hours tickets spent in each stage, for stays that ended in the week."""
    spans: dict[str, list[float]] = defaultdict(list)
    for t in tickets:
        stage, since = "received", t.created_at
        for e in t.events:
            if not e.to_stage or e.to_stage == stage:
                continue
            if start <= e.at < end:
                spans[stage].append(_hours(since, e.at))
            stage, since = e.to_stage, e.at
    return {s: sum(v) / len(v) for s, v in spans.items() if v and s != "closed"}


def _suggestions(report: WeeklyReport, week: Week, tickets) -> list[Suggestion]:
    found: list[Suggestion] = []
    # A topic that grew sharply against the four weeks before.
    this_week = Counter(term for t in tickets if week.contains(t.created_at) for term in topics(t.subject))
    earlier = week.previous(4).start
    before = Counter(term for t in tickets if earlier <= t.created_at < week.start for term in topics(t.subject))
    growing = [(term, n) for term, n in this_week.items() if n >= 3 and n >= 2 * (before[term] / 4) + 1]
    for term, n in sorted(growing, key=lambda x: (-x[1], x[0]))[:2]:
        found.append(Suggestion("growing-topic", {"term": term, "count": n, "average": round(before[term] / 4, 1)}))
    if report.stage_wait_hours:
        stage, hours = max(report.stage_wait_hours.items(), key=lambda kv: kv[1])
        if hours >= 1:
            found.append(Suggestion("slow-stage", {"stage": stage, "hours": round(hours, 1)}))
    overdue = report.overdue_count
    if overdue:
        found.append(Suggestion("overdue", {"count": overdue}))
    if report.sla_met_rate is not None and report.sla_met_rate < 0.9:
        found.append(Suggestion("sla-missed", {"rate": round(report.sla_met_rate * 100)}))
    if report.csat_average is not None and report.csat_average < 4:
        found.append(Suggestion("low-csat", {"average": round(report.csat_average, 1)}))
    if report.csat_response_rate is not None and report.csat_response_rate < 0.5:
        found.append(Suggestion("unrated", {"rate": round(report.csat_response_rate * 100)}))
    return found
