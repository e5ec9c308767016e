"""Intake through a real MTA: Postfix -> LMTP -> Dovecot -> ``helpdesk once`` -> Postfix submission -> Dovecot.

    python bench/intake_mta.py              # 500 mails
    python bench/intake_mta.py --quick      # 100 mails
    python bench/intake_mta.py --mails 1000 --no-aiosmtpd

Needs root (a private Postfix master; see tests/postfix.py) and what
``scripts/install`` installs.  The same new mails as bench/intake.py (Chinese
and English, several charsets, 10% with attachments) come from customers
who have real mailboxes in the private Dovecot, so every acknowledgement
and notification is delivered, none bounces.

Printed, nothing asserted:

* desk: from the first customer mail handed to Postfix until the last mail
  the desk sent lies in its recipient's mailbox (Postfix's queue is empty);
  also the daemon's own part (``helpdesk once`` until the queue is empty);
* floor: what Postfix and Dovecot alone allow on the same path: a plain
  ``smtplib`` client hands the same mails to the same MX port, then sends as
  many mails as the desk sent through submission (STARTTLS, AUTH, one
  connection), until the queue is empty; ratio = desk mails/s over floor's;
* beside it, the aiosmtpd figure of bench/intake.py for the same mail count
  (the daemon alone, no MTA), for comparison.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.intake import BENCH_SETTINGS, configured, new_mails  # noqa: E402
from tests.mailservers import Dovecot  # noqa: E402
from tests.postfix import Postfix, available  # noqa: E402

STAFF = ("lead@example.com", "director@example.com", "alice@example.com", "bob@example.com")


def customers(mails: int) -> list[str]:
    # bench/intake.py's new mails come from new{i}@bench{i % 50}.example.
    return [f"new{i}@bench{i % 50}.example" for i in range(mails)]


def wait_queue_empty(postfix: Postfix, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while "Mail queue is empty" not in postfix.queue():
        if time.monotonic() > deadline:
            raise SystemExit(f"Postfix's queue did not drain:\n{postfix.queue()[-2000:]}\n{postfix.log_tail}")
        time.sleep(0.05)


def inject(postfix: Postfix, raws: list[bytes], recipient: str) -> None:
    """The customers' providers handing their mail to the MX (one connection, as one busy relay would)."""
    with smtplib.SMTP(postfix.host, postfix.smtp_port, timeout=60) as client:
        for raw in raws:
            sender = message_from_bytes(raw)["From"].rpartition("<")[2].strip(">")
            client.sendmail(sender, [recipient], raw)


def submitted(postfix: Postfix) -> int:
    """Mails accepted on the submission port so far, from Postfix's log."""
    log = postfix.root / "postfix.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r"postfix/submission/smtpd\[\d+\]: \w+: client=", text))


def desk_run(dovecot: Dovecot, postfix: Postfix, raws: list[bytes], workdir: Path) -> dict:
    account = dovecot.add_user()
    settings = dict(BENCH_SETTINGS, **{
        "imap.port": dovecot.port, "imap.username": account.username,
        "smtp.port": postfix.submission_port, "smtp.security": "starttls", "smtp.ca_file": str(postfix.ca_path),
        "smtp.username": account.username, "smtp.password_env": "BENCH_IMAP_PASSWORD",
        "smtp.from_address": account.username,
    })
    config = workdir / "config.toml"
    config.write_text(configured((REPO / "config.toml").read_text(encoding="utf-8"), settings), encoding="utf-8")
    env = dict(os.environ, BENCH_IMAP_PASSWORD=account.password, PYTHONPATH=str(REPO))
    before = submitted(postfix)
    started = time.perf_counter()
    inject(postfix, raws, account.username)
    wait_queue_empty(postfix)
    inbound_s = time.perf_counter() - started
    desk_started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), "once"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"helpdesk once failed:\n{proc.stderr[-3000:]}")
    wait_queue_empty(postfix)
    ended = time.perf_counter()
    left = account.count("INBOX")
    found = re.search(r"([\d.]+) s from first fetch to last send", proc.stderr)
    return {"total_s": ended - started, "inbound_s": inbound_s, "desk_s": ended - desk_started,
            "fetch_to_send": float(found.group(1)) if found else float("nan"),
            "sent": submitted(postfix) - before, "left_in_inbox": left}


