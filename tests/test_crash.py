"""Kill the daemon with SIGKILL at random moments: nothing lost, nothing doubled."""
from __future__ import annotations

import random
import signal
import time

import pytest

from maildesk.daemon.config import load_config
from maildesk.storage.store import TicketStore

from .desk import customer_mail, helpdesk, start_daemon, tickets, write_config

pytestmark = pytest.mark.integration

MAILS = 150
KILLS = 8


def test_sigkill_mid_batch_loses_and_doubles_nothing(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none")
    customers = [f"c{i:03d}@cust.example" for i in range(MAILS)]
    # Half the mail carries no Message-ID: those are keyed by a hash of their bytes.
    for i, address in enumerate(customers):
        raw = customer_mail(address, f"Request {i}", f"Problem number {i}.\n" * 20)
        if i % 2:
            raw = b"\r\n".join(line for line in raw.split(b"\n") if not line.startswith(b"Message-ID"))
            raw = raw.replace(b"\r\r\n", b"\r\n")
        mailbox.deliver(raw)

    rng = random.Random(20261125)
    kills = 0
    log = tmp_path / "daemon.log"
    for _ in range(KILLS):
        proc = start_daemon(config, password=mailbox.password, log_path=log)
        # Start-up takes a few hundred ms; kill somewhere between connecting and finishing.
        time.sleep(rng.uniform(0.4, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        if mailbox.count("INBOX") == 0:
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
    assert duplicates <= kills, f"{duplicates} duplicate acknowledgements for {kills} kills"

    with TicketStore(load_config(config).storage_path, readonly=True) as store:
        assert not store.pending_outbound()
        assert all(r.outcome == "ticket" for r in store.processed_records())
