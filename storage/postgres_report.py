"""The weekly report of the PostgreSQL store, computed where the tickets are.

``reports/metrics.py::weekly_report`` defines every figure over whole
tickets; building those for the nine weeks a report shows means decoding
every active ticket document (83 s at a million tickets).  Here the figures
over many tickets are SQL over ``ticket_events`` (one row per event, kept by
a trigger, migration 0003) and the tickets' columns, and Python only builds
what is a short list (closed cases, risks, comments, the week's tickets for
the CSV, the topics of subjects).  The result is the very same
``WeeklyReport``; ``tests/test_report_sql.py`` holds the two side by side.

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
from collections.abc import Callable
from operator import itemgetter

from maildesk.model import STAGES, Event, Ticket
from maildesk.reports.metrics import (NOT_STAFF_ACTIONS, REOPEN_KINDS, ClosedCase, OpenCase, OriginFigures, Policy,
                                      Risk, Suggestion, Week, WeekCounts, WeeklyReport, _hours, _scorecard,
                                      _suggestions, percentile, recurring_topics, resolution_events, topics)
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


def weekly_report(read: Read, week: Week, policy: Policy) -> WeeklyReport:
    # These queries are many short index walks: compiling them (JIT) would cost more than running them.
    jit = read("SELECT current_setting('jit'), set_config('jit', 'off', false)").fetchone()[0]
    # Some 150,000 objects that all live on (a million tickets: the week's tickets, events and open
    # cases): the cyclic collector would walk them again and again while they are built, for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        report = _weekly_report(read, week, policy)
    finally:
        if collecting:
            gc.enable()
    read("SELECT set_config('jit', %s, false)", (jit,))  # (left off after an error: harmless for the desk)
    return report


def _weekly_report(read: Read, week: Week, policy: Policy) -> WeeklyReport:
    start, end = week.start, week.end
    weeks = [week.previous(back) for back in range(8, -1, -1)]
    bounds = [w.start for w in weeks] + [end]
    p = {"start": start, "end": end, "window": bounds[0], "bounds": bounds,
         "staff": sorted(policy.staff), "not_staff": list(NOT_STAFF_ACTIONS), "reopen": list(REOPEN_KINDS),
         "internal": sorted(policy.internal_domains), "fr_hours": float(policy.first_response_hours),
         "res_hours": float(policy.resolution_hours)}

    received_n, first_responses = _received(read, p)
    resolutions = _resolutions(read, p)
    ratings = _ratings(read, p)
    by_assignee, requests, closed_numbers = _week_events(read, p)
    trend, open_by_stage, carried = _open_and_trend(read, p, weeks, policy)

    # The events of the week's new tickets by their range of numbers: one run of the primary key when
    # numbers are given out as tickets come in (events of other tickets in the range are dropped).
    received = _tickets(read, "t.created_at >= %(start)s AND t.created_at < %(end)s", p,
                        lambda numbers: ("number >= %s AND number <= %s", (numbers[0], numbers[-1])))
    others = sorted(closed_numbers - {t.number for t in received})
    tickets_of_week = sorted(received + _tickets(read, "t.number = ANY(%(numbers)s)", {"numbers": others},
                                                 lambda numbers: ("number = ANY(%s)", (numbers,))),
                             key=lambda t: t.number)
    closed_in_week = [t for t in tickets_of_week if t.number in closed_numbers]

    fr_all = sorted(h for hours in first_responses.values() for h in hours)
    res_all = sorted(h for r in resolutions for h in r["hours"])
    resolved = sum(r["count"] for r in resolutions)
    on_time = sum(r["ok"] for r in resolutions)
    rated = sum(r["count"] for r in ratings)
    rating_sum = sum(r["sum"] for r in ratings)
    distribution = {score: 0 for score in range(1, 6)}
    for r in ratings:
        distribution[r["score"]] += r["count"]

    scores = _scorecard(week, [], _records(read, p), policy, [], [])
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
        received=received_n, closed=len(closed_numbers), open_at_end=sum(open_by_stage.values()),
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
        comments=_comments(read, p),
        trend=trend,
        closed_cases=[ClosedCase(t.tag, t.subject, t.customer, t.assignee, t.summary, t.lessons, t.rating,
                                 next((_hours(t.created_at, e.at) for e in resolution_events(t)), None))
                      for t in closed_in_week],
        recurring=recurring_topics(tickets_of_week),
        carried_over=carried,
        plans=[plan_from_doc(doc) for doc, in read("SELECT doc FROM plans WHERE at >= %(start)s AND at < %(end)s "
                                                  "ORDER BY id", p)],
        suggestions=[],
        technicians=scores,
        stage_wait_hours=_stage_wait(read, p),
        tickets_of_week=tickets_of_week,
    )
    report.suggestions = _growing_topics(read, p, week, received) + _suggestions(report, week, [])
    report.risks = _risks(read, p)
    if policy.internal_domains:
        report.by_origin = {origin: _origin_figures(origin, received, first_responses, resolutions, ratings, policy)
                            for origin in ("internal", "external")}
    return report


def _origin_figures(origin: str, received: list[Ticket], first_responses: dict[str, list[float]],
                    resolutions: list[dict], ratings: list[dict], policy: Policy) -> OriginFigures:
    responses = first_responses.get(origin) or []
    solved = sorted(h for r in resolutions if r["origin"] == origin for h in r["hours"])
    mine = [r for r in ratings if r["origin"] == origin]
    rated = sum(r["count"] for r in mine)
    return OriginFigures(
        received=sum(1 for t in received if policy.origin(t.customer) == origin),
        median_first_response_hours=statistics.median(responses) if responses else None,
        median_resolution_hours=statistics.median(solved) if solved else None, resolved=len(solved),
        csat_average=sum(r["sum"] for r in mine) / rated if rated else None, csat_responses=rated)


def _received(read: Read, p: dict) -> tuple[int, dict[str, list[float]]]:
    """Tickets received in the week, and their first-response hours by origin."""
    rows = read(f"""
        SELECT {ORIGIN} AS origin, count(*),
               coalesce(array_agg({HOURS.format(a="t.created_at", b="fr.at")}) FILTER (WHERE fr.at IS NOT NULL),
                        '{{}}')
        FROM tickets t {FIRST_RESPONSE}
        WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
        GROUP BY 1""", p).fetchall()
    return sum(n for _, n, _ in rows), {origin: sorted(hours) for origin, _, hours in rows}


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
        GROUP BY 1""", p).fetchall()
    by_assignee = {a: (closed, reopened) for a, closed, reopened, _, _ in rows if a is not None}
    return by_assignee, sum(r[3] for r in rows), {n for r in rows for n in r[4]}