def floor_run(dovecot: Dovecot, postfix: Postfix, raws: list[bytes], outbound: int, recipients: list[str]) -> dict:
    """The same MTA work without the desk: the inbound mails, then ``outbound`` mails through submission."""
    account = dovecot.add_user()
    started = time.perf_counter()
    inject(postfix, raws, account.username)
    wait_queue_empty(postfix)
    inbound_s = time.perf_counter() - started
    context = ssl.create_default_context(cafile=str(postfix.ca_path))
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=60) as client:
        client.starttls(context=context)
        client.login(account.username, account.password)
        for i in range(outbound):
            client.sendmail(account.username, [recipients[i % len(recipients)]], raws[i % len(raws)])
    wait_queue_empty(postfix)
    return {"total_s": time.perf_counter() - started, "inbound_s": inbound_s}


def aiosmtpd_figure(dovecot: Dovecot, mails: int) -> float | None:
    """bench/intake.py's mails/s on an empty store (daemon + Dovecot + aiosmtpd, no MTA)."""
    from bench import intake
    try:
        result = intake.run_case(dovecot, mails, 0, random.Random(42), {})
    except Exception as exc:  # noqa: BLE001 - the comparison is optional; say why it is missing
        print(f"aiosmtpd figure unavailable: {exc}")
        return None
    return result["rate"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 mails")
    parser.add_argument("--mails", type=int)
    parser.add_argument("--no-aiosmtpd", action="store_true", help="skip the bench/intake.py comparison")
    args = parser.parse_args(argv)
    reason = available()
    if reason:
        print(f"bench/intake_mta.py: {reason}", file=sys.stderr)
        return 1
    mails = args.mails or (100 if args.quick else 500)
    raws = new_mails(mails, [], random.Random(42))
    dovecot = Dovecot(tls=True, lmtp=True, users=(*customers(mails), *STAFF)).start()
    postfix = None
    workdir = Path(tempfile.mkdtemp(prefix="maildesk-bench-mta-"))
    try:
        postfix = Postfix(dovecot).start()
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
        print("path: customer -> Postfix smtpd -> LMTP -> Dovecot -> helpdesk once -> Postfix submission "
              "(STARTTLS, AUTH) -> LMTP -> Dovecot; config: the shipped config.toml, changed only for loopback")
        desk = desk_run(dovecot, postfix, raws, workdir)
        floor = floor_run(dovecot, postfix, raws, desk["sent"], [*customers(mails), *STAFF])
        desk_rate = mails / desk["total_s"]
        floor_rate = mails / floor["total_s"]
        print("desk s: first mail to Postfix until the queue is empty; in s: its inbound part; daemon s: "
              "helpdesk once until the queue is empty; fetch-send s: the daemon's own first fetch to last 250; "
              "floor: the same MTA work without the desk; ratio: desk mails/s over the floor's")
        print(f"{'mails':>6} {'sent':>6} {'desk s':>8} {'in s':>7} {'daemon s':>9} {'fetch-send s':>13} "
              f"{'mails/s':>8} {'floor s':>8} {'floor/s':>8} {'ratio':>6}")
        print(f"{mails:>6} {desk['sent']:>6} {desk['total_s']:>8.2f} {desk['inbound_s']:>7.2f} "
              f"{desk['desk_s']:>9.2f} {desk['fetch_to_send']:>13.2f} {desk_rate:>8.1f} {floor['total_s']:>8.2f} "
              f"{floor_rate:>8.1f} {desk_rate / floor_rate:>6.2f}")
        if desk["left_in_inbox"]:
            print(f"note: {desk['left_in_inbox']} mail(s) were still in the desk's INBOX after the run")
        if not args.no_aiosmtpd:
            rate = aiosmtpd_figure(dovecot, mails)
            if rate is not None:
                print(f"beside it, bench/intake.py (Dovecot in, aiosmtpd out, no MTA): {rate:.1f} mails/s "
                      f"from first fetch to last send, {mails} mails, empty store")
    finally:
        if postfix is not None:
            postfix.stop()
        dovecot.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
