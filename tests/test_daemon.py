"""The long-running daemon: IDLE wake-up, clean stop on signals."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .desk import customer_mail, start_daemon, stop_if_running, tickets, write_config

pytestmark = pytest.mark.integration


def test_run_acknowledges_new_mail_while_idle_and_stops_cleanly_on_sigterm(tmp_path, dovecot, mailbox,
                                                                         smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none")
    # A long poll interval: only IDLE can explain a prompt acknowledgement.
    config.write_text(config.read_text().replace("poll_seconds = 0.5", "poll_seconds = 600"))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password=mailbox.password, log_path=log)
    try:
        time.sleep(1.5)  # connected and idling
        latencies = []
        for i in range(3):
            smtp_sink.clear()
            started = time.monotonic()
            mailbox.deliver(customer_mail(f"idle{i}@cust.example", f"Idle test {i}", "hello"))
            smtp_sink.wait_for(1, timeout=30)
            latencies.append(time.monotonic() - started)
        print(f"ack latency with IDLE: {', '.join(f'{x:.2f}s' for x in latencies)}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_if_running(proc)
    text = log.read_text()
    assert "signal SIGTERM" in text and "stopped" in text
    assert len(tickets(config, password=mailbox.password)) == 3


def test_sigint_while_idle_exits_zero(tmp_path, dovecot, mailbox, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port)
    proc = start_daemon(config, password=mailbox.password, log_path=tmp_path / "daemon.log")
    # Once a mail has been answered the daemon is in its loop (a fixed sleep would race its start-up).
    mailbox.deliver(customer_mail("idle@cust.example", "Before going idle", "one"))
    smtp_sink.wait_for(1, timeout=60)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0


def test_imap_server_restart_is_survived_with_one_log_line_and_no_secret_logged(tmp_path, dovecot, mailbox,
                                                                              smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, notify_unassigned="none")
    config.write_text(config.read_text().replace('level = "info"', 'level = "debug"'))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password=mailbox.password, log_path=log)
    try:
        time.sleep(1.5)
        mailbox.deliver(customer_mail("before@cust.example", "Before the restart", "one"))
        smtp_sink.wait_for(1, timeout=30)
        dovecot.restart()
        mailbox.deliver(customer_mail("after@cust.example", "After the restart", "two"))
        sent = smtp_sink.wait_for(2, timeout=60)
        assert sorted(r for m in sent for r in m.rcpt_tos) == ["after@cust.example", "before@cust.example"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_if_running(proc)
    text = log.read_text()
    assert text.count("IMAP connection lost") == 1, text
    assert "reachable again" in text
    assert mailbox.password not in text


def test_check_reports_each_part_in_one_line(tmp_path, dovecot, mailbox, smtp_sink):
    from .desk import helpdesk
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port)
    proc = helpdesk(config, "check", password=mailbox.password)
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "store"], ["ok", "imap"], ["ok", "smtp"], ["ok", "trust"]]
    assert "secure" in lines[3] and "mx.example.com" in lines[3]
    assert "IDLE" in lines[1] and "MOVE" in lines[1]
    smtp_sink.stop()
    wrong = write_config(tmp_path / "wrong", imap_port=dovecot.port, imap_user=mailbox.username,
                         imap_password="not-the-password", smtp_port=smtp_sink.port)
    proc = helpdesk(wrong, "check", password="not-the-password", check=False)
    assert proc.returncode == 4
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ok") and lines[1].startswith("FAIL imap") and "refused" in lines[1]
    assert lines[2].startswith("FAIL smtp") and len(lines) == 4
    assert "not-the-password" not in proc.stdout + proc.stderr
    smtp_sink.start()


@pytest.fixture(scope="module")
def tls_dovecot():
    from .mailservers import Dovecot
    server = Dovecot(tls=True).start()
    yield server
    server.stop()


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_is_verified_against_the_configured_ca(tmp_path, tls_dovecot, smtp_sink, security):
    from .desk import helpdesk
    account = tls_dovecot.add_user()
    port = tls_dovecot.tls_port if security == "ssl" else tls_dovecot.port

    def config(name, extra_imap):
        path = write_config(tmp_path / name, imap_port=port, imap_user=account.username,
                            imap_password=account.password, smtp_port=smtp_sink.port)
        path.write_text(path.read_text().replace('security = "none"\nusername',
                                                 f'security = "{security}"\n{extra_imap}username', 1))
        return path

    trusted = config("trusted", f'ca_file = "{tls_dovecot.ca_path}"\n')
    proc = helpdesk(trusted, "check", password=account.password)
    assert proc.stdout.splitlines()[1].startswith("ok   imap") and f"({security})" in proc.stdout
    # The same server without its CA: the certificate is refused, never silently accepted.
    untrusted = config("untrusted", "")
    proc = helpdesk(untrusted, "check", password=account.password, check=False)
    assert proc.returncode == 4 and "CERTIFICATE_VERIFY_FAILED" in proc.stdout.splitlines()[1]
    account.deliver(customer_mail("tls@cust.example", "Over TLS", "hello"))
    helpdesk(trusted, "once", password=account.password)
    assert ["tls@cust.example"] in [m.rcpt_tos for m in smtp_sink.messages()]


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_smtp_over_tls_is_verified_against_the_configured_ca(tmp_path, tls_dovecot, dovecot, mailbox, security):
    from .desk import helpdesk
    from .mailservers import SmtpSink
    sink = SmtpSink(tls_cert=(tls_dovecot.root / "server.pem", tls_dovecot.root / "server.key"),
                    starttls=security == "starttls").start()
    try:
        def config(name, extra):
            path = write_config(tmp_path / name, imap_port=dovecot.port, imap_user=mailbox.username,
                                imap_password=mailbox.password, smtp_port=sink.port)
            text = path.read_text()
            head, _, tail = text.partition("[smtp]")
            tail = tail.replace('security = "none"', f'security = "{security}"\n{extra}', 1)
            path.write_text(head + "[smtp]" + tail)
            return path

        untrusted = config("untrusted", "")
        proc = helpdesk(untrusted, "check", password=mailbox.password, check=False)
        assert proc.returncode == 4 and proc.stdout.splitlines()[2].startswith("FAIL smtp")
        assert "CERTIFICATE_VERIFY_FAILED" in proc.stdout or "certificate verify failed" in proc.stdout
        trusted = config("trusted", f'ca_file = "{tls_dovecot.ca_path}"')
        mailbox.deliver(customer_mail("tls@cust.example", "Over TLS", "hello"))
        helpdesk(trusted, "once", password=mailbox.password)
        assert ["tls@cust.example"] in [m.rcpt_tos for m in sink.messages()]
    finally:
        sink.stop()


def test_log_file_is_private_and_holds_no_secret(tmp_path, dovecot, mailbox, smtp_sink):
    import stat
    from .desk import helpdesk
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port,
                          extra='file = "var/log/helpdesk.log"\n')
    config.write_text(config.read_text().replace('level = "info"', 'level = "debug"'))
    mailbox.deliver(customer_mail("a@cust.example", "Log me", "x"))
    helpdesk(config, "once", password=mailbox.password)
    log = config.parent / "var" / "log" / "helpdesk.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == stat.S_IMODE(log.parent.parent.stat().st_mode) == 0o700
    text = log.read_text()
    assert "outcome=ticket" in text and mailbox.password not in text


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("leadership", [("boss@example.com",), ()], ids=["reports", "no-reports"])
def test_an_idle_daemon_loads_the_report_charts_before_its_first_report(tmp_path, dovecot, mailbox, smtp_sink,
                                                                       leadership):
    """The daemon's first weekly report is made as fast as any later one: what rendering needs
    (matplotlib, whose font library shows in the process's memory map) loads while it waits."""
    config = write_config(tmp_path / "desk", imap_port=dovecot.port, imap_user=mailbox.username,
                          imap_password=mailbox.password, smtp_port=smtp_sink.port, leadership=leadership)
    proc = start_daemon(config, password=mailbox.password, log_path=tmp_path / "daemon.log")
    try:
        mailbox.deliver(customer_mail("idle@cust.example", "Before going idle", "one"))
        smtp_sink.wait_for(1, timeout=60)  # answered: the daemon is in its loop
        deadline = time.monotonic() + (60 if leadership else 2)  # without leadership: no report, nothing loads
        while "ft2font" not in mapped_files(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ("ft2font" in mapped_files(proc.pid)) == bool(leadership)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_if_running(proc)


def test_the_daemon_keeps_what_it_loaded_out_of_the_collectors_full_passes(tmp_path, monkeypatch):
    # The store's documents, templates and patterns live as long as the process: a full collection
    # walking them (at a million tickets, many millions of objects) would be work for nothing.
    import gc

    from maildesk import cli
    from maildesk.daemon.config import load_config

    config = write_config(tmp_path, imap_port=1, imap_user="desk", imap_password="x", smtp_port=1)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "x")
    gc.unfreeze()
    desk = cli._desk(load_config(config))
    try:
        assert gc.get_freeze_count() > 0
    finally:
        desk.close()
        gc.unfreeze()