def _open_and_trend(read: Read, p: dict, weeks: list[Week], policy: Policy):
    """The nine weeks' received, closed and open at their ends; the open ones at the week's end listed.

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
    # their first stage event since (the stage that event left).
    open_by_stage = {s: 0 for s in STAGES if s != "closed"}
    carried: list[OpenCase] = []
    # Age in days as OpenCase has it: hours (computed as metrics._hours does) / 24.
    age = HOURS.format(a="created_at", b="%(end)s")
    rows = read(f"""
            WITH later AS (
                SELECT DISTINCT ON (e.number) e.number, e.from_stage FROM ticket_events e
                WHERE e.at >= %(end)s AND e.to_stage IS NOT NULL ORDER BY e.number, e.position)
            SELECT number, tag, subject, customer, stage, assignee, {age} / 24, priority FROM (
                SELECT t.number, t.tag, t.subject, t.customer, t.stage, t.assignee, t.created_at, t.priority
                FROM tickets t
                WHERE t.stage <> 'closed' AND t.created_at < %(end)s
                  AND NOT EXISTS (SELECT FROM later l WHERE l.number = t.number)
                UNION ALL
                SELECT t.number, t.tag, t.subject, t.customer, l.from_stage, t.assignee, t.created_at, t.priority
                FROM later l JOIN tickets t ON t.number = l.number
                WHERE t.created_at < %(end)s AND l.from_stage <> 'closed') o""", p).fetchall()
    rows.sort(key=itemgetter(0))  # the store's order, which the stable sort below keeps among equals
    for _, tag, subject, customer, stage, assignee, age, priority in rows:
        open_by_stage[stage] += 1
        carried.append(OpenCase(tag, subject, customer, stage, assignee, age, age * 24 > policy.resolution_hours,
                                priority))
    carried.sort(key=lambda c: (not c.overdue, -c.age_days))
    return trend, open_by_stage, carried


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


def _tickets(read: Read, where: str, params: dict,
             events_of: Callable[[list[int]], tuple[str, tuple]]) -> list[Ticket]:
    """Whole tickets without their messages: the columns, and the events from their rows.

    The same objects the store's ``tickets(with_messages=False)`` decodes from the documents, built
    without reading the documents' JSON (three times slower at twenty thousand tickets).  The events are
    those the condition ``events_of(numbers)`` selects, of these tickets and maybe others (dropped here).
    """
    tickets = [Ticket(number=number, tag=tag, subject=subject, customer=customer, customer_name=customer_name or "",
                      stage=stage, language=language, created_at=created_at, updated_at=updated_at,
                      assignee=assignee, rating=rating, priority=priority, rating_comment=rating_comment or "",
                      summary=summary or "", lessons=lessons or "", linked_to=linked_to,
                      message_ids=message_ids or [])
               for (number, tag, subject, customer, customer_name, stage, language, created_at, updated_at, assignee,
                    rating, priority, rating_comment, summary, lessons, linked_to, message_ids) in read(
                   "SELECT number, tag, subject, customer, doc->>'customer_name', stage, language, created_at, "
                   "updated_at, assignee, rating, priority, doc->>'rating_comment', doc->>'summary', "
                   "doc->>'lessons', doc->>'linked_to', "
                   "ARRAY(SELECT jsonb_array_elements_text(coalesce(doc->'message_ids', '[]'::jsonb))) "
                   f"FROM tickets t WHERE {where} ORDER BY number", params).fetchall()]
    events = {t.number: t.events for t in tickets}
    if tickets:
        events_where, events_params = events_of([t.number for t in tickets])
        for number, at, actor, kind, from_stage, to_stage, detail in read(
                "SELECT number, at, actor, kind, from_stage, to_stage, detail FROM ticket_events "
                f"WHERE {events_where} ORDER BY number, position", events_params).fetchall():
            mine = events.get(number)
            if mine is not None:
                mine.append(Event(at, actor, kind, from_stage, to_stage, detail or ""))
    return tickets


def _growing_topics(read: Read, p: dict, week: Week, received: list[Ticket]) -> list[Suggestion]:
    """metrics._suggestions' "growing-topic" items, with the four earlier weeks' subjects counted in SQL."""
    this_week: Counter = Counter()
    for subject, n in Counter(t.subject for t in received).items():  # subjects repeat: each read once
        for term in topics(subject):
            this_week[term] += n
    before: Counter = Counter()
    for subject, n in read("SELECT subject, count(*) FROM tickets WHERE created_at >= %(earlier)s "
                           "AND created_at < %(start)s GROUP BY subject", {**p, "earlier": week.previous(4).start}):
        for term in topics(subject):
            before[term] += n
    growing = [(term, n) for term, n in this_week.items() if n >= 3 and n >= 2 * (before[term] / 4) + 1]
    return [Suggestion("growing-topic", {"term": term, "count": n, "average": round(before[term] / 4, 1)})
            for term, n in sorted(growing, key=lambda x: (-x[1], x[0]))[:2]]
