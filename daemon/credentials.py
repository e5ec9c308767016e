"""How the desk logs in to IMAP and SMTP: one small interface, two kinds of credentials.

``Credentials`` hands a connected client what it needs to log in.  The IMAP
loop and the outbox sender hold one and never ask which kind it is:

* ``PasswordCredentials``: LOGIN / AUTH PLAIN or LOGIN, as before.
* ``OAuth2Credentials``: SASL OAUTHBEARER (RFC 7628) or XOAUTH2 (Google's and
  Microsoft's older form) with an access token from a ``TokenSource``.

A ``TokenSource`` keeps the current access token, refreshes it shortly before
it expires (and once more when a server refuses it), and persists what the
token endpoint returns in ``oauth2.token_file`` (mode 0600, written by
rename), so a rotated refresh token survives a restart.  The first refresh
token comes from the device-code flow (RFC 8628, ``helpdesk auth login``).

Two kinds of failure are kept apart because they need different answers:
``TokenServiceUnavailable`` (the endpoint cannot be reached, 5xx, 429) is an
outage like any other, retried with backoff; ``CredentialsRefused`` (the
endpoint refused the grant: revoked, expired, wrong client) needs a person,
so the process says so in one line and exits 4 instead of retrying forever.
No token or secret is ever put into a message, a log line or an exception.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger("maildesk.oauth2")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT_SECONDS = 30
# A token is renewed when less than this part of its life, at most REFRESH_MARGIN_MAX, is left:
# an hour-long token 5 minutes before it expires, a test's 4-second token 2 seconds before.
REFRESH_MARGIN_PART = 0.5
REFRESH_MARGIN_MAX_SECONDS = 300
DEFAULT_LIFETIME_SECONDS = 3600


class CredentialsRefused(Exception):
    """The identity provider refused to issue a token: a person must act (exit 4).

    ``needs_login``: signing in again (``helpdesk auth login``) is the remedy.
    """

    def __init__(self, message: str, *, needs_login: bool = False) -> None:
        super().__init__(message)
        self.needs_login = needs_login


class TokenServiceUnavailable(ConnectionError):
    """The token endpoint could not be reached or failed for now: retried like a server outage."""


# -- provider defaults (data, one row per provider) --------------------------------------------

_MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
_OUTLOOK = "https://outlook.office365.com"

PROVIDERS: dict[str, dict[str, str]] = {
    "microsoft": {
        "token_url": _MICROSOFT + "/token",
        "device_code_url": _MICROSOFT + "/devicecode",
        "authorize_url": _MICROSOFT + "/authorize",
        "scope": f"{_OUTLOOK}/IMAP.AccessAsUser.All {_OUTLOOK}/SMTP.Send offline_access",
        # App-only access (client credentials) asks for the resource's application permissions.
        "scope_client_credentials": f"{_OUTLOOK}/.default",
        "tenant": "organizations",
    },
    "google": {
        "token_url": "https://oauth2.googleapis.com/token",
        # Google's device flow does not grant the mail scope: sign-in goes through a browser
        # and a redirect to this host's loopback address instead (RFC 8252).
        "device_code_url": "",
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "scope": "https://mail.google.com/",
        "scope_client_credentials": "https://mail.google.com/",
    },
    "generic": {"token_url": "", "device_code_url": "", "authorize_url": "", "scope": "",
                "scope_client_credentials": ""},
}


def provider_defaults(provider: str, tenant: str | None, grant: str) -> dict[str, str]:
    """token_url, device_code_url, authorize_url and scope of a provider (the tenant goes into Microsoft's)."""
    row = PROVIDERS[provider]
    tenant = urllib.parse.quote(tenant or row.get("tenant", ""), safe="")
    found = {key: row[key].format(tenant=tenant) for key in ("token_url", "device_code_url", "authorize_url")}
    found["scope"] = row["scope_client_credentials"] if grant == "client_credentials" else row["scope"]
    return found


@dataclass(frozen=True)
class OAuth2Settings:
    """The ``[oauth2]`` section, with the provider's defaults filled in."""

    provider: str
    token_url: str
    client_id: str
    grant: str = "refresh_token"  # or "client_credentials"
    scope: str = ""
    token_file: Path = Path("var/oauth2.json")
    device_code_url: str = ""
    authorize_url: str = ""  # the browser sign-in, where there is no device-code flow (Google)
    client_secret: str | None = field(default=None, repr=False)
    tenant: str | None = None
    mechanism: str = "auto"  # "auto" (OAUTHBEARER when offered, else XOAUTH2), "xoauth2", "oauthbearer"


# -- the interface -------------------------------------------------------------------------------

class Credentials(Protocol):
    method: str  # for `helpdesk check` and log lines: "password", "oauth2"

    def prepare(self) -> None:
        """Make sure a login can happen now (renew a token); raises ``CredentialsRefused`` if it cannot."""

    def imap_login(self, client) -> None:
        """Log in on a connected ``IMAPClient``; raises imapclient's ``LoginError`` when refused."""

    async def smtp_login(self, smtp) -> None:
        """Authenticate a connected ``aiosmtplib.SMTP``; raises ``SMTPAuthenticationError`` when refused."""


class PasswordCredentials:
    method = "password"

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        return f"PasswordCredentials({self.username!r}, '***')"

    def prepare(self) -> None:
        pass

    def imap_login(self, client) -> None:
        client.login(self.username, self._password)

    async def smtp_login(self, smtp) -> None:
        await smtp.login(self.username, self._password)


class OAuth2Credentials:
    """SASL OAUTHBEARER or XOAUTH2 with the source's current token; one refresh and retry on refusal."""

    method = "oauth2"

    def __init__(self, username: str, source: "TokenSource", mechanism: str = "auto") -> None:
        self.username = username
        self.source = source
        self.mechanism = mechanism

    def __repr__(self) -> str:
        return f"OAuth2Credentials({self.username!r}, {self.mechanism!r})"

    def _choose(self, offered: set[str]) -> str:
        if self.mechanism != "auto":
            return self.mechanism.upper()
        # The standard mechanism where the server has it; XOAUTH2 is what Microsoft offers.
        return "OAUTHBEARER" if "OAUTHBEARER" in offered else "XOAUTH2"

    def prepare(self) -> None:
        self.source.access_token()

    # -- IMAP ---------------------------------------------------------------------------------
    def imap_login(self, client) -> None:
        from imapclient.exceptions import LoginError

        offered = {c.decode("ascii", "replace").upper()[5:] for c in client.capabilities()
                   if c.upper().startswith(b"AUTH=")}
        mech = self._choose(offered)
        token = self.source.access_token()
        try:
            self._imap_authenticate(client, mech, token)
        except LoginError:
            # The server may have revoked a token we believed valid: one fresh token, one more try.
            token = self.source.refresh_after_failure(token)
            self._imap_authenticate(client, mech, token)
        log.debug("IMAP login as %s by %s", self.username, mech)

    def _imap_authenticate(self, client, mech: str, token: str) -> None:
        if mech == "OAUTHBEARER":
            client.oauthbearer_login(self.username, token)
        else:
            client.oauth2_login(self.username, token, mech="XOAUTH2")

    # -- SMTP ---------------------------------------------------------------------------------
    async def smtp_login(self, smtp) -> None:
        import asyncio

        import aiosmtplib

        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        mech = self._choose({m.upper() for m in smtp.server_auth_methods})
        # The token endpoint is plain blocking HTTP: off the event loop, which other lanes share.
        token = await asyncio.to_thread(self.source.access_token)
        try:
            await _smtp_authenticate(smtp, mech, self.username, token)
        except aiosmtplib.SMTPAuthenticationError:
            token = await asyncio.to_thread(self.source.refresh_after_failure, token)
            await _smtp_authenticate(smtp, mech, self.username, token)
        log.debug("SMTP login as %s by %s", self.username, mech)


def sasl_initial_response(mech: str, username: str, token: str) -> bytes:
    """The client's first SASL message, base64-encoded (RFC 7628 section 3.1; Google's XOAUTH2)."""
    if mech == "OAUTHBEARER":
        authzid = username.replace("=", "=3D").replace(",", "=2C")
        raw = f"n,a={authzid},\x01auth=Bearer {token}\x01\x01"
    else:
        raw = f"user={username}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8"))


