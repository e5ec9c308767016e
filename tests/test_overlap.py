"""Intake overlapped with sending: the next batch is handled while the SMTP server takes this one's mail.

``Desk.drain_inbox`` hands the next batch's ``BatchInProgress.step`` to the
sender, which calls it while it waits for the server's reply to a mail's
content.  That must change nothing but time: the same tickets and the same
mail, each once; a step's failure must not be taken for the failure of the
mail being sent; and the round's own entries are not changed under the
sender (tests/test_digest.py has the digest's case).
"""
from __future__ import annotations

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config
from maildesk.daemon.intake import OUTSIDE_ROUND, BatchInProgress, BatchResult

from .desk import customer_mail, write_config


@pytest.fixture
def desk_config(tmp_path, dovecot, mailbox, smtp_sink):
    # batch_size is 25 in the test config.  Parsing in the desk's own process: every step is
    # ready when the sender offers it, so what a round gets done does not depend on a helper's pace.
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, smtp_connections=1,
                          extra="[sla]\nfirst_response_hours = 100000\nresolution_hours = 100000\n")
    config.write_text(config.read_text().replace("batch_size = 25", "batch_size = 25\nparse_ahead = false"))
    return config


def acknowledged(sink) -> list[str]:
    return sorted(r for m in sink.messages() if m.message["Message-ID"].startswith("<ack.") for r in m.rcpt_tos)


@pytest.mark.integration
@pytest.mark.both_stores
def test_the_next_batch_is_handled_while_the_round_before_is_sent(desk_config, mailbox, smtp_sink):
    customers = [f"c{i:02d}@cust.example" for i in range(50)]
    mailbox.deliver_many([customer_mail(c, f"Printer {i} jams", "Tray 2") for i, c in enumerate(customers)])
    with Desk(load_config(desk_config)) as desk:
        desk.mailbox.connect()
        assert desk.intake.run_batch().handled == 25
        following = desk.intake.begin_batch()
        sent, problems = desk.sender.deliver_due(meanwhile=following.step)
        assert problems == 0
        # The round sent the first batch's mail only; the second batch was handled in its waits,
        # committed, and has left the inbox before the round ended.
        assert acknowledged(smtp_sink) == customers[:25]
        assert mailbox.count("INBOX") == 0
        assert len(list(desk.store.tickets(with_messages=False))) == 50
        result = following.finish()
        assert (result.handled, result.moved) == (25, 25)
        desk.sender.deliver_due()
    assert acknowledged(smtp_sink) == customers


@pytest.mark.integration
@pytest.mark.both_stores
@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "one-after-the-other"])
def test_a_backlog_gives_the_same_tickets_and_mail_either_way(desk_config, mailbox, smtp_sink, overlap):
    customers = [f"c{i:02d}@cust.example" for i in range(70)]
    mailbox.deliver_many([customer_mail(c, f"VPN {i} drops", "since Monday") for i, c in enumerate(customers)])
    with Desk(load_config(desk_config)) as desk:
        desk.overlap_intake = overlap
        summary = desk.run_once()
        tickets = sorted((t.customer, t.subject) for t in desk.store.tickets(with_messages=False))
        # Only the next digest waits: the team got one less than 10 minutes ago.
        waiting = desk.store.pending_outbound()
        assert [m.kind for m in waiting] in ([], ["digest"])
    assert summary.handled == 70 and mailbox.count("INBOX") == 0
    assert tickets == sorted((c, f"VPN {i} drops") for i, c in enumerate(customers))
    assert acknowledged(smtp_sink) == customers, "every customer acknowledged exactly once"
    # The team: individual notifications up to the limit, then digests; every ticket in one of them.
    team = [m for m in smtp_sink.messages() if not m.message["Message-ID"].startswith("<ack.")]
    told = "\n".join([m.message.get_body(("plain",)).get_content() for m in team] + [m.text for m in waiting])
    assert all(told.count(f"VPN {i} drops") >= 1 for i in range(70))


