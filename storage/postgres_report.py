"""The weekly report of the PostgreSQL store, computed where the tickets are.

``reports/metrics.py::weekly_report`` defines every figure over whole
tickets; building those for the nine weeks a report shows means decoding
every active ticket document (83 s at a million tickets).  Here the figures
over many tickets are SQL over ``ticket_events`` (one row per event, kept by
a trigger, migration 0003) and the tickets' columns, and Python only builds
what is a short list (closed cases, risks, comments, the topics of
subjects), the week's tickets as the CSV's rows (their hours computed in
SQL, no histories) and the open cases the report names (the rest are
counted in SQL).  The result is the very same ``WeeklyReport``;
``tests/test_report_sql.py`` holds the two side by side.

How the definitions map to SQL (read metrics.py beside this):

* The tickets a report looks at: created before the week's end, and not
  closed with creation and last event before the nine weeks (``ACTIVE``).
* ``stage_at`` replays events.  Replaying a million histories for nine
  moments would cost seconds, so this relies on what the desk
  (workflow/, daemon/sender.py) always does and the tests' generated
  histories do too: a ticket begins with its "created" event (no stage ->
  received) at its creation; events are appended in time order (so "in
  list order until the first one at or after the moment" is "the last by
  position before it"); every stage event records the stage it left as
  ``from_stage``; and ``tickets.stage`` is the ``to_stage`` of the last
  stage event.  So a ticket untouched since a moment is in its stage now,
  a touched one was in the stage its first event since left, and the
  number open at each week's end is the number open now, less those
  created since, plus those closed since, less those reopened since
  (counts over an index of the moves into and out of closed).
* Hours are computed from whole microseconds divided as Python divides
  them (``HOURS``), and medians, percentiles and averages are taken by the
  pure helpers over the values SQL selected and sorted: ``percentile_cont``
  interpolates with other float steps (0.9 * (n - 1) against
  (n - 1) * 90 / 100), which moves the last bit and now and then the
  report's rounded figure.
"""
from __future__ import annotations

import gc
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from maildesk.model import STAGES
from maildesk.reports.metrics import (CARRIED_LISTED, NOT_STAFF_ACTIONS, REOPEN_KINDS, ClosedCase, OpenCase,
                                      OriginFigures, Policy, Risk, Suggestion, TicketRow, Week, WeekCounts,
                                      WeeklyReport, _scorecard, _suggestions, percentile, recurring_topics, topics)
from maildesk.storage.codec import plan_from_doc, record_from_doc

Read = Callable[..., object]  # PostgresStore._read: (sql, params) -> cursor

# (b - a) in hours exactly as metrics._hours: whole microseconds / 10**6 / 3600 in binary floating point.
HOURS = "((extract(epoch from ({b}) - ({a})) * 1000000)::bigint::float8 / 1000000 / 3600)"

# The tickets a report looks at (metrics.weekly_report's first filter, and the stores' active_since).
ACTIVE = ("t.created_at < %(end)s AND (t.stage <> 'closed' OR t.created_at >= %(window)s "
          "OR t.last_event_at >= %(window)s OR t.last_event_at IS NULL)")

ORIGIN = "CASE WHEN regexp_replace(t.customer, '^.*@', '') = ANY(%(internal)s::text[]) THEN 'internal' " \
         "ELSE 'external' END"

# A move to closed (metrics: e.to_stage == "closed" and e.from_stage != "closed").
CLOSING = "(e.to_stage = 'closed' AND e.from_stage IS DISTINCT FROM 'closed')"
RESOLVING = ("(e.to_stage IN ('feedback', 'closed') AND e.from_stage IS NOT NULL "
             "AND e.from_stage NOT IN ('feedback', 'closed'))")

# A stage event that changes the stage: "from" is the stage the ticket was in (received before any).
CHANGE = "({e}.to_stage IS NOT NULL AND {e}.to_stage IS DISTINCT FROM coalesce({e}.from_stage, 'received'))"

