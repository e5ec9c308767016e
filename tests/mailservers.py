"""Real mail servers for tests and benchmarks: a private Dovecot and an aiosmtpd sink.

Both listen on loopback ports chosen at start; nothing is mocked.  Dovecot
runs from its own config in a private folder under /tmp (its auth process
runs as user ``dovecot`` and must traverse the path, which pytest's 0700
temp dirs would forbid); mail is stored as the ``mail`` system user.
"""
from __future__ import annotations

import functools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller
from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
POOL_SIZE = 500


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mail_ids() -> tuple[int, int]:
    # Dovecot refuses to run mail processes as root; "mail" exists on every Debian system.
    try:
        entry = pwd.getpwnam("mail")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return os.getuid(), os.getgid()


_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = maildesk-test-{port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:{root}/mail/%d/%n
mail_plugins =
default_internal_user = dovecot
default_login_user = dovenull
login_trusted_networks = 127.0.0.0/8
shutdown_clients = yes
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


# Appended with lmtp=True; later settings override earlier ones in Dovecot's config.
_LMTP_CONF = """\
protocols = imap lmtp
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service auth {{
  unix_listener auth-mta {{
    mode = 0666
  }}
}}
"""


# Appended with oauth2_introspection_url: SASL XOAUTH2 and OAUTHBEARER, tokens checked by the
# oauth2 passdb against the issuer's introspection endpoint (RFC 7662, POST token=...).
_OAUTH2_CONF = """\
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
_OAUTH2_ARGS = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


@dataclass
class MailAccount:
    host: str
    port: int
    username: str
    password: str

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(self.username, self.password)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as c:
            c.append(folder, raw)

    def deliver_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        with self.client() as c:
            for raw in raws:
                c.append(folder, raw)

    def fetch_all(self, folder: str = "INBOX") -> list[bytes]:
        with self.client() as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            data = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in sorted(data)]

    def count(self, folder: str = "INBOX") -> int:
        with self.client() as c:
            if not c.folder_exists(folder):
                return 0
            return int(c.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])

    def folders(self) -> list[str]:
        with self.client() as c:
            return [name for _flags, _sep, name in c.list_folders()]


class Dovecot:
    """A private Dovecot IMAP server on 127.0.0.1."""

    host = "127.0.0.1"
    # Appended to the generated config (later settings win): see DovecotLayout.
    extra_conf = ""

    def __init__(self, tls: bool = False, lmtp: bool = False, users: tuple[str, ...] = (),
                 oauth2_introspection_url: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="maildesk-dovecot-"))
        # With oauth2_introspection_url: XOAUTH2 and OAUTHBEARER besides passwords (tests/token_issuer.py).
        self.oauth2_introspection_url = oauth2_introspection_url
        # With lmtp=True: LMTP on lmtp_port and a SASL socket (auth_socket) for an MTA such
        # as Postfix to deliver into and authenticate against (tests/postfix.py).
        self.lmtp = lmtp
        self.lmtp_port = 0
        self.auth_socket = self.root / "run" / "auth-mta"
        # Named accounts (e.g. a customer in another domain) beside the support pool: ``account()``.
        self.users = users
        os.chmod(self.root, 0o755)
        self.port = 0
        # With tls=True: IMAPS on tls_port and STARTTLS on port, with a certificate for
        # 127.0.0.1 signed by a private CA (ca_path) that no system trusts.
        self.tls = tls
        self.tls_port = 0
        self.ca_path = self.root / "ca.pem"
        self._proc: subprocess.Popen | None = None
        self._pool: list[tuple[str, str]] = []

    @property
    def log_tail(self) -> str:
        log = self.root / "dovecot.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"

    def start(self, timeout: float = 15.0) -> "Dovecot":
        if not os.path.exists(DOVECOT):
            raise RuntimeError("dovecot is not installed: run `bash scripts/test`, which installs "
                               "dovecot-imapd, or apt-get install dovecot-imapd")
        uid, gid = _mail_ids()
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chown(self.root / "mail", uid, gid)
        self._pool = [(f"support{i}@example.com", secrets.token_urlsafe(12)) for i in range(1, POOL_SIZE + 1)]
        self._named = {u: secrets.token_urlsafe(12) for u in self.users}
        (self.root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n"
                                                  for u, p in [*self._pool, *self._named.items()]))
        os.chmod(self.root / "passwd", 0o644)
        if self.oauth2_introspection_url:
            (self.root / "dovecot-oauth2.conf.ext").write_text(_OAUTH2_ARGS.format(url=self.oauth2_introspection_url))
            os.chmod(self.root / "dovecot-oauth2.conf.ext", 0o644)
        last_error = ""
        ssl = "ssl = no"
        if self.tls:
            self._make_certificates()
            ssl = (f"ssl = yes\nssl_cert = <{self.root}/server.pem\nssl_key = <{self.root}/server.key\n"
                   "ssl_min_protocol = TLSv1.2")
        for _ in range(5):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else 0
            self.lmtp_port = free_port() if self.lmtp else 0
            (self.root / "dovecot.conf").write_text(_CONF.format(root=self.root, port=self.port, uid=uid, gid=gid,
                                                                 ssl=ssl, tls_port=self.tls_port)
                                                    + (_LMTP_CONF.format(port=self.lmtp_port) if self.lmtp else "")
                                                    + (_OAUTH2_CONF.format(root=self.root)
                                                       if self.oauth2_introspection_url else "")
                                                    + self.extra_conf)
            self._proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last_error = self._proc.stderr.read().decode(errors="replace")
                    break
                try:
                    with socket.create_connection((self.host, self.port), timeout=1) as s:
                        if s.recv(100).startswith(b"* OK"):
                            return self
                except OSError:
                    time.sleep(0.05)
            self.stop(cleanup=False)
        raise RuntimeError(f"dovecot did not start: {last_error}\n{self.log_tail}")

    def _make_certificates(self) -> None:
        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.root)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=maildesk test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
        (self.root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
        os.chmod(self.root / "server.key", 0o644)  # read by dovecot's own processes

    @property
    def pid(self) -> int | None:
        """The master process's id (its own processes are its children), while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def add_user(self) -> MailAccount:
        """A fresh mailbox, from accounts written before the server started.

        Dovecot re-reads a changed passwd-file only when it notices the change,
        which it may not within the same second; a pool written up front avoids
        depending on that.
        """
        if not self._pool:
            raise RuntimeError(f"all {POOL_SIZE} test mailboxes are in use; raise POOL_SIZE")
        username, password = self._pool.pop(0)
        return MailAccount(self.host, self.port, username, password)

    def account(self, address: str) -> MailAccount:
        """The named account ``address`` (one of ``users``)."""
        return MailAccount(self.host, self.port, address, self._named[address])

    def stop(self, cleanup: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)

    def drop_connections(self) -> None:
        """Kill every IMAP session of this instance, as a crashing server would."""
        subprocess.run(["pkill", "-KILL", "-f", f"maildesk-test-{self.port}/imap"], check=False)

    def restart(self) -> None:
        """Stop and start again on the same port, keeping every mailbox.

        Dovecot lets sessions outlive a stopped master; a real server restart
        (reboot, upgrade) ends them, so they are killed here too.
        """
        port = self.port
        self.stop(cleanup=False)
        subprocess.run(["pkill", "-KILL", "-f", f"maildesk-test-{port}/"], check=False)
        self._proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not restart\n{self.log_tail}")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]  # the envelope recipients exactly as the RCPT commands named them
    data: bytes
    # MAIL FROM parameters as sent (upper case, e.g. ["SIZE=1234", "SMTPUTF8"])
    mail_options: list[str] = field(default_factory=list)

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.mail_options

    @functools.cached_property
    def message(self) -> EmailMessage:
        # Parsed when a test first looks, not while the sink takes mail: a real MTA does not parse
        # MIME, and the benchmark's floor should be the server's pace, not Python's email package.
        return _parsed(self.data, self.smtputf8)


class _SinkHandler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        # aiosmtpd reads commands one at a time from the stream, so pipelined ones are served in
        # order; it just does not say so.  Postfix, Exim and Exchange all offer PIPELINING.
        session.host_name = hostname
        if self.sink.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.sink.refuse_recipients and address in self.sink.refuse_recipients:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.sink.delay_seconds:
            import asyncio
            await asyncio.sleep(self.sink.delay_seconds)
        if self.sink.reject_with:
            return self.sink.reject_with
        if self.sink.reject_content_to & set(envelope.rcpt_tos):
            return "554 5.6.0 content refused"
        if self.sink.drop_after_content_to & set(envelope.rcpt_tos):
            server.transport.close()  # gone before its reply: the client cannot know it was not taken
            return "421 4.4.2 closing"
        data = bytes(envelope.original_content or envelope.content)
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), data, list(envelope.mail_options))
        with self.sink.lock:
            self.sink.received.append(received)
        if self.sink.on_receive is not None:
            # e.g. an auto-responder answering into the desk's mailbox (blocking IMAP: off the loop)
            import asyncio
            await asyncio.get_running_loop().run_in_executor(None, self.sink.on_receive, received)
        return "250 Message accepted for delivery"


