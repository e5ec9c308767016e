"""Store benchmark: the TinyDB store against the PostgreSQL store, and PostgreSQL at scale.

    python bench/store.py                 # 1,000,000 stored tickets in PostgreSQL
    python bench/store.py --quick         # 50,000 (what CI could run)
    python bench/store.py --report-only   # only step 3 (pre-load and report), no intake

Runs the daemon's real intake (parse, route, apply, one commit per batch of
25, with the attempt records before) over generated mail, with the IMAP
server replaced by an in-memory list so that only the store differs, on:

1. an empty TinyDB store and an empty PostgreSQL database (fsync on, as in
   production): mails/s and their ratio;
2. the PostgreSQL database pre-loaded with N tickets (a year of history,
   three Message-IDs each): per-mail cost against the empty one, and this
   process's resident memory, which must not follow N;
3. the weekly report over those N tickets: ``store.weekly_report`` (the
   figures in SQL, storage/postgres_report.py) and the rendering (text,
   HTML, three charts, CSV), four times in one process.  The first is
   made as a one-report process makes it (``rendered_report``) and pays what
   a process pays once: loading matplotlib and compiling the templates,
   which run while the store computes.  The other three are what the desk
   pays each week (their median); a restarted desk too, as ``helpdesk run``
   loads the rendering the first time it waits for mail.  The process's
   resident memory after the reports, and its peak, must not follow N either.

Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from bench.intake import new_mails  # noqa: E402
from maildesk.daemon.config import load_config  # noqa: E402
from maildesk.daemon.intake import IntakeRunner  # noqa: E402
from maildesk.daemon.mailbox import Fetched  # noqa: E402
from maildesk.model import Event, Message, Ticket  # noqa: E402
from maildesk.reports.metrics import Week  # noqa: E402
from maildesk.reports.weekly import policy_for, render_report, rendered_report  # noqa: E402
from maildesk.storage.codec import ticket_to_doc  # noqa: E402
from maildesk.storage.postgres import PostgresStore  # noqa: E402
from maildesk.storage.store import TicketStore  # noqa: E402
from maildesk.templates import Renderer, default_renderer  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

STAGES = ["received", "diagnosing", "proposed", "executing", "feedback", "closed"]


class ListMailbox:
    """The IMAP side as a list: only the store's cost is measured."""

    def __init__(self, raws: list[bytes]) -> None:
        self.mails = {uid: raw for uid, raw in enumerate(raws, start=1)}

    def waiting_uids(self) -> list[int]:
        return sorted(self.mails)

    def fetch(self, uids, max_bytes):
        return [Fetched(uid, len(self.mails[uid]), self.mails[uid]) for uid in uids]

    def move_soon(self, moves) -> Future:
        for uids, _folder in moves:
            for uid in uids:
                self.mails.pop(uid, None)
        done: Future = Future()
        done.set_result(None)
        return done