# The first action by staff on ticket t (metrics.first_response), at any time.
FIRST_RESPONSE = ("LEFT JOIN LATERAL (SELECT f.at FROM ticket_events f WHERE f.number = t.number "
                  "AND f.actor = ANY(%(staff)s::text[]) AND f.kind <> ALL(%(not_staff)s::text[]) "
                  "ORDER BY f.position LIMIT 1) fr ON true")


def weekly_report(reads: Sequence[Read], week: Week, policy: Policy) -> WeeklyReport:
    """The report from one connection, or from two on one snapshot, each taking half the queries."""
    # These queries are many short index walks: compiling them (JIT) would cost more than running them.
    jits = [read("SELECT current_setting('jit'), set_config('jit', 'off', false)").fetchone()[0] for read in reads]
    # Some 50,000 objects that all live on (a million tickets: the week's tickets and cases): the
    # cyclic collector would walk them again and again while they are built, for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        report = _weekly_report(reads, week, policy)
    finally:
        if collecting:
            gc.enable()
    for read, jit in zip(reads, jits):
        read("SELECT set_config('jit', %s, false)", (jit,))  # (left off after an error: harmless for the desk)
    return report


def _weekly_report(reads: Sequence[Read], week: Week, policy: Policy) -> WeeklyReport:
    start, end = week.start, week.end
    weeks = [week.previous(back) for back in range(8, -1, -1)]
    bounds = [w.start for w in weeks] + [end]
    p = {"start": start, "end": end, "window": bounds[0], "bounds": bounds,
         "staff": sorted(policy.staff), "not_staff": list(NOT_STAFF_ACTIONS), "reopen": list(REOPEN_KINDS),
         "internal": sorted(policy.internal_domains), "fr_hours": float(policy.first_response_hours),
         "res_hours": float(policy.resolution_hours), "earlier": week.previous(4).start}
    read = reads[0]
    if len(reads) > 1:
        # The server works on both halves at once, one backend each (the week's own tickets, and
        # the figures over the nine weeks): they take about as long as each other.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-sql") as beside:
            later = beside.submit(_window_figures, reads[1], p, weeks)
            week_lists = _week_lists(read, p)
            window = later.result()
    else:
        window = _window_figures(read, p, weeks)
        week_lists = _week_lists(read, p)
    resolutions, ratings, comments, records, plans, stage_wait, risks, \
        (trend, open_by_stage, carried, carried_count, overdue_count) = window
    by_assignee, requests, closed_numbers, tickets_of_week, closed_cases, received, subjects_before = week_lists
    # The week's new tickets by origin, and their first-response hours, from the rows the CSV lists.
    received_by_origin: Counter = Counter()
    first_responses: dict[str, list[float]] = {}
    for t in received:
        origin = policy.origin(t.customer)
        received_by_origin[origin] += 1
        if t.first_response_hours is not None:
            first_responses.setdefault(origin, []).append(t.first_response_hours)

    fr_all = sorted(h for hours in first_responses.values() for h in hours)
    res_all = sorted(h for r in resolutions for h in r["hours"])
    resolved = sum(r["count"] for r in resolutions)
    on_time = sum(r["ok"] for r in resolutions)
    rated = sum(r["count"] for r in ratings)
    rating_sum = sum(r["sum"] for r in ratings)
    distribution = {score: 0 for score in range(1, 6)}
    for r in ratings:
        distribution[r["score"]] += r["count"]

    scores = _scorecard(week, [], records, policy, [], [])
    for s in scores:
        closed_by, reopened_by = by_assignee.get(s.email, (0, 0))
        s.closed, s.reopened = closed_by, reopened_by
        mine = [r for r in resolutions if r["assignee"] == s.email]
        if mine:
            s.resolved = sum(r["count"] for r in mine)
            s.on_time_rate = sum(r["ok"] for r in mine) / s.resolved
        mine = [r for r in ratings if r["assignee"] == s.email]
        if mine:
            s.ratings = sum(r["count"] for r in mine)
            s.average_rating = sum(r["sum"] for r in mine) / s.ratings

    report = WeeklyReport(
        week=week.label, start=start, end=end,
        received=sum(received_by_origin.values()), closed=len(closed_numbers), open_at_end=sum(open_by_stage.values()),
        open_by_stage=open_by_stage,
        median_first_response_hours=statistics.median(fr_all) if fr_all else None,
        p90_first_response_hours=percentile(fr_all, 90),
        median_resolution_hours=statistics.median(res_all) if res_all else None,
        p90_resolution_hours=percentile(res_all, 90),
        resolved=resolved,
        sla_met_rate=(on_time / resolved) if resolved else None,
        csat_average=(rating_sum / rated) if rated else None,
        csat_responses=rated, csat_requests=requests,
        csat_response_rate=(rated / requests) if requests else None,
        csat_distribution=distribution,
        comments=comments,
        trend=trend,
        closed_cases=closed_cases,
        recurring=recurring_topics(tickets_of_week),
        carried_over=carried,
        carried_over_count=carried_count,
        overdue_count=overdue_count,
        plans=plans,
        suggestions=[],
        technicians=scores,
        stage_wait_hours=stage_wait,
        tickets_of_week=tickets_of_week,
    )
    report.suggestions = (_growing_topics(subjects_before, [t.subject for t in received])
                          + _suggestions(report, week, []))
    report.risks = risks
    if policy.internal_domains:
        report.by_origin = {origin: _origin_figures(origin, received_by_origin.get(origin, 0), first_responses,
                                                    resolutions, ratings)
                            for origin in ("internal", "external")}
    return report


