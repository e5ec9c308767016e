"""Intake benchmark: real Dovecot in, real aiosmtpd out, the real daemon (``helpdesk once``) between.

    python bench/intake.py                 # full: 1,000 mails on stores of 0, 20,000 and 100,000 tickets
    python bench/intake.py --quick         # CI: 200 mails on an empty store and on 2,000 tickets
    python bench/intake.py --mails 1000 --preload 5000
    python bench/intake.py --set smtp.connections=3 --set tickets.notify_digest_after=0
    python bench/intake.py --repeat 5       # five timed runs per store size, and their median
    python bench/intake.py --latency-ms 2 --preload 0   # servers 4 ms of round trip away

The daemon runs with the shipped ``config.toml``; only what a loopback
benchmark must change is changed (servers, no TLS, no SMTP login, no
SLA timers of the old pre-loaded history already served), plus whatever
``--set`` names.  The settings are printed.  An untimed first run on the empty
inbox sends the weekly, monthly and appraisal mail the pre-loaded history made
due, as a desk with that history would have done long ago.

For each store size it pre-loads N realistic tickets (stages, messages,
events), delivers M new mails (Chinese and English, GBK/GB18030/Big5/UTF-8,
10% with attachments, 20% replies to existing tickets), runs the daemon once
and prints: mails/s from the first fetch until the SMTP server accepted the
last mail, per-mail handling median and p95, peak RSS of the daemon, the
store's size on disk.  Then the floor: a plain ``smtplib`` client sends the
very messages the desk sent (same envelopes, same bytes) to the same aiosmtpd
sink over one connection; the ratio desk/floor (SMTP messages per second) is
the figure to compare across machines.  Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maildesk.model import Address, Event, Message, OutboundMail, Ticket  # noqa: E402
from maildesk.storage.store import TicketStore  # noqa: E402
from bench.latency import DelayRelay  # noqa: E402
from tests.mailservers import Dovecot, SmtpSink  # noqa: E402

SUBJECTS_ZH = ["打印机卡纸", "邮箱容量已满，无法收信", "VPN 每小时断开一次", "会议室投影仪没有信号", "电脑无法开机",
               "硬盘报警", "网络很慢", "软件授权过期"]
SUBJECTS_EN = ["Cannot print from SAP", "VPN drops every hour", "Laptop will not boot", "Outlook keeps asking "
               "for password", "Disk almost full", "New starter needs an account"]
BODY_ZH = "您好，{}，麻烦尽快处理。\n设备编号 {}，位置 {} 楼。\n谢谢！"
BODY_EN = "Hello,\n{} since this morning. Asset tag {}, floor {}.\nThanks."
STAGES = ("received", "diagnosing", "proposed", "executing", "feedback", "closed")


def preload(store_path: Path, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Write ``count`` tickets; returns (customer, ack Message-ID) of some, for replies."""
    replyable = []
    if count == 0:
        return replyable
    now = datetime.now(timezone.utc)
    with TicketStore(store_path) as store:
        for i in range(count):
            number = store.allocate_ticket_number()
            tag = store.format_tag(number)
            zh = i % 2 == 0
            customer = f"old{i}@cust{i % 97}.example"
            created = now - timedelta(minutes=rng.randint(10, 60 * 24 * 365))
            # Realistic history: what is older than a month is closed; recent tickets in any stage.
            old = now - created > timedelta(days=30)
            stage = "closed" if old else STAGES[rng.randrange(len(STAGES))]
            subject = rng.choice(SUBJECTS_ZH if zh else SUBJECTS_EN)
            ack_id = f"<ack.{tag}.{i:08x}@example.com>"
            text = (BODY_ZH if zh else BODY_EN).format(subject, 1000 + i, i % 30)
            messages = [
                Message("in", customer, ["support@example.com"], created, text, f"<c{i}@cust.example>"),
                Message("out", "support@example.com", [customer], created, "ack " * 40, ack_id, kind="ack"),
                Message("out", "support@example.com", ["alice@example.com"], created, text, f"<n{i}@example.com>",
                        internal=True, kind="notify"),
            ]
            events = [Event(created, customer, "created", None, "received")]
            if stage != "received":
                events.append(Event(created + timedelta(hours=1), "alice@example.com", "stage", "received", stage))
            store.save_ticket(Ticket(number=number, tag=tag, subject=subject, customer=customer, customer_name="",
                                     stage=stage, language="zh" if zh else "en", created_at=created,
                                     updated_at=created, message_ids=[f"<c{i}@cust.example>", ack_id,
                                                                      f"<n{i}@example.com>"],
                                     messages=messages, events=events))
            store.enqueue(OutboundMail(id=f"pre{i}", message_id=ack_id, kind="ack",
                                       sender=Address("support@example.com"), recipients=[customer],
                                       subject=subject, text="ack", created_at=created, ticket=tag, status="sent"))
            store.record_processed(f"c{i}@cust.example", "ticket", ticket=tag, reason="", at=created)
            if stage != "closed" and len(replyable) < 5000:
                replyable.append((customer, ack_id))
            if i % 5000 == 4999:
                store.commit()
        store.commit()
        # Steady state, as the daemon's housekeeping keeps it: old keys and sent mail
        # forgotten, long-closed tickets archived.
        store.prune(now)
        store.archive_closed(now - timedelta(days=30))
        store.commit()
        store.checkpoint()
    return replyable


