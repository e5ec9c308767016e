"""The weekly report computed in SQL (PostgreSQL store) equals the pure one (TinyDB store), field by field.

Randomised but seeded ticket histories cover every stage, skips, reopens, "not solved", ratings with
comments, risks, commands rejected before the first real response, staff records with levels,
internal requesters, events right on week boundaries in Asia/Shanghai, and tickets closed before the
nine weeks shown; the same tickets go into both stores (private PostgreSQL server).
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest

from maildesk.model import Event, PlanItem, StaffRecord, Ticket
from maildesk.reports.metrics import CARRIED_LISTED, Policy, Week
from maildesk.storage.codec import ticket_to_doc
from maildesk.storage.postgres import MIGRATIONS, PostgresStore, migrate
from maildesk.storage.store import TicketStore

from .desk import NO_SERVERS, REPO

SH = ZoneInfo("Asia/Shanghai")
ALICE, BOB, CAROL, LEAD = "alice@example.com", "bob@example.com", "carol@example.com", "lead@example.com"
OUTSIDER = "dave@example.com"  # staff, assigned, but not on the technicians' list
STAFF = (ALICE, BOB, CAROL, LEAD, OUTSIDER)
POLICY = Policy(first_response_hours=4, resolution_hours=48,
                technicians=((ALICE, "Alice Wang"), (BOB, "Bob Li"), (CAROL, "Carol Zhang")),
                staff=frozenset(STAFF), internal_domains=frozenset({"corp.example"}))
WEEK = Week(2026, 47, SH)
SUBJECTS = ["打印机卡纸", "三楼打印机卡纸", "VPN 断线", "VPN cannot connect from home", "邮箱已满无法收信",
            "SAP login fails", "SAP 登录失败", "printer jam on floor 3", "Outlook crashes on start", "网络很慢",
            "new laptop request", "投影仪无信号", "printer toner empty", "VPN 断线 again"]


def boundaries() -> list[datetime]:
    return [WEEK.previous(back).start for back in range(13, -3, -1)]  # oldest first


def when(rng: random.Random, base: datetime, hours: float) -> datetime:
    """A moment after ``base``; now and then exactly on a week boundary, to the microsecond."""
    later = base + timedelta(seconds=rng.randint(1, int(hours * 3600)), microseconds=rng.randint(0, 999_999))
    if rng.random() < 0.12:
        edge = next((b for b in boundaries() if b > base), None)
        if edge is not None:
            return edge
    return later


def history(rng: random.Random, number: int) -> Ticket:
    first = WEEK.previous(15).start
    span = (WEEK.end + timedelta(days=7) - first).total_seconds()
    created = first + timedelta(seconds=rng.uniform(0, span))
    if rng.random() < 0.05:
        created = rng.choice(boundaries())
    created = created.astimezone(timezone.utc)
    customer = rng.choice([f"user{number % 23}@cust{number % 5}.example", f"colleague{number % 7}@corp.example"])
    assignee = rng.choice([ALICE, BOB, CAROL, OUTSIDER, None])
    tech = assignee or rng.choice(STAFF)
    events = [Event(created, customer, "created", None, "received")]
    stage, at = "received", created
    rating, comment = None, ""
    quiet = rng.random() < 0.25  # quick tickets: closed within hours, long before many reports
    for _ in range(rng.randint(0, 12)):
        at = when(rng, at, 6 if quiet else 60)
        roll = rng.random()
        if roll < 0.08:
            events.append(Event(at, tech, "command-rejected", stage, stage, "#diagnos"))
        elif roll < 0.13:
            events.append(Event(at, tech, "note", None, None, "internal"))
        elif roll < 0.17:
            events.append(Event(at, customer, "customer-reply", stage, stage))
        elif roll < 0.21:
            events.append(Event(at, tech, "risk", None, None, f"disk failing on host {number}"))
        elif stage == "received":
            target = rng.choice(["diagnosing", "diagnosing", "proposed", "executing", "feedback", "closed"])
            events.append(Event(at, tech, target[:6], stage, target))
            stage = target
        elif stage == "diagnosing":
            target = rng.choice(["proposed", "executing", "feedback", "diagnosing"])
            events.append(Event(at, tech, "propose" if target == "proposed" else "step", stage, target))
            stage = target
        elif stage == "proposed":
            target = rng.choice(["executing", "diagnosing"])
            events.append(Event(at, customer, "customer-confirm" if target == "executing" else "customer-reject",
                                stage, target))
            stage = target
        elif stage == "executing":
            events.append(Event(at, tech, "resolve", stage, "feedback"))
            stage = "feedback"
            if rng.random() < 0.8:
                events.append(Event(at, "desk", "feedback-requested", stage, stage))
        elif stage == "feedback":
            pick = rng.random()
            if pick < 0.35:
                rating = rng.randint(1, 5)
                comment = rng.choice(["", "", "很快", "too slow", "谢谢"])
                events.append(Event(at, customer, "rated", stage, stage, str(rating)))
            elif pick < 0.55:
                events.append(Event(at, customer, "customer-not-solved", stage, "executing"))
                stage = "executing"
            else:
                events.append(Event(at, tech, "close", stage, "closed"))
                stage = "closed"
        elif stage == "closed":
            if rng.random() < 0.3:
                events.append(Event(at, tech, rng.choice(["reopen", "reopened"]), stage, "diagnosing"))
                stage = "diagnosing"
            else:
                break
    return Ticket(number=number, tag=f"TS-{number:06d}", subject=rng.choice(SUBJECTS), customer=customer,
                  customer_name=rng.choice(["", "王伟"]), stage=stage, language=rng.choice(["zh", "en"]),
                  created_at=created, updated_at=events[-1].at, assignee=assignee, rating=rating,
                  priority=rng.choice(["low", "normal", "normal", "high", "urgent"]), rating_comment=comment,
                  summary="换硒鼓" if stage == "closed" else "", lessons="备硒鼓" if stage == "closed" else "",
                  message_ids=[f"<m{number}@cust.example>"], events=events)


def generate(seed: int = 47, count: int = 600):
    rng = random.Random(seed)
    tickets = [history(rng, n) for n in range(1, count + 1)]
    records = []
    for i in range(40):
        at = WEEK.previous(rng.randint(-1, 3)).start + timedelta(hours=rng.randint(0, 24 * 7 - 1))
        kind = rng.choice(["commend", "warn"])
        level = rng.choice(["", "reward", "written", "verbal", "commendation"])
        records.append(StaffRecord(at, LEAD, kind, rng.choice([ALICE, BOB, CAROL, OUTSIDER]), f"reason {i}",
                                   level=level))
    records.append(StaffRecord(WEEK.start, LEAD, "appraisal", ALICE, "good", period="2026-11", scores=(("speed", 5),)))
    plans = [PlanItem(WEEK.start + timedelta(days=d), LEAD, f"plan {d}") for d in (-1, 0, 3, 7)]
    return tickets, records, plans


def truncated(t: Ticket, keep: int) -> Ticket:
    return dataclasses.replace(t, events=t.events[:keep])


def fill(store, tickets, records, plans) -> None:
    for t in tickets:
        # Saved in steps as the desk does (events appended), some with a history later rewritten shorter.
        if len(t.events) > 2 and t.number % 3 == 0:
            store.save_ticket(truncated(t, len(t.events) // 2))
        if t.number % 11 == 0:
            store.save_ticket(dataclasses.replace(t, events=t.events + [Event(t.created_at, "x@y", "bogus")] * 3))
        if t.number % 13 == 0 and len(t.events) > 1:
            store.save_ticket(dataclasses.replace(t, events=[*t.events[:-1], Event(t.created_at, "x@y", "other")]))
        store.save_ticket(t)
    for r in records:
        store.add_staff_record(r)
    for p in plans:
        store.add_plan(p)
    store.commit()


def assert_same(a, b, path="report"):
    """Equal structures; floats equal within 1e-9."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