async def _smtp_authenticate(smtp, mech: str, username: str, token: str) -> None:
    import aiosmtplib

    response = await smtp.execute_command(b"AUTH", mech.encode("ascii"),
                                          sasl_initial_response(mech, username, token))
    if response.code == 334:
        # An error challenge (a JSON status); the client ends the exchange to get the final reply:
        # an empty line for XOAUTH2, a single %x01 for OAUTHBEARER (RFC 7628 section 3.2.3).
        response = await smtp.execute_command(b"AQ==" if mech == "OAUTHBEARER" else b"")
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)


# -- tokens ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: float
    obtained_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str = ""

    def needs_refresh(self, now: float) -> bool:
        margin = min(REFRESH_MARGIN_MAX_SECONDS, (self.expires_at - self.obtained_at) * REFRESH_MARGIN_PART)
        return now >= self.expires_at - margin

    def to_json(self) -> dict:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_at": self.expires_at, "obtained_at": self.obtained_at, "scope": self.scope}

    @classmethod
    def from_json(cls, data: dict) -> "Token":
        return cls(access_token=str(data.get("access_token") or ""), expires_at=float(data.get("expires_at", 0)),
                   obtained_at=float(data.get("obtained_at", 0)), refresh_token=data.get("refresh_token") or None,
                   scope=str(data.get("scope") or ""))