class _Window(NamedTuple):
    """What the report counts over the nine weeks, and the week's short lists."""
    resolutions: list[dict]
    ratings: list[dict]
    comments: list[tuple[str, int, str]]
    records: list
    plans: list
    stage_wait: dict[str, float]
    risks: list[Risk]
    open_and_trend: tuple


class _WeekLists(NamedTuple):
    """The week's events, its tickets (the CSV's rows), and the subjects of the four weeks before."""
    by_assignee: dict[str, tuple[int, int]]
    requests: int
    closed_numbers: set[int]
    tickets_of_week: list[TicketRow]
    closed_cases: list[ClosedCase]
    received: list[TicketRow]
    subjects_before: list[tuple[str, int]]


def _window_figures(read: Read, p: dict, weeks: list[Week]) -> _Window:
    plans = [plan_from_doc(doc) for doc, in read("SELECT doc FROM plans WHERE at >= %(start)s AND at < %(end)s "
                                                 "ORDER BY id", p)]
    return _Window(_resolutions(read, p), _ratings(read, p), _comments(read, p), _records(read, p), plans,
                   _stage_wait(read, p), _risks(read, p), _open_and_trend(read, p, weeks))


def _week_lists(read: Read, p: dict) -> _WeekLists:
    events = _week_events(read, p)
    tickets = _week_tickets(read, {**p, "closed": sorted(events[2])})
    return _WeekLists(*events, *tickets, _subjects_before(read, p))


def _origin_figures(origin: str, received: int, first_responses: dict[str, list[float]],
                    resolutions: list[dict], ratings: list[dict]) -> OriginFigures:
    responses = first_responses.get(origin) or []
    solved = sorted(h for r in resolutions if r["origin"] == origin for h in r["hours"])
    mine = [r for r in ratings if r["origin"] == origin]
    rated = sum(r["count"] for r in mine)
    return OriginFigures(
        received=received,
        median_first_response_hours=statistics.median(responses) if responses else None,
        median_resolution_hours=statistics.median(solved) if solved else None, resolved=len(solved),
        csat_average=sum(r["sum"] for r in mine) / rated if rated else None, csat_responses=rated)