def _parsed(data: bytes, smtputf8: bool) -> EmailMessage:
    if smtputf8:
        # RFC 6532 headers are UTF-8; the bytes parser would leave them as surrogate escapes.
        return message_from_string(data.decode("utf-8", "surrogateescape"), policy=default_policy)
    return message_from_bytes(data, policy=default_policy)


class SmtpSink:
    """An aiosmtpd server on loopback that keeps every accepted message."""

    host = "127.0.0.1"

    def __init__(self, tls_cert: tuple[Path, Path] | None = None, starttls: bool = False,
                 smtputf8: bool = True, pipelining: bool = True) -> None:
        """``tls_cert=(cert, key)``: implicit TLS (like port 465) with that certificate, or,
        with ``starttls=True``, plain text upgraded by STARTTLS (like port 587), required.

        ``smtputf8``: offer SMTPUTF8 (RFC 6531) in the EHLO answer, as aiosmtpd's Controller
        always did by default; ``False`` is a server that takes ASCII addresses only and
        refuses ``MAIL FROM:<...> SMTPUTF8`` and non-ASCII addresses.

        ``pipelining``: offer PIPELINING (RFC 2920), as every production MTA does."""
        self.port = free_port()
        self.pipelining = pipelining
        self.tls_cert = tls_cert
        self.starttls = starttls
        self.smtputf8 = smtputf8
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.reject_with: str | None = None
        self.refuse_recipients: set[str] = set()
        # Messages to these recipients: content refused with 554 / connection dropped after the content.
        self.reject_content_to: set[str] = set()
        self.drop_after_content_to: set[str] = set()
        self.delay_seconds = 0.0
        self.on_receive = None  # callable(Received), run after a message is accepted
        self._controller: Controller | None = None

    def start(self) -> "SmtpSink":
        ssl_context = None
        if self.tls_cert:
            import ssl
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(str(self.tls_cert[0]), str(self.tls_cert[1]))
        if self.starttls:
            self._controller = Controller(_SinkHandler(self), hostname=self.host, port=self.port,
                                          data_size_limit=64 * 2**20, tls_context=ssl_context,
                                          require_starttls=True, enable_SMTPUTF8=self.smtputf8)
        else:
            self._controller = Controller(_SinkHandler(self), hostname=self.host, port=self.port,
                                          data_size_limit=64 * 2**20, ssl_context=ssl_context,
                                          enable_SMTPUTF8=self.smtputf8)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        found = self.messages()
        raise AssertionError(f"expected {count} messages, got {len(found)}: "
                             f"{[(m.rcpt_tos, m.message['Subject']) for m in found]}")


