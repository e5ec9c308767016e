"""A private Postfix on loopback for tests and benchmarks: a real MTA in the loop.

Its own ``config_directory`` (main.cf, master.cf), queue and data directories
live in a temp folder; ``postfix -c DIR start`` runs a master of its own that
never touches the system instance, its files or port 25.  Two listeners on
free loopback ports:

* ``smtp_port``: the inbound MX (like port 25).  Loopback is ``mynetworks``,
  so a customer's client may hand it mail for any domain.
* ``submission_port``: STARTTLS required, then SASL AUTH against Dovecot's
  passwords (Dovecot's auth socket), as the desk's outgoing server.

Every domain is delivered to Dovecot over LMTP (``default_transport``):
support mailboxes, staff and customers all live in the same private Dovecot.
Dovecot refuses an unknown recipient, so Postfix bounces it with its own
delivery status notification to the envelope sender, as a real MX would.
Mail for the domain ``slow.test`` goes to a closed port instead: Postfix
defers it and, a second later, sends its "Delayed Mail (still being
retried)" warning.

Starting the master needs root (the daemons drop to the ``postfix`` user);
``available()`` says why it cannot run here (not root, not installed), and
the tests fail with that reason rather than pass unseen.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .mailservers import Dovecot, free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

_MAIN = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
myhostname = mx.example.com
mydomain = example.com
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Nothing is local: every domain goes to Dovecot over LMTP.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
default_transport = lmtp:inet:127.0.0.1:{lmtp_port}
relay_transport = $default_transport
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_peername_lookup = no
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth_socket}
smtpd_sasl_auth_enable = no
smtputf8_enable = yes
message_size_limit = 67108864
biff = no
# Mail for slow.test is deferred (its "server" is a closed port), and a deferred mail gets Postfix's
# "Delayed Mail (still being retried)" notice after a second instead of hours: retried every second.
transport_maps = inline:{{ slow.test=lmtp:inet:127.0.0.1:{closed_port} }}
delay_warning_time = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
"""

# chroot "n" everywhere: the private queue has no chroot skeleton, and nothing here needs one.
_MASTER = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def _closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    return free_port()


def available() -> str | None:
    """Why a private Postfix cannot run here, or None when it can."""
    if not os.path.exists(POSTFIX):
        return "postfix is not installed: run `bash scripts/install`"
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        return "Dovecot's LMTP server is not installed (dovecot-lmtpd): run `bash scripts/install`"
    if os.geteuid() != 0:
        return "starting a Postfix master needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user does not exist (is the package installed?)"
    return None


class Postfix:
    """A private Postfix delivering into ``dovecot`` (started with ``lmtp=True, tls=True``)."""

    host = "127.0.0.1"

    def __init__(self, dovecot: Dovecot) -> None:
        if not dovecot.lmtp_port or not dovecot.tls:
            raise ValueError("Postfix needs a Dovecot started with lmtp=True and tls=True")
        self.dovecot = dovecot
        self.root = Path(tempfile.mkdtemp(prefix="maildesk-postfix-"))
        os.chmod(self.root, 0o755)
        self.config_dir = self.root / "etc"
        self.smtp_port = 0
        self.submission_port = 0
        self.ca_path = dovecot.ca_path  # the submission certificate is Dovecot's, from the same private CA
        self._running = False

    @property
    def log_tail(self) -> str:
        log = self.root / "postfix.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed: {proc.stderr.strip()}\n{self.log_tail}")
        return proc

    def start(self, timeout: float = 30.0) -> "Postfix":
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self.config_dir.mkdir(exist_ok=True)
        (self.root / "queue").mkdir(exist_ok=True)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        entry = pwd.getpwnam("postfix")
        os.chown(data, entry.pw_uid, entry.pw_gid)
        d = self.dovecot
        (self.config_dir / "main.cf").write_text(_MAIN.format(
            root=self.root, lmtp_port=d.lmtp_port, cert=d.root / "server.pem", key=d.root / "server.key",
            auth_socket=d.auth_socket, closed_port=_closed_port()))
        last = ""
        for _ in range(3):
            self.smtp_port, self.submission_port = free_port(), free_port()
            (self.config_dir / "master.cf").write_text(_MASTER.format(
                smtp_port=self.smtp_port, submission_port=self.submission_port))
            proc = self._postfix("start", check=False)
            if proc.returncode == 0:
                self._running = True
                if self._wait_ready(timeout):
                    return self
                last = "the listeners did not answer"
            else:
                last = proc.stderr.strip()
            self.stop(cleanup=False)
        raise RuntimeError(f"postfix did not start: {last}\n{self.log_tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for port in (self.smtp_port, self.submission_port):
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=2) as s:
                        if s.recv(100).startswith(b"220"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        return True

    def queue(self) -> str:
        """The queue listing (``postqueue -p``), for messages in failing tests."""
        proc = subprocess.run(["postqueue", "-c", str(self.config_dir), "-p"], capture_output=True, text=True,
                              timeout=30)
        return proc.stdout + proc.stderr

    def stop(self, cleanup: bool = True) -> None:
        if self._running:
            self._running = False
            # "stop" lets the daemons finish; "abort" would leave a queue file half written.
            self._postfix("stop", check=False)
            pid_file = self.root / "queue" / "pid" / "master.pid"
            deadline = time.monotonic() + 15
            while pid_file.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pid_file.read_text().strip()), 0)
                except (ValueError, ProcessLookupError):
                    break
                time.sleep(0.05)
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)
