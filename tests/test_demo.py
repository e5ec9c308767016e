"""`helpdesk demo` works on its own: in-process pymap and aiosmtpd, no system packages."""
from __future__ import annotations

import subprocess
import sys

from .desk import REPO


def test_demo_shows_tickets_acknowledgements_and_the_stranger_rule():
    proc = subprocess.run([sys.executable, "-m", "maildesk", "demo"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "The desk handled 5 mails: 1 ignored, 4 ticket." in out
    assert "-> liuyang@customer.example: [TS-000002] 邮箱容量已满，无法收信" in out
    assert "感谢您联系" in out  # the Chinese acknowledgement
    assert "-> eve@other.example: [TS-000005] Cannot print from SAP" in out
    assert "director@customer.example" not in out.split("1. Customers")[1].split("2. Zhang")[0].split(
        "The desk handled")[1]
    assert "TS-000001  received  zhang.wei@customer.example" in out and "(3 mail(s) in)" in out
    # Secure mode: signed staff mail was obeyed (above); the forged one was not, and the supervisor heard.
    forged = out.split("4. Eve forges")[1].split("5. The tickets")[0]
    assert "stays at stage received; event forged-staff-mail" in forged and "no DKIM or DMARC pass" in forged
    assert "-> lead@example.com: [TS-000001]" in forged and "zhang.wei@customer.example:" not in forged
    # All six stages, driven by a technician's and a customer's mails.
    for stage in ("diagnosing", "proposed", "executing", "feedback", "closed"):
        assert f"-> stage {stage};" in out
    assert "TS-000002  closed    liuyang@customer.example" in out and "rated 5/5" in out
    assert "Traceback" not in proc.stderr


def test_demo_keep_serves_a_real_mail_client_until_interrupted(tmp_path):
    import re
    import signal
    import smtplib
    import time
    from email.message import EmailMessage

    from imapclient import IMAPClient

    log = tmp_path / "demo.out"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "maildesk", "demo", "--keep"], stdout=fh,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while "The daemon is running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        out = log.read_text()
        imap_port = int(re.search(r"IMAP 127.0.0.1:(\d+)", out).group(1))
        smtp_port = int(re.search(r"SMTP 127.0.0.1:(\d+)", out).group(1))
        password = re.search(r"password (\S+)", out).group(1)
        msg = EmailMessage()
        msg["From"] = "me@client.example"
        msg["To"] = "support@example.com"
        msg["Subject"] = "Hello from my own client"
        msg.set_content("My laptop is slow.")
        with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
            smtp.send_message(msg)
        subjects = []
        while time.monotonic() < deadline:
            with IMAPClient("127.0.0.1", port=imap_port, ssl=False, timeout=10) as client:
                client.login("support@example.com", password)
                client.select_folder("Demo/Outgoing", readonly=True)
                subjects = [v[b"ENVELOPE"].subject or b""
                            for v in client.fetch(client.search(["ALL"]), ["ENVELOPE"]).values()]
            if any(b"Hello from my own client" in s for s in subjects):
                break
            time.sleep(0.2)
        assert any(b"[TS-000006] Hello from my own client" in s for s in subjects), subjects
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    assert log.read_text().rstrip().endswith("stopped.")


def test_the_demo_imap_server_takes_a_password_that_starts_with_a_dash():
    # Random test passwords (token_urlsafe) start with "-" one time in 64: it must still be a password.
    import imaplib

    from maildesk.demo import DemoImapServer

    server = DemoImapServer("support@example.com", "-Xy_12ab").start()
    client = imaplib.IMAP4(server.host, server.port)
    try:
        assert client.login("support@example.com", "-Xy_12ab")[0] == "OK"
    finally:
        client.logout()
        server.stop()