# --- Other IMAP layouts (tests/test_imap_layouts.py) -------------------------------------------------
# Each server class offers start(), stop(), add_user() -> MailAccount and folder(name), the server's
# own name for a folder written with "/", spelt out here independently of daemon/layout.py.

# Dovecot 2.3's post-login CAPABILITY, from which DovecotLayout removes what a test wants missing.
_DOVECOT_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
    "BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE")


class DovecotLayout(Dovecot):
    """Dovecot laid out like other servers: another hierarchy delimiter, an ``INBOX.`` personal
    namespace, a special-use Junk folder, or capabilities taken away (``imap_capability`` replaces
    the advertised list; a well-behaved client then must not use what is missing)."""

    def __init__(self, separator: str = "/", prefix: str = "", drop_capabilities: tuple[str, ...] = (),
                 junk: bool = False) -> None:
        super().__init__()
        self.separator, self.prefix = separator, prefix
        self.drop_capabilities = tuple(c.upper() for c in drop_capabilities)
        self.junk = junk

    @property
    def extra_conf(self) -> str:
        junk = ("  mailbox Junk {\n    special_use = \\Junk\n    auto = create\n  }\n" if self.junk else "")
        conf = f"namespace inbox {{\n  separator = {self.separator}\n  prefix = {self.prefix}\n{junk}}}\n"
        if self.drop_capabilities:
            kept = [c for c in _DOVECOT_CAPABILITIES.split() if c.upper() not in self.drop_capabilities]
            conf += f"imap_capability = {' '.join(kept)}\n"
        return conf

    def folder(self, name: str) -> str:
        if name.upper() == "INBOX":
            return "INBOX"
        return self.prefix + name.replace("/", self.separator)


