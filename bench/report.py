"""Weekly report benchmark: time to build the report over N stored tickets.

    python bench/report.py                  # 100,000 tickets
    python bench/report.py --tickets 5000   # quick

Pre-loads a store with N tickets spread over the last year (stages, events,
ratings, messages), reopens it as the daemon would, then times: loading the
tickets for the report, computing the metrics, and rendering text, HTML,
three charts and the CSV.  Nothing is asserted.
"""
from __future__ import annotations

import argparse
import importlib
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.intake import preload  # noqa: E402
from maildesk.daemon.config import load_config  # noqa: E402
from maildesk.reports.metrics import Week, weekly_report  # noqa: E402
from maildesk.reports.weekly import policy_for, render_report  # noqa: E402
from maildesk.storage.store import TicketStore  # noqa: E402
from maildesk.templates import Renderer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maildesk-bench-report-") as workdir:
        return _report(Path(workdir) / "var" / "helpdesk.json", args.tickets)


def _report(store_path: Path, tickets: int) -> int:
    started = time.perf_counter()
    preload(store_path, tickets, random.Random(7))
    print(f"pre-loaded {tickets} tickets in {time.perf_counter() - started:.1f} s")
    config = load_config(REPO / "config.toml", environ={"HELPDESK_IMAP_PASSWORD": "-", "HELPDESK_SMTP_PASSWORD": "-"})
    week = Week.last_complete(datetime.now(timezone.utc), config.report.timezone)

    t0 = time.perf_counter()
    with TicketStore(store_path, readonly=True) as store:
        t1 = time.perf_counter()
        tickets = list(store.tickets(with_messages=False, active_since=week.previous(8).start))
        records, plans = store.staff_records(), store.plans()
    t2 = time.perf_counter()
    report = weekly_report(week, tickets, records, plans, policy_for(config))
    t3 = time.perf_counter()
    importlib.import_module("maildesk.reports.charts")  # once per process: timed apart
    loading = time.perf_counter() - t3
    t3 = time.perf_counter()
    rendered = render_report(report, config, Renderer())
    t4 = time.perf_counter()
    print(f"open store {t1 - t0:.2f} s | load tickets {t2 - t1:.2f} s | metrics {t3 - t2 - loading:.2f} s | "
          f"render text+html+3 charts+csv {t4 - t3:.2f} s (+ loading matplotlib {loading:.2f} s)")
    print(f"weekly report over {store.ticket_count()} stored tickets ({len(tickets)} active in the 9 weeks shown): "
          f"{t4 - t1 - loading:.2f} s (excluding opening the store and loading matplotlib); "
          f"received {report.received}, open at end {report.open_at_end}; "
          f"html {len(rendered.html) // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