WEEKS = [WEEK, WEEK.previous(), WEEK.previous(3), WEEK.previous(9), WEEK.next(), Week(2025, 1, SH)]


@pytest.fixture(scope="module")
def stores(postgres, tmp_path_factory):
    tickets, records, plans = generate()
    tiny = TicketStore(tmp_path_factory.mktemp("tiny") / "helpdesk.json")
    pg = PostgresStore(postgres.create_database())
    fill(tiny, tickets, records, plans)
    fill(pg, tickets, records, plans)
    yield tiny, pg, tickets
    tiny.close()
    pg.close()


@pytest.mark.parametrize("week", WEEKS, ids=[w.label for w in WEEKS])
def test_the_sql_report_is_the_pure_report(stores, week):
    tiny, pg, _ = stores
    expected, got = tiny.weekly_report(week, POLICY), pg.weekly_report(week, POLICY)
    assert_same(expected.to_json(), got.to_json())
    # Beyond to_json: the lists the text, the HTML and the CSV show, and the tickets themselves.
    assert_same(dataclasses.asdict(expected), dataclasses.asdict(got))


def test_the_generated_weeks_hold_what_the_report_measures(stores):
    tiny, _, tickets = stores
    report = tiny.weekly_report(WEEK, POLICY)
    assert report.received > 20 and report.closed > 5 and report.resolved > 5 and report.csat_responses > 2
    assert report.comments and report.risks and report.carried_over and report.stage_wait_hours
    # More open cases than the report names, overdue and not: the SQL must pick the same ones in order.
    assert report.carried_over_count > len(report.carried_over) == CARRIED_LISTED
    assert 0 < report.overdue_count < report.carried_over_count
    assert set(report.by_origin) == {"internal", "external"} and report.by_origin["internal"].received > 0
    assert any(t.commendations and t.commendation_levels for t in report.technicians)
    assert any(t.reopened for t in report.technicians)
    old = WEEK.previous(8).start
    assert any(t.stage == "closed" and t.events[-1].at < old for t in tickets)  # left out by both
    assert any(e.at == WEEK.start for t in tickets for e in t.events)
    empty = tiny.weekly_report(Week(2025, 1, SH), POLICY)
    assert empty.received == 0 and empty.open_at_end == 0 and empty.tickets_of_week == []
    # Rounding to the report's two decimals would hide a slip in the hours: compare them unrounded too.
    assert report.median_first_response_hours is not None and report.p90_resolution_hours is not None


