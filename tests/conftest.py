"""Fixtures: a private Dovecot for the session, a fresh mailbox and SMTP sink per test."""
from __future__ import annotations

import pytest

from .mailservers import Dovecot, SmtpSink


@pytest.fixture(scope="session")
def dovecot():
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(dovecot):
    """A fresh support mailbox: tests never see each other's mail."""
    return dovecot.add_user()


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()
