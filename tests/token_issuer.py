"""A small OAuth2 authorization server for the tests, on a loopback port.

It speaks what the desk and the mail servers need of a real identity
provider (RFC 6749, RFC 8628, RFC 7662):

* ``POST /token``: ``refresh_token`` (refresh tokens rotate: each use returns
  a new one and retires the old), ``client_credentials`` and the device-code
  grant (``authorization_pending`` until the test approves the code);
* ``POST /devicecode``: a device code, a user code and a verification URI;
* ``GET /authorize``: the browser sign-in (RFC 6749 section 4.1 with PKCE): it
  signs in ``browser_user`` at once and redirects to the client's loopback
  ``redirect_uri`` with a one-time code, which ``/token`` trades
  (``authorization_code``) for tokens when the ``code_verifier`` matches;
* ``POST /introspect``: ``active``, ``username``, ``scope``, ``exp`` of a token,
  as Dovecot's ``oauth2`` passdb (``introspection_mode = post``) and the SMTP
  sink ask for it.

Access tokens live ``access_lifetime`` seconds (a few, in the tests), and
``revoke_refresh_tokens()`` / ``revoke_access_tokens()`` withdraw them as an
administrator would.  Every token it issued is kept in ``issued`` so a test
can check that none of them was ever written to a log.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .mailservers import SmtpSink, _SinkHandler

CLIENT_ID = "maildesk-test-client"
CLIENT_SECRET = "test-client-secret-" + secrets.token_hex(8)
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Access:
    username: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class _Device:
    user_code: str
    scope: str
    expires_at: float
    approved_for: str | None = None
    denied: bool = False


@dataclass
class TokenIssuer:
    access_lifetime: float = 3600.0
    app_user: str = ""  # whose mailbox client_credentials tokens open
    browser_user: str = ""  # who signs in at /authorize
    unavailable: bool = False  # /token and /devicecode answer 503, as during an outage
    host: str = "127.0.0.1"
    port: int = 0
    issued: list[str] = field(default_factory=list)  # every access and refresh token, for leak checks
    grants: list[str] = field(default_factory=list)  # grant_type of every successful /token request
    introspections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # live refresh token -> (username, scope)
        self._devices: dict[str, _Device] = {}  # device_code -> pending sign-in
        self._codes: dict[str, tuple[str, str, str, str]] = {}  # code -> (user, scope, redirect, challenge)
        self._server: ThreadingHTTPServer | None = None

    # -- life ----------------------------------------------------------------------------
    def start(self) -> "TokenIssuer":
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8")))
                status, body = issuer._route(self.path.split("?", 1)[0], form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                status, location = issuer._authorize(parts.path, dict(urllib.parse.parse_qsl(parts.query)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet: the tests read the desk's output, not ours
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- what a test does ---------------------------------------------------------------------
    def sign_in(self, username: str, scope: str = "mail") -> dict:
        """Tokens as after a completed interactive sign-in (what `auth login` would have saved)."""
        with self._lock:
            return self._issue(username, scope, with_refresh=True)

    def approve(self, user_code: str, username: str) -> None:
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code:
                    device.approved_for = username
                    return
        raise KeyError(f"no pending sign-in with code {user_code}")

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def revoke_access_tokens(self) -> None:
        with self._lock:
            for access in self._access.values():
                access.revoked = True

    def refresh_count(self) -> int:
        with self._lock:
            return self.grants.count("refresh_token")

    def token_info(self, token: str) -> dict:
        """What /introspect answers for ``token``."""
        with self._lock:
            self.introspections += 1
            access = self._access.get(token)
            if access is None or access.revoked or access.expires_at <= time.time():
                return {"active": False}
            return {"active": True, "username": access.username, "scope": access.scope,
                    "exp": int(access.expires_at), "client_id": CLIENT_ID, "token_type": "Bearer"}

    # -- endpoints -------------------------------------------------------------------------------
    def _route(self, path: str, form: dict) -> tuple[int, dict]:
        if path == "/introspect":
            return 200, self.token_info(form.get("token", ""))
        if self.unavailable:
            return 503, {"error": "temporarily_unavailable", "error_description": "try again later"}
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if path == "/devicecode":
            return self._device_code(form)
        if path == "/token":
            with self._lock:
                return self._token(form)
        return 404, {"error": "not_found"}

    def _authorize(self, path: str, query: dict) -> tuple[int, str | None]:
        redirect = query.get("redirect_uri", "")
        if (path != "/authorize" or query.get("client_id") != CLIENT_ID or query.get("response_type") != "code"
                or not redirect.startswith("http://127.0.0.1:") or query.get("code_challenge_method") != "S256"):
            return 400, None
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = (self.browser_user, query.get("scope", ""), redirect, query["code_challenge"])
        return 302, redirect + "?" + urllib.parse.urlencode({"code": code, "state": query.get("state", "")})

    def _device_code(self, form: dict) -> tuple[int, dict]:
        device_code = secrets.token_urlsafe(24)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        with self._lock:
            self._devices[device_code] = _Device(user_code, form.get("scope", ""), time.time() + 120)
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": f"{self.url}/device", "expires_in": 120, "interval": 1,
                     "message": f"To sign in, use a web browser to open the page {self.url}/device "
                                f"and enter the code {user_code} to authenticate."}

    def _token(self, form: dict) -> tuple[int, dict]:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            owner = self._refresh.pop(form.get("refresh_token", ""), None)
            if owner is None:
                return 400, {"error": "invalid_grant",
                             "error_description": "The refresh token has been revoked or has expired."}
            self.grants.append(grant)
            return 200, self._issue(owner[0], form.get("scope") or owner[1], with_refresh=True)
        if grant == "client_credentials":
            if form.get("client_secret") != CLIENT_SECRET:
                return 401, {"error": "invalid_client", "error_description": "bad client secret"}
            self.grants.append(grant)
            return 200, self._issue(self.app_user, form.get("scope", ""), with_refresh=False)
        if grant == "authorization_code":
            import base64
            import hashlib

            found = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            proof = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if found is None or found[2] != form.get("redirect_uri") or found[3] != proof:
                return 400, {"error": "invalid_grant", "error_description": "bad code, redirect or verifier"}
            self.grants.append(grant)
            return 200, self._issue(found[0], found[1], with_refresh=True)
        if grant == DEVICE_CODE_GRANT:
            device = self._devices.get(form.get("device_code", ""))
            if device is None or device.expires_at <= time.time():
                return 400, {"error": "expired_token", "error_description": "the device code expired"}
            if device.denied:
                return 400, {"error": "access_denied", "error_description": "the user declined"}
            if device.approved_for is None:
                return 400, {"error": "authorization_pending", "error_description": "waiting for the user"}
            del self._devices[form["device_code"]]
            self.grants.append(grant)
            return 200, self._issue(device.approved_for, device.scope, with_refresh=True)
        return 400, {"error": "unsupported_grant_type"}

    def _issue(self, username: str, scope: str, *, with_refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(24)
        self._access[access] = _Access(username, scope, time.time() + self.access_lifetime)
        self.issued.append(access)
        answer = {"token_type": "Bearer", "access_token": access, "expires_in": self.access_lifetime,
                  "scope": scope}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self._refresh[refresh] = (username, scope)
            self.issued.append(refresh)
            answer["refresh_token"] = refresh
        return answer


# -- an SMTP submission server that takes OAuth2 tokens ---------------------------------------------


class _OAuthHandler(_SinkHandler):
    """The sink's handler plus SASL XOAUTH2 and OAUTHBEARER, each token checked by introspection."""

    def __init__(self, sink: "OAuthSmtpSink") -> None:
        super().__init__(sink)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        # AUTH is required, as on a submission port (aiosmtpd's own switch for it warns without TLS).
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def auth_XOAUTH2(self, server, args):  # noqa: N802 - aiosmtpd's hook name
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server, args):  # noqa: N802
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server, args, mech: str):
        import asyncio
        import base64
        import binascii

        from aiosmtpd.smtp import AuthResult

        try:
            raw = base64.b64decode(args[1], validate=True) if len(args) > 1 else await server.challenge_auth("")
            fields = raw.decode("utf-8").split("\x01")
        except (binascii.Error, UnicodeDecodeError, AttributeError):
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 cannot decode the SASL message")
        if mech == "OAUTHBEARER":
            gs2 = fields[0].split(",")
            user = next((p[2:] for p in gs2 if p.startswith("a=")), "").replace("=2C", ",").replace("=3D", "=")
        else:
            user = next((f[5:] for f in fields if f.startswith("user=")), "")
        auth = next((f[5:] for f in fields if f.startswith("auth=")), "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        info = await asyncio.get_running_loop().run_in_executor(None, self.sink.issuer.token_info, token)
        if info.get("active") and info.get("username") == user:
            with self.sink.lock:
                self.sink.logins.append((mech, user))
                self.sink.tokens.append(token)
            return AuthResult(success=True, auth_data=user)
        # As Gmail and Outlook do: a JSON error challenge, then the final refusal.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}))
        with self.sink.lock:
            self.sink.refusals.append((mech, user))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


class OAuthSmtpSink(SmtpSink):
    """An ``SmtpSink`` that requires AUTH by XOAUTH2 or OAUTHBEARER (plain text, loopback only)."""

    def __init__(self, issuer: TokenIssuer, mechanisms: tuple[str, ...] = ("XOAUTH2", "OAUTHBEARER")) -> None:
        super().__init__()
        self.issuer = issuer
        self.mechanisms = mechanisms
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of every accepted AUTH
        self.refusals: list[tuple[str, str]] = []
        self.tokens: list[str] = []  # the access token of every accepted AUTH (kept in memory only)

    def start(self) -> "OAuthSmtpSink":
        from aiosmtpd.controller import Controller

        excluded = [m for m in ("LOGIN", "PLAIN", "XOAUTH2", "OAUTHBEARER") if m not in self.mechanisms]
        self._controller = Controller(_OAuthHandler(self), hostname=self.host, port=self.port,
                                      data_size_limit=64 * 2**20, auth_require_tls=False,
                                      auth_exclude_mechanism=excluded)
        self._controller.start()
        return self
