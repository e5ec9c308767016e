"""Two desks on one mailbox and one PostgreSQL database: one works, the other stands by.

The standby takes over when the active desk dies (its lease lapses) or stops
(it hands the lease over); a desk that froze past its lease cannot write when
it wakes up.  Through all of it every mail is one ticket and every customer
gets an acknowledgement, repeated at most once per fail-over.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maildesk.daemon.config import load_config
from maildesk.storage.base import open_store

from .desk import REPO, STORAGE_URL_ENV, customer_mail, env_for, helpdesk, start_daemon, tickets, write_config

pytestmark = pytest.mark.integration

MAILS = 2000
FAILOVERS = 20
TAKEOVER_SECONDS = 10


class Desks:
    """Daemons started on one config, each with a log of its own."""

    def __init__(self, config: Path, password: str, logs: Path) -> None:
        self.config, self.password, self.logs = config, password, logs
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> tuple[subprocess.Popen, Path]:
        log = self.logs / f"desk{len(self.procs)}.log"
        proc = start_daemon(self.config, password=self.password, log_path=log)
        self.procs.append((proc, log))
        return proc, log

    def alive(self) -> list[tuple[subprocess.Popen, Path]]:
        return [(p, log) for p, log in self.procs if p.poll() is None]

    def active(self) -> list[tuple[subprocess.Popen, Path]]:
        return [(p, log) for p, log in self.alive() if log.exists() and "running for" in log.read_text()]

    def wait_active(self, timeout: float) -> tuple[subprocess.Popen, Path] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.active()
            if found:
                return found[0]
            time.sleep(0.02)
        return None

    def stop_all(self) -> None:
        for proc, _ in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def pg_config(tmp_path, dovecot, mailbox, smtp_sink, postgres, monkeypatch):
    monkeypatch.setenv(STORAGE_URL_ENV, postgres.create_database())
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none",
                          smtp_connections=1)
    assert "url = " in config.read_text()
    return config


def test_kill_9_of_the_active_desk_hands_over_with_nothing_lost_or_doubled(tmp_path, mailbox, smtp_sink,
                                                                           pg_config):
    customers = [f"c{i:04d}@cust.example" for i in range(MAILS)]
    mailbox.deliver_many([customer_mail(a, f"Request {i}", f"Problem number {i}.\n" * 5)
                          for i, a in enumerate(customers)])
    desks = Desks(pg_config, mailbox.password, tmp_path)
    rng = random.Random(20261126)
    takeovers: list[float] = []
    progress: list[int] = []
    try:
        desks.start()
        desks.start()
        assert desks.wait_active(30), "one of two desks becomes active"
        for _ in range(FAILOVERS):
            [(victim, _)] = desks.active()  # never two at once
            # Kill points spread over the whole stream: a random number of acknowledgements on ...
            target = len(smtp_sink.messages()) + rng.randint(1, 2 * MAILS // FAILOVERS - 1)
            deadline = time.monotonic() + 60
            while len(smtp_sink.messages()) < target and time.monotonic() < deadline:
                time.sleep(0.001)
            if rng.random() < 0.5:
                # ... then anywhere: fetching, handling, committing, moving (else: between a 250 and its mark).
                time.sleep(rng.uniform(0.0, 0.3))
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait(timeout=10)
            desks.start()  # the dead desk comes back, as the new standby
            survivor = desks.wait_active(TAKEOVER_SECONDS)
            assert survivor is not None, f"no take-over within {TAKEOVER_SECONDS} s"
            takeovers.append(time.monotonic() - killed)
            progress.append(mailbox.count("INBOX"))
        deadline = time.monotonic() + 300
        while (mailbox.count("INBOX") or len(smtp_sink.messages()) < MAILS) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)  # the last marks
    finally:
        desks.stop_all()
    print(f"take-over after kill -9: max {max(takeovers):.1f} s, mean {sum(takeovers) / len(takeovers):.1f} s; "
          f"inbox after each: {progress}")
    assert mailbox.count("INBOX") == 0
    assert any(0 < left < MAILS for left in progress), "the kills interrupted work"

    listing = tickets(pg_config, password=mailbox.password)
    assert sorted(t["customer"] for t in listing) == customers, "every mail is exactly one ticket"
    received: dict[str, int] = {}
    for m in smtp_sink.messages():
        for r in m.rcpt_tos:
            received[r] = received.get(r, 0) + 1
    assert sorted(received) == customers, "every customer acknowledged"
    duplicates = sum(n - 1 for n in received.values())
    print(f"{duplicates} repeated acknowledgements over {FAILOVERS} fail-overs")
    assert duplicates <= FAILOVERS, "at most one repeat per fail-over (one SMTP connection)"
    with open_store(load_config(pg_config), readonly=True) as store:
        assert not store.pending_outbound()
        assert sum(1 for r in store.processed_records() if r.outcome == "ticket") == MAILS


def test_a_desk_that_froze_past_its_lease_cannot_write_when_it_wakes(tmp_path, mailbox, smtp_sink, pg_config):
    desks = Desks(pg_config, mailbox.password, tmp_path)
    try:
        first, first_log = desks.start()
        assert desks.wait_active(30)
        second, second_log = desks.start()
        first.send_signal(signal.SIGSTOP)  # frozen: its database session stays open, its lease does not
        survivor = desks.wait_active(TAKEOVER_SECONDS)
        deadline = time.monotonic() + TAKEOVER_SECONDS
        while "running for" not in second_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "running for" in second_log.read_text(), "the standby took over from the frozen desk"
        assert survivor is not None
        mailbox.deliver(customer_mail("late@cust.example", "While one desk is frozen", "hello"))
        smtp_sink.wait_for(1, timeout=30)
        first.send_signal(signal.SIGCONT)
        mailbox.deliver(customer_mail("later@cust.example", "After it woke", "hello"))
        smtp_sink.wait_for(2, timeout=30)
        # The woken desk learns the lease is gone (its renewal, its next send or commit) and stops without writing.
        assert first.wait(timeout=30) == 3
        assert "another desk took over" in first_log.read_text()
        assert sorted(r for m in smtp_sink.messages() for r in m.rcpt_tos) == \
            ["late@cust.example", "later@cust.example"], "the woken desk sent nothing"
    finally:
        desks.stop_all()
    assert sorted(t["customer"] for t in tickets(pg_config, password=mailbox.password)) == \
        ["late@cust.example", "later@cust.example"]


def test_once_beside_an_active_desk_is_refused_with_one_line(tmp_path, mailbox, pg_config):
    desks = Desks(pg_config, mailbox.password, tmp_path)
    try:
        desks.start()
        assert desks.wait_active(30)
        proc = helpdesk(pg_config, "once", password=mailbox.password, check=False)
        assert proc.returncode == 3
        assert proc.stderr.strip().count("\n") == 0 and "only one desk works at a time" in proc.stderr
    finally:
        desks.stop_all()


def test_a_second_tinydb_desk_keeps_refusing_to_start(tmp_path, dovecot, mailbox, smtp_sink, monkeypatch):
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port)
    desks = Desks(config, mailbox.password, tmp_path)
    try:
        desks.start()
        assert desks.wait_active(30)
        second = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), "run"], cwd=REPO,
                                env=env_for(mailbox.password), capture_output=True, text=True, timeout=30)
        assert second.returncode == 3 and "in use by another helpdesk process" in second.stderr
    finally:
        desks.stop_all()