def test_a_report_made_before_the_commit_sees_this_desks_writes_and_one_after_sees_only_committed_rows(postgres):
    tickets, records, plans = generate(seed=9, count=120)
    url = postgres.create_database()
    with PostgresStore(url) as pg:
        fill(pg, tickets, records, plans)
        before = pg.weekly_report(WEEK, POLICY).received
        created = WEEK.start + timedelta(days=2)
        extra = Ticket(number=len(tickets) + 1, tag=pg.format_tag(len(tickets) + 1), subject="Printer offline",
                       customer="new@cust1.example", customer_name="", stage="received", language="en",
                       created_at=created, updated_at=created,
                       events=[Event(created, "new@cust1.example", "created", None, "received")])
        pg.save_ticket(extra)  # not committed: only this desk's own connection sees it
        assert pg.weekly_report(WEEK, POLICY).received == before + 1
        with PostgresStore(url, readonly=True) as other:  # another process reading: not yet there
            assert other.weekly_report(WEEK, POLICY).received == before
        pg.commit()
        assert pg.weekly_report(WEEK, POLICY).received == before + 1
        with PostgresStore(url, readonly=True) as other:
            assert other.weekly_report(WEEK, POLICY).received == before + 1


def test_snapshot_readers_see_one_moment_while_others_commit(postgres):
    from maildesk.storage.postgres import SnapshotReaders

    url = postgres.create_database()
    with PostgresStore(url) as pg:
        fill(pg, *generate(seed=4, count=30))
    count = "SELECT count(*) FROM tickets"
    with SnapshotReaders(url, None, 2) as readers:
        first, second = readers.reads
        assert first(count).fetchone()[0] == 30
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM tickets WHERE number > 10")  # another desk commits meanwhile
        assert second(count).fetchone()[0] == 30, "the second connection reads the first one's moment"
        assert first(count).fetchone()[0] == 30
    with SnapshotReaders(url, None, 2) as readers:
        assert [read(count).fetchone()[0] for read in readers.reads] == [10, 10]


