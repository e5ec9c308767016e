"""Weekly metrics against hand-computed figures, time-zone edges included (no servers)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from maildesk.model import Event, PlanItem, StaffRecord, Ticket
from maildesk.reports.metrics import Policy, Week, percentile, recurring_topics, stage_at, weekly_report

SH = ZoneInfo("Asia/Shanghai")
ALICE, BOB, LEAD = "alice@example.com", "bob@example.com", "lead@example.com"
POLICY = Policy(first_response_hours=4, resolution_hours=48,
                technicians=((ALICE, "Alice Wang"), (BOB, "Bob Li")), staff=frozenset({ALICE, BOB, LEAD}))
W47 = Week(2026, 47, SH)


def local(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=SH)


def ticket(number, created, moves=(), *, rating=None, comment="", subject="打印机卡纸", assignee=ALICE,
           customer="c@cust.example"):
    """moves: (hours after creation, actor, kind, from, to, detail)"""
    events = [Event(created, customer, "created", None, "received")]
    for hours, actor, kind, a, b, *detail in moves:
        events.append(Event(created + timedelta(hours=hours), actor, kind, a, b, detail[0] if detail else ""))
    stage = next((e.to_stage for e in reversed(events) if e.to_stage), "received")
    return Ticket(number=number, tag=f"TS-{number:06d}", subject=subject, customer=customer, customer_name="",
                  stage=stage, language="zh", created_at=created, updated_at=created, assignee=assignee,
                  rating=rating, rating_comment=comment, summary="换硒鼓" if stage == "closed" else "",
                  lessons="备硒鼓" if stage == "closed" else "", events=events)


A = ticket(1, local(16, 10), [
    (1, ALICE, "diagnose", "received", "diagnosing"),
    (20, ALICE, "resolve", "diagnosing", "feedback"), (20, "desk", "feedback-requested", "feedback", "feedback"),
    (30, "c@cust.example", "rated", "feedback", "feedback", "5"),
    (40, ALICE, "close", "feedback", "closed")], rating=5, comment="很快")
B = ticket(2, local(22, 23, 30), subject="VPN 断线")  # Sunday 23:30 in Shanghai: still week 47
C = ticket(3, local(9, 10), [
    (6, ALICE, "diagnose", "received", "diagnosing"),
    (192, ALICE, "resolve", "diagnosing", "feedback"), (192, "desk", "feedback-requested", "feedback", "feedback"),
    (216, "c@cust.example", "rated", "feedback", "feedback", "2")], rating=2, comment="太慢了")
D = ticket(4, local(23, 0, 30))  # Monday 00:30: week 48
E = ticket(5, local(18, 9), [
    (2, ALICE, "execute", "received", "executing"),
    (10, ALICE, "resolve", "executing", "feedback"), (10, "desk", "feedback-requested", "feedback", "feedback"),
    (12, "c@cust.example", "customer-not-solved", "feedback", "executing"),
    (14, ALICE, "resolve", "executing", "feedback"), (14, "desk", "feedback-requested", "feedback", "feedback")])
RECORDS = [StaffRecord(local(17, 9), LEAD, "commend", ALICE, "周末恢复服务器"),
           StaffRecord(local(10, 9), LEAD, "warn", BOB, "上周的事")]
PLANS = [PlanItem(local(20, 9), LEAD, "下周巡检打印机"), PlanItem(local(12, 9), LEAD, "旧计划")]


@pytest.fixture(scope="module")
def report():
    return weekly_report(W47, [A, B, C, D, E], RECORDS, PLANS, POLICY)


def test_week_boundaries_are_local_midnights():
    assert W47.start == datetime(2026, 11, 15, 16, 0, tzinfo=timezone.utc)
    assert W47.end == datetime(2026, 11, 22, 16, 0, tzinfo=timezone.utc)
    assert Week.containing(datetime(2026, 11, 22, 15, 30, tzinfo=timezone.utc), SH).label == "2026-W47"
    assert Week.containing(datetime(2026, 11, 22, 16, 30, tzinfo=timezone.utc), SH).label == "2026-W48"
    assert Week.last_complete(datetime(2026, 11, 23, 1, 0, tzinfo=SH), SH).label == "2026-W47"
    assert Week.parse("2026-W01", SH).previous().label == "2025-W52"
    assert Week.parse("2020-W53", SH).next().label == "2021-W01"
    with pytest.raises(ValueError):
        Week.parse("2026-W54", SH)


def test_counts(report):
    assert (report.received, report.closed, report.open_at_end) == (3, 1, 3)
    assert report.open_by_stage == {"received": 1, "diagnosing": 0, "proposed": 0, "executing": 0, "feedback": 2}


def test_response_and_resolution_times(report):
    assert report.median_first_response_hours == 1.5  # A 1 h, E 2 h; B had none
    assert report.median_resolution_hours == 20  # A 20, C 192, E 14 (its last resolution)
    assert report.p90_resolution_hours == pytest.approx(157.6)
    assert report.sla_met_rate == pytest.approx(2 / 3)  # C's first response took 6 h


def test_satisfaction(report):
    assert (report.csat_average, report.csat_responses, report.csat_requests) == (3.5, 2, 4)
    assert report.csat_response_rate == 0.5
    assert report.csat_distribution == {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}
    assert sorted(report.comments) == [("TS-000001", 5, "很快"), ("TS-000003", 2, "太慢了")]


def test_scorecard(report):
    alice, bob = report.technicians
    assert (alice.closed, alice.resolved, alice.reopened, alice.commendations, alice.warnings) == (1, 3, 1, 1, 0)
    assert alice.on_time_rate == pytest.approx(2 / 3) and alice.average_rating == 3.5
    assert (bob.closed, bob.on_time_rate, bob.average_rating, bob.warnings) == (0, None, None, 0)


def test_cases_plans_and_carry_over(report):
    assert [(c.tag, c.summary, c.lessons) for c in report.closed_cases] == [("TS-000001", "换硒鼓", "备硒鼓")]
    assert [p.text for p in report.plans] == ["下周巡检打印机"]
    # Overdue first (C is 13 days old), then by age.
    assert [(c.tag, c.overdue) for c in report.carried_over] == [
        ("TS-000003", True), ("TS-000005", True), ("TS-000002", False)]


def test_trend_covers_nine_weeks(report):
    assert [w.label for w in report.trend][-2:] == ["2026-W46", "2026-W47"]
    assert len(report.trend) == 9
    assert (report.trend[-2].received, report.trend[-2].open_at_end) == (1, 1)  # C, open at W46's end
    assert (report.trend[-1].received, report.trend[-1].closed) == (3, 1)


def test_stage_at_replays_events():
    assert stage_at(E, local(18, 8)) is None
    assert stage_at(E, local(18, 20)) == "feedback"
    assert stage_at(E, local(18, 22)) == "executing"
    assert stage_at(A, W47.end) == "closed"


def test_percentile():
    assert percentile([], 90) is None and percentile([7], 90) == 7
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([10, 20], 90) == 19


def test_recurring_topics_and_suggestions():
    printers = [ticket(10 + i, local(17, 9 + i), subject=s) for i, s in
                enumerate(["打印机卡纸", "三楼打印机不出纸", "打印机报错 E3", "VPN 断线"])]
    [found] = recurring_topics(printers)
    assert (found.term, found.count, found.tags) == ("打印机", 3, ("TS-000010", "TS-000011", "TS-000012"))
    report = weekly_report(W47, printers + [C], [], [], POLICY)
    kinds = {s.kind: s.params for s in report.suggestions}
    assert kinds["growing-topic"]["count"] == 3
    assert kinds["overdue"] == {"count": 5}  # the four untouched tickets are 5 days old, C is 13
    assert kinds["slow-stage"]["stage"] == "diagnosing"
    assert kinds["low-csat"] == {"average": 2.0}


def test_json_has_the_contract_keys(report):
    data = report.to_json()
    for key in ("received", "closed", "open_at_end", "median_first_response_hours", "median_resolution_hours",
                "sla_met_rate", "csat_average", "csat_responses", "technicians"):
        assert key in data
    assert set(data["technicians"][0]) >= {"email", "name", "closed", "on_time_rate", "average_rating",
                                           "commendations", "warnings"}


def test_chinese_charts_use_a_cjk_font_and_are_png(report):
    from maildesk.reports.charts import cjk_font, render_charts
    from maildesk.templates import Renderer

    assert cjk_font() is not None, "scripts/install installs fonts-wqy-microhei"
    charts = render_charts(report, "zh", Renderer())
    assert [c.filename for c in charts] == ["trend.png", "stages.png", "ratings.png"]
    assert all(c.png.startswith(b"\x89PNG") and len(c.png) > 2000 for c in charts)
    assert charts[0].alt.startswith("柱状图") and charts[0].title == "近 9 周受理与归档工单数"