def _resolutions(read: Read, p: dict) -> list[dict]:
    """The week's resolutions (one per ticket: the last in the week) by origin and assignee."""
    rows = read(f"""
        WITH res AS (
            SELECT DISTINCT ON (e.number) e.number, e.at FROM ticket_events e
            WHERE e.at >= %(start)s AND e.at < %(end)s AND {RESOLVING}
            ORDER BY e.number, e.position DESC),
        facts AS (
            SELECT {ORIGIN} AS origin, t.assignee, {HOURS.format(a="t.created_at", b="res.at")} AS hours,
                   {HOURS.format(a="t.created_at", b="fr.at")} AS fr_hours
            FROM res JOIN tickets t ON t.number = res.number {FIRST_RESPONSE}
            WHERE {ACTIVE})
        SELECT origin, assignee, count(*),
               count(*) FILTER (WHERE fr_hours <= %(fr_hours)s AND hours <= %(res_hours)s), array_agg(hours)
        FROM facts GROUP BY 1, 2""", p).fetchall()
    return [{"origin": o, "assignee": a, "count": n, "ok": ok, "hours": hours} for o, a, n, ok, hours in rows]


def _ratings(read: Read, p: dict) -> list[dict]:
    rows = read(f"""
        SELECT {ORIGIN}, t.assignee, e.detail::int, count(*)
        FROM ticket_events e JOIN tickets t ON t.number = e.number
        WHERE e.at >= %(start)s AND e.at < %(end)s AND e.kind = 'rated' AND e.detail ~ '^[0-9]+$' AND {ACTIVE}
        GROUP BY 1, 2, 3""", p).fetchall()
    return [{"origin": o, "assignee": a, "score": s, "count": n, "sum": s * n} for o, a, s, n in rows]


def _comments(read: Read, p: dict) -> list[tuple[str, int, str]]:
    return [(tag, score, comment) for tag, score, comment in read(f"""
        SELECT t.tag, e.detail::int, t.doc->>'rating_comment'
        FROM ticket_events e JOIN tickets t ON t.number = e.number
        WHERE e.at >= %(start)s AND e.at < %(end)s AND e.kind = 'rated' AND e.detail ~ '^[0-9]+$' AND {ACTIVE}
          AND coalesce(t.doc->>'rating_comment', '') <> ''
        ORDER BY e.number, e.position""", p)]


def _week_events(read: Read, p: dict) -> tuple[dict[str, tuple[int, int]], int, set[int]]:
    """Closes and reopens by assignee, feedback requests, and the tickets closed in the week."""
    rows = read(f"""
        SELECT t.assignee, count(*) FILTER (WHERE {CLOSING}), count(*) FILTER (WHERE e.kind = ANY(%(reopen)s)),
               count(*) FILTER (WHERE e.kind = 'feedback-requested'),
               coalesce(array_agg(DISTINCT e.number) FILTER (WHERE {CLOSING}), '{{}}')
        FROM ticket_events e JOIN tickets t ON t.number = e.number
        WHERE e.at >= %(start)s AND e.at < %(end)s AND {ACTIVE}
          -- only the events counted here: the week's others (most of them) need no ticket looked up
          AND ({CLOSING} OR e.kind = ANY(%(reopen)s) OR e.kind = 'feedback-requested')
        GROUP BY 1""", p).fetchall()
    by_assignee = {a: (closed, reopened) for a, closed, reopened, _, _ in rows if a is not None}
    return by_assignee, sum(r[3] for r in rows), {n for r in rows for n in r[4]}


