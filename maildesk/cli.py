"""``helpdesk``: the command line.

    helpdesk -c CONFIG run                   the daemon (SIGTERM/SIGINT: finish the mail in hand, exit 0)
    helpdesk -c CONFIG once                  handle waiting mail, send due mail, exit
    helpdesk -c CONFIG check                 config, store and both servers: one line each
    helpdesk -c CONFIG tickets list [--json]
    helpdesk -c CONFIG tickets show ID [--json]
    helpdesk -c CONFIG report weekly [--week YYYY-Www] (--json | --out FILE.html | --send)
    helpdesk demo                            everything in one process, with loopback mail servers

Failures that make the desk unusable (config, store, servers) print one line
to stderr and exit non-zero: 2 config, 3 store, 4 mail server.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import orjson

from maildesk import __version__
from maildesk.printable import EscapingFilter, json_safe, multi_line

EXIT_CONFIG, EXIT_STORE, EXIT_SERVER = 2, 3, 4


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging API
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", self.converter(record.created))

    def formatException(self, ei):  # noqa: N802 - logging API
        # A traceback keeps its lines, but the exception messages in it may quote mail.
        return multi_line(super().formatException(ei))


def setup_logging(level: str = "info", file: Path | None = None) -> None:
    handler: logging.Handler
    if file:
        # Every folder made here is private, not just the last one (mkdir(parents=True) ignores mode).
        missing = [p for p in [file.parent, *file.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700)
        file.touch(mode=0o600, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Mail data reaches log lines as arguments: one record stays one line, free of terminal escapes.
    handler.addFilter(EscapingFilter())
    root = logging.getLogger("maildesk")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helpdesk", description="Email-driven helpdesk daemon.")
    parser.add_argument("-c", "--config", default="config.toml", help="config file (default ./config.toml)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    sub.add_parser("once", help="handle waiting mail and due outbox mail, then exit")
    sub.add_parser("check", help="validate the config and reach the store and both mail servers")
    tickets = sub.add_parser("tickets", help="look at tickets")
    tsub = tickets.add_subparsers(dest="tickets_command", required=True)
    tlist = tsub.add_parser("list", help="all tickets, newest first")
    tlist.add_argument("--json", action="store_true", help="print a JSON array")
    tshow = tsub.add_parser("show", help="one ticket with its messages and events")
    tshow.add_argument("id", help="ticket id as in the tag, e.g. TS-000042 (or just 42)")
    tshow.add_argument("--json", action="store_true", help="print a JSON object")
    report = sub.add_parser("report", help="the weekly report to leadership")
    rsub = report.add_subparsers(dest="report_command", required=True)
    weekly = rsub.add_parser("weekly", help="metrics, a browser preview, or the mail itself")
    weekly.add_argument("--week", help="ISO week YYYY-Www in the report time zone (default: the last complete one)")
    out = weekly.add_mutually_exclusive_group(required=True)
    out.add_argument("--json", action="store_true", help="print the metrics as JSON")
    out.add_argument("--out", metavar="FILE.html", help="write a browser-viewable preview with the charts")
    out.add_argument("--send", action="store_true", help="queue the report mail to leadership (sent by run/once)")
    demo = sub.add_parser("demo", help="run the desk against in-process loopback mail servers")
    demo.add_argument("--keep", action="store_true", help="keep the servers running for your mail client")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from maildesk.demo import run_demo
        return run_demo(keep=args.keep)

    from maildesk.daemon.config import ConfigError, load_config
    from maildesk.storage.journal import StoreError

    try:
        read_only = args.command == "tickets" or (args.command == "report" and not args.send)
        config = load_config(args.config, need_secrets=not read_only)
    except ConfigError as exc:
        return _fail(f"config: {exc}", EXIT_CONFIG)
    setup_logging(config.log_level, config.log_file)
    try:
        if args.command == "tickets":
            return _tickets(config, args)
        if args.command == "report":
            return _report(config, args)
        if args.command == "check":
            from maildesk.daemon.check import run_checks
            return 0 if run_checks(config, print) else EXIT_SERVER
        if args.command == "once":
            return _once(config)
        if args.command == "run":
            return _run(config)
    except StoreError as exc:
        return _fail(f"store: {exc}", EXIT_STORE)
    return 1


def _fail(message: str, code: int) -> int:
    print(f"helpdesk: {message}", file=sys.stderr)
    return code


def _once(config) -> int:
    from maildesk.daemon.app import Desk, RunSummary
    from maildesk.daemon.mailbox import CONNECTION_ERRORS, MailboxUnavailable

    with Desk(config) as desk:
        try:
            summary = desk.run_once()
        except MailboxUnavailable as exc:
            # Mail already queued still goes out while the inbox is unreachable.
            desk.deliver_outbox(RunSummary())
            return _fail(f"imap: {exc}", EXIT_SERVER)
        except CONNECTION_ERRORS as exc:
            return _fail(f"imap: connection lost: {exc}", EXIT_SERVER)
        logging.getLogger("maildesk.daemon").info(
            "once: %d mail(s) handled (%s), %d quarantined, %d sent, %d waiting for retry; %.3f s from first "
            "fetch to last send; peak memory %.0f MB", summary.handled,
            ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none",
            summary.quarantined, summary.sent, summary.deferred, summary.seconds, peak_memory_mb())
        if desk.sender.unreachable:
            return _fail(f"smtp: {desk.sender.unreachable}; the mail stays in the outbox", EXIT_SERVER)
    return 0


def _run(config) -> int:
    from maildesk.daemon.app import Desk

    stop = threading.Event()

    def request_stop(signum, frame):  # noqa: ARG001 - signal API
        if stop.is_set():
            return
        logging.getLogger("maildesk.daemon").info("signal %s: finishing the mail in hand, then exiting",
                                                  signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with Desk(config) as desk:
        logging.getLogger("maildesk.daemon").info("helpdesk %s running for %s (store %s)", __version__,
                                                  config.support_address, config.storage_path)
        desk.run(stop.is_set)
    logging.getLogger("maildesk.daemon").info("stopped")
    return 0


def _tickets(config, args) -> int:
    from maildesk.daemon.views import detail_text, summary_line, ticket_detail, ticket_summary
    from maildesk.storage.store import TicketStore

    tz = config.report.timezone
    with TicketStore(config.storage_path, prefix=config.tickets.prefix, readonly=True) as store:
        if args.tickets_command == "list":
            rows = sorted(store.tickets(), key=lambda t: t.number, reverse=True)
            if args.json:
                _print_json([ticket_summary(t, tz) for t in rows])
            else:
                for t in rows:
                    print(summary_line(t))
            return 0
        number = store.parse_tag(args.id) if not args.id.isdigit() else int(args.id)
        ticket = store.get_ticket(number) if number is not None else None
        if ticket is None:
            return _fail(f"no ticket {args.id}", 1)
        detail = ticket_detail(ticket, tz)
        if args.json:
            _print_json(detail)
        else:
            print(detail_text(detail))
    return 0


def _report(config, args) -> int:
    from datetime import datetime, timezone

    from maildesk.reports.metrics import Week
    from maildesk.reports.weekly import JOB, WeeklyReportJob, build_report, render_report
    from maildesk.storage.store import TicketStore
    from maildesk.templates import default_renderer

    tz = config.report.timezone
    try:
        week = Week.parse(args.week, tz) if args.week else Week.last_complete(datetime.now(timezone.utc), tz)
    except ValueError as exc:
        return _fail(str(exc), 1)
    with TicketStore(config.storage_path, prefix=config.tickets.prefix, readonly=not args.send) as store:
        if args.json:
            _print_json(build_report(store, config, week).to_json())
        elif args.out:
            rendered = render_report(build_report(store, config, week), config, default_renderer(),
                                     inline_images=True)
            Path(args.out).write_text(rendered.html, encoding="utf-8")
            print(f"wrote {args.out}: {config.report.language} report for {week.label}")
        else:
            if not config.team.leadership:
                return _fail("team.leadership is empty: nobody to send the report to", EXIT_CONFIG)
            mails = WeeklyReportJob(config, store, default_renderer()).send(week, datetime.now(timezone.utc))
            print(f"queued the {week.label} report for {', '.join(m.recipients[0] for m in mails)} "
                  f"({JOB}); `helpdesk once` or the running daemon sends it")
    return 0


def peak_memory_mb() -> float:
    """This process's peak resident memory since it started (VmHWM; ru_maxrss would include
    the parent's memory from before exec on Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _print_json(value) -> None:
    # Strings from mail may hold C1 and bidi controls, which orjson writes raw.
    sys.stdout.buffer.write(json_safe(orjson.dumps(value, option=orjson.OPT_INDENT_2)) + b"\n")
    sys.stdout.flush()
