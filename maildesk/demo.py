"""``helpdesk demo``: the whole desk in one process, against loopback mail servers.

A pure-Python IMAP server (pymap, in memory) holds the support mailbox and
an aiosmtpd server takes what the desk sends: mail for the support address
is put into its inbox (so a reply "by mail" works), everything else is shown
on the console and filed into the mailbox's ``Demo/Outgoing`` folder, where a
mail client pointed at the demo can read it.  No root, no system packages.

The demo runs in the desk's secure mode, as production should: the demo
company's outgoing server DKIM-signs staff mail (``DemoSigner``, a key made
for this run), and the receiving SMTP server verifies every signature with
dkimpy, removes any ``Authentication-Results`` claiming its own name and
adds its verdict on top, the way Postfix with OpenDKIM/OpenDMARC or rspamd
does.  A forged staff mail in the story shows what that buys.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
from contextlib import AsyncExitStack
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

SUPPORT = "support@example.com"
OUTGOING_FOLDER = "Demo/Outgoing"
AUTHSERV_ID = "mx.demo.example"
STAFF_DOMAIN = "example.com"


class DemoSigner:
    """The demo company's DKIM key (``demo._domainkey.example.com``), made fresh for each run."""

    selector = b"demo"

    def __init__(self) -> None:
        import base64

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self._record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def sign(self, raw: bytes) -> bytes:
        import dkim

        signature = dkim.sign(raw, self.selector, STAFF_DOMAIN.encode(), self._private,
                              include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to"])
        return signature + raw

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        """The only DNS the demo's receiving server needs: this key's TXT record."""
        wanted = self.selector + b"._domainkey." + STAFF_DOMAIN.encode() + b"."
        return self._record if name.lower() == wanted else None


def stamp_verdict(raw: bytes, signer: DemoSigner) -> bytes:
    """What the receiving server does: drop headers that claim its name, verify DKIM, add its verdict."""
    import dkim
    from email.utils import parseaddr

    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.splitlines(keepends=True)
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name, _, value = line.partition(b":")
        skipping = name.strip().lower() == b"authentication-results" and \
            value.strip().lower().startswith(AUTHSERV_ID.encode())
        if not skipping:
            kept.append(line)
    raw = b"".join(kept) + sep + body
    message = message_from_bytes(raw, policy=default_policy)
    domain = parseaddr(str(message.get("From", "")))[1].rpartition("@")[2].lower()
    verifier = dkim.DKIM(raw)
    try:
        good = bool(message.get("DKIM-Signature")) and verifier.verify(dnsfunc=signer.dns)
    except Exception:  # noqa: BLE001 - a broken signature is a failed one
        good = False
    signed_by = (verifier.domain or b"").decode().lower()
    if not message.get("DKIM-Signature"):
        results = "dkim=none; dmarc=none"
    elif good and signed_by == domain:
        results = f"dkim=pass header.d={signed_by} header.s=demo; dmarc=pass header.from={domain}"
    else:
        results = f"dkim=fail header.d={signed_by or domain}; dmarc=fail header.from={domain}"
    return f"Authentication-Results: {AUTHSERV_ID}; {results}\r\n".encode() + raw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoImapServer:
    """pymap's in-memory backend on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, username: str, password: str) -> None:
        self.host, self.port = "127.0.0.1", _free_port()
        self.username, self.password = username, password
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _args(self) -> argparse.Namespace:
        from pymap.backend import backends
        from pymap.main import _PymapArgumentParser
        from pymap.service import services

        parser = _PymapArgumentParser()
        sub = parser.add_subparsers(dest="backend", required=True)
        for name, backend in backends.items():
            backend.add_subparser(name, sub).set_defaults(backend_type=backend)
        for service in services.values():
            service.add_arguments(parser)
        parser.set_defaults(skip_services=[], passlib_cfg=None, debug=False)
        # "--name=value": a password that starts with "-" is still a value, not an option.
        return parser.parse_args(["--host", self.host, "--port", str(self.port), "--no-tls", "dict",
                                  f"--demo-user={self.username}", f"--demo-password={self.password}"])

    async def _serve(self) -> None:
        from pymap.service import services

        args = self._args()
        backend, config = await args.backend_type.init(args)
        config.apply_context()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            await backend.start(stack)
            for service in services.values():
                await service(backend, config).start(stack)
            self._ready.set()
            await self._stop.wait()

    def _thread(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()

    def start(self) -> "DemoImapServer":
        self._thread_obj = threading.Thread(target=self._thread, name="demo-imap", daemon=True)
        self._thread_obj.start()
        if not self._ready.wait(15) or self._error:
            raise RuntimeError(f"the demo IMAP server did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread_obj.join(5)

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.username, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            c.append(folder, raw)


class _DemoSmtpHandler:
    def __init__(self, imap: DemoImapServer, sent: list, signer: DemoSigner) -> None:
        self.imap = imap
        self.sent = sent
        self.signer = signer

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        data = bytes(envelope.original_content or envelope.content)
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        loop = asyncio.get_running_loop()
        if SUPPORT in rcpts:
            await loop.run_in_executor(None, self.imap.append, stamp_verdict(data, self.signer), "INBOX")
        others = [r for r in rcpts if r != SUPPORT]
        if others:
            self.sent.append((others, message_from_bytes(data, policy=default_policy)))
            await loop.run_in_executor(None, self.imap.append, data, OUTGOING_FOLDER)
        return "250 OK"


def _mail(sender: str, name: str, subject: str, body: str, *, charset: str = "utf-8",
          in_reply_to: str | None = None, extra: dict[str, str] | None = None,
          attachment: tuple[str, bytes] | None = None, html: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for key, value in (extra or {}).items():
        msg[key] = value
    if html and not body:
        msg.set_content(html, subtype="html", charset=charset)
    else:
        msg.set_content(body, charset=charset)
    if attachment:
        msg.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return msg.as_bytes()


def _first_wave() -> list[tuple[str, bytes]]:
    return [
        ("an English request", _mail("zhang.wei@customer.example", "Zhang Wei", "Cannot print from SAP",
                                     "Since this morning SAP print jobs stay in the spool.\nPrinter: HP M607, "
                                     "room 402.\n\nRegards,\nZhang Wei")),
        ("a Chinese request in GBK (Foxmail)", _mail(
            "liuyang@customer.example", "刘洋", "邮箱容量已满，无法收信",
            "您好，我的邮箱提示容量已满，删除邮件后仍然无法收信。\n麻烦尽快处理，谢谢！\n\n刘洋", charset="gbk")),
        ("an HTML-only mail in GB18030 (QQ Mail)", _mail(
            "zhangsan@qq.example", "张三", "会议室投影仪没有信号", "", charset="gb18030",
            html="<html><head><style>body{font-size:14px}</style></head><body><div>三号会议室投影仪显示"
                 "<b>无信号</b>，换了HDMI线也不行。</div><div>张三</div></body></html>")),
        ("a request with an attachment", _mail(
            "chenming@customer.example", "陈明", "办公室网络很慢", "网页经常打不开，拓扑图见附件。",
            attachment=("网络拓扑.pdf", b"%PDF-1.4 demo"))),
        ("an out-of-office auto-reply", _mail(
            "director@customer.example", "Director", "Automatic reply: Cannot print from SAP",
            "I am out of the office.", extra={"Auto-Submitted": "auto-replied"})),
    ]


def run_demo(keep: bool = False) -> int:
    from aiosmtpd.controller import Controller

    from maildesk.cli import setup_logging
    from maildesk.daemon.app import Desk
    from maildesk.daemon.config import load_config
    from maildesk.daemon.views import ticket_summary

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-session chatter
    logging.getLogger("pymap").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="maildesk-demo-"))
    password = secrets.token_urlsafe(10)
    imap = DemoImapServer(SUPPORT, password).start()
    sent: list = []
    smtp_port = _free_port()
    signer = DemoSigner()
    smtp = Controller(_DemoSmtpHandler(imap, sent, signer), hostname="127.0.0.1", port=smtp_port)
    smtp.start()

    def deliver(raw: bytes, *, from_company: bool = True) -> None:
        """Mail to the support address goes through the receiving server, which judges its signature;
        staff mail sent through the demo company's own server leaves it DKIM-signed."""
        import smtplib

        sender = message_from_bytes(raw, policy=default_policy)["From"].addresses[0].addr_spec
        if from_company and sender.endswith("@" + STAFF_DOMAIN):
            raw = signer.sign(raw)
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.sendmail(sender, [SUPPORT], raw)

    os.environ["HELPDESK_DEMO_PASSWORD"] = password
    config_path = workdir / "config.toml"
    config_path.write_text(_CONFIG.format(imap_port=imap.port, smtp_port=smtp_port, support=SUPPORT),
                           encoding="utf-8")
    setup_logging("warning")
    config = load_config(config_path)
    out = sys.stdout
    try:
        print(f"maildesk demo: IMAP (pymap) on 127.0.0.1:{imap.port}, SMTP (aiosmtpd) on 127.0.0.1:{smtp_port}",
              file=out)
        print(f"store and config in {workdir}\n", file=out)

        print("1. Customers write to the support address:", file=out)
        for label, raw in _first_wave():
            subject = message_from_bytes(raw, policy=default_policy)["Subject"]
            print(f"   - {label}: {subject}", file=out)
            deliver(raw)
        with Desk(config) as desk:
            summary = desk.run_once()
        print(f"\n   The desk handled {summary.handled} mails: "
              f"{', '.join(f'{v} {k}' for k, v in sorted(summary.outcomes.items()))}.", file=out)
        _show_sent(sent, out)

        print("\n2. Zhang Wei answers the acknowledgement (no tag needed: In-Reply-To finds the ticket),", file=out)
        print("   and a stranger copies his ticket tag into a mail of her own:", file=out)
        ack = next(m for rcpts, m in sent if rcpts == ["zhang.wei@customer.example"])
        tag = ack["Subject"].split("]")[0].lstrip("[")
        sent.clear()
        deliver(_mail("zhang.wei@customer.example", "Zhang Wei", "Re: Cannot print from SAP",
                          "The spool shows error 0x2a now.", in_reply_to=ack["Message-ID"]))
        deliver(_mail("eve@other.example", "Eve", f"Re: [{tag}] Cannot print from SAP",
                          "What was this ticket about?"))
        with Desk(config) as desk:
            desk.run_once()
        _show_sent(sent, out)

        print("\n3. Alice (technician) works 刘洋's ticket by replying to her notification; 刘洋 answers by mail:",
              file=out)
        tag2 = "TS-000002"
        customer = "liuyang@customer.example"
        steps = [
            ("Alice", "alice@example.com", "＃诊断　正在检查邮箱配额。"),
            ("Alice", "alice@example.com", "#方案：把邮箱配额从 2GB 调到 10GB，并开启自动归档。"),
            ("刘洋", customer, "同意，今晚操作即可。"),
            ("Alice", "alice@example.com", "#解决：配额已调整为 10GB，自动归档已开启。"),
            ("刘洋", customer, "5分，处理很快，谢谢！"),
            ("Alice", "alice@example.com", "#归档 调整邮箱配额并开启自动归档。\n经验：大附件多的部门默认配置 10GB 配额。"),
        ]
        for who, address, text in steps:
            sent.clear()
            deliver(_mail(address, who, f"回复：[{tag2}] 邮箱容量已满，无法收信", text, in_reply_to=None))
            with Desk(config) as desk:
                desk.run_once()
                stage = desk.store.get_ticket(2).stage
            first_line = text.splitlines()[0]
            print(f"   {who}: {first_line}", file=out)
            print(f"        -> stage {stage}; mail sent to "
                  f"{', '.join(sorted({r for rcpts, _ in sent for r in rcpts})) or 'nobody'}", file=out)

        print("\n4. Eve forges Alice's address (no DKIM signature) to resolve Zhang Wei's ticket:", file=out)
        sent.clear()
        deliver(_mail("eve@other.example", "Alice Wang", f"Re: [{tag}] Cannot print from SAP",
                      "#resolve Fixed, please confirm your password at http://other.example/login",
                      ).replace(b"From: Alice Wang <eve@other.example>", b"From: Alice Wang <alice@example.com>"),
                from_company=False)  # sent from Eve's own server: nobody signs it for example.com
        with Desk(config) as desk:
            desk.run_once()
            forged = desk.store.get_ticket(int(tag.split("-")[1]))
        event = forged.events[-1]
        print(f"   -> {tag} stays at stage {forged.stage}; event {event.kind}: {event.detail}", file=out)
        _show_sent(sent, out)

        print("\n5. The tickets (helpdesk -c CONFIG tickets list):", file=out)
        with Desk(config) as desk:
            for t in sorted(desk.store.tickets(), key=lambda t: t.number):
                row = ticket_summary(t, config.report.timezone)
                inbound = sum(1 for m in t.messages if m.direction == "in")
                rating = f", rated {t.rating}/5" if t.rating else ""
                print(f"   {row['id']}  {row['stage']:<9} {row['customer']:<28} {row['subject']}  "
                      f"({inbound} mail(s) in{rating})", file=out)
        print(f"\n   Try: helpdesk -c {config_path} tickets show TS-000002", file=out)
        if not keep:
            print("\nRun `helpdesk demo --keep` to keep the servers and the daemon running and point your own "
                  "mail client at them.", file=out)

        if keep:
            print(f"\nThe servers keep running; point a mail client at them:\n"
                  f"   IMAP 127.0.0.1:{imap.port}, no TLS, user {SUPPORT}, password {password}\n"
                  f"   SMTP 127.0.0.1:{smtp_port}, no TLS, no login\n"
                  f"   Mail to {SUPPORT} lands in INBOX; what the desk sends is filed in {OUTGOING_FOLDER}.\n"
                  f"The daemon is running (Ctrl-C stops everything).", file=out)
            import signal

            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            with Desk(config) as desk:
                desk.run(stop.is_set)
            print("stopped.", file=out)
        return 0
    finally:
        smtp.stop()
        imap.stop()


def _show_sent(sent: list, out) -> None:
    for rcpts, msg in sent:
        body = msg.get_body(("plain",)).get_content().strip().splitlines()
        first = next((line for line in body[2:] if line.strip()), "")
        print(f"   -> {', '.join(rcpts)}: {msg['Subject']}", file=out)
        print(f"        {first.strip()[:90]}", file=out)
    if not sent:
        print("   (no mail sent)", file=out)


_CONFIG = """\
[imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{support}"
password_env = "HELPDESK_DEMO_PASSWORD"
poll_seconds = 2

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from_address = "{support}"
from_name = "IT Service Desk"
# One connection keeps the story on the console in the order it happened.
connections = 1

[storage]
path = "var/helpdesk.json"

[team]
supervisor = "lead@example.com"
leadership = ["director@example.com"]
language = "zh"

[[team.technicians]]
email = "alice@example.com"
name = "Alice Wang"
nda_signed = "2026-01-15"

[report]
timezone = "Asia/Shanghai"
language = "zh"

[security]
# The demo's receiving SMTP server verifies DKIM and stamps its verdict with this name.
authserv_id = "mx.demo.example"
"""