def new_mails(count: int, replyable: list[tuple[str, str]], rng: random.Random) -> list[bytes]:
    mails = []
    charsets = ["utf-8", "gbk", "gb18030", "big5", "utf-8"]
    for i in range(count):
        msg = EmailMessage()
        reply = replyable and rng.random() < 0.2
        zh = rng.random() < 0.5
        if reply:
            customer, ack_id = rng.choice(replyable)
            msg["In-Reply-To"] = ack_id
            msg["References"] = ack_id
            subject = "回复: 更多信息" if zh else "Re: more information"
        else:
            customer = f"new{i}@bench{i % 50}.example"
            subject = rng.choice(SUBJECTS_ZH if zh else SUBJECTS_EN)
        body = (BODY_ZH if zh else BODY_EN).format(subject, 5000 + i, i % 30) * rng.randint(1, 4)
        charset = rng.choice(charsets) if zh else "utf-8"
        if charset == "big5":
            body, subject = body.replace("邮箱", "郵箱"), subject
            try:
                body.encode("big5")
            except UnicodeEncodeError:
                charset = "utf-8"
        msg["From"] = f"Customer {i} <{customer}>"
        msg["To"] = "support@example.com"
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime.now(timezone.utc))
        msg["Message-ID"] = make_msgid(domain="bench.example")
        msg.set_content(body, charset=charset)
        if rng.random() < 0.1:
            msg.add_attachment(os.urandom(rng.randint(5_000, 200_000)), maintype="application",
                               subtype="pdf", filename=f"日志-{i}.pdf" if zh else f"log-{i}.pdf")
        mails.append(msg.as_bytes())
    return mails


# What a loopback benchmark must change in the shipped config.toml; everything else is as shipped.
BENCH_SETTINGS = {
    "imap.host": "127.0.0.1", "imap.security": "none", "imap.password_env": "BENCH_IMAP_PASSWORD",
    "smtp.host": "127.0.0.1", "smtp.security": "none",
    "smtp.username": None, "smtp.password_env": None,  # the sink takes mail without AUTH
    "storage.path": "var/helpdesk.json",
    # The pre-loaded history is old: its SLA alerts went out long ago.
    "sla.first_response_hours": 100000, "sla.resolution_hours": 100000,
}