@pytest.mark.integration
def test_the_mailbox_moves_on_its_own_thread_and_its_next_command_waits_for_the_move(desk_config, mailbox):
    mailbox.deliver_many([customer_mail(f"c{i}@cust.example", f"Request {i}", "body") for i in range(30)])
    config = load_config(desk_config)
    with Desk(config) as desk:
        desk.mailbox.connect()
        uids = desk.mailbox.waiting_uids()
        moving = desk.mailbox.move_soon([(uids[:20], config.imap.processed_folder),
                                         (uids[20:25], config.imap.quarantine_folder)])
        # imaplib carries one command at a time: this SEARCH goes out only after the moves.
        assert desk.mailbox.waiting_uids() == uids[25:]
        assert moving.done() and moving.result() is None
    assert (mailbox.count(config.imap.processed_folder), mailbox.count(config.imap.quarantine_folder)) == (20, 5)


@pytest.mark.integration
def test_a_move_that_fails_fails_its_batch_and_the_next_run_only_moves_the_mail(desk_config, mailbox, smtp_sink):
    from imapclient.exceptions import IMAPClientError

    mailbox.deliver_many([customer_mail(f"c{i}@cust.example", f"Request {i}", "body") for i in range(5)])
    config = load_config(desk_config)
    with Desk(config) as desk:
        desk.mailbox.connect()
        with mailbox.client() as other:  # somebody removes the processed folder behind the desk's back
            other.delete_folder(desk.mailbox.layout.server_name(config.imap.processed_folder))
        with pytest.raises(IMAPClientError):
            desk.intake.run_batch()
        assert mailbox.count("INBOX") == 5, "the mails stay until they can be moved"
        assert len(list(desk.store.tickets(with_messages=False))) == 5, "their tickets are committed"
        desk.mailbox.close()
        again = desk.intake.run_batch()  # reconnects, and makes the folder again
        assert (again.handled, again.moved, again.outcomes) == (5, 5, {"duplicate": 5})
        assert len(list(desk.store.tickets(with_messages=False))) == 5
    assert mailbox.count("INBOX") == 0


@pytest.mark.integration
def test_mail_that_leaves_the_inbox_between_the_search_and_the_fetch_is_no_batch(desk_config, mailbox, smtp_sink):
    mailbox.deliver_many([customer_mail(f"c{i}@cust.example", f"Request {i}", "body") for i in range(5)])
    config = load_config(desk_config)
    with Desk(config) as desk:
        desk.mailbox.connect()
        search = desk.mailbox.waiting_uids

        def search_then_another_client_takes_them():
            found = search()
            with mailbox.client() as other:  # a second desk, or a person in their mail client
                other.select_folder("INBOX")
                other.delete_messages(found)
                other.expunge()
            return found

        desk.mailbox.waiting_uids = search_then_another_client_takes_them
        gone = desk.intake.run_batch()
        assert (gone.handled, gone.moved) == (0, 0)
        del desk.mailbox.waiting_uids
        mailbox.deliver(customer_mail("late@cust.example", "After that", "body"))
        assert desk.run_once().handled == 1, "the desk goes on"
    assert acknowledged(smtp_sink) == ["late@cust.example"]


def test_a_failing_step_is_kept_for_finish_not_raised_into_the_sender():
    done: list[int] = []

    def steps():
        done.append(1)
        yield None
        raise ConnectionResetError("IMAP connection lost")

    batch = BatchInProgress(steps(), BatchResult())
    batch.step()
    batch.step()  # the failure: the sender, which called this, goes on with its round
    batch.step()
    assert done == [1]
    with pytest.raises(ConnectionResetError):
        batch.finish()


def test_finish_does_what_the_steps_left_and_waits_for_what_a_step_waited_for():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        parsed = pool.submit(lambda: "parsed")
        order: list[str] = []

        def steps():
            while not parsed.done():
                yield parsed  # the step does not wait; finish() does
            order.append(parsed.result())
            yield None
            order.append("committed")

        result = BatchResult(handled=3)
        batch = BatchInProgress(steps(), result)
        assert batch.finish() is result
    assert order == ["parsed", "committed"]


def test_work_that_must_run_outside_the_round_is_left_to_finish():
    order: list[str] = []

    def steps():
        order.append("fetched")
        yield OUTSIDE_ROUND  # e.g. suspects of the last death, each to be handled alone
        order.append("suspect handled")

    batch = BatchInProgress(steps(), BatchResult())
    batch.step()
    batch.step()
    assert order == ["fetched"], "not inside the sender's round"
    batch.finish()
    assert order == ["fetched", "suspect handled"]