def test_a_report_refused_more_connections_is_made_on_one(postgres, caplog):
    url = postgres.create_database()
    with PostgresStore(url) as pg:
        fill(pg, *generate(seed=6, count=80))
        expected = pg.weekly_report(WEEK, POLICY).to_json()
    database = url.rsplit("/", 1)[1]
    with postgres.admin(database) as conn:  # a role the server lets in once at a time
        conn.execute("CREATE ROLE single_seat LOGIN CONNECTION LIMIT 1")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO single_seat")
    with PostgresStore(postgres.url(database, user="single_seat"), readonly=True) as lonely:
        assert lonely.weekly_report(WEEK, POLICY).to_json() == expected
    assert "the weekly report reads on one connection" in caplog.text


def test_the_events_table_follows_every_save(stores):
    _, pg, tickets = stores
    stored = pg._read("SELECT number, position, at, actor, kind, from_stage, to_stage, coalesce(detail, '') "
                      "FROM ticket_events ORDER BY number, position").fetchall()
    expected = [(t.number, i, e.at, e.actor, e.kind, e.from_stage, e.to_stage, e.detail)
                for t in tickets for i, e in enumerate(t.events, start=1)]
    assert stored == expected


def apply_sql(url: str, upto: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for path in sorted(MIGRATIONS.glob("*.sql")):
            version = int(path.name[:4])
            if version <= upto:
                conn.execute(path.read_text(encoding="utf-8"))
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.stem))


def test_migration_0003_fills_the_events_of_tickets_stored_before_it(postgres, tmp_path):
    tickets, records, plans = generate(seed=3, count=150)
    url = postgres.create_database(migrated=False)
    apply_sql(url, 2)
    with psycopg.connect(url, autocommit=True) as conn:  # as the desk of version 2 wrote them
        for t in tickets:
            doc = ticket_to_doc(t)
            conn.execute("INSERT INTO tickets (number, tag, subject, customer, stage, language, priority, assignee, "
                         "rating, created_at, updated_at, last_event_at, doc) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (t.number, t.tag, t.subject, t.customer, t.stage, t.language, t.priority, t.assignee,
                          t.rating, t.created_at, t.updated_at, t.events[-1].at, json.dumps(doc)))
    assert migrate(url) == ["0003_ticket_events"]
    tiny = TicketStore(tmp_path / "helpdesk.json")
    fill(tiny, tickets, records, plans)
    with PostgresStore(url) as pg:
        for r in records:
            pg.add_staff_record(r)
        for p in plans:
            pg.add_plan(p)
        pg.commit()
        assert pg._read("SELECT count(*) FROM ticket_events").fetchone()[0] == sum(len(t.events) for t in tickets)
        assert_same(tiny.weekly_report(WEEK, POLICY).to_json(), pg.weekly_report(WEEK, POLICY).to_json())
        # The analysts' view reads the rows now: same columns, customers still masked.
        row = pg._read("SELECT ticket, position, actor, kind FROM analytics.events WHERE kind = 'created' "
                       "ORDER BY ticket LIMIT 1").fetchone()
        assert row[:2] == (1, 1) and row[2].count("***@") == 1 and row[3] == "created"
    tiny.close()


def test_the_mail_text_html_and_csv_are_the_same_bytes_on_both_stores(stores, tmp_path):
    """What leadership receives does not depend on the store: text, HTML, chart images and CSV."""
    from maildesk.daemon.config import load_config
    from maildesk.reports.weekly import render_report
    from maildesk.templates import Renderer

    tiny, pg, _ = stores
    path = tmp_path / "desk.toml"
    path.write_text(CONFIG.format(storage=f'path = "{tmp_path}/helpdesk.json"'), encoding="utf-8")
    config = load_config(path)
    renderer = Renderer()
    expected = render_report(tiny.weekly_report(WEEK, POLICY), config, renderer)
    got = render_report(pg.weekly_report(WEEK, POLICY), config, renderer)
    assert expected.csv.count(b"\r\n") > 20 and len(expected.charts) == 3
    assert (got.subject, got.text, got.html, got.csv) == (expected.subject, expected.text, expected.html, expected.csv)
    assert [c.png for c in got.charts] == [c.png for c in expected.charts]