def _open_and_trend(read: Read, p: dict, weeks: list[Week]):
    """The nine weeks' received, closed and open at their ends; the open ones at the week's end counted
    by stage and the first CARRIED_LISTED of them listed.

    A ticket is open from its creation until a move into ``closed``, and again after a move out of it;
    so the tickets open at a moment are the ones open now, less those created since, plus those closed
    since, less those reopened since.
    """
    # Bucket i (1..9) is week i of the window, 10 is everything since its end.
    created = [0] * 10
    for i, n in read("SELECT width_bucket(t.created_at, %(bounds)s::timestamptz[]), count(*) FROM tickets t "
                     "WHERE t.created_at >= %(window)s GROUP BY 1", p).fetchall():
        created[i - 1] = n
    # Every ticket with an event in the window is one the report looks at: no join with tickets.
    closed = [0] * 10
    reopened = [0] * 10
    for i, into, out_of in read(f"""
            SELECT width_bucket(e.at, %(bounds)s::timestamptz[]), count(*) FILTER (WHERE {CLOSING}),
                   count(*) FILTER (WHERE e.from_stage = 'closed' AND e.to_stage <> 'closed')
            FROM ticket_events e
            WHERE e.at >= %(window)s AND (e.to_stage = 'closed' OR e.from_stage = 'closed')
            GROUP BY 1""", p).fetchall():
        closed[i - 1], reopened[i - 1] = into, out_of
    open_now = read("SELECT count(*) FROM tickets WHERE stage <> 'closed'").fetchone()[0]
    open_at_end = [open_now - sum(created[i + 1:]) + sum(closed[i + 1:]) - sum(reopened[i + 1:]) for i in range(9)]
    trend = [WeekCounts(w.label, created[i], closed[i], open_at_end[i]) for i, w in enumerate(weeks)]

    # Open at the week's end: open now and untouched since, or in a stage other than closed before
    # their first stage event since (the stage that event left).  Counted by stage and overdue in SQL;
    # only the cases the report names come back with their columns (tens of thousands are open at a
    # million tickets).  Overdue is "created at or before overdue_at" (see there); the oldest first is
    # metrics' "largest age first", and the listed ones' ages are HOURS / 24 as metrics has them.
    age = HOURS.format(a="t.created_at", b="%(end)s")
    rows = read(f"""
            WITH later AS (
                SELECT DISTINCT ON (e.number) e.number, e.from_stage FROM ticket_events e
                WHERE e.at >= %(end)s AND e.to_stage IS NOT NULL ORDER BY e.number, e.position),
            open AS MATERIALIZED (
                SELECT t.number, t.stage, t.created_at, t.created_at <= %(overdue_at)s AS overdue
                FROM tickets t
                WHERE t.stage <> 'closed' AND t.created_at < %(end)s
                  AND NOT EXISTS (SELECT FROM later l WHERE l.number = t.number)
                UNION ALL
                SELECT t.number, l.from_stage, t.created_at, t.created_at <= %(overdue_at)s
                FROM later l JOIN tickets t ON t.number = l.number
                WHERE t.created_at < %(end)s AND l.from_stage <> 'closed')
            (SELECT NULL::int, stage, NULL, NULL, NULL, NULL, NULL::float8, NULL::bool, NULL, count(*),
                    count(*) FILTER (WHERE overdue)
             FROM open GROUP BY stage)
            UNION ALL
            (SELECT o.number, o.stage, t.tag, t.subject, t.customer, t.assignee, {age} / 24, o.overdue, t.priority,
                    NULL, NULL
             FROM (SELECT * FROM open ORDER BY overdue DESC, created_at, number LIMIT %(listed)s) o
             JOIN tickets t ON t.number = o.number
             ORDER BY o.overdue DESC, o.created_at, o.number)""",
                {**p, "listed": CARRIED_LISTED, "overdue_at": overdue_at(p["end"], p["res_hours"])}).fetchall()
    open_by_stage = {s: 0 for s in STAGES if s != "closed"}
    carried: list[OpenCase] = []
    count = overdue = 0
    for number, stage, tag, subject, customer, assignee, age, late, priority, n, n_late in rows:
        if number is None:  # a stage's counts
            open_by_stage[stage] += n
            count += n
            overdue += n_late
        else:
            carried.append(OpenCase(tag, subject, customer, stage, assignee, age, late, priority))
    return trend, open_by_stage, carried, count, overdue