class CyrusImap:
    """A private Cyrus IMAP 3 (Debian's cyrus-imapd) on 127.0.0.1, run as the unprivileged ``cyrus`` user.

    Laid out as Cyrus and Courier traditionally are: ``.`` delimiter and an ``INBOX.``
    personal namespace (``altnamespace: no``, ``unixhierarchysep: no``).  Passwords are in a
    private sasldb; a user's INBOX is created at first login (``autocreate_quota``).  Every
    Cyrus program gets ``-C`` (master does not hand its own to the services).
    """

    host = "127.0.0.1"
    bin_dir = Path("/usr/lib/cyrus/bin")
    # cyrus-imapd conflicts with dovecot-imapd as a package, so scripts/install unpacks its imapd here.
    imapd = Path("/usr/local/lib/maildesk-test/cyrus-imapd/usr/lib/cyrus/bin/imapd")
    pool_size = 40

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="maildesk-cyrus-"))
        os.chmod(self.root, 0o755)
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._pool: list[tuple[str, str]] = []

    def start(self, timeout: float = 15.0) -> "CyrusImap":
        master = self.bin_dir / "master"
        imapd = self.imapd if self.imapd.exists() else self.bin_dir / "imapd"
        if not master.exists() or not imapd.exists():
            raise RuntimeError("Cyrus IMAP is not installed: run `bash scripts/install`")
        # Cyrus refuses to run as root: as root the tests run it as the package's "cyrus" user,
        # otherwise as whoever runs them.
        ids = (os.getuid(), os.getgid())
        if os.getuid() == 0:
            try:
                entry = pwd.getpwnam("cyrus")
            except KeyError:
                raise RuntimeError("the cyrus user is missing: reinstall cyrus-common") from None
            ids = (entry.pw_uid, entry.pw_gid)
        for sub in ("config", "spool", "run", "sieve"):
            (self.root / sub).mkdir(exist_ok=True)
        self._pool = [(f"support{i}", secrets.token_urlsafe(12)) for i in range(1, self.pool_size + 1)]
        sasldb = self.root / "sasldb2"
        for user, password in self._pool:
            # The SASL realm is the configured servername.
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", str(sasldb), "-u", "localhost", user],
                           input=password.encode(),
                           check=True, capture_output=True)
        conf = self.root / "imapd.conf"
        self.port = free_port()
        conf.write_text(
            f"configdirectory: {self.root}/config\npartition-default: {self.root}/spool\n"
            f"sievedir: {self.root}/sieve\nadmins: cyrusadmin\nservername: localhost\n"
            f"sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\nsasl_sasldb_path: {sasldb}\n"
            "sasl_mech_list: PLAIN LOGIN\nallowplaintext: yes\n"
            "altnamespace: no\nunixhierarchysep: no\nautocreate_quota: 0\n"
            f"idlesocket: {self.root}/run/idle\nnotifysocket: {self.root}/run/notify\n"
            f"lmtpsocket: {self.root}/run/lmtp\nsyslog_prefix: maildesk-cyrus-{self.port}\n")
        (self.root / "cyrus.conf").write_text(
            f'START {{\n  recover cmd="ctl_cyrusdb -C {conf} -r"\n}}\n'
            f'SERVICES {{\n  imap cmd="{imapd} -C {conf}" listen="127.0.0.1:{self.port}" prefork=0\n}}\n'
            "EVENTS {\n}\nDAEMON {\n}\n")
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, *ids)
        # -D: stay in the foreground, so that stop() ends it by its own pid.
        self._proc = subprocess.Popen([str(master), "-D", "-C", str(conf), "-M", str(self.root / "cyrus.conf"),
                                       "-p", str(self.root / "run" / "master.pid")],
                                      **({"user": ids[0], "group": ids[1]} if os.getuid() == 0 else {}),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        code = self._proc.poll()
        self.stop()
        # Cyrus logs only to syslog; its exit code is what is left (78: a config error).
        raise RuntimeError(f"cyrus master did not start (exit code {code})")

    def add_user(self) -> MailAccount:
        if not self._pool:
            raise RuntimeError(f"all {self.pool_size} Cyrus test mailboxes are in use; raise pool_size")
        username, password = self._pool.pop(0)
        return MailAccount(self.host, self.port, username, password)

    def folder(self, name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else "INBOX." + name.replace("/", ".")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # master ends its imapd children on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class PymapServer:
    """pymap's in-memory backend (the demo's server): one instance per mailbox, ``/`` delimiter,
    no NAMESPACE, no keywords in PERMANENTFLAGS."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._instances: list = []

    def start(self) -> "PymapServer":
        return self

    def add_user(self) -> MailAccount:
        from maildesk.demo import DemoImapServer

        username, password = "support@example.com", secrets.token_urlsafe(12)
        server = DemoImapServer(username, password).start()
        self._instances.append(server)
        return MailAccount(server.host, server.port, username, password)

    def folder(self, name: str) -> str:
        return name

    def stop(self) -> None:
        while self._instances:
            self._instances.pop().stop()
