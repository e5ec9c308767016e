"""Kill the daemon with SIGKILL at random moments: nothing lost, nothing doubled."""
from __future__ import annotations

import random
import signal
import time

import pytest

from maildesk.daemon.config import load_config
from maildesk.storage.base import open_store

from .desk import customer_mail, helpdesk, start_daemon, tickets, write_config

pytestmark = pytest.mark.integration

MAILS = 300
KILLS = 40


@pytest.mark.parametrize("connections", [1, 3])
def test_sigkill_mid_batch_loses_and_doubles_nothing(tmp_path, dovecot, mailbox, smtp_sink, connections):
    """At most one repeated mail per SMTP connection in flight when the process dies."""
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none",
                          smtp_connections=connections)
    # Small batches: more moments to die in, and dozens of kills before the inbox is empty.
    config.write_text(config.read_text().replace("batch_size = 25", "batch_size = 8"))
    customers = [f"c{i:03d}@cust.example" for i in range(MAILS)]
    # Half the mail carries no Message-ID: those are keyed by a hash of their bytes.
    raws = []
    for i, address in enumerate(customers):
        raw = customer_mail(address, f"Request {i}", f"Problem number {i}.\n" * 20)
        if i % 2:
            raw = b"\n".join(line for line in raw.split(b"\n") if not line.startswith(b"Message-ID"))
        raws.append(raw)
    mailbox.deliver_many(raws)

    rng = random.Random(20261125)
    kills = 0
    progress: list[int] = []
    log = tmp_path / "daemon.log"
    for _ in range(KILLS):
        proc = start_daemon(config, password=mailbox.password, log_path=log)
        started = log.read_text().count("running for")
        deadline = time.monotonic() + 20
        while log.read_text().count("running for") == started and time.monotonic() < deadline:
            time.sleep(0.01)
        if kills % 2:
            # Kill while acknowledgements go out: between a 250 and its outbox mark.
            target = len(smtp_sink.messages()) + rng.randint(1, 12)
            while len(smtp_sink.messages()) < target and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            # Kill anywhere in fetching, parsing, committing or moving: at a random moment, but
            # before a dozen more acknowledgements, so a faster desk is interrupted as often.
            until = time.monotonic() + rng.uniform(0.0, 0.12)
            target = len(smtp_sink.messages()) + 12
            while time.monotonic() < until and len(smtp_sink.messages()) < target:
                time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        left = mailbox.count("INBOX")
        progress.append(left)
        if left == 0:
            break

    helpdesk(config, "once", password=mailbox.password, timeout=120)
    assert mailbox.count("INBOX") == 0

    listing = tickets(config, password=mailbox.password)
    assert sorted(t["customer"] for t in listing) == customers, "every mail is exactly one ticket"
    assert len({t["id"] for t in listing}) == MAILS

    received = {}
    for m in smtp_sink.messages():
        for r in m.rcpt_tos:
            received[r] = received.get(r, 0) + 1
    assert sorted(received) == customers, "every customer acknowledged"
    duplicates = sum(n - 1 for n in received.values())
    print(f"inbox after each kill: {progress}; {duplicates} duplicate acknowledgements")
    assert duplicates <= kills * connections, f"{duplicates} duplicate acknowledgements for {kills} kills"
    # The kills must really have interrupted work, or this test proves nothing.
    assert any(0 < left < MAILS for left in progress), progress
    assert kills >= 20, f"only {kills} kills: the test must interrupt dozens of times"

    with open_store(load_config(config), readonly=True) as store:
        assert not store.pending_outbound()
        assert all(r.outcome == "ticket" for r in store.processed_records())


def test_a_mail_that_kills_the_daemon_is_quarantined_after_three_attempts(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none")
    mailbox.deliver_many([customer_mail(f"n{i}@cust.example", f"Normal {i}", "fine") for i in range(10)] +
                         [customer_mail("evil@cust.example", "POISON pill", "boom")] +
                         [customer_mail(f"m{i}@cust.example", f"More {i}", "fine") for i in range(10)])
    env_password = mailbox.password
    import os
    import subprocess
    import sys

    from .desk import REPO, env_for
    deaths = 0
    for _ in range(6):
        env = env_for(env_password)
        env["MAILDESK_FAILPOINT"] = "kill-on-subject:POISON"
        proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), "once"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == -signal.SIGKILL:
            deaths += 1
            continue
        assert proc.returncode == 0, proc.stderr
        break
    assert deaths == 3, "the poison mail is tried three times, never a fourth"
    assert mailbox.count("INBOX") == 0 and mailbox.count("Helpdesk/Quarantine") == 1
    assert mailbox.count("Helpdesk/Processed") == 20
    listing = tickets(config, password=env_password)
    assert len(listing) == 20 and "evil@cust.example" not in {t["customer"] for t in listing}
    # Innocent neighbours were acknowledged exactly once, the poison never.
    to = sorted(r for m in smtp_sink.messages() for r in m.rcpt_tos)
    assert len(to) == 20 and len(set(to)) == 20 and "evil@cust.example" not in to
    with open_store(load_config(config), readonly=True) as store:
        [record] = [r for r in store.processed_records() if r.outcome == "quarantined"]
    assert "stopped the daemon 3 times" in record.reason
    assert os.environ.get("MAILDESK_FAILPOINT") is None