def overdue_at(end: datetime, resolution_hours: float) -> datetime:
    """The latest creation time of a ticket overdue at ``end``, as metrics decides it.

    metrics: overdue when age * 24 > the resolution hours, age = microseconds / 10**6 / 3600 / 24 in
    binary floating point.  That is monotonic in the microseconds, so it holds from one whole number
    of them on: found here next to the exact figure, so that SQL compares creation times instead of
    computing every open ticket's age (some 60,000 at a million tickets).
    """
    def overdue(us: int) -> bool:
        return (us / 10**6 / 3600 / 24) * 24 > resolution_hours

    us = min(max(0, round(resolution_hours * 3600 * 10**6)), 10**17)
    while us > 0 and overdue(us - 1):
        us -= 1
    while not overdue(us) and us < 10**17:
        us += 1
    try:
        return end - timedelta(microseconds=us)
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _stage_wait(read: Read, p: dict) -> dict[str, float]:
    """Average hours in each stage for stays that ended in the week (metrics._stage_wait).

    A stay ends at a stage event that changes the stage (one naming the stage the ticket is in changes
    nothing), and began at the change before it (one lookup back) or the ticket's creation.
    """
    rows = read(f"""
        SELECT coalesce(e.from_stage, 'received') AS stage,
               array_agg({HOURS.format(a="coalesce(before.at, t.created_at)", b="e.at")} ORDER BY e.number, e.position),
               min(array[e.number, e.position])
        FROM ticket_events e JOIN tickets t ON t.number = e.number
        LEFT JOIN LATERAL (
            SELECT b.at FROM ticket_events b
            WHERE b.number = e.number AND b.position < e.position AND {CHANGE.format(e="b")}
            ORDER BY b.position DESC LIMIT 1) before ON true
        WHERE e.at >= %(start)s AND e.at < %(end)s AND {CHANGE.format(e="e")}
          AND coalesce(e.from_stage, 'received') <> 'closed'
        GROUP BY 1""", p).fetchall()
    # Summed in Python in ticket and event order, and the stages in the order they first came up,
    # as the pure function sums and lists them.
    return {stage: sum(hours) / len(hours) for stage, hours, _ in sorted(rows, key=lambda r: r[2])}


def _records(read: Read, p: dict):
    return [record_from_doc(doc) for doc, in read(
        "SELECT doc FROM staff_records WHERE at >= %(start)s AND at < %(end)s ORDER BY id", p)]


def _risks(read: Read, p: dict) -> list[Risk]:
    return [Risk(*row) for row in read(f"""
        SELECT t.tag, t.subject, t.customer, e.at, e.actor, coalesce(e.detail, ''), t.stage
        FROM ticket_events e JOIN tickets t ON t.number = e.number
        WHERE e.at >= %(start)s AND e.at < %(end)s AND e.kind = 'risk' AND {ACTIVE}
        ORDER BY e.at, e.number, e.position""", p)]