CONFIG = NO_SERVERS + """[storage]
{storage}
[team]
supervisor = "lead@example.com"
internal_domains = ["corp.example"]
[[team.technicians]]
email = "alice@example.com"
name = "Alice Wang"
[[team.technicians]]
email = "bob@example.com"
name = "Bob Li"
[report]
timezone = "Asia/Shanghai"
[security]
authserv_id = "mx.example.com"
"""


def test_helpdesk_report_prints_the_same_on_both_stores(postgres, tmp_path):
    tickets, records, plans = generate(seed=5, count=200)
    url = postgres.create_database()
    for kind, storage in (("tiny", f'path = "{tmp_path}/tiny/helpdesk.json"'), ("pg", f'url = "{url}"')):
        (tmp_path / f"{kind}.toml").write_text(CONFIG.format(storage=storage), encoding="utf-8")
    with TicketStore(tmp_path / "tiny" / "helpdesk.json") as tiny:
        fill(tiny, tickets, records, plans)
    with PostgresStore(url) as pg:
        fill(pg, tickets, records, plans)
    out = {}
    for kind in ("tiny", "pg"):
        proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(tmp_path / f"{kind}.toml"), "report",
                               "weekly", "--week", WEEK.label, "--json"], capture_output=True, text=True, cwd=REPO,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[kind] = proc.stdout
    assert json.loads(out["tiny"])["received"] > 0
    assert out["pg"] == out["tiny"]



LOADING_WHILE_COMPUTING = """
import sys, time
from maildesk.daemon.config import load_config
from maildesk.reports.weekly import rendered_report
from maildesk.storage.base import open_store
from maildesk.templates import Renderer
from tests.test_report_sql import WEEK

def charts_loaded():
    return hasattr(sys.modules.get("maildesk.reports.charts"), "render_charts")

config = load_config(sys.argv[1])
with open_store(config) as store:
    compute = store.weekly_report
    seen = []

    def weekly_report(week, policy):  # a store that computes until the charts are loaded (60 s at most)
        for _ in range(600):
            if charts_loaded():
                break
            time.sleep(0.1)
        seen.append(charts_loaded())
        return compute(week, policy)

    store.weekly_report = weekly_report
    assert not charts_loaded()
    rendered = rendered_report(store, config, WEEK, Renderer())
print(seen, len(rendered.charts), rendered.subject)
"""


def test_the_first_report_of_a_process_loads_its_charts_while_the_store_computes(tmp_path):
    tickets, records, plans = generate(seed=5, count=60)
    path = tmp_path / "desk.toml"
    path.write_text(CONFIG.format(storage=f'path = "{tmp_path}/helpdesk.json"'), encoding="utf-8")
    with TicketStore(tmp_path / "helpdesk.json") as tiny:
        fill(tiny, tickets, records, plans)
    proc = subprocess.run([sys.executable, "-c", LOADING_WHILE_COMPUTING, str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen, charts, subject = proc.stdout.split(" ", 2)
    assert (seen, charts) == ("[True]", "3")
    assert WEEK.label in subject


@pytest.mark.parametrize("hours", [48, 4.5, 0.1, 1 / 3, 72.000001, 0, -1])
def test_overdue_at_draws_the_line_where_the_pure_age_does(hours):
    """The SQL report counts overdue tickets by creation time: the same tickets as age * 24 > hours."""
    from maildesk.reports.metrics import _hours
    from maildesk.storage.postgres_report import overdue_at

    end = WEEK.end
    line = overdue_at(end, hours)
    exact = end - timedelta(microseconds=max(0, round(hours * 3600 * 10**6)))
    for base in (line, exact):
        for step in range(-3, 4):
            created = base + timedelta(microseconds=step)
            if created < end:
                assert (created <= line) == (_hours(created, end) / 24 * 24 > hours), (hours, step)