def vm(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    """Start VmHWM (peak resident memory) afresh from here (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def intake(store, config, raws: list[bytes]) -> tuple[float, list[float]]:
    """Seconds for all mails, and per-batch milliseconds per mail."""
    runner = IntakeRunner(config, store, ListMailbox(raws), default_renderer())
    per_mail = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        result = runner.run_batch()
        if not result.handled:
            break
        per_mail.append((time.perf_counter() - t0) * 1000 / result.handled)
    return time.perf_counter() - started, per_mail


def preload_postgres(url: str, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` tickets over the last year, written with COPY; returns some (customer, ack id) to reply to."""
    import psycopg

    now = datetime.now(timezone.utc)
    # Numbers are allocated as tickets come in: the oldest ticket has the lowest number, as in a real
    # desk (and so the rows of a week lie together, as they would).
    ages = sorted((rng.randint(10, 60 * 24 * 365) for _ in range(count)), reverse=True)
    replyable = []
    with psycopg.connect(url, autocommit=False) as conn:
        for start in range(0, count, 50_000):
            tickets, mids = io.StringIO(), io.StringIO()
            for i in range(start, min(count, start + 50_000)):
                number = i + 1
                tag = f"TS-{number:06d}"
                customer = f"old{i}@cust{i % 97}.example"
                created = now - timedelta(minutes=ages[i])
                stage = "closed" if now - created > timedelta(days=30) else rng.choice(STAGES)
                ack_id = f"<ack.{tag}.{i:08x}@example.com>"
                ids = [f"<c{i}@cust.example>", ack_id, f"<n{i}@example.com>"]
                events = [Event(created, customer, "created", None, "received")]
                if stage != "received":
                    events.append(Event(created + timedelta(hours=1), "alice@example.com", "stage", "received", stage))
                t = Ticket(number=number, tag=tag, subject=f"Printer jam {i % 50}", customer=customer,
                           customer_name="", stage=stage, language="en", created_at=created, updated_at=created,
                           rating=rng.randint(1, 5) if stage == "closed" and i % 3 else None, message_ids=ids,
                           messages=[Message("in", customer, ["support@example.com"], created,
                                             "The printer on floor 3 jams on every page.\n" * 3, ids[0])],
                           events=events)
                doc = orjson.dumps(ticket_to_doc(t)).decode().replace("\\", "\\\\")
                tickets.write("\t".join([str(number), tag, t.subject, customer, stage, "en", "normal", "\\N",
                                         str(t.rating) if t.rating else "\\N", created.isoformat(),
                                         created.isoformat(), events[-1].at.isoformat(), doc]) + "\n")
                for mid in ids:
                    mids.write(f"{mid}\t{number}\n")
                if stage != "closed" and len(replyable) < 5000:
                    replyable.append((customer, ack_id))
            with conn.cursor() as cur:
                with cur.copy("COPY tickets (number, tag, subject, customer, stage, language, priority, assignee, "
                              "rating, created_at, updated_at, last_event_at, doc) FROM STDIN") as copy:
                    copy.write(tickets.getvalue())
                with cur.copy("COPY ticket_message_ids (message_id, number) FROM STDIN") as copy:
                    copy.write(mids.getvalue())
            conn.commit()
        conn.execute("UPDATE counters SET value = %s WHERE name = 'next_ticket'", (count + 1,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # Write the loaded gigabytes out now: a checkpoint during the timings below would measure the
        # loader's disk writes, which a desk's database does not have.
        conn.execute("CHECKPOINT")
    return replyable


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 stored tickets, 1,000 mails")
    parser.add_argument("--tickets", type=int, default=None)
    parser.add_argument("--mails", type=int, default=None)
    parser.add_argument("--report-only", action="store_true", help="skip the intake measurements")
    args = parser.parse_args(argv)
    tickets = args.tickets if args.tickets is not None else (50_000 if args.quick else 1_000_000)
    mails = args.mails or (1000 if args.quick else 2000)
    config = load_config(REPO / "config.toml", environ={"HELPDESK_IMAP_PASSWORD": "-", "HELPDESK_SMTP_PASSWORD": "-"})
    rng = random.Random(11)
    work = Path(tempfile.mkdtemp(prefix="maildesk-bench-store-"))
    server = PostgresServer(durable=True).start()
    try:
        raws = new_mails(mails, [], rng)
        if not args.report_only:
            with TicketStore(work / "tiny" / "helpdesk.json") as store:
                tiny_s, tiny_per = intake(store, config, raws)
            with PostgresStore(server.create_database()) as store:
                pg0_s, pg0_per = intake(store, config, raws)
            print(f"intake, empty store, {mails} mails: TinyDB {mails / tiny_s:.0f} mails/s, PostgreSQL "
                  f"{mails / pg0_s:.0f} mails/s: ratio {tiny_s / pg0_s:.2f} (target >= 0.8)")

        url = server.create_database()
        t0 = time.perf_counter()
        # In a child process: the memory measured below is the desk's own, not the loader's.
        with multiprocessing.get_context("fork").Pool(1) as pool:
            replyable = pool.apply(preload_postgres, (url, tickets, rng))
        print(f"pre-loaded {tickets:,} tickets into PostgreSQL in {time.perf_counter() - t0:.0f} s")
        raws = new_mails(mails, replyable, rng)
        reset_peak()
        rss_before = vm("VmRSS")
        with PostgresStore(url) as store:
            if not args.report_only:
                pgn_s, pgn_per = intake(store, config, raws)
            rss_after = vm("VmRSS")
            week = Week.last_complete(datetime.now(timezone.utc), config.report.timezone)
            renderer = Renderer()  # a desk keeps one renderer: its templates are compiled at their first use
            # The first report of a process, as the desk makes it (reports/weekly.py rendered_report):
            # matplotlib and the templates load while the store computes.
            assert "maildesk.reports.charts" not in sys.modules
            t0 = time.perf_counter()
            rendered_report(store, config, week, renderer)
            first = time.perf_counter() - t0
            runs = []
            for _ in range(3):
                t1 = time.perf_counter()
                report = store.weekly_report(week, policy_for(config))  # the figures in SQL (postgres_report.py)
                t2 = time.perf_counter()
                render_report(report, config, renderer)
                t3 = time.perf_counter()
                runs.append((t2 - t1, t3 - t2))
            rss_report, rss_peak = vm("VmRSS"), vm("VmHWM")
            active = store._read("SELECT count(*) FROM tickets WHERE stage <> 'closed' OR created_at >= %s "
                                 "OR last_event_at >= %s", (week.previous(8).start,) * 2).fetchone()[0]
        median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        if not args.report_only:
            print(f"intake at {tickets:,} tickets: {mails / pgn_s:.0f} mails/s; per-mail median "
                  f"{median(pg0_per):.2f} ms at 0, {median(pgn_per):.2f} ms at {tickets:,}: ratio "
                  f"{median(pgn_per) / median(pg0_per):.2f} (target <= 1.5)")
        print(f"memory: {rss_before:.0f} MB resident before the intake at {tickets:,} tickets, {rss_after:.0f} MB "
              f"after, {rss_report:.0f} MB after four weekly reports, peak {rss_peak:.0f} MB since the store was "
              f"opened (the PostgreSQL store keeps no per-ticket state in the process; a report holds its week's "
              f"rows only)")
        warm_sql, warm_render = sorted(runs, key=sum)[1]
        print(f"weekly report over {tickets:,} tickets ({active:,} active in the nine weeks, "
              f"{len(report.tickets_of_week):,} of the week, {report.carried_over_count:,} open at its end):")
        print(f"  the desk's report, running or restarted (it loads matplotlib while it waits for mail), median of "
              f"three: SQL and lists {warm_sql:.2f} s, render {warm_render:.2f} s: {warm_sql + warm_render:.2f} s "
              f"(target < 2 s)")
        print(f"  a process that makes one report and exits (`helpdesk report weekly --send`), loading matplotlib "
              f"and the templates while the store computes: {first:.2f} s")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
