"""Fixtures: a private Dovecot for the session, a fresh mailbox and SMTP sink per test;
a private PostgreSQL for the session, and the store every storage test runs against.

Tests marked ``both_stores`` (and the modules in ``BOTH_STORES_MODULES``) run
once per store kind: TinyDB, and PostgreSQL with a database of their own,
which ``write_config`` then names in ``storage.url``.  ``MAILDESK_TEST_STORES``
narrows the kinds (e.g. ``tinydb`` on a machine without PostgreSQL).
"""
from __future__ import annotations

import os

import pytest

from .desk import STORAGE_URL_ENV
from .mailservers import Dovecot, SmtpSink

STORE_KINDS = tuple(k for k in os.environ.get("MAILDESK_TEST_STORES", "tinydb,postgres").split(",") if k)
# End-to-end modules that only reach the store through the command line (or open_store).
BOTH_STORES_MODULES = {"test_daemon", "test_procedure_mail", "test_crash", "test_report_mail", "test_trust",
                       "test_outbox"}


def pytest_configure(config):
    config.addinivalue_line("markers", "both_stores: runs once against the TinyDB and once against the "
                                       "PostgreSQL store")


def pytest_generate_tests(metafunc):
    if "store_kind" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    if metafunc.definition.get_closest_marker("both_stores") or module in BOTH_STORES_MODULES:
        metafunc.parametrize("store_kind", STORE_KINDS, indirect=True)


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


@pytest.fixture(scope="session")
def postgres():
    from .postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def store_kind(request) -> str:
    return getattr(request, "param", "tinydb")


@pytest.fixture(autouse=True)
def store_url(request, store_kind):
    """The test's own PostgreSQL database (None for TinyDB); ``write_config`` names it in its config."""
    if store_kind != "postgres":
        yield None
        return
    url = request.getfixturevalue("postgres").create_database()
    os.environ[STORAGE_URL_ENV] = url
    try:
        yield url
    finally:
        os.environ.pop(STORAGE_URL_ENV, None)


@pytest.fixture
def store_opener(store_kind, store_url, tmp_path):
    """Opens the store under test: a TinyDB file in tmp_path, or the test's PostgreSQL database."""
    def open_store(*, readonly: bool = False):
        if store_kind == "postgres":
            from maildesk.storage.postgres import PostgresStore
            return PostgresStore(store_url, readonly=readonly)
        from maildesk.storage.store import TicketStore
        return TicketStore(tmp_path / "var" / "helpdesk.json", readonly=readonly)
    return open_store
