"""OAuth2 for IMAP and SMTP: configuration, provider defaults, and the real thing.

The integration tests run a private Dovecot whose ``oauth2`` passdb checks
every XOAUTH2 / OAUTHBEARER login against a token issuer on loopback
(tests/token_issuer.py), and an aiosmtpd submission server that checks the
same tokens there.  The desk runs as a child process, as in production.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maildesk.daemon.config import ConfigError, load_config
from maildesk.daemon.credentials import (CredentialsRefused, OAuth2Settings, Token, TokenSource,
                                         provider_defaults, sasl_initial_response)

from .desk import REPO, customer_mail, env_for, start_daemon, stop_if_running, tickets, write_config
from .mailservers import Dovecot, MailAccount
from .token_issuer import CLIENT_ID, CLIENT_SECRET, OAuthSmtpSink, TokenIssuer

OUTLOOK = "https://outlook.office365.com"


# -- configuration and provider defaults (no servers) ------------------------------------------------

BASE = """
[imap]
host = "imap.example.net"
port = 993
username = "support@example.com"
auth = "oauth2"
[smtp]
host = "smtp.example.net"
port = 465
from_address = "support@example.com"
auth = "oauth2"
"""


def load(tmp_path, text, environ=None):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


def test_microsoft_defaults_put_the_tenant_into_the_urls_and_ask_for_imap_and_smtp(tmp_path):
    config = load(tmp_path, BASE + '[oauth2]\nprovider = "microsoft"\ntenant = "contoso.onmicrosoft.com"\n'
                                   'client_id = "abc"\n')
    o = config.oauth2
    assert o.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert o.device_code_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"
    assert o.scope.split() == [f"{OUTLOOK}/IMAP.AccessAsUser.All", f"{OUTLOOK}/SMTP.Send", "offline_access"]
    assert o.grant == "refresh_token" and o.client_secret is None
    # No password anywhere: both logins are the token's; SMTP logs in as the mailbox.
    assert config.imap.password is None and config.imap.credentials.method == "oauth2"
    assert config.smtp.username == "support@example.com" and config.smtp.credentials.method == "oauth2"
    # One token source for both, so one refresh serves both.
    assert config.imap.credentials.source is config.smtp.credentials.source
    assert o.token_file == tmp_path / "var" / "oauth2.json"


def test_microsoft_app_only_access_uses_the_default_scope_and_needs_a_tenant_and_a_secret(tmp_path):
    text = BASE + ('[oauth2]\nprovider = "microsoft"\ntenant = "contoso.onmicrosoft.com"\nclient_id = "abc"\n'
                   'grant = "client_credentials"\nclient_secret_env = "SECRET"\n')
    config = load(tmp_path, text, {"SECRET": "s3cr3t-value"})
    assert config.oauth2.scope == f"{OUTLOOK}/.default"
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in repr(config.oauth2)
    with pytest.raises(ConfigError, match="client_secret_env is required"):
        load(tmp_path, text.replace('client_secret_env = "SECRET"\n', ""))
    with pytest.raises(ConfigError, match="oauth2.tenant is required"):
        load(tmp_path, text.replace('tenant = "contoso.onmicrosoft.com"\n', ""), {"SECRET": "x"})
    with pytest.raises(ConfigError, match="SECRET, which is not set"):
        load(tmp_path, text)


def test_the_commented_example_in_config_toml_is_valid_once_uncommented(tmp_path):
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    keep = re.compile(r"^# ((auth|provider|tenant|client_id|client_secret_env|grant|token_file|mechanism) = .*"
                      r"|\[oauth2\])$")
    text = "\n".join(m.group(1) if (m := keep.match(line)) else line for line in text.splitlines())
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, environ={"HELPDESK_IMAP_PASSWORD": "i", "HELPDESK_SMTP_PASSWORD": "s",
                                        "HELPDESK_OAUTH_SECRET": "o"})
    assert (config.imap.auth, config.smtp.auth, config.oauth2.provider) == ("oauth2", "oauth2", "microsoft")
    assert config.oauth2.token_file == Path("/var/lib/helpdesk/oauth2.json")


def test_microsoft_without_a_tenant_signs_in_work_accounts():
    assert provider_defaults("microsoft", None, "refresh_token")["token_url"] == \
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"


def test_google_defaults(tmp_path):
    config = load(tmp_path, BASE + '[oauth2]\nprovider = "google"\nclient_id = "abc"\n')
    assert config.oauth2.token_url == "https://oauth2.googleapis.com/token"
    # Google's device flow does not grant the mail scope: `auth login` uses the browser instead.
    assert config.oauth2.device_code_url == ""
    assert config.oauth2.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert config.oauth2.scope == "https://mail.google.com/"


def test_generic_takes_its_urls_from_the_config(tmp_path):
    config = load(tmp_path, BASE + '[oauth2]\nclient_id = "abc"\ntoken_url = "https://idp.example/token"\n'
                                   'device_code_url = "https://idp.example/device"\nscope = "mail"\n'
                                   'token_file = "/var/lib/helpdesk/oauth2.json"\nmechanism = "xoauth2"\n')
    assert (config.oauth2.provider, config.oauth2.token_url, config.oauth2.scope) == \
        ("generic", "https://idp.example/token", "mail")
    assert config.oauth2.token_file == Path("/var/lib/helpdesk/oauth2.json")
    assert config.imap.credentials.mechanism == "xoauth2"


@pytest.mark.parametrize("oauth2, message", [
    ('client_id = "a"\n', "oauth2.token_url is required"),
    ('client_id = "a"\ntoken_url = "http://idp.example/token"\n', "must be an https:// URL"),
    ('client_id = "a"\ntoken_url = "https://idp.example/token"\ntenant = "x"\n', 'for provider = "microsoft" only'),
    ('provider = "microsoft"\nclient_id = "a"\ntoken_url = "https://x/token"\n', "derived for provider"),
    ('provider = "yahoo"\nclient_id = "a"\n', "oauth2.provider must be one of"),
    ('client_id = "a"\ntoken_url = "https://idp.example/token"\ngrant = "password"\n', "oauth2.grant must be"),
    ('client_id = "a"\ntoken_url = "https://idp.example/token"\nmechanism = "plain"\n', "oauth2.mechanism"),
    ('client_id = "a"\ntoken_url = "https://idp.example/token"\nclient_secret = "x"\n',
     "unknown key oauth2.client_secret"),  # secrets only from the environment
    ('token_url = "https://idp.example/token"\n', "oauth2.client_id is required"),
])
def test_oauth2_section_errors_name_the_key(tmp_path, oauth2, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, BASE + "[oauth2]\n" + oauth2)


def test_oauth2_auth_needs_the_section_and_auth_values_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"needs an \[oauth2\] section"):
        load(tmp_path, BASE)
    with pytest.raises(ConfigError, match="imap.auth must be one of password, oauth2"):
        load(tmp_path, BASE.replace('auth = "oauth2"', 'auth = "none"', 1))


def test_password_stays_the_default_and_smtp_auth_none_sends_no_auth(tmp_path):
    text = BASE.replace('auth = "oauth2"\n', "").replace('username = "support@example.com"\n',
                                                          'username = "support@example.com"\npassword_env = "PW"\n')
    config = load(tmp_path, text, {"PW": "pw"})
    assert config.imap.auth == "password" and config.imap.credentials.method == "password"
    assert config.smtp.credentials is None  # no smtp.username: no AUTH, as before
    config = load(tmp_path, text.replace('from_address = "support@example.com"\n',
                                         'from_address = "support@example.com"\nauth = "none"\n'
                                         'username = "support@example.com"\n'), {"PW": "pw"})
    assert config.smtp.credentials is None
    with pytest.raises(ConfigError, match="imap.password or imap.password_env is required"):
        load(tmp_path, BASE.replace('auth = "oauth2"\n', ""))


def test_sasl_messages_are_as_the_rfcs_and_google_define_them():
    assert base64.b64decode(sasl_initial_response("OAUTHBEARER", "a,b=c@example.com", "T")) == \
        b"n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer T\x01\x01"
    assert base64.b64decode(sasl_initial_response("XOAUTH2", "support@example.com", "T")) == \
        b"user=support@example.com\x01auth=Bearer T\x01\x01"


@pytest.mark.parametrize("lifetime, age, due", [
    (3600, 3000, False), (3600, 3301, True),  # an hour-long token: renewed in its last 5 minutes
    (4, 1.9, False), (4, 2.1, True),  # a test's short token: in its second half
])
def test_tokens_are_renewed_before_they_expire(lifetime, age, due):
    token = Token(access_token="a", obtained_at=1000, expires_at=1000 + lifetime)
    assert token.needs_refresh(1000 + age) is due


def test_no_refresh_token_is_a_refusal_that_names_the_remedy(tmp_path):
    source = TokenSource(OAuth2Settings(provider="generic", token_url="http://127.0.0.1:9/token", client_id="a",
                                        token_file=tmp_path / "none.json"))
    with pytest.raises(CredentialsRefused, match="no refresh token in") as info:
        source.access_token()
    assert info.value.needs_login


# -- against real servers --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issuer():
    server = TokenIssuer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_dovecot(issuer):
    server = Dovecot(oauth2_introspection_url=f"{issuer.url}/introspect").start()
    yield server
    server.stop()


@pytest.fixture
def sink(issuer):
    server = OAuthSmtpSink(issuer).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _token_lifetime(request):
    if "issuer" in request.fixturenames:
        issuer = request.getfixturevalue("issuer")
        issuer.access_lifetime = 3600.0
        issuer.app_user = issuer.browser_user = ""
        issuer.unavailable = False


def oauth_config(tmp_path, mailbox, sink, issuer, *, mechanism="auto", grant="refresh_token", browser=False,
                 **extra) -> Path:
    path = write_config(tmp_path, imap_port=mailbox.port, imap_user=mailbox.username,
                        imap_password="not-used", smtp_port=sink.port, notify_unassigned="none", **extra)
    text = path.read_text(encoding="utf-8")
    text = text.replace('password_env = "TEST_IMAP_PASSWORD"\n', 'auth = "oauth2"\n', 1)
    text = text.replace("[smtp]\n", '[smtp]\nauth = "oauth2"\n', 1)
    text += (f'\n[oauth2]\nprovider = "generic"\ntoken_url = "{issuer.url}/token"\n'
             f'device_code_url = "{issuer.url}/devicecode"\nclient_id = "{CLIENT_ID}"\nscope = "mail"\n'
             f'token_file = "var/oauth2.json"\nmechanism = "{mechanism}"\ngrant = "{grant}"\n')
    if grant == "client_credentials":
        text += 'client_secret_env = "TEST_OAUTH_SECRET"\n'
    if browser:  # as for Google: no device-code flow, a browser sign-in instead
        text = text.replace(f'device_code_url = "{issuer.url}/devicecode"', f'authorize_url = "{issuer.url}/authorize"')
    path.write_text(text, encoding="utf-8")
    return path


def signed_in(config: Path, issuer: TokenIssuer, username: str) -> None:
    """The token file as `auth login` leaves it (that command has a test of its own)."""
    answer = issuer.sign_in(username)
    now = time.time()
    token = {"access_token": answer["access_token"], "refresh_token": answer["refresh_token"],
             "obtained_at": now, "expires_at": now + answer["expires_in"], "scope": "mail"}
    path = config.parent / "var" / "oauth2.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(token))
    os.chmod(path, 0o600)


def signed_in_desk(tmp_path, server: Dovecot, sink, issuer: TokenIssuer, **options) -> tuple[MailAccount, Path]:
    """A new mailbox on ``server`` and a desk configured for it by OAuth2, already signed in."""
    mailbox = server.add_user()
    config = oauth_config(tmp_path, mailbox, sink, issuer, **options)
    signed_in(config, issuer, mailbox.username)
    return mailbox, config


def run_cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = env_for("not-used")
    env["TEST_OAUTH_SECRET"] = CLIENT_SECRET
    proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), *args], capture_output=True,
                          text=True, timeout=90, env=env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"helpdesk {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


def assert_no_secret(issuer: TokenIssuer, *texts: str) -> None:
    for text in texts:
        for secret in [*issuer.issued, CLIENT_SECRET]:
            assert secret not in text


def dovecot_logins(server: Dovecot, username: str) -> list[str]:
    log = (server.root / "dovecot.log").read_text(errors="replace")
    found = re.findall(rf"Login: user=<{re.escape(username)}>, method=([A-Z0-9-]+)", log)
    return [m for m in found if m != "PLAIN"]  # PLAIN: the test itself, delivering and counting mail


@pytest.mark.integration
@pytest.mark.parametrize("mechanism, expected", [("auto", "OAUTHBEARER"), ("xoauth2", "XOAUTH2"),
                                                 ("oauthbearer", "OAUTHBEARER")])
def test_the_desk_logs_in_to_imap_and_smtp_with_a_token(tmp_path, issuer, oauth_dovecot, sink, mechanism,
                                                        expected):
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer, mechanism=mechanism)
    mailbox.deliver(customer_mail("wang@cust.test", "Printer jam", "The printer on floor 3 jams."))
    proc = run_cli(config, "once")
    assert [t["subject"] for t in tickets(config, password="x")] == ["Printer jam"]
    assert sink.wait_for(1)[0].rcpt_tos == ["wang@cust.test"]
    # Both servers saw the token by the mechanism asked for, and nothing else.
    assert dovecot_logins(oauth_dovecot, mailbox.username) == [expected]
    assert sink.logins == [(expected, mailbox.username)] * len(sink.logins) and sink.logins
    # SMTP used the very token IMAP logged in with: the one signed in, still valid, never refreshed.
    saved = json.loads((config.parent / "var" / "oauth2.json").read_text())["access_token"]
    assert set(sink.tokens) == {saved}
    assert mailbox.count("INBOX") == 0
    assert_no_secret(issuer, proc.stdout, proc.stderr)


@pytest.mark.integration
def test_app_only_access_with_client_credentials(tmp_path, issuer, oauth_dovecot, sink):
    mailbox = oauth_dovecot.add_user()
    issuer.app_user = mailbox.username
    config = oauth_config(tmp_path, mailbox, sink, issuer, grant="client_credentials")
    mailbox.deliver(customer_mail("li@cust.test", "VPN down", "Cannot connect since this morning."))
    proc = run_cli(config, "once")
    assert sink.wait_for(1)[0].rcpt_tos == ["li@cust.test"]
    assert issuer.grants.count("client_credentials") >= 1
    assert not (config.parent / "var" / "oauth2.json").exists()  # nothing to keep for app-only tokens
    assert_no_secret(issuer, proc.stdout, proc.stderr)


@pytest.mark.integration
def test_mail_keeps_flowing_while_tokens_expire_during_a_long_run(tmp_path, issuer, oauth_dovecot, sink):
    issuer.access_lifetime = 3.0
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer)
    refreshes_before = issuer.refresh_count()
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password="x", log_path=log)
    try:
        for i in range(1, 5):
            mailbox.deliver(customer_mail(f"c{i}@cust.test", f"Request {i}", "Please help."))
            sink.wait_for(i, timeout=30)
            # Outlive the token.  Every other time the IMAP session stays (IDLE goes on; only the
            # SMTP login needs a new token), else it is cut as a server restart would.
            time.sleep(issuer.access_lifetime + 0.5)
            if i % 2:
                oauth_dovecot.drop_connections()
        mailbox.deliver(customer_mail("c5@cust.test", "Request 5", "Please help."))
        sink.wait_for(5, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    assert sorted(m.rcpt_tos[0] for m in sink.messages()) == [f"c{i}@cust.test" for i in range(1, 6)]
    assert issuer.refresh_count() - refreshes_before >= 4
    assert len(dovecot_logins(oauth_dovecot, mailbox.username)) >= 3
    assert not sink.refusals  # renewed before expiry, never presented expired
    text = log.read_text()
    assert "access token refreshed" in text
    assert_no_secret(issuer, text)
    # The refreshed (rotated) tokens were persisted, privately.
    token_file = config.parent / "var" / "oauth2.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text())["refresh_token"] == issuer.issued[-1]


@pytest.mark.integration
def test_a_token_the_server_refuses_is_renewed_once_and_the_login_retried(tmp_path, issuer, oauth_dovecot, sink):
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer)
    issuer.revoke_access_tokens()  # still unexpired in the token file, but no longer accepted
    refreshes_before = issuer.refresh_count()
    mailbox.deliver(customer_mail("zhao@cust.test", "Mail bounce", "My mail bounces."))
    proc = run_cli(config, "once")
    assert sink.wait_for(1)[0].rcpt_tos == ["zhao@cust.test"]
    assert issuer.refresh_count() - refreshes_before == 1
    assert_no_secret(issuer, proc.stdout, proc.stderr)


@pytest.mark.integration
def test_smtp_renews_a_refused_token_once_and_authenticates_with_it(tmp_path, issuer, sink):
    import asyncio

    import aiosmtplib

    from maildesk.daemon.credentials import OAuth2Credentials

    answer = issuer.sign_in("support@example.com")
    now = time.time()
    (tmp_path / "t.json").write_text(json.dumps({**answer, "obtained_at": now, "expires_at": now + 3600}))
    source = TokenSource(OAuth2Settings(provider="generic", token_url=f"{issuer.url}/token", client_id=CLIENT_ID,
                                        token_file=tmp_path / "t.json"))
    issuer.revoke_access_tokens()

    async def send() -> None:
        client = aiosmtplib.SMTP(hostname=sink.host, port=sink.port)
        await client.connect()
        try:
            await OAuth2Credentials("support@example.com", source, "xoauth2").smtp_login(client)
            await client.sendmail("support@example.com", ["a@cust.test"], b"Subject: x\r\n\r\nx\r\n")
        finally:
            await client.quit()

    asyncio.run(send())
    assert sink.refusals == [("XOAUTH2", "support@example.com")]
    assert sink.logins == [("XOAUTH2", "support@example.com")]
    assert sink.wait_for(1)[0].rcpt_tos == ["a@cust.test"]


@pytest.mark.integration
def test_a_revoked_refresh_token_stops_the_desk_with_one_line_and_exit_4(tmp_path, issuer, oauth_dovecot, sink):
    issuer.access_lifetime = 2.0
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer)
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password="x", log_path=log)
    try:
        mailbox.deliver(customer_mail("qian@cust.test", "Laptop", "Screen flickers."))
        sink.wait_for(1, timeout=30)
        issuer.revoke_refresh_tokens()
        time.sleep(issuer.access_lifetime + 0.5)
        oauth_dovecot.drop_connections()
        mailbox.deliver(customer_mail("sun@cust.test", "Phone", "No dial tone."))
        code = proc.wait(timeout=60)
    finally:
        stop_if_running(proc)
    assert code == 4
    text = log.read_text()
    refused = [line for line in text.splitlines() if "refused to refresh" in line]
    assert len(refused) == 1, text
    assert "invalid_grant" in refused[0] and "auth login" in refused[0] and " ERROR " in refused[0]
    assert "Traceback" not in text
    assert_no_secret(issuer, text)
    # The mail that arrived meanwhile waits in the inbox for the desk's return; nothing was lost.
    assert mailbox.count("INBOX") == 1


@pytest.mark.integration
def test_a_token_endpoint_outage_is_waited_out_like_a_server_outage(tmp_path, issuer, oauth_dovecot, sink):
    issuer.access_lifetime = 2.0
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer)
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, password="x", log_path=log)
    try:
        mailbox.deliver(customer_mail("feng@cust.test", "Badge", "My badge does not open the door."))
        sink.wait_for(1, timeout=30)
        issuer.unavailable = True
        time.sleep(issuer.access_lifetime + 0.5)
        oauth_dovecot.drop_connections()
        mailbox.deliver(customer_mail("chen@cust.test", "Monitor", "No signal."))
        time.sleep(4)  # several reconnection attempts meet the outage
        assert proc.poll() is None  # still running: an outage is no reason to stop
        issuer.unavailable = False
        sink.wait_for(2, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    text = log.read_text()
    assert "ERROR" not in text and "Traceback" not in text
    assert len([line for line in text.splitlines() if "IMAP connection lost" in line]) == 1
    assert_no_secret(issuer, text)


@pytest.mark.integration
def test_auth_login_prints_the_url_and_code_and_saves_the_token_privately(tmp_path, issuer, oauth_dovecot, sink):
    mailbox = oauth_dovecot.add_user()
    config = oauth_config(tmp_path, mailbox, sink, issuer)
    env = env_for("not-used")
    proc = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config), "auth", "login"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        first = proc.stdout.readline()
        match = re.search(r"open (\S+) in a browser and enter the code (\S+)", first)
        assert match, first
        assert match.group(1) == f"{issuer.url}/device"
        issuer.approve(match.group(2), mailbox.username)
        out, err = proc.communicate(timeout=60)
    finally:
        stop_if_running(proc)
    assert proc.returncode == 0, err
    token_file = config.parent / "var" / "oauth2.json"
    assert "Signed in" in out and str(token_file) in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert saved["refresh_token"] in issuer.issued and saved["access_token"] in issuer.issued
    assert_no_secret(issuer, first, out, err)
    # The token works: the desk handles mail with it.
    mailbox.deliver(customer_mail("zhou@cust.test", "Scanner", "The scanner is offline."))
    run_cli(config, "once")
    assert sink.wait_for(1)[0].rcpt_tos == ["zhou@cust.test"]


@pytest.mark.integration
def test_auth_login_in_a_browser_where_there_is_no_device_flow(tmp_path, issuer, oauth_dovecot, sink):
    import urllib.request

    mailbox = oauth_dovecot.add_user()
    issuer.browser_user = mailbox.username
    config = oauth_config(tmp_path, mailbox, sink, issuer, browser=True)
    proc = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config), "auth", "login"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for("x"), cwd=REPO)
    try:
        assert "open this address in a browser" in proc.stdout.readline()
        url = proc.stdout.readline().strip()
        assert url.startswith(f"{issuer.url}/authorize?") and "code_challenge_method=S256" in url
        # The browser: the issuer signs the user in and redirects to the desk's loopback listener.
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"signed in" in page.read()
        out, err = proc.communicate(timeout=60)
    finally:
        stop_if_running(proc)
    assert proc.returncode == 0, err
    token_file = config.parent / "var" / "oauth2.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text())["refresh_token"] in issuer.issued
    assert_no_secret(issuer, out, err)
    mailbox.deliver(customer_mail("wu@cust.test", "Keyboard", "Keys stick."))
    run_cli(config, "once")
    assert sink.wait_for(1)[0].rcpt_tos == ["wu@cust.test"]


@pytest.mark.integration
def test_once_without_a_sign_in_says_so_and_exits_4(tmp_path, issuer, oauth_dovecot, sink):
    mailbox = oauth_dovecot.add_user()
    config = oauth_config(tmp_path, mailbox, sink, issuer)
    proc = run_cli(config, "once", check=False)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no refresh token in" in lines[0] and "auth login" in lines[0]


@pytest.mark.integration
def test_check_logs_in_to_both_servers_with_the_token_and_names_the_method(tmp_path, issuer, oauth_dovecot, sink):
    mailbox, config = signed_in_desk(tmp_path, oauth_dovecot, sink, issuer)
    proc = run_cli(config, "check")
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith(("ok", "FAIL"))}
    assert lines["imap"].startswith("ok") and "auth oauth2" in lines["imap"]
    assert lines["smtp"].startswith("ok") and "login ok (auth oauth2)" in lines["smtp"]
    assert sink.logins and {user for _, user in sink.logins} == {mailbox.username}
    assert_no_secret(issuer, proc.stdout, proc.stderr)
