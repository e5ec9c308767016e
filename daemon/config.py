"""Loading and validating ``config.toml``.

Every key has a default (see the commented ``config.toml`` at the top of the
repository); a wrong key or value stops start-up with one line naming it.
Passwords come from the file or, preferably, from an environment variable
named by ``password_env``; they are held in objects whose ``repr`` hides them.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildesk.daemon.credentials import (PROVIDERS, Credentials, OAuth2Credentials, OAuth2Settings,
                                         PasswordCredentials, TokenSource, provider_defaults)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


class Secret(str):
    """A string that never shows itself in logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class Technician:
    email: str
    name: str
    nda_signed: date | None = None


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    security: str
    username: str
    password: Secret | None = field(repr=False)
    folder: str = "INBOX"
    processed_folder: str = "Helpdesk/Processed"
    quarantine_folder: str = "Helpdesk/Quarantine"
    batch_size: int = 50
    # With a backlog, the next batch is parsed in a helper process while the desk sends (daemon/parsing.py).
    parse_ahead: bool = True
    idle: bool = True
    poll_seconds: float = 30.0
    timeout_seconds: float = 60.0
    ca_file: str | None = None
    # "password" or "oauth2"; ``credentials`` is what logs in (built from the password when not given).
    auth: str = "password"
    credentials: Credentials | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.credentials is None and self.auth == "password" and self.password is not None:
            object.__setattr__(self, "credentials", PasswordCredentials(self.username, self.password))


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str
    from_address: str
    from_name: str
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0
    retry_max_minutes: float = 60.0
    max_attempts: int = 12
    ca_file: str | None = None
    connections: int = 1
    # "password", "oauth2" or "none"; no ``credentials`` means no SMTP AUTH.
    auth: str = "password"
    credentials: Credentials | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.credentials is None and self.auth == "password" and self.username and self.password is not None:
            object.__setattr__(self, "credentials", PasswordCredentials(self.username, self.password))


@dataclass(frozen=True)
class TicketsConfig:
    prefix: str = "TS"
    max_message_bytes: int = 40 * 2**20
    max_attachment_bytes: int = 15 * 2**20
    ack_limit_per_hour: int = 5
    notify_unassigned: str = "team"
    # Past this many new-ticket notifications in 10 minutes, the rest are folded into one digest
    # per 10 minutes; 0: never fold.
    notify_digest_after: int = 20


@dataclass(frozen=True)
class ProcedureConfig:
    reopen_days: float = 14
    reminder_days: float = 3
    no_rating_days: float = 7
    first_response_hours: float = 4
    resolution_hours: float = 48
    commands: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Obey staff commands only when the receiving server vouches for the sender.
    require_authenticated_staff: bool = True
    authserv_id: str = ""


@dataclass(frozen=True)
class TeamConfig:
    supervisor: str | None = None
    leadership: tuple[str, ...] = ()
    technicians: tuple[Technician, ...] = ()
    # Mail domains of the company's own staff: their requests are internal (内部员工), others external.
    internal_domains: tuple[str, ...] = ()

    @property
    def staff_addresses(self) -> frozenset[str]:
        found = {t.email for t in self.technicians}
        if self.supervisor:
            found.add(self.supervisor)
        found.update(self.leadership)
        return frozenset(found)

    def technician(self, email: str) -> Technician | None:
        for tech in self.technicians:
            if tech.email == email:
                return tech
        return None


@dataclass(frozen=True)
class ReportConfig:
    weekday: str = "monday"
    time: time = time(9, 0)
    timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    language: str = "zh"
    show_customer_addresses: bool = False


@dataclass(frozen=True)
class AppraisalConfig:
    """[appraisal]: one appraisal mail to the supervisor per period (reports/appraisal.py)."""

    period: str = "monthly"  # monthly | quarterly | none
    weekday: str = "monday"
    time: time = time(9, 0)
    timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Config:
    imap: ImapConfig
    smtp: SmtpConfig
    storage_path: Path
    tickets: TicketsConfig
    team: TeamConfig
    report: ReportConfig
    log_level: str = "info"
    log_file: Path | None = None
    source: Path | None = None
    # Language of mail to staff (notifications, error replies).
    team_language: str = "zh"
    # Closed tickets untouched this long leave memory for the monthly archive files.
    archive_after_days: float = 30
    procedure: ProcedureConfig = ProcedureConfig()
    appraisal: AppraisalConfig = AppraisalConfig()
    # The [oauth2] section (for `helpdesk auth login`); None when absent.
    oauth2: OAuth2Settings | None = None
    # storage.url: a PostgreSQL store instead of the TinyDB file at storage_path (storage/base.py picks).
    storage_url: str | None = None
    storage_password: Secret | None = None
    # Analysts' SQL views show customer addresses only when this is true.
    analysts_see_addresses: bool = False

    @property
    def support_address(self) -> str:
        return self.smtp.from_address


