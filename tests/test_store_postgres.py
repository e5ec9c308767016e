"""The PostgreSQL store's own parts: config keys, schema versions, analysts' views and role (private server)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest

from maildesk.daemon.config import ConfigError, parse_config
from maildesk.model import Event, Message, StaffRecord, Ticket
from maildesk.storage.journal import StoreError
from maildesk.storage.lock import StoreLocked
from maildesk.storage.postgres import LEASE_SECONDS, PostgresStore, migrate, schema_version_needed

from .desk import NO_SERVERS, REPO

NOW = datetime(2026, 11, 23, 1, 2, 3, tzinfo=timezone.utc)


def raw_config(storage: dict) -> dict:
    return {"imap": {"host": "127.0.0.1", "port": 1, "security": "none", "username": "u", "password": "p"},
            "smtp": {"host": "127.0.0.1", "port": 2, "security": "none", "from_address": "support@example.com"},
            "storage": storage}


def test_storage_url_and_password_come_from_the_config_and_environment(tmp_path):
    config = parse_config(raw_config({"url": "postgresql://desk@db.example/helpdesk", "password_env": "DBPW"}),
                          base_dir=tmp_path, environ={"DBPW": "s3cret"})
    assert config.storage_url == "postgresql://desk@db.example/helpdesk" and config.storage_password == "s3cret"
    assert "s3cret" not in repr(config.storage_password)
    with pytest.raises(ConfigError, match="storage.url must be a postgresql:// URL"):
        parse_config(raw_config({"url": "mysql://db/x"}), base_dir=tmp_path, environ={})
    with pytest.raises(ConfigError, match="storage.password_env names DBPW"):
        parse_config(raw_config({"url": "postgresql://db/x", "password_env": "DBPW"}), base_dir=tmp_path, environ={})


def cli_config(tmp_path, url: str, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f"""{NO_SERVERS}[storage]
url = "{url}"
{extra}
""", encoding="utf-8")
    return str(path)


def helpdesk(config: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maildesk", "-c", config, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_an_outdated_schema_is_refused_with_one_line_until_store_migrate(tmp_path, postgres):
    url = postgres.create_database(migrated=False)
    config = cli_config(tmp_path, url)
    for args in (("run",), ("once",), ("tickets", "list")):
        proc = helpdesk(config, *args)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.count("\n") == 1
        assert f"has schema version 0, this helpdesk needs {schema_version_needed()}" in proc.stderr
        assert "store migrate" in proc.stderr
    proc = helpdesk(config, "store", "migrate")
    assert proc.returncode == 0 and "0001_initial" in proc.stdout and "0002_analyst_views" in proc.stdout
    assert helpdesk(config, "store", "migrate").stdout.strip() == "store schema is up to date"
    assert helpdesk(config, "tickets", "list", "--json").stdout.strip() == "[]"


def test_a_schema_newer_than_the_code_is_refused(postgres):
    url = postgres.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')")
    with pytest.raises(StoreError, match="upgrade this helpdesk"):
        PostgresStore(url)


def fill(store: PostgresStore) -> None:
    store.save_ticket(Ticket(
        number=1, tag="TS-000001", subject="打印机", customer="wang@cust.example", customer_name="王", stage="closed",
        language="zh", created_at=NOW, updated_at=NOW, assignee="alice@example.com", rating=5,
        messages=[Message("in", "wang@cust.example", ["support@example.com"], NOW, "卡纸", "<m1@cust.example>"),
                  Message("out", "alice@example.com", ["wang@cust.example"], NOW, "好了", "<r1@example.com>")],
        events=[Event(NOW, "wang@cust.example", "created", None, "received"),
                Event(NOW, "alice@example.com", "close", "received", "closed")]))
    store.add_staff_record(StaffRecord(at=NOW, author="lead@example.com", kind="commend",
                                       technician="alice@example.com", reason="fast", ticket="TS-000001"))
    store.commit()


def test_analysts_read_views_without_customer_addresses_and_no_tables(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as store:
        fill(store)
    with postgres.admin() as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE analyst LOGIN IN ROLE maildesk_analyst; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    analyst = url.replace("postgres@", "analyst@")
    with psycopg.connect(analyst, autocommit=True) as conn:
        assert conn.execute("SELECT tag, customer, rating FROM analytics.tickets").fetchall() == [
            ("TS-000001", "w***@cust.example", 5)]
        assert conn.execute("SELECT sender, text FROM analytics.messages ORDER BY position").fetchall() == [
            ("w***@cust.example", "卡纸"), ("alice@example.com", "好了")]
        assert [r[0] for r in conn.execute("SELECT actor FROM analytics.events ORDER BY position")] == [
            "w***@cust.example", "alice@example.com"]
        assert conn.execute("SELECT ticket, rating FROM analytics.ratings").fetchall() == [(1, 5)]
        assert conn.execute("SELECT kind, technician FROM analytics.staff_records").fetchall() == [
            ("commend", "alice@example.com")]
        for table in ("tickets", "outbox", "attachments", "analyst_settings"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM public.{table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE public.analyst_settings SET show_addresses = true")
        with pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM analytics.tickets")
    # The desk's config allows addresses: its next start (or `store migrate`) says so to the database.
    migrate(url, show_addresses=True)
    with psycopg.connect(analyst, autocommit=True) as conn:
        assert conn.execute("SELECT customer FROM analytics.tickets").fetchone() == ("wang@cust.example",)
    with PostgresStore(url, show_addresses=False):
        pass
    with psycopg.connect(analyst, autocommit=True) as conn:
        assert conn.execute("SELECT customer FROM analytics.tickets").fetchone() == ("w***@cust.example",)


def test_a_reader_beside_the_writer_sees_only_what_is_committed(postgres):
    url = postgres.create_database()
    with PostgresStore(url) as writer, PostgresStore(url, readonly=True) as reader:
        number = writer.allocate_ticket_number()
        writer.save_ticket(Ticket(number=number, tag="TS-000001", subject="s", customer="c@x.example",
                                  customer_name="", stage="received", language="en", created_at=NOW, updated_at=NOW))
        assert writer.ticket_count() == 1 and reader.ticket_count() == 0
        writer.commit()
        assert reader.get_ticket(1).subject == "s"
        with pytest.raises(StoreError, match="read-only"):
            reader.record_attempt("k")


# A desk that took the lease, then froze in the middle of a pipeline with the lease row locked (as
# its commit's fencing statement locks it) before the sync: the server is still reading that
# transaction's messages, so no idle-in-transaction timeout runs for it.
FROZEN_IN_A_PIPELINE = """
import os, signal, sys
import psycopg
from maildesk.storage.postgres import PostgresStore
store = PostgresStore(sys.argv[1])
try:
    with store.conn.pipeline():
        store.conn.execute("BEGIN")
        store.conn.execute("SELECT 1 FROM desk_lease WHERE id = 1 FOR UPDATE")
        store.conn.pgconn.flush()
        print("frozen", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    print("its transaction went on", flush=True)
except psycopg.Error as exc:
    print("woke without its session:", type(exc).__name__, flush=True)
"""


def test_a_standby_ends_the_session_of_a_desk_frozen_holding_the_lease_row_once_its_lease_lapses(postgres):
    url = postgres.create_database()
    frozen = subprocess.Popen([sys.executable, "-c", FROZEN_IN_A_PIPELINE, url], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert frozen.stdout.readline().strip() == "frozen"
        start = time.monotonic()
        with pytest.raises(StoreLocked, match="only one desk works at a time"):
            PostgresStore(url)  # `once` beside it: refused while its lease runs
        give_up = start + 30
        with PostgresStore(url, standby=lambda: time.monotonic() > give_up) as standby:
            took = time.monotonic() - start
            number = standby.allocate_ticket_number()
            standby.save_ticket(Ticket(number=number, tag="TS-000001", subject="s", customer="c@x.example",
                                       customer_name="", stage="received", language="en", created_at=NOW,
                                       updated_at=NOW))
            standby.commit()
        assert took < LEASE_SECONDS + 3, f"took over after {took:.1f} s"
        frozen.send_signal(signal.SIGCONT)
        out, _ = frozen.communicate(timeout=30)
        assert out.startswith("woke without its session")
    finally:
        frozen.send_signal(signal.SIGCONT)
        frozen.kill()
        frozen.wait()
        frozen.stdout.close()
    with PostgresStore(url, readonly=True) as reader:
        assert reader.get_ticket(1).subject == "s"


def test_a_desk_whose_lease_was_taken_is_told_and_can_neither_send_nor_commit(postgres):
    url = postgres.create_database()
    lost = threading.Event()
    with PostgresStore(url, on_lease_lost=lost.set) as desk:
        log = desk.delivery_log()
        log.sending("before@example.com")
        with psycopg.connect(url, autocommit=True) as other:  # what a take-over does to the lease row
            other.execute("UPDATE desk_lease SET token = token + 1, holder = 'the other desk' WHERE id = 1")
        assert lost.wait(LEASE_SECONDS), "the lease's own thread notices the take-over"
        with pytest.raises(StoreError, match="another desk took over"):
            log.sending("after@example.com")
        desk.allocate_ticket_number()
        with pytest.raises(StoreError, match="another desk took over"):
            desk.commit()
        log.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT mail_id FROM delivery_log").fetchall() == [("before@example.com",)]