@dataclass(frozen=True)
class DeviceCode:
    """What the person signing in must see: where to go and which code to type."""

    verification_uri: str
    user_code: str
    expires_in: float
    interval: float
    device_code: str = field(repr=False)
    message: str = ""


class TokenSource:
    """The current access token of one ``[oauth2]`` configuration, shared by IMAP and SMTP."""

    def __init__(self, settings: OAuth2Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._refused: CredentialsRefused | None = None

    # -- what the clients call -------------------------------------------------------------
    def access_token(self) -> str:
        """A token valid for a while yet; refreshed first when it is close to expiry."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            token = self._token or self._load()
            if token is None or not token.access_token or token.needs_refresh(self.clock()):
                token = self._renew(token)
            self._token = token
            return token.access_token

    def refresh_after_failure(self, rejected: str) -> str:
        """A new token after a server refused ``rejected`` (unless another caller renewed it already)."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            if self._token is not None and self._token.access_token != rejected:
                return self._token.access_token
            log.info("the server refused the access token; asking %s for a new one", self._endpoint_host)
            self._token = self._renew(self._token or self._load())
            return self._token.access_token

    def valid_until(self) -> float | None:
        token = self._token or self._load_quietly()
        return token.expires_at if token else None

    # -- renewing ------------------------------------------------------------------------------
    def _renew(self, current: Token | None) -> Token:
        s = self.settings
        try:
            if s.grant == "client_credentials":
                token = self._request({"grant_type": "client_credentials", "scope": s.scope}, current)
                self._token = token
                log.info("oauth2: new app-only access token from %s, valid for %.0f s", self._endpoint_host,
                         token.expires_at - token.obtained_at)
                return token
            if current is None or not current.refresh_token:
                raise CredentialsRefused(f"no refresh token in {s.token_file}", needs_login=True)
            params = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
            if s.scope:
                params["scope"] = s.scope
            try:
                token = self._request(params, current)
            except OAuth2Error as exc:
                raise CredentialsRefused(f"{self._endpoint_host} refused to refresh the access token: {exc}",
                                         needs_login=True) from None
        except CredentialsRefused as exc:
            # Remembered: IMAP and every SMTP lane get the same answer without asking again.
            self._refused = exc
            raise
        self._save(token)
        log.info("oauth2: access token refreshed at %s, valid for %.0f s", self._endpoint_host,
                 token.expires_at - token.obtained_at)
        return token

    def _request(self, params: dict[str, str], current: Token | None) -> Token:
        answer = self._post(self.settings.token_url, params, what="token")
        return self._token_from(answer, current)

    def _token_from(self, answer: dict, current: Token | None) -> Token:
        now = self.clock()
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenServiceUnavailable(f"the token endpoint {self._endpoint_host} answered without an access token")
        try:
            lifetime = float(answer.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        # A provider that does not rotate refresh tokens sends none: the old one stays valid.
        refresh = answer.get("refresh_token") or (current.refresh_token if current else None)
        return Token(access_token=access, expires_at=now + lifetime, obtained_at=now, refresh_token=refresh,
                     scope=str(answer.get("scope") or self.settings.scope))

    def _post(self, url: str, params: dict[str, str], *, what: str) -> dict:
        # Imported here: the config loads this module, and every command should start fast.
        import ssl
        import urllib.error
        import urllib.request

        s = self.settings
        body = {"client_id": s.client_id, **params}
        if s.client_secret:
            body["client_secret"] = s.client_secret
        request = urllib.request.Request(url, data=urllib.parse.urlencode(body).encode("ascii"), method="POST",
                                         headers={"Accept": "application/json",
                                                  "Content-Type": "application/x-www-form-urlencoded"})
        context = ssl.create_default_context() if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS, context=context) as response:
                return _json_object(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, _json_object(exc.read(), lenient=True)
            exc.close()
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets; a body that is not JSON
            raise TokenServiceUnavailable(f"cannot reach the OAuth2 {what} endpoint {_host(url)}: "
                                          f"{_reason(exc)}") from None
        error = str(answer.get("error") or "")
        if status in (400, 401, 403) and error:
            raise OAuth2Error(status, error, _described(answer))
        raise TokenServiceUnavailable(f"the OAuth2 {what} endpoint {_host(url)} answered HTTP {status}"
                                      + (f" ({_described(answer)})" if error else ""))

    @property
    def _endpoint_host(self) -> str:
        return _host(self.settings.token_url)

    # -- the token file ----------------------------------------------------------------------
    def _load(self) -> Token | None:
        if self.settings.grant == "client_credentials":
            return None  # nothing to keep: a new token is one request away
        path = self.settings.token_file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CredentialsRefused(f"cannot read the token file {path}: {_reason(exc)}") from None
        if not isinstance(data, dict):
            raise CredentialsRefused(f"the token file {path} is not a token object")
        return Token.from_json(data)

    def _load_quietly(self) -> Token | None:
        try:
            return self._load()
        except CredentialsRefused:
            return None

    def _save(self, token: Token) -> None:
        if self.settings.grant == "client_credentials":
            return
        try:
            write_private(self.settings.token_file, json.dumps(token.to_json(), indent=1).encode("utf-8"))
        except OSError as exc:
            raise CredentialsRefused(f"cannot write the token file {self.settings.token_file}: "
                                     f"{_reason(exc)}") from None

    # -- the device-code flow (RFC 8628), for `helpdesk auth login` -----------------------------
    def start_device_login(self) -> DeviceCode:
        s = self.settings
        if not s.device_code_url:
            raise CredentialsRefused("oauth2.device_code_url is not set")
        params = {"scope": s.scope} if s.scope else {}
        try:
            answer = self._post(s.device_code_url, params, what="device-code")
        except OAuth2Error as exc:
            raise CredentialsRefused(f"{_host(s.device_code_url)} refused to start the sign-in: {exc}") from None
        uri = answer.get("verification_uri") or answer.get("verification_url")  # Google's older name
        code, device_code = answer.get("user_code"), answer.get("device_code")
        if not (isinstance(uri, str) and isinstance(code, str) and isinstance(device_code, str)):
            raise TokenServiceUnavailable(f"the device-code endpoint {_host(s.device_code_url)} answered "
                                          "without verification_uri, user_code and device_code")
        return DeviceCode(verification_uri=uri, user_code=code, device_code=device_code,
                          expires_in=float(answer.get("expires_in") or 900),
                          interval=float(answer.get("interval") or 5), message=str(answer.get("message") or ""))

    def finish_device_login(self, device: DeviceCode, sleep: Callable[[float], None] = time.sleep) -> Token:
        """Poll the token endpoint until the person has approved the code; save and return the token."""
        deadline = self.clock() + device.expires_in
        interval = device.interval
        while True:
            sleep(interval)
            try:
                token = self._request({"grant_type": DEVICE_CODE_GRANT, "device_code": device.device_code}, None)
            except OAuth2Error as exc:
                if exc.error == "authorization_pending" and self.clock() < deadline:
                    continue
                if exc.error == "slow_down" and self.clock() < deadline:
                    interval += 5  # RFC 8628 section 3.5
                    continue
                raise CredentialsRefused(f"sign-in not completed: {exc}") from None
            return self.keep_signed_in(token)

    def keep_signed_in(self, token: Token) -> Token:
        """Save the first tokens of a sign-in (they need a refresh token to outlive the hour)."""
        if not token.refresh_token:
            raise CredentialsRefused("the provider issued no refresh token: add offline_access "
                                     "(Microsoft) to oauth2.scope")
        with self._lock:
            self._save(token)
            self._token, self._refused = token, None
        return token


class BrowserLogin:
    """Sign-in in a browser with a redirect to a one-time listener on 127.0.0.1 (RFC 8252, PKCE RFC 7636).

    For providers whose device-code flow does not grant mail scopes (Google).  ``url`` is what the
    person opens; ``finish()`` waits for the redirect, trades the code for tokens and saves them.
    """

    def __init__(self, source: TokenSource, port: int = 0) -> None:
        import hashlib
        import secrets
        from http.server import BaseHTTPRequestHandler, HTTPServer

        s = source.settings
        if not s.authorize_url:
            raise CredentialsRefused("neither oauth2.device_code_url nor oauth2.authorize_url is set")
        self.source = source
        self._verifier = secrets.token_urlsafe(48)
        self._state = secrets.token_urlsafe(16)
        self._answer: dict[str, str] | None = None
        login = self

        class Redirected(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                done = query.get("state") == login._state and ("code" in query or "error" in query)
                if done:
                    login._answer = query
                self.send_response(200 if done else 400)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"maildesk: signed in, you may close this window.\n" if done and "code" in query
                                 else b"maildesk: sign-in not completed.\n")

            def log_message(self, *args):  # the query holds the one-time code: never logged
                pass

        self._server = HTTPServer(("127.0.0.1", port), Redirected)
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_address[1]}/"
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self._verifier.encode()).digest()).rstrip(b"=")
        self.url = s.authorize_url + "?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": s.client_id, "redirect_uri": self.redirect_uri,
            "scope": s.scope, "state": self._state, "code_challenge": challenge.decode("ascii"),
            "code_challenge_method": "S256",
            # Google issues a refresh token only with offline access, and again only after consent.
            "access_type": "offline", "prompt": "consent"})

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def finish(self, timeout: float = 600) -> Token:
        deadline = time.monotonic() + timeout
        self._server.timeout = 1
        try:
            while self._answer is None and time.monotonic() < deadline:
                self._server.handle_request()
        finally:
            self._server.server_close()
        if self._answer is None:
            raise CredentialsRefused("sign-in not completed in time")
        if "code" not in self._answer:
            raise CredentialsRefused(f"sign-in refused: {_described(self._answer)}")
        try:
            token = self.source._request({"grant_type": "authorization_code", "code": self._answer["code"],
                                          "redirect_uri": self.redirect_uri, "code_verifier": self._verifier},
                                         None)
        except OAuth2Error as exc:
            raise CredentialsRefused(f"sign-in not completed: {exc}") from None
        return self.source.keep_signed_in(token)


class OAuth2Error(CredentialsRefused):
    """An OAuth2 error answer (RFC 6749 section 5.2): ``error`` is its code."""

    def __init__(self, status: int, error: str, described: str) -> None:
        super().__init__(f"{described} (HTTP {status})")
        self.status = status
        self.error = error


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, readable by this user only, durable before it is visible."""
    import tempfile

    path = Path(path)
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _json_object(raw: bytes, lenient: bool = False) -> dict:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if lenient:
            return {}
        raise ValueError("the answer is not JSON") from None
    if not isinstance(value, dict):
        if lenient:
            return {}
        raise ValueError("the answer is not a JSON object")
    return value


def _described(answer: dict) -> str:
    # error and error_description are the provider's words about the request, never a token.
    error = " ".join(str(answer.get("error") or "error").split())[:80]
    description = " ".join(str(answer.get("error_description") or "").split())[:200]
    return f"{error}: {description}" if description else error


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return " ".join(str(reason).split())[:200] or exc.__class__.__name__