_KNOWN_KEYS = {
    "imap": {"host", "port", "security", "allow_insecure", "username", "password", "password_env", "folder",
             "processed_folder", "quarantine_folder", "batch_size", "parse_ahead", "idle", "poll_seconds",
             "timeout_seconds",
             "ca_file", "auth"},
    "smtp": {"host", "port", "security", "allow_insecure", "username", "password", "password_env",
             "from_address", "from_name", "timeout_seconds", "retry_max_minutes", "max_attempts", "ca_file",
             "connections", "auth"},
    "oauth2": {"provider", "tenant", "token_url", "device_code_url", "authorize_url", "client_id",
               "client_secret_env", "grant", "scope", "token_file", "mechanism"},
    "storage": {"path", "archive_after_days", "url", "password_env", "analysts_see_addresses"},
    "tickets": {"prefix", "max_message_mb", "max_attachment_mb", "ack_limit_per_hour", "notify_unassigned",
                "reopen_days", "notify_digest_after"},
    "feedback": {"reminder_days", "no_rating_days"},
    "sla": {"first_response_hours", "resolution_hours"},
    "commands": set(),  # any command name -> list of keywords
    "team": {"supervisor", "leadership", "technicians", "language", "internal_domains"},
    "appraisal": {"period", "weekday", "time", "timezone"},
    "report": {"weekday", "time", "timezone", "language", "show_customer_addresses"},
    "log": {"level", "file"},
    "security": {"require_authenticated_staff", "authserv_id"},
}


def _check_known_keys(raw: dict) -> None:
    # A misspelt key would otherwise be ignored silently and its default used.
    for section, value in raw.items():
        if section not in _KNOWN_KEYS:
            raise ConfigError(f"unknown section [{section}]")
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table")
        if section == "commands":
            _check_commands(value)
            continue
        for key in value:
            if key not in _KNOWN_KEYS[section]:
                raise ConfigError(f"unknown key {section}.{key}")


def _check_commands(table: dict) -> None:
    from maildesk.parsers.commands import DEFAULT_COMMANDS

    for name, words in table.items():
        if name not in DEFAULT_COMMANDS:
            raise ConfigError(f"unknown command commands.{name}; known: {', '.join(DEFAULT_COMMANDS)}")
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"commands.{name} must be a non-empty list of keywords")


