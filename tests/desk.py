"""Helpers for driving the real daemon in integration tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
if not CORPUS.is_dir():  # CI clones the repository with shared/ beside it
    CORPUS = Path("/work/shared/corpus")

SUPPORT = "support@example.com"
TECHNICIANS = (("alice@example.com", "Alice Wang", "2026-01-15"), ("bob@example.com", "Bob Li", None))
SUPERVISOR = "lead@example.com"
# The tests' receiving server: it stamps its verdict on staff mail (see ``verified``).
AUTHSERV_ID = "mx.example.com"


def verified(raw: bytes, *, authserv_id: str = AUTHSERV_ID, result: str = "pass") -> bytes:
    """The mail as the receiving server hands it over after checking its DKIM signature and DMARC.

    In production Postfix with OpenDKIM/OpenDMARC (or rspamd) adds this header
    on top; the tests add it for the mails they treat as genuinely signed.
    """
    head = raw.split(b"\n\n", 1)[0] if b"\r\n\r\n" not in raw else raw.split(b"\r\n\r\n", 1)[0]
    sender = b""
    for line in head.splitlines():
        if line.lower().startswith(b"from:"):
            sender = line
    domain = sender.decode("utf-8", "replace").rsplit("@", 1)[-1].strip(" >\r\n").lower()
    stamp = (f"Authentication-Results: {authserv_id}; dkim={result} header.d={domain} header.s=sel;"
             f" dmarc={result} header.from={domain}\r\n")
    return stamp.encode() + raw


# The [imap] and [smtp] sections of a config whose servers are never contacted (store, report and
# command-line tests that need a valid config and no mail servers).
NO_SERVERS = """
[imap]
host = "127.0.0.1"
port = 1
security = "none"
username = "support@example.com"
password = "x"
[smtp]
host = "127.0.0.1"
port = 2
security = "none"
from_address = "support@example.com"
"""

# Set (by tests/conftest.py) to a per-test PostgreSQL database when a test runs against that store.
STORAGE_URL_ENV = "MAILDESK_TEST_STORAGE_URL"


def _storage_lines() -> str:
    url = os.environ.get(STORAGE_URL_ENV)
    return f'url = "{url}"' if url else 'path = "var/helpdesk.json"'


def write_config(directory: Path, *, imap_port: int, imap_user: str, imap_password: str,
                 smtp_port: int, extra: str = "", support: str = SUPPORT, leadership: tuple[str, ...] = (),
                 smtp_connections: int = 3, **tickets) -> Path:
    """A config for the loopback servers; the IMAP password comes from the environment.

    Leadership is empty unless asked for: otherwise every test's first run would
    (rightly) send last week's report and disturb what the test counts.
    """
    techs = "\n".join(
        f'[[team.technicians]]\nemail = "{e}"\nname = "{n}"\n' + (f'nda_signed = "{d}"\n' if d else "")
        for e, n, d in TECHNICIANS)
    ticket_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in tickets.items())
    text = f"""
[imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{imap_user}"
password_env = "TEST_IMAP_PASSWORD"
poll_seconds = 0.5
batch_size = 25

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from_address = "{support}"
from_name = "IT Service Desk"
retry_max_minutes = 0.02
connections = {smtp_connections}

[storage]
{_storage_lines()}

[tickets]
prefix = "TS"
{ticket_lines}

[team]
supervisor = "{SUPERVISOR}"
leadership = {json.dumps(list(leadership))}
language = "en"

{techs}

[report]
timezone = "Asia/Shanghai"
language = "en"

[security]
authserv_id = "{AUTHSERV_ID}"

[log]
level = "info"
{extra}
"""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.environ["TEST_IMAP_PASSWORD"] = imap_password
    return path


def env_for(password: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TEST_IMAP_PASSWORD"] = password
    env["PYTHONPATH"] = str(REPO)
    return env


def helpdesk(config: Path, *args: str, password: str, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run the real command line in a child process."""
    proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=env_for(password), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"helpdesk {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


def start_daemon(config: Path, *, password: str, log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config), "run"],
                                stdout=log, stderr=log, env=env_for(password), cwd=REPO)


def stop_if_running(proc: subprocess.Popen) -> None:
    """Kill a daemon that a failing test left running (how it exits by itself is the test's business)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def tickets(config: Path, *, password: str) -> list[dict]:
    return json.loads(helpdesk(config, "tickets", "list", "--json", password=password).stdout)


def ticket(config: Path, tag: str, *, password: str) -> dict:
    return json.loads(helpdesk(config, "tickets", "show", tag, "--json", password=password).stdout)


def customer_mail(sender: str, subject: str, body: str, *, name: str = "", in_reply_to: str | None = None,
                  references: list[str] | None = None, message_id: str | None = None,
                  charset: str = "utf-8") -> bytes:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <{sender}>' if name else sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(body, charset=charset)
    return msg.as_bytes()
