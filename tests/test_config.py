"""Configuration: defaults, validation messages, secrets (no servers)."""
from __future__ import annotations

from pathlib import Path

import pytest

from maildesk.daemon.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_example_config_is_valid_and_complete():
    config = load_config(REPO / "config.toml", environ={"HELPDESK_IMAP_PASSWORD": "i",
                                                        "HELPDESK_SMTP_PASSWORD": "s"})
    assert config.imap.security == "ssl" and config.smtp.port == 465
    assert config.tickets.prefix == "TS"
    assert [t.email for t in config.team.technicians] == ["alice@example.com", "bob@example.com"]
    assert config.team.technicians[0].nda_signed.isoformat() == "2026-01-15"
    assert config.team.technicians[1].nda_signed is None
    assert str(config.report.timezone) == "Asia/Shanghai" and config.report.time.hour == 9
    assert config.storage_path == REPO / "var" / "helpdesk.json"


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """
[imap]
host = "{host}"
port = 993
security = "{security}"
username = "support@example.com"
password_env = "PW"
[smtp]
host = "{host}"
port = 465
security = "{security}"
from_address = "Support@Example.com"
"""


@pytest.mark.parametrize("host, security, ok", [
    ("127.0.0.1", "none", True),
    ("localhost", "none", True),
    ("::1", "none", True),
    ("mail.example.net", "none", False),
    ("mail.example.net", "starttls", True),
])
def test_plain_text_only_on_loopback(tmp_path, host, security, ok):
    path = write(tmp_path, BASE.format(host=host, security=security))
    if ok:
        assert load_config(path, environ={"PW": "x"}).smtp.from_address == "support@example.com"
    else:
        with pytest.raises(ConfigError, match=r'imap.security = "none" is only allowed for loopback'):
            load_config(path, environ={"PW": "x"})


def test_allow_insecure_overrides(tmp_path):
    text = BASE.format(host="mail.example.net", security="none").replace(
        'security = "none"', 'security = "none"\nallow_insecure = true')
    assert load_config(write(tmp_path, text), environ={"PW": "x"}).imap.security == "none"


def test_missing_password_variable_is_named_but_its_value_never_shown(tmp_path):
    path = write(tmp_path, BASE.format(host="127.0.0.1", security="none"))
    with pytest.raises(ConfigError, match="imap.password_env names PW, which is not set"):
        load_config(path, environ={})
    config = load_config(path, environ={"PW": "hunter2-secret"})
    assert config.imap.password == "hunter2-secret"
    assert "hunter2" not in repr(config)
    # Read-only commands work without the servers' passwords.
    assert load_config(path, environ={}, need_secrets=False).imap.host == "127.0.0.1"


@pytest.mark.parametrize("extra, message", [
    ('[tickets]\nprefix = "T S"', "tickets.prefix"),
    ('[report]\ntimezone = "Mars/Olympus"', "report.timezone"),
    ('[report]\ntime = "9 o\'clock"', "report.time"),
    ('[team]\nsupervisor = "not an address"', "team.supervisor"),
    ('[[team.technicians]]\nemail = "a@b.example"\nnda_signed = "last year"', "nda_signed"),
    ('[tickets]\nack_limit_per_hou = 3', "unknown key tickets.ack_limit_per_hou"),
    ('[imap.x]\n', "unknown key imap.x"),
    ('[reports]\nlanguage = "zh"', r"unknown section \[reports\]"),
])
def test_bad_values_name_their_key(tmp_path, extra, message):
    path = write(tmp_path, BASE.format(host="127.0.0.1", security="none") + extra)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={"PW": "x"})


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[imap\nhost="))