_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None, *,
                need_secrets: bool = True) -> Config:
    """Read and validate a config file; relative storage paths resolve against its folder.

    ``need_secrets=False`` is for commands that only read the store (``tickets``):
    they must work without the mail servers' passwords in the environment.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=path.resolve().parent, environ=env, source=path,
                        need_secrets=need_secrets)


def parse_config(raw: dict, *, base_dir: Path, environ: dict[str, str] | os._Environ,
                 source: Path | None = None, need_secrets: bool = True) -> Config:
    _check_known_keys(raw)
    r = _Reader(raw)
    if not need_secrets:
        environ = _AnyVariable(environ)
    imap_auth = r.choice("imap.auth", ("password", "oauth2"), default="password")
    smtp_auth = r.choice("smtp.auth", ("password", "oauth2", "none"), default="password")
    oauth2 = _oauth2(r, environ, base_dir, needed="oauth2" in (imap_auth, smtp_auth))
    # IMAP and SMTP share one token source: one refresh serves both, and a rotated refresh token
    # is never used twice.
    tokens = TokenSource(oauth2) if oauth2 else None
    imap_user = r.str("imap.username")
    imap = ImapConfig(
        host=r.str("imap.host"),
        port=r.int("imap.port", default=None, minimum=1, maximum=65535),
        security=r.choice("imap.security", ("ssl", "starttls", "none"), default="ssl"),
        username=imap_user,
        password=_password(r, "imap", environ, required=imap_auth == "password"),
        folder=r.str("imap.folder", default="INBOX"),
        processed_folder=r.str("imap.processed_folder", default="Helpdesk/Processed"),
        quarantine_folder=r.str("imap.quarantine_folder", default="Helpdesk/Quarantine"),
        batch_size=r.int("imap.batch_size", default=50, minimum=1, maximum=1000),
        parse_ahead=r.bool("imap.parse_ahead", default=True),
        idle=r.bool("imap.idle", default=True),
        poll_seconds=r.float("imap.poll_seconds", default=30.0, minimum=0.1),
        timeout_seconds=r.float("imap.timeout_seconds", default=60.0, minimum=1),
        ca_file=r.str("imap.ca_file", default=None),
        auth=imap_auth,
        credentials=OAuth2Credentials(imap_user, tokens, oauth2.mechanism) if imap_auth == "oauth2" else None,
    )
    _check_transport("imap", imap.host, imap.security, r.bool("imap.allow_insecure", default=False))
    # With OAuth2 the token is the mailbox's: SMTP logs in as the IMAP user unless told otherwise.
    smtp_user = r.str("smtp.username", default=imap_user if smtp_auth == "oauth2" else None)
    smtp = SmtpConfig(
        host=r.str("smtp.host"),
        port=r.int("smtp.port", default=None, minimum=1, maximum=65535),
        security=r.choice("smtp.security", ("ssl", "starttls", "none"), default="ssl"),
        from_address=r.address("smtp.from_address"),
        from_name=r.str("smtp.from_name", default="Service Desk"),
        username=smtp_user,
        password=_password(r, "smtp", environ, required=smtp_user is not None and smtp_auth == "password"),
        timeout_seconds=r.float("smtp.timeout_seconds", default=60.0, minimum=1),
        retry_max_minutes=r.float("smtp.retry_max_minutes", default=60.0, minimum=0.01),
        max_attempts=r.int("smtp.max_attempts", default=12, minimum=1),
        ca_file=r.str("smtp.ca_file", default=None),
        connections=r.int("smtp.connections", default=1, minimum=1, maximum=20),
        auth=smtp_auth,
        credentials=OAuth2Credentials(smtp_user, tokens, oauth2.mechanism) if smtp_auth == "oauth2" else None,
    )
    _check_transport("smtp", smtp.host, smtp.security, r.bool("smtp.allow_insecure", default=False))
    storage_path = Path(r.str("storage.path", default="var/helpdesk.json"))
    if not storage_path.is_absolute():
        storage_path = base_dir / storage_path
    storage_url = r.str("storage.url", default=None)
    if storage_url is not None and not re.match(r"postgres(ql)?://", storage_url):
        raise ConfigError("storage.url must be a postgresql:// URL (leave it out for the file store at storage.path)")
    storage_password_env = r.str("storage.password_env", default=None)
    storage_password = None
    if storage_password_env:
        # Read-only commands see the real variable too (or "" when it is unset).
        value = environ.get(storage_password_env)
        if value is None:
            raise ConfigError(f"storage.password_env names {storage_password_env}, which is not set in the "
                              "environment")
        storage_password = Secret(value) if value else None
    prefix = r.str("tickets.prefix", default="TS")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,9}", prefix):
        raise ConfigError("tickets.prefix must be 1-10 letters or digits, starting with a letter")
    tickets = TicketsConfig(
        prefix=prefix.upper(),
        max_message_bytes=int(r.float("tickets.max_message_mb", default=40, minimum=0.01) * 2**20),
        max_attachment_bytes=int(r.float("tickets.max_attachment_mb", default=15, minimum=0.001) * 2**20),
        ack_limit_per_hour=r.int("tickets.ack_limit_per_hour", default=5, minimum=0),
        notify_unassigned=r.choice("tickets.notify_unassigned", ("team", "supervisor", "none"), default="team"),
        notify_digest_after=r.int("tickets.notify_digest_after", default=20, minimum=0),
    )
    techs = []
    for i, entry in enumerate(r.list("team.technicians", default=[])):
        if not isinstance(entry, dict):
            raise ConfigError(f"team.technicians[{i}] must be a table with email and name")
        er = _Reader(entry, prefix=f"team.technicians[{i}].")
        nda = entry.get("nda_signed")
        if isinstance(nda, str):
            try:
                nda = date.fromisoformat(nda)
            except ValueError:
                raise ConfigError(f"team.technicians[{i}].nda_signed must be YYYY-MM-DD") from None
        elif nda is not None and not isinstance(nda, date):
            raise ConfigError(f"team.technicians[{i}].nda_signed must be YYYY-MM-DD")
        email = er.address("email")
        techs.append(Technician(email=email, name=er.str("name", default=email), nda_signed=nda))
    supervisor = r.str("team.supervisor", default=None)
    team = TeamConfig(
        supervisor=r.address("team.supervisor") if supervisor else None,
        leadership=tuple(_lower_address(a, "team.leadership") for a in r.list("team.leadership", default=[])),
        technicians=tuple(techs),
        internal_domains=tuple(_domain(d) for d in r.list("team.internal_domains", default=[])),
    )
    tz_name = r.str("report.timezone", default="Asia/Shanghai")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"report.timezone {tz_name!r} is not a known time zone") from None
    at = r.str("report.time", default="09:00")
    try:
        at_time = time.fromisoformat(at)
    except ValueError:
        raise ConfigError("report.time must be HH:MM") from None
    report = ReportConfig(
        weekday=r.choice("report.weekday", _WEEKDAYS, default="monday"),
        time=at_time,
        timezone=tz,
        language=r.choice("report.language", ("zh", "en"), default="zh"),
        show_customer_addresses=r.bool("report.show_customer_addresses", default=False),
    )
    log_file = r.str("log.file", default=None)
    # Staff mail is believed only on the receiving server's word: the safe mode is the default,
    # and trusting the bare From line must be written down (and is warned about at every start).
    require_authenticated_staff = r.bool("security.require_authenticated_staff", default=True)
    authserv_id = r.str("security.authserv_id", default="")
    if require_authenticated_staff and team.staff_addresses and not authserv_id:
        raise ConfigError("security.authserv_id is required: the name your receiving mail server writes into "
                          "Authentication-Results, so staff mail can be verified (or write "
                          "security.require_authenticated_staff = false to trust the bare From line)")
    appraisal = _appraisal(r, report)
    return Config(
        imap=imap, smtp=smtp, storage_path=storage_path, tickets=tickets, team=team, report=report,
        team_language=r.choice("team.language", ("zh", "en"), default=report.language),
        archive_after_days=r.float("storage.archive_after_days", default=30, minimum=1),
        storage_url=storage_url, storage_password=storage_password,
        analysts_see_addresses=r.bool("storage.analysts_see_addresses", default=False),
        appraisal=appraisal,
        procedure=ProcedureConfig(
            reopen_days=r.float("tickets.reopen_days", default=14, minimum=0),
            reminder_days=r.float("feedback.reminder_days", default=3, minimum=0),
            no_rating_days=r.float("feedback.no_rating_days", default=7, minimum=0),
            first_response_hours=r.float("sla.first_response_hours", default=4, minimum=0),
            resolution_hours=r.float("sla.resolution_hours", default=48, minimum=0),
            commands=tuple((k, tuple(v)) for k, v in raw.get("commands", {}).items()),
            require_authenticated_staff=require_authenticated_staff,
            authserv_id=authserv_id,
        ),
        oauth2=oauth2,
        log_level=r.choice("log.level", ("debug", "info", "warning", "error"), default="info"),
        log_file=(base_dir / log_file) if log_file and not Path(log_file).is_absolute() else
        (Path(log_file) if log_file else None),
        source=source,
    )


def _domain(value) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s]+\.[^@\s]+|localhost", value.strip()):
        raise ConfigError(f"team.internal_domains must hold mail domains such as \"example.com\", got {value!r}")
    return value.strip().lower().lstrip("@")


def _appraisal(r: "_Reader", report: ReportConfig) -> AppraisalConfig:
    """[appraisal]: weekday, time and time zone default to the weekly report's."""
    tz_name = r.str("appraisal.timezone", default=report.timezone.key)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"appraisal.timezone {tz_name!r} is not a known time zone") from None
    at = r.str("appraisal.time", default=report.time.strftime("%H:%M"))
    try:
        at_time = time.fromisoformat(at)
    except ValueError:
        raise ConfigError("appraisal.time must be HH:MM") from None
    return AppraisalConfig(period=r.choice("appraisal.period", ("monthly", "quarterly", "none"), default="monthly"),
                           weekday=r.choice("appraisal.weekday", _WEEKDAYS, default=report.weekday),
                           time=at_time, timezone=tz)


