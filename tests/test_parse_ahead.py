"""Parsing ahead (daemon/parsing.py): a backlog's next batch is parsed in a helper process.

Where a mail is parsed must change nothing but time: the same tickets and the
same answers with and without the helper, a batch parsed ahead is never used
for mails that are no longer the next ones waiting, and a helper that dies
costs only its speed.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config
from maildesk.daemon.parsing import HELPER_NICENESS, HelperProcessParser, InProcessParser
from maildesk.parsers import parse_mail
from maildesk.storage.base import open_store

from .desk import CORPUS, customer_mail, write_config



def corpus_raws() -> list[bytes]:
    return [f.read_bytes() for f in sorted(CORPUS.glob("*.eml"))]


@pytest.fixture
def desk_config(tmp_path, dovecot, mailbox, smtp_sink):
    # batch_size is 25 in the test config: 60 mails are a backlog of three batches.
    return write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                        imap_password=mailbox.password, smtp_port=smtp_sink.port, smtp_connections=1,
                        extra="[sla]\nfirst_response_hours = 100000\nresolution_hours = 100000\n")


def with_parse_ahead(config: Path, on: bool) -> Path:
    text = config.read_text()
    config.write_text(text.replace("batch_size = 25", f"batch_size = 25\nparse_ahead = {str(on).lower()}"))
    return config


def test_the_helper_reads_every_mail_as_the_desk_itself_does():
    raws = corpus_raws() + [b"", b"\xff\xfe not a mail", customer_mail("a@cust.example", "打印机卡纸", "第一行")]
    helper = HelperProcessParser()
    try:
        batch = helper.parse(raws + [None], 2**20)
        ahead = [batch.mail(i) for i in range(len(raws) + 1)]
    finally:
        helper.close()
    here = InProcessParser().parse(raws + [None], 2**20)
    assert ahead == [here.mail(i) for i in range(len(raws) + 1)]
    assert ahead[-1] is None
    assert ahead[-2].subject == "打印机卡纸"


def test_a_helper_that_dies_costs_only_its_speed():
    raws = [customer_mail(f"c{i}@cust.example", f"Request {i}", "body") for i in range(5)]
    helper = HelperProcessParser()
    try:
        warm = helper.parse(raws[:1], 2**20)
        assert warm.mail(0).subject == "Request 0"
        for pid in list(helper._pool._processes):  # the helper is killed as an OOM killer would
            os.kill(pid, signal.SIGKILL)
        batch = helper.parse(raws, 2**20)
        assert [batch.mail(i).subject for i in range(5)] == [f"Request {i}" for i in range(5)]
        again = helper.parse(raws[:2], 2**20)  # a new helper serves the next batch
        assert [again.mail(i).subject for i in range(2)] == ["Request 0", "Request 1"]
    finally:
        helper.close()
    assert parse_mail(raws[0]).subject == "Request 0"


def test_a_started_helper_is_running_before_the_first_batch_and_serves_it():
    raws = [customer_mail(f"c{i}@cust.example", f"Request {i}", "body") for i in range(3)]
    before = set(multiprocessing.active_children())
    helper = HelperProcessParser()
    try:
        helper.start()
        started = set(multiprocessing.active_children()) - before
        assert len(started) == 1, "the helper process runs before any batch is given to it"
        batch = helper.parse(raws, 2**20)
        assert [batch.mail(i).subject for i in range(3)] == ["Request 0", "Request 1", "Request 2"]
        assert set(multiprocessing.active_children()) - before == started, "the same helper parsed the batch"
    finally:
        helper.close()
    assert not set(multiprocessing.active_children()) - before


def test_the_helper_runs_at_a_lower_priority_than_the_desk():
    """On a busy machine the desk and the mail servers come first; the helper's work can wait."""
    raws = [customer_mail("c@cust.example", "Request", "body")]
    before = set(multiprocessing.active_children())
    helper = HelperProcessParser()
    try:
        assert helper.parse(raws, 2**20).mail(0).subject == "Request"  # started, and its start-up done
        (child,) = set(multiprocessing.active_children()) - before
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, os.nice(0) + HELPER_NICENESS)
        assert HELPER_NICENESS > 0
    finally:
        helper.close()


def test_the_in_process_parser_starts_nothing():
    before = set(multiprocessing.active_children())
    parser = InProcessParser()
    parser.start()
    assert set(multiprocessing.active_children()) == before
    assert parser.parse([customer_mail("c@cust.example", "Hello", "body")], 2**20).mail(0).subject == "Hello"


def test_what_the_helper_has_not_started_the_desk_parses_itself():
    raws = [customer_mail(f"c{i}@cust.example", f"Request {i}", "body " * 200) for i in range(30)]
    helper = HelperProcessParser()
    try:
        batch = helper.parse(raws, 2**20)
        # Asked for the last mail at once: its request is still queued behind the others.
        assert batch.mail(29).subject == "Request 29"
        assert batch.taken_back >= 1
        assert batch.pending(29) is None, "the desk has it: nothing to wait for"
        assert [batch.mail(i).subject for i in range(30)] == [f"Request {i}" for i in range(30)]
    finally:
        helper.close()


@pytest.mark.integration
@pytest.mark.both_stores
@pytest.mark.parametrize("ahead", [True, False], ids=["parse-ahead", "in-process"])
def test_a_backlog_gives_the_same_tickets_with_and_without_the_helper(desk_config, mailbox, smtp_sink, ahead):
    config = load_config(with_parse_ahead(desk_config, ahead))
    assert config.imap.parse_ahead is ahead
    customers = [f"c{i:02d}@cust.example" for i in range(60)]
    mailbox.deliver_many([customer_mail(c, f"Printer {i} jams", f"Tray {i}") for i, c in enumerate(customers)])
    with Desk(config) as desk:
        summary = desk.run_once()
    assert summary.handled == 60 and mailbox.count("INBOX") == 0
    with open_store(config, readonly=True) as store:
        found = sorted((t.customer, t.subject) for t in store.tickets(with_messages=False))
    assert found == sorted((c, f"Printer {i} jams") for i, c in enumerate(customers))
    acked = sorted(r for m in smtp_sink.messages() if "ack." in m.message["Message-ID"] for r in m.rcpt_tos)
    assert acked == sorted(customers)


@pytest.mark.integration
@pytest.mark.both_stores
def test_a_mail_taken_away_after_it_was_parsed_ahead_is_not_handled(desk_config, mailbox, smtp_sink):
    config = load_config(with_parse_ahead(desk_config, True))
    mailbox.deliver_many([customer_mail(f"c{i:02d}@cust.example", f"Request {i}", "body") for i in range(30)])
    with Desk(config) as desk:
        desk.mailbox.connect()
        first = desk.intake.run_batch()
        assert first.handled == 25  # and the last five are being parsed ahead
        with mailbox.client() as other:  # a colleague deletes one of them meanwhile
            other.select_folder("INBOX")
            other.delete_messages(other.search(["SUBJECT", "Request 27"]))
        desk.mailbox.client.noop()  # the desk's session learns of it (as IDLE or the next poll would)
        second = desk.intake.run_batch()
        assert second.handled == 4
        assert desk.intake.run_batch().handled == 0
    with open_store(config, readonly=True) as store:
        subjects = {t.subject for t in store.tickets(with_messages=False)}
    assert subjects == {f"Request {i}" for i in range(30)} - {"Request 27"}