def _week_tickets(read: Read, p: dict) -> tuple[list[TicketRow], list[ClosedCase], list[TicketRow]]:
    """The tickets received or closed in the week as the CSV lists them, the closed ones' cases, and
    the received ones.

    Their hours come from their events in SQL (first response, last and first resolution), so no
    ticket history is built in Python: at a million tickets a week holds some 20,000 tickets.  The
    week's new tickets are read by their range of numbers (one run of each primary key, as numbers
    are given out as tickets come in; rows in the range created at other times are left out), and
    the older ones closed in the week by number.
    """
    # The first (or last) event of a kind by position, as [position, microseconds since the epoch]:
    # min() over arrays compares them in order, with no sort per ticket as array_agg(... ORDER BY) has.
    # Hours from microseconds are HOURS' very figures (both are the whole microseconds between).
    moment = "ARRAY[e.position::bigint, (extract(epoch from e.at) * 1000000)::bigint]"
    first = "min(" + moment + ") FILTER (WHERE {})"
    hours = "((ev.{}[2] - (extract(epoch from t.created_at) * 1000000)::bigint)::float8 / 1000000 / 3600)"
    new = "t.created_at >= %(start)s AND t.created_at < %(end)s"
    columns = ("t.number, t.tag, t.subject, t.customer, t.stage, t.assignee, t.priority, t.created_at, t.rating, "
               "coalesce(t.doc->>'summary', '') AS summary, coalesce(t.doc->>'lessons', '') AS lessons")
    # (The documents' fields are read before the join, so that the join carries no documents.)
    rows = read(f"""
        WITH week AS MATERIALIZED (SELECT t.number FROM tickets t WHERE {new}),
        span AS (SELECT coalesce(min(number), 0) AS lo, coalesce(max(number), -1) AS hi FROM week),
        wanted AS MATERIALIZED (
            SELECT {columns} FROM tickets t, span WHERE t.number BETWEEN span.lo AND span.hi AND {new}
            UNION ALL
            SELECT {columns} FROM tickets t WHERE t.number = ANY(%(closed)s::int[]) AND NOT ({new})),
        ev AS (
            SELECT e.number,
                   {first.format("e.actor = ANY(%(staff)s::text[]) AND e.kind <> ALL(%(not_staff)s::text[])")} AS fr,
                   max({moment}) FILTER (WHERE {RESOLVING}) AS last_res,
                   {first.format(RESOLVING)} AS first_res
            FROM ticket_events e, span
            WHERE e.number BETWEEN span.lo AND span.hi OR e.number = ANY(%(closed)s::int[])
            GROUP BY e.number)
        SELECT t.number, t.tag, t.subject, t.customer, t.stage, t.assignee, t.priority, t.created_at,
               {hours.format("fr")}, {hours.format("last_res")}, t.rating, t.summary, t.lessons,
               {hours.format("first_res")},
               t.number = ANY(%(closed)s::int[]), {new}
        FROM wanted t LEFT JOIN ev ON ev.number = t.number
        ORDER BY t.number""", p).fetchall()
    tickets = [TicketRow(*row[:13]) for row in rows]
    cases = [ClosedCase(tag, subject, customer, assignee, summary, lessons, rating, first_res)
             for (_, tag, subject, customer, _, assignee, _, _, _, _, rating, summary, lessons, first_res, closed, _)
             in rows if closed]
    return tickets, cases, [t for t, row in zip(tickets, rows) if row[15]]


def _subjects_before(read: Read, p: dict) -> list[tuple[str, int]]:
    """The four weeks before the week's subjects, each with its count (subjects repeat)."""
    return read("SELECT subject, count(*) FROM tickets WHERE created_at >= %(earlier)s AND created_at < %(start)s "
                "GROUP BY subject", p).fetchall()


def _growing_topics(subjects_before: list[tuple[str, int]], received: list[str]) -> list[Suggestion]:
    """metrics._suggestions' "growing-topic" items, with the four earlier weeks' subjects counted in SQL."""
    this_week: Counter = Counter()
    for subject, n in Counter(received).items():  # subjects repeat: each read once
        for term in topics(subject):
            this_week[term] += n
    before: Counter = Counter()
    for subject, n in subjects_before:
        for term in topics(subject):
            before[term] += n
    growing = [(term, n) for term, n in this_week.items() if n >= 3 and n >= 2 * (before[term] / 4) + 1]
    return [Suggestion("growing-topic", {"term": term, "count": n, "average": round(before[term] / 4, 1)})
            for term, n in sorted(growing, key=lambda x: (-x[1], x[0]))[:2]]