def _password(r: "_Reader", section: str, environ, *, required: bool) -> Secret | None:
    var = r.str(f"{section}.password_env", default=None)
    if var:
        value = environ.get(var)
        if value is None:
            raise ConfigError(f"{section}.password_env names {var}, which is not set in the environment")
        return Secret(value)
    value = r.str(f"{section}.password", default=None)
    if value is None:
        if required:
            raise ConfigError(f"{section}.password or {section}.password_env is required")
        return None
    return Secret(value)


def _oauth2(r: "_Reader", environ, base_dir: Path, *, needed: bool) -> OAuth2Settings | None:
    """The [oauth2] section with its provider's defaults; required when imap.auth or smtp.auth is oauth2."""
    if "oauth2" not in r._raw:
        if needed:
            raise ConfigError('imap.auth or smtp.auth = "oauth2" needs an [oauth2] section')
        return None
    provider = r.choice("oauth2.provider", tuple(PROVIDERS), default="generic")
    grant = r.choice("oauth2.grant", ("refresh_token", "client_credentials"), default="refresh_token")
    tenant = r.str("oauth2.tenant", default=None)
    if tenant is not None and provider != "microsoft":
        raise ConfigError("oauth2.tenant is for provider = \"microsoft\" only")
    if provider == "microsoft" and grant == "client_credentials" and not tenant:
        raise ConfigError("oauth2.tenant is required for app-only access (grant = \"client_credentials\")")
    defaults = provider_defaults(provider, tenant, grant)
    urls = {}
    for key in ("token_url", "device_code_url", "authorize_url"):
        value = r.str(f"oauth2.{key}", default=None)
        if value is not None and provider != "generic":
            raise ConfigError(f"oauth2.{key} is derived for provider = \"{provider}\"; "
                              "set it only with provider = \"generic\"")
        urls[key] = value if value is not None else defaults[key]
        if urls[key]:
            _check_url(f"oauth2.{key}", urls[key])
    if not urls["token_url"]:
        raise ConfigError("oauth2.token_url is required with provider = \"generic\"")
    secret_var = r.str("oauth2.client_secret_env", default=None)
    secret = None
    if secret_var:
        secret = environ.get(secret_var)
        if secret is None:
            raise ConfigError(f"oauth2.client_secret_env names {secret_var}, which is not set in the environment")
        secret = Secret(secret)
    elif grant == "client_credentials":
        raise ConfigError("oauth2.client_secret_env is required for grant = \"client_credentials\"")
    token_file = Path(r.str("oauth2.token_file", default="var/oauth2.json"))
    return OAuth2Settings(
        provider=provider, tenant=tenant, grant=grant, token_url=urls["token_url"],
        device_code_url=urls["device_code_url"], authorize_url=urls["authorize_url"],
        client_id=r.str("oauth2.client_id"), client_secret=secret,
        scope=r.str("oauth2.scope", default=defaults["scope"]),
        token_file=token_file if token_file.is_absolute() else base_dir / token_file,
        mechanism=r.choice("oauth2.mechanism", ("auto", "xoauth2", "oauthbearer"), default="auto"))