def _toml(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def configured(text: str, settings: dict[str, object]) -> str:
    """``text`` (a TOML file) with ``section.key`` lines replaced, added, or (value None) removed.

    Line-wise, so the shipped file's comments and layout stay; enough for config.toml's flat sections.
    """
    wanted: dict[str, dict[str, object]] = {}
    for dotted, value in settings.items():
        section, _, key = dotted.rpartition(".")
        wanted.setdefault(section, {})[key] = value
    out: list[str] = []
    section = ""
    done: set[tuple[str, str]] = set()

    def close_section() -> None:
        for key, value in wanted.get(section, {}).items():
            if (section, key) not in done and value is not None:
                out.append(f"{key} = {_toml(value)}")
            done.add((section, key))

    for line in text.splitlines():
        header = re.fullmatch(r"\s*\[([^\[\]]+)\]\s*", line)
        if header or line.startswith("[["):
            close_section()
            section = header.group(1).strip() if header else line.strip("[] ")
            out.append(line)
            continue
        m = re.match(r"\s*#?\s*([A-Za-z_]+)\s*=", line)
        if m and m.group(1) in wanted.get(section, {}) and (section, m.group(1)) not in done:
            value = wanted[section][m.group(1)]
            done.add((section, m.group(1)))
            if value is not None:
                out.append(f"{m.group(1)} = {_toml(value)}")
            continue
        out.append(line)
    close_section()
    for sec, keys in wanted.items():
        missing = {k: v for k, v in keys.items() if (sec, k) not in done and v is not None}
        if missing:
            out.append(f"\n[{sec}]")
            out.extend(f"{k} = {_toml(v)}" for k, v in missing.items())
    return "\n".join(out) + "\n"


def bench_config(workdir: Path, *, imap_port: int, imap_user: str, smtp_port: int,
                 overrides: dict[str, object]) -> Path:
    settings = dict(BENCH_SETTINGS, **{"imap.port": imap_port, "imap.username": imap_user,
                                       "smtp.port": smtp_port}, **overrides)
    path = workdir / "config.toml"
    path.write_text(configured((REPO / "config.toml").read_text(encoding="utf-8"), settings), encoding="utf-8")
    return path


def effective_settings(config: Path) -> dict[str, object]:
    """The values the daemon reads for the settings that decide intake speed (defaults included)."""
    from maildesk.daemon.config import load_config
    c = load_config(config, need_secrets=False)
    found = {"imap.batch_size": c.imap.batch_size, "imap.parse_ahead": c.imap.parse_ahead,
             "smtp.connections": c.smtp.connections,
             "tickets.notify_unassigned": c.tickets.notify_unassigned,
             "tickets.ack_limit_per_hour": c.tickets.ack_limit_per_hour}
    digest = getattr(c.tickets, "notify_digest_after", None)
    if digest is not None:
        found["tickets.notify_digest_after"] = digest
    return found


def floor(sink: SmtpSink, port: int | None = None) -> tuple[int, float]:
    """Send what the desk sent, again, with plain smtplib over one connection: (messages, seconds)."""
    sent = sink.messages()
    sink.clear()
    started = time.perf_counter()
    with smtplib.SMTP(sink.host, port or sink.port) as client:
        client.ehlo()
        for m in sent:
            options = ["SMTPUTF8"] if m.smtputf8 else []
            client.sendmail(m.mail_from, m.rcpt_tos, m.data, mail_options=options)
    return len(sent), time.perf_counter() - started


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds used by process ``pid`` and its descendants, the finished ones included.

    Each live process of the tree counts its own time and that of the children it has reaped, so
    every process is counted once, whether it still runs or has finished.
    """
    if pid is None:
        return float("nan")  # psutil.Process(None) would be this process
    try:
        top = psutil.Process(pid)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    used = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # gone meanwhile: its time is its parent's now
        used += times.user + times.system + times.children_user + times.children_system
    return used


def _own_and_children_cpu() -> tuple[float, float]:
    """(this process's CPU seconds, those of the children it has waited for)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system, times.children_user + times.children_system


def run_case(dovecot: Dovecot, mails: int, tickets: int, rng: random.Random,
             overrides: dict[str, object], profile: Path | None = None, repeat: int = 1,
             latency_ms: float = 0) -> list[dict]:
    """``repeat`` timed runs, each from the same warmed-up store with new mails, and its floor right after.

    With ``latency_ms``, the desk reaches Dovecot and the sink, and the floor the sink, through
    relays that hold every chunk that long each way.
    """
    account = dovecot.add_user()
    sink = SmtpSink().start()
    relays: list[DelayRelay] = []
    workdir = Path(tempfile.mkdtemp(prefix="maildesk-bench-"))
    try:
        imap_port, smtp_port = dovecot.port, sink.port
        if latency_ms:
            relays = [DelayRelay(dovecot.host, dovecot.port, latency_ms).start(),
                      DelayRelay(sink.host, sink.port, latency_ms).start()]
            imap_port, smtp_port = (relay.port for relay in relays)
        config = bench_config(workdir, imap_port=imap_port, imap_user=account.username, smtp_port=smtp_port,
                              overrides=overrides)
        store_path = workdir / "var" / "helpdesk.json"
        started = time.perf_counter()
        replyable = preload(store_path, tickets, rng)
        preload_s = time.perf_counter() - started
        env = dict(os.environ, BENCH_IMAP_PASSWORD=account.password, PYTHONPATH=str(REPO))
        command = [sys.executable, "-m", "maildesk", "-c", str(config), "once"]
        # Steady state: a desk with this history has sent its weekly, monthly and appraisal mail
        # already.  An untimed first run on the empty inbox sends what the pre-loaded past made due.
        warm = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
        if warm.returncode != 0:
            raise SystemExit(f"helpdesk once (warm-up) failed:\n{warm.stderr[-3000:]}")
        if profile is not None:
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        warmed = workdir / "var.warmed"
        if repeat > 1:
            shutil.copytree(store_path.parent, warmed)
        results = []
        for run in range(repeat):
            if run:
                shutil.rmtree(store_path.parent)
                shutil.copytree(warmed, store_path.parent)
            sink.clear()
            account.deliver_many(new_mails(mails, replyable, rng))
            cpu_before = *_own_and_children_cpu(), _tree_cpu(dovecot.pid)
            started = time.perf_counter()
            proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
            elapsed = time.perf_counter() - started
            # The desk's process with its parsing helper (a child it waits for), this process
            # (the sink's thread; the main thread only waits), and Dovecot's processes.
            cpu_after = *_own_and_children_cpu(), _tree_cpu(dovecot.pid)
            sink_cpu, desk_and_helper, dovecot_cpu = (a - b for a, b in zip(cpu_after, cpu_before))
            if proc.returncode != 0:
                raise SystemExit(f"helpdesk once failed:\n{proc.stderr[-3000:]}")
            handled = [float(ms) for ms in re.findall(r" ms=([\d.]+)", proc.stderr)]
            fetch_to_send = float(re.search(r"([\d.]+) s from first fetch to last send", proc.stderr).group(1))
            peak_mb = float(re.search(r"peak memory ([\d.]+) MB", proc.stderr).group(1))
            desk_cpu = float(re.search(r"CPU ([\d.]+) s in this process", proc.stderr).group(1))
            size = sum(p.stat().st_size for p in store_path.parent.rglob("*") if p.is_file())
            smtp_messages, floor_s = floor(sink, smtp_port)
            results.append({
                "tickets": tickets, "mails": mails, "seconds": elapsed, "rate": mails / fetch_to_send,
                "process_rate": mails / elapsed, "fetch_to_send": fetch_to_send,
                "median_ms": statistics.median(handled) if handled else float("nan"),
                "p95_ms": statistics.quantiles(handled, n=20)[18] if len(handled) >= 20 else float("nan"),
                "rss_mb": peak_mb, "store_mb": size / 2**20, "sent": smtp_messages,
                "preload_s": preload_s, "floor_s": floor_s,
                "cpu": {"desk": desk_cpu, "helper": max(0.0, desk_and_helper - desk_cpu), "sink": sink_cpu,
                        "dovecot": dovecot_cpu},
                "settings": effective_settings(config),
            })
        return results
    finally:
        for relay in relays:
            relay.stop()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _cpu_text(cpu: dict[str, float]) -> str:
    return "/".join(f"{cpu[k]:.2f}" for k in ("desk", "helper", "sink", "dovecot"))


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError("expected section.key=value, e.g. smtp.connections=3")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value  # a bare string such as notify_unassigned=none
    return key.strip(), parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for CI")
    parser.add_argument("--mails", type=int, help="new mails per case")
    parser.add_argument("--preload", type=int, action="append", help="tickets already stored (repeatable)")
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting of the shipped config.toml (repeatable)")
    parser.add_argument("--smtp-connections", type=int, help="short for --set smtp.connections=N")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per store size, each from the same "
                        "warmed-up store with new mails and followed by its own floor; more than one adds a "
                        "median line (this machine's speed drifts, so one run says little)")
    parser.add_argument("--latency-ms", type=float, default=0, help="put the IMAP and SMTP servers this far "
                        "away: every chunk is held this long each way by a relay process (a round trip of "
                        "twice this); the floor goes through the same relay")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile and write the stats here "
                        "(one file per case, suffixed with the store size)")
    args = parser.parse_args(argv)
    mails = args.mails or (200 if args.quick else 1000)
    sizes = args.preload or ([0, 2000] if args.quick else [0, 20_000, 100_000])
    overrides = dict(args.set)
    if args.smtp_connections:
        overrides["smtp.connections"] = args.smtp_connections
    rng = random.Random(42)
    dovecot = Dovecot().start()
    try:
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
        print("config: the shipped config.toml; an untimed first `helpdesk once` on the empty inbox sends the "
              "reports the pre-loaded history made due; for loopback: "
              + ", ".join(f"{k} = {_toml(v) if v is not None else '(unset)'}" for k, v in BENCH_SETTINGS.items())
              + ("; asked for: " + ", ".join(f"{k} = {_toml(v)}" for k, v in overrides.items()) if overrides else ""))
        if args.latency_ms:
            print(f"latency: Dovecot and the SMTP sink sit behind relays that hold every chunk {args.latency_ms:g} ms "
                  f"each way (a round trip of {2 * args.latency_ms:g} ms); the floor's client goes through the same "
                  "relay")
        print("mails/s: from the daemon's first fetch until the SMTP server accepted the last mail; "
              "process: the same including start-up and loading the store; floor: plain smtplib sending the "
              "same SMTP messages to the same sink over one connection; ratio: desk's SMTP messages/s over "
              "the floor's; CPU s: the desk's process (start-up included), its parsing helper, the SMTP sink "
              "and Dovecot during the run")
        print(f"{'stored':>8} {'mails':>6} {'seconds':>8} {'mails/s':>8} {'process':>8} {'median ms':>10} "
              f"{'p95 ms':>8} {'peak RSS MB':>12} {'store MB':>9} {'sent':>6} {'floor/s':>8} {'ratio':>6}  "
              "CPU s desk/helper/sink/Dovecot")
        shown = None
        for tickets in sizes:
            profile = args.profile.with_name(f"{args.profile.name}.{tickets}") if args.profile else None
            runs = run_case(dovecot, mails, tickets, rng, overrides, profile, max(1, args.repeat),
                            args.latency_ms)
            if runs[0]["settings"] != shown:
                shown = runs[0]["settings"]
                print("settings used: " + ", ".join(f"{k} = {_toml(v)}" for k, v in shown.items()))
            for r in runs:
                r["floor_rate"] = r["sent"] / r["floor_s"] if r["floor_s"] else float("nan")
                r["ratio"] = r["sent"] / r["fetch_to_send"] / r["floor_rate"]
                print(f"{r['tickets']:>8} {r['mails']:>6} {r['fetch_to_send']:>8.2f} {r['rate']:>8.0f} "
                      f"{r['process_rate']:>8.0f} {r['median_ms']:>10.2f} "
                      f"{r['p95_ms']:>8.2f} {r['rss_mb']:>12.0f} {r['store_mb']:>9.1f} {r['sent']:>6} "
                      f"{r['floor_rate']:>8.0f} {r['ratio']:>6.2f}  {_cpu_text(r['cpu'])}", flush=True)
            if len(runs) > 1:
                middle = {k: statistics.median(r[k] for r in runs) for k in ("fetch_to_send", "rate", "floor_rate",
                                                                          "ratio")}
                print(f"{'median':>8} {mails:>6} {middle['fetch_to_send']:>8.2f} {middle['rate']:>8.0f} "
                      f"{'':>8} {'':>10} {'':>8} {'':>12} {'':>9} {'':>6} {middle['floor_rate']:>8.0f} "
                      f"{middle['ratio']:>6.2f}  "
                      f"{_cpu_text({k: statistics.median(r['cpu'][k] for r in runs) for k in runs[0]['cpu']})}"
                      f"   of {len(runs)} runs (min {min(r['rate'] for r in runs):.0f}, "
                      f"max {max(r['rate'] for r in runs):.0f} mails/s)", flush=True)
    finally:
        dovecot.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
