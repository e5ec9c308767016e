"""``helpdesk``: the command line.

    helpdesk -c CONFIG run                   the daemon (SIGTERM/SIGINT: finish the mail in hand, exit 0)
    helpdesk -c CONFIG once                  handle waiting mail, send due mail, exit
    helpdesk -c CONFIG check                 config, store and both servers: one line each
    helpdesk -c CONFIG tickets list [--json]
    helpdesk -c CONFIG tickets show ID [--json]
    helpdesk -c CONFIG report weekly [--week YYYY-Www] (--json | --out FILE.html | --send)
    helpdesk -c CONFIG store migrate         bring a PostgreSQL store's schema up to date
    helpdesk -c CONFIG store export FILE.jsonl / store import FILE.jsonl   move a whole store, verified
    helpdesk -c CONFIG auth login            OAuth2: sign in once (device code), save the refresh token
    helpdesk -c CONFIG staff list [--json]   the team with commendations, warnings and appraisals
    helpdesk -c CONFIG staff show EMAIL [--json]   one member's whole record
    helpdesk demo                            everything in one process, with loopback mail servers

Failures that make the desk unusable (config, store, servers) print one line
to stderr and exit non-zero: 2 config, 3 store, 4 mail server.
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
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
    store = sub.add_parser("store", help="the store itself: schema, export, import")
    ssub = store.add_subparsers(dest="store_command", required=True)
    ssub.add_parser("migrate", help="apply the schema migrations a PostgreSQL store lacks")
    sexport = ssub.add_parser("export", help="write every record to a JSON-lines file, with counts and checksums")
    sexport.add_argument("file", metavar="FILE.jsonl")
    simport = ssub.add_parser("import", help="load an export into this (empty) store and verify it")
    simport.add_argument("file", metavar="FILE.jsonl")
    auth = sub.add_parser("auth", help="OAuth2 sign-in for the mailbox ([oauth2] in the config)")
    asub = auth.add_subparsers(dest="auth_command", required=True)
    login = asub.add_parser("login", help="sign in once (device code, or a browser for Google) and save the "
                                          "refresh token in oauth2.token_file")
    login.add_argument("--port", type=int, default=0,
                       help="browser sign-in only: the loopback port the sign-in returns to (default: any free)")
    staff = sub.add_parser("staff", help="the team's records: rewards, sanctions, appraisals")
    stsub = staff.add_subparsers(dest="staff_command", required=True)
    stlist = stsub.add_parser("list", help="every team member with counts")
    stlist.add_argument("--json", action="store_true", help="print a JSON array")
    stshow = stsub.add_parser("show", help="one member's commendations, warnings and appraisals")
    stshow.add_argument("email")
    stshow.add_argument("--json", action="store_true", help="print a JSON object")
    demo = sub.add_parser("demo", help="run the desk against in-process loopback mail servers")
    demo.add_argument("--keep", action="store_true", help="keep the servers running for your mail client")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from maildesk.demo import run_demo
        return run_demo(keep=args.keep)

    from maildesk.daemon.config import ConfigError, load_config
    from maildesk.daemon.credentials import CredentialsRefused
    from maildesk.storage.journal import StoreError

    try:
        read_only = args.command in ("tickets", "store", "staff") or (args.command == "report" and not args.send)
        config = load_config(args.config, need_secrets=not read_only)
    except ConfigError as exc:
        return _fail(f"config: {exc}", EXIT_CONFIG)
    setup_logging(config.log_level, config.log_file)
    try:
        if args.command == "tickets":
            return _tickets(config, args)
        if args.command == "report":
            return _report(config, args)
        if args.command == "staff":
            return _staff(config, args)
        if args.command == "store":
            return _store(config, args)
        if args.command == "auth":
            return _auth_login(config, args)
        if args.command == "check":
            from maildesk.daemon.check import run_checks
            return 0 if run_checks(config, print) else EXIT_SERVER
        if args.command == "once":
            return _once(config)
        if args.command == "run":
            return _run(config)
    except StoreError as exc:
        return _fail(f"store: {exc}", EXIT_STORE)
    except CredentialsRefused as exc:
        return _credentials_refused(config, args, exc)
    return 1


def _fail(message: str, code: int) -> int:
    print(f"helpdesk: {message}", file=sys.stderr)
    return code


def _credentials_refused(config, args, exc) -> int:
    """One line, then exit 4: retrying a refused grant cannot help, and a person must act."""
    remedy = f"; sign in again: helpdesk -c {args.config} auth login" if exc.needs_login else ""
    message = f"oauth2: {exc}{remedy}"
    logging.getLogger("maildesk.oauth2").error("%s; stopping (exit %d)", message, EXIT_SERVER)
    if config.log_file:
        print(f"helpdesk: {message}", file=sys.stderr)  # the log file has it; so does the terminal/journal
    return EXIT_SERVER


def _auth_login(config, args) -> int:
    """Sign in once: the device-code flow (RFC 8628) where the provider has one, else a browser
    returning to a loopback listener (RFC 8252); print where to go, wait, save the tokens (0600)."""
    from maildesk.daemon.credentials import TokenServiceUnavailable, TokenSource
    from maildesk.printable import one_line

    settings = config.oauth2
    if settings is None:
        return _fail("config: auth login needs an [oauth2] section", EXIT_CONFIG)
    if settings.grant != "refresh_token":
        return _fail('config: oauth2.grant = "client_credentials" needs no sign-in: the desk asks for '
                     "app-only tokens itself", EXIT_CONFIG)
    source = TokenSource(settings)
    user = one_line(config.imap.username)
    try:
        if settings.device_code_url:
            device = source.start_device_login()
            # Both come from the identity provider: shown inert, whatever they hold.
            print(f"To sign in, open {one_line(device.verification_uri)} in a browser and enter the code "
                  f"{one_line(device.user_code)}", flush=True)
            print(f"Waiting up to {device.expires_in / 60:.0f} minutes for the sign-in (as the mailbox user "
                  f"{user}) ...", flush=True)
            token = source.finish_device_login(device)
        else:
            from maildesk.daemon.credentials import BrowserLogin

            browser = BrowserLogin(source, port=args.port)
            print(f"To sign in, open this address in a browser on this machine:\n{browser.url}", flush=True)
            print(f"(From another machine: ssh -L {browser.port}:127.0.0.1:{browser.port} to this one first.) "
                  f"Sign in as the mailbox user {user}; waiting up to 10 minutes ...", flush=True)
            token = browser.finish()
    except (TokenServiceUnavailable, OSError) as exc:
        return _fail(f"oauth2: {exc}", EXIT_SERVER)
    expires = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(token.expires_at))
    print(f"Signed in. Tokens saved to {settings.token_file} (mode 0600); the access token is valid until "
          f"{expires} and is refreshed automatically.", flush=True)
    return 0


def _desk(config, **kwargs):
    """The desk of `run` and `once`.

    Its mail parser's helper process (``[imap] parse_ahead``) is started first, before the
    rest of the desk is imported and its store loaded: the helper's own start-up then runs
    beside the desk's, not during the first backlog.
    """
    from maildesk.daemon.parsing import parser_for

    parser = parser_for(config.imap)
    parser.start()
    from maildesk.daemon.app import Desk

    try:
        desk = Desk(config, parser=parser, **kwargs)
    except BaseException:
        parser.close()
        raise
    # What is loaded by now (modules, templates, patterns, the store's documents) lives as long as
    # the process: kept out of the collector's full passes, which would walk all of it each time.
    gc.freeze()
    return desk


def _once(config) -> int:
    desk = _desk(config)
    from maildesk.daemon.app import RunSummary
    from maildesk.daemon.mailbox import CONNECTION_ERRORS, MailboxUnavailable

    with desk:
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
            "fetch to last send; peak memory %.0f MB; CPU %.2f s in this process", summary.handled,
            ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none",
            summary.quarantined, summary.sent, summary.deferred, summary.seconds, peak_memory_mb(),
            cpu_seconds())
        if desk.sender.unreachable:
            return _fail(f"smtp: {desk.sender.unreachable}; the mail stays in the outbox", EXIT_SERVER)
    return 0


def _run(config) -> int:
    stop = threading.Event()

    def request_stop(signum, frame):  # noqa: ARG001 - signal API
        if stop.is_set():
            return
        logging.getLogger("maildesk.daemon").info("signal %s: finishing the mail in hand, then exiting",
                                                  signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    from maildesk.storage.base import open_store
    from maildesk.storage.postgres import StandbyStopped

    lease_lost = threading.Event()

    def stop_for_good():
        lease_lost.set()
        stop.set()

    try:
        # A second desk on a shared store waits here as a standby until the active one's lease lapses.
        store = open_store(config, standby=stop.is_set, on_lease_lost=stop_for_good)
    except StandbyStopped:
        logging.getLogger("maildesk.daemon").info("stopped (was standby)")
        return 0
    with _desk(config, store=store) as desk:
        logging.getLogger("maildesk.daemon").info("helpdesk %s running for %s (store %s)", __version__,
                                                  config.support_address, store.location)
        desk.run(stop.is_set)
    if lease_lost.is_set():
        # A desk that froze past its lease and woke: its commits and sends are refused (fencing);
        # it stops at once rather than wait for its next commit to fail.
        return _fail(f"store: another desk took over {store.location}; this desk stopped without writing",
                     EXIT_STORE)
    logging.getLogger("maildesk.daemon").info("stopped")
    return 0


def _tickets(config, args) -> int:
    from maildesk.daemon.views import detail_text, summary_line, ticket_detail, ticket_summary
    from maildesk.storage.base import open_store

    tz = config.report.timezone
    with open_store(config, readonly=True) as store:
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


def _staff(config, args) -> int:
    from maildesk.daemon.views import staff_detail, staff_line, staff_members, staff_summary, staff_text
    from maildesk.storage.base import open_store

    with open_store(config, readonly=True) as store:
        records = store.staff_records()
    members = staff_members(config)
    if args.staff_command == "list":
        rows = [staff_summary(e, n, role, records, config) for e, n, role in members]
        if args.json:
            _print_json(rows)
        else:
            for row in rows:
                print(staff_line(row))
        return 0
    wanted = args.email.strip().lower()
    member = next((m for m in members if m[0] == wanted), None)
    if member is None:
        return _fail(f"{args.email} is not on the team (team.technicians, team.supervisor, team.leadership)", 1)
    detail = staff_detail(*member, records, config, config.report.timezone)
    if args.json:
        _print_json(detail)
    else:
        print(staff_text(detail))
    return 0


def _report(config, args) -> int:
    from datetime import datetime, timezone

    from maildesk.reports.metrics import Week
    from maildesk.reports.weekly import JOB, WeeklyReportJob, build_report, rendered_report
    from maildesk.storage.base import open_store
    from maildesk.templates import default_renderer

    tz = config.report.timezone
    try:
        week = Week.parse(args.week, tz) if args.week else Week.last_complete(datetime.now(timezone.utc), tz)
    except ValueError as exc:
        return _fail(str(exc), 1)
    with open_store(config, readonly=not args.send) as store:
        if args.json:
            _print_json(build_report(store, config, week).to_json())
        elif args.out:
            rendered = rendered_report(store, config, week, default_renderer(), inline_images=True)
            Path(args.out).write_text(rendered.html, encoding="utf-8")
            print(f"wrote {args.out}: {config.report.language} report for {week.label}")
        else:
            if not config.team.leadership:
                return _fail("team.leadership is empty: nobody to send the report to", EXIT_CONFIG)
            mails = WeeklyReportJob(config, store, default_renderer()).send(week, datetime.now(timezone.utc))
            print(f"queued the {week.label} report for {', '.join(m.recipients[0] for m in mails)} "
                  f"({JOB}); `helpdesk once` or the running daemon sends it")
    return 0


def _store(config, args) -> int:
    from maildesk.storage.base import migrate_store, open_store
    from maildesk.storage.transfer import export_store, import_store

    if args.store_command == "migrate":
        applied = migrate_store(config)
        print(f"store migrated: applied {', '.join(applied)}" if applied else "store schema is up to date")
        return 0
    if args.store_command == "export":
        with open_store(config, readonly=True) as store:
            summary = export_store(store, Path(args.file))
        print(f"exported {store.location} to {args.file}")
    else:
        with open_store(config) as store:
            summary = import_store(store, Path(args.file))
        print(f"imported {args.file} into {store.location}; verified")
    for table, (count, digest) in summary.items():
        print(f"  {table:<14} {count:>9}  sha256:{digest}")
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


def cpu_seconds() -> float:
    """User and system CPU this process has used (its parsing helper, a child, not included)."""
    times = os.times()
    return times.user + times.system


def _print_json(value) -> None:
    # Strings from mail may hold C1 and bidi controls, which orjson writes raw.
    sys.stdout.buffer.write(json_safe(orjson.dumps(value, option=orjson.OPT_INDENT_2)) + b"\n")
    sys.stdout.flush()