def _check_url(key: str, url: str) -> None:
    # Refresh tokens and client secrets travel in the request body: never in clear text off this host.
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise ConfigError(f"{key} must be an https:// URL (http:// only for loopback hosts)")


class _AnyVariable(dict):
    """An environment in which every variable is set (to its real value or "")."""

    def __init__(self, environ) -> None:
        super().__init__(environ)

    def get(self, key, default=None):
        return super().get(key, "")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_transport(section: str, host: str, security: str, allow_insecure: bool) -> None:
    # Credentials and customer data must not cross a network in clear text by accident.
    if security == "none" and not allow_insecure and not is_loopback(host):
        raise ConfigError(f'{section}.security = "none" is only allowed for loopback hosts '
                          f"unless {section}.allow_insecure = true")


def _lower_address(value, key: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
        raise ConfigError(f"{key} must hold mail addresses, got {value!r}")
    return value.strip().lower()


class _Reader:
    """Typed access to nested TOML tables with dotted key names in errors."""

    _MISSING = object()

    def __init__(self, raw: dict, prefix: str = "") -> None:
        self._raw = raw
        self._prefix = prefix

    def _get(self, key: str, default):
        node = self._raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is self._MISSING:
                    raise ConfigError(f"{self._prefix}{key} is required")
                return default
            node = node[part]
        return node

    def str(self, key: str, default=_MISSING):
        value = self._get(key, default)
        if value is None or value is default:
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{self._prefix}{key} must be a string")
        return value

    def address(self, key: str) -> str:
        return _lower_address(self._get(key, self._MISSING), self._prefix + key)

    def int(self, key: str, default=_MISSING, minimum=None, maximum=None):
        value = self._get(key, self._MISSING if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._prefix}{key} must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(f"{self._prefix}{key} must be between {minimum} and {maximum}")
        return value

    def float(self, key: str, default=_MISSING, minimum=None):
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self._prefix}{key} must be a number")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self._prefix}{key} must be at least {minimum}")
        return float(value)

    def bool(self, key: str, default=_MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._prefix}{key} must be true or false")
        return value

    def list(self, key: str, default=_MISSING) -> list:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise ConfigError(f"{self._prefix}{key} must be a list")
        return value

    def choice(self, key: str, options: tuple[str, ...], default=_MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or value.lower() not in options:
            raise ConfigError(f"{self._prefix}{key} must be one of {', '.join(options)}")
        return value.lower()
