"""Every common IMAP layout: delimiters, namespaces, special-use folders, servers without MOVE,
UIDPLUS or IDLE, and Gmail's labels.

The decisions (folder names, how mail leaves the inbox, how the desk waits) are pure functions
over what a server says about itself (``daemon/layout.py``) and are tested first without a
server.  Then a representative part of the intake suite runs against five real servers on
loopback: Dovecot with ``/``; Dovecot with ``.`` and an ``INBOX.`` namespace; Dovecot without
MOVE, IDLE, UIDPLUS and NAMESPACE; pymap; and Cyrus IMAP (Debian's cyrus-imapd).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from maildesk.daemon.app import Desk
from maildesk.daemon.config import load_config
from maildesk.daemon.layout import (
    MOVED_KEYWORD, LayoutError, ServerFacts, can_set_keyword, describe, marking_for, plan, server_folder,
    waiting_for,
)

from .desk import (REPO, customer_mail, env_for, helpdesk, start_daemon, stop_if_running, ticket, tickets,
                   write_config)
from .mailservers import CyrusImap, DovecotLayout, PymapServer

DEFAULTS = dict(folder="INBOX", processed_folder="Helpdesk/Processed", quarantine_folder="Helpdesk/Quarantine",
                idle=True)
FULL = frozenset({"IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "NAMESPACE", "SPECIAL-USE"})


def facts(capabilities=FULL, delimiter="/", prefix="", folders=None) -> ServerFacts:
    return ServerFacts(capabilities=frozenset(capabilities), delimiter=delimiter, personal_prefix=prefix,
                       folders={name: frozenset(attrs) for name, attrs in (folders or {"INBOX": ()}).items()})


# --- folder names -------------------------------------------------------------------------------

@pytest.mark.parametrize("configured, delimiter, prefix, expected", [
    ("Helpdesk/Processed", "/", "", "Helpdesk/Processed"),
    ("Helpdesk/Processed", ".", "", "Helpdesk.Processed"),
    ("Helpdesk/Processed", ".", "INBOX.", "INBOX.Helpdesk.Processed"),
    ("Helpdesk/Processed", "/", "INBOX/", "INBOX/Helpdesk/Processed"),
    # Already under the namespace, in either spelling or case: not prefixed twice.
    ("INBOX/Helpdesk/Processed", ".", "INBOX.", "INBOX.Helpdesk.Processed"),
    ("INBOX.Helpdesk.Processed", ".", "INBOX.", "INBOX.Helpdesk.Processed"),
    ("inbox/Helpdesk/Processed", ".", "INBOX.", "INBOX.Helpdesk.Processed"),
    ("/Helpdesk//Processed/", ".", "INBOX.", "INBOX.Helpdesk.Processed"),
    ("INBOX", ".", "INBOX.", "INBOX"),
    ("inbox", "/", "", "INBOX"),
    # A folder whose name merely starts with the letters of the prefix is not under it.
    ("INBOXES/Old", ".", "INBOX.", "INBOX.INBOXES.Old"),
    # A flat server (NIL delimiter): "/" is an ordinary character there.
    ("Helpdesk/Processed", None, "", "Helpdesk/Processed"),
    ("帮助台/已处理", ".", "INBOX.", "INBOX.帮助台.已处理"),
])
def test_configured_names_map_to_the_servers_names(configured, delimiter, prefix, expected):
    assert server_folder(configured, delimiter, prefix) == expected


def test_plan_on_a_dot_server_with_an_inbox_namespace_creates_the_prefixed_folders():
    layout = plan(**DEFAULTS, facts=facts(delimiter=".", prefix="INBOX.",
                                          folders={"INBOX": (), "INBOX.Helpdesk.Processed": ()}))
    assert (layout.watched, layout.processed, layout.quarantine) == (
        "INBOX", "INBOX.Helpdesk.Processed", "INBOX.Helpdesk.Quarantine")
    assert layout.to_create == ("INBOX.Helpdesk.Quarantine",)
    # The intake runner passes configured names; the mailbox turns them into the server's.
    assert layout.server_name("Helpdesk/Quarantine") == "INBOX.Helpdesk.Quarantine"


# --- how mail leaves the inbox, how the desk waits --------------------------------------------------

@pytest.mark.parametrize("capabilities, expected", [
    ({"MOVE", "UIDPLUS"}, "move"),
    ({"MOVE"}, "move"),
    ({"UIDPLUS"}, "copy-expunge"),
    (set(), "copy-flag"),  # never a plain EXPUNGE: it would take other clients' \Deleted mail too
])
def test_marking_follows_move_and_uidplus(capabilities, expected):
    assert marking_for(frozenset(capabilities)) == expected


def test_waiting_uses_idle_only_when_offered_and_wanted():
    assert waiting_for(frozenset({"IDLE"}), True) == "idle"
    assert waiting_for(frozenset({"IDLE"}), False) == "poll"
    assert waiting_for(frozenset(), True) == "poll"


def test_the_copied_mark_is_set_only_where_the_folder_keeps_keywords():
    assert can_set_keyword(("\\Deleted", "\\Seen", "\\*"))
    assert can_set_keyword(("\\Deleted", MOVED_KEYWORD))
    assert not can_set_keyword(("\\Answered", "\\Deleted", "\\Seen"))  # pymap, some hosted servers


# --- special-use folders ------------------------------------------------------------------------------

def test_special_use_folders_are_used_only_when_configured():
    server = facts(folders={"INBOX": (), "Junk": ("\\Junk", "\\HasNoChildren"), "Archive": ("\\Archive",)})
    default = plan(**DEFAULTS, facts=server)
    assert default.quarantine == "Helpdesk/Quarantine"  # a Junk folder is never chosen by itself
    assert default.special_use == {"\\Junk": "Junk", "\\Archive": "Archive"}
    chosen = plan(**{**DEFAULTS, "quarantine_folder": "\\junk", "processed_folder": "\\Archive"}, facts=server)
    assert (chosen.quarantine, chosen.processed, chosen.to_create) == ("Junk", "Archive", ())


@pytest.mark.parametrize("key, value, words", [
    ("processed_folder", "\\Trash", "only \\Archive"),           # purged by servers: never
    ("quarantine_folder", "\\Sent", "only \\Junk"),
    ("processed_folder", "\\All", "only \\Archive"),             # \All is a virtual folder off Gmail
    ("quarantine_folder", "\\Junk", "marks no folder \\Junk"),   # asked for, but the server has none
    ("processed_folder", "INBOX", "is the watched folder"),
    ("quarantine_folder", "inbox", "is the watched folder"),
    ("folder", "\\Junk", "name the folder itself"),
])
def test_settings_that_cannot_work_are_refused_with_the_reason(key, value, words):
    with pytest.raises(LayoutError, match="imap." + key) as caught:
        plan(**{**DEFAULTS, key: value}, facts=facts())
    assert words in str(caught.value)


# --- Gmail ----------------------------------------------------------------------------------------------

GMAIL = facts(capabilities=FULL | {"X-GM-EXT-1"}, folders={
    "INBOX": ("\\HasNoChildren",), "[Gmail]": ("\\Noselect", "\\HasChildren"),
    "[Gmail]/All Mail": ("\\All", "\\HasNoChildren"), "[Gmail]/Spam": ("\\Junk",),
    "[Gmail]/Trash": ("\\Trash",), "Helpdesk/Processed": ("\\HasNoChildren",)})


def test_gmail_moves_out_of_inbox_into_a_label_and_never_reads_all_mail():
    layout = plan(**DEFAULTS, facts=GMAIL)
    # MOVE from INBOX to the label: Gmail takes the Inbox label off and adds the other one.
    assert (layout.gmail, layout.marking, layout.processed) == (True, "move", "Helpdesk/Processed")
    assert layout.to_create == ("Helpdesk/Quarantine",)
    # All Mail keeps every mail the desk filed away: watching it would read each one again.
    with pytest.raises(LayoutError, match="Gmail's All Mail"):
        plan(**{**DEFAULTS, "folder": "[Gmail]/All Mail"}, facts=GMAIL)
    # Archiving into All Mail is Gmail's own way of filing mail away; allowed there only.
    archived = plan(**{**DEFAULTS, "processed_folder": "\\All", "quarantine_folder": "\\Junk"}, facts=GMAIL)
    assert (archived.processed, archived.quarantine, archived.to_create) == ("[Gmail]/All Mail", "[Gmail]/Spam", ())
    assert "Gmail labels" in describe(archived, GMAIL.capabilities)


def test_all_mail_is_known_by_its_attribute_whatever_its_localised_name():
    german = facts(capabilities=FULL | {"X-GM-EXT-1"}, folders={
        "INBOX": (), "[Google Mail]/Alle Nachrichten": ("\\All",), "[Google Mail]/Markiert": ("\\Flagged",)})
    for watched in ("[Google Mail]/Alle Nachrichten", "[Google Mail]/Markiert"):
        with pytest.raises(LayoutError, match="would read them all again"):
            plan(**{**DEFAULTS, "folder": watched}, facts=german)


def test_describe_names_what_check_prints():
    layout = plan(**DEFAULTS, facts=facts(capabilities={"IMAP4REV1", "SPECIAL-USE"}, delimiter=".",
                                          prefix="INBOX."))
    text = describe(layout, frozenset({"IMAP4REV1", "SPECIAL-USE"}))
    assert 'delimiter "."' in text and 'personal namespace "INBOX."' in text
    assert 'processed "INBOX.Helpdesk.Processed"' in text and 'quarantine "INBOX.Helpdesk.Quarantine"' in text
    assert "never expunged by the desk" in text and "waits by polling" in text


# --- against real servers -----------------------------------------------------------------------------

SERVERS = {
    "dovecot-slash": lambda: DovecotLayout(),
    "dovecot-dot-inbox": lambda: DovecotLayout(separator=".", prefix="INBOX.", junk=True),
    # Without MOVE and IDLE: UID COPY, \Deleted, UID EXPUNGE; polling.
    "dovecot-no-move": lambda: DovecotLayout(drop_capabilities=("MOVE", "IDLE")),
    # Without MOVE, UIDPLUS and IDLE (and NAMESPACE: the delimiter then comes from LIST "" "").
    "dovecot-minimal": lambda: DovecotLayout(drop_capabilities=("MOVE", "IDLE", "UIDPLUS", "NAMESPACE")),
    "pymap": PymapServer,
    "cyrus": CyrusImap,
}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request):
    started = SERVERS[request.param]().start()
    started.name = request.param
    yield started
    started.stop()


@pytest.fixture
def account(server):
    return server.add_user()


@pytest.fixture
def desk_config(tmp_path, account, smtp_sink):
    return write_config(tmp_path / "desk", imap_port=account.port, imap_user=account.username,
                        imap_password=account.password, smtp_port=smtp_sink.port, notify_unassigned="none",
                        extra="[sla]\nfirst_response_hours = 100000\nresolution_hours = 100000\n")


def imap_settings(config, **settings):
    """Set [imap] folder keys (TOML literal strings, so "\\Junk" needs no escaping)."""
    kept = [line for line in config.read_text().splitlines(keepends=True)
            if not any(line.startswith(f"{k} = ") for k in settings)]
    text = "".join(kept)
    lines = "".join(f"{k} = '{v}'\n" for k, v in settings.items())
    config.write_text(text.replace("batch_size = 25\n", "batch_size = 25\n" + lines, 1))
    return config


def run_once(config):
    with Desk(load_config(config)) as desk:
        return desk.run_once()


def undeleted(account, folder="INBOX") -> int:
    with account.client() as c:
        c.select_folder(folder, readonly=True)
        return len(c.search(["UNDELETED"]))


def processed_name(server):
    return server.folder("Helpdesk/Processed")


@pytest.mark.integration
def test_new_ticket_is_acknowledged_and_filed_under_the_servers_folder_name(server, account, desk_config,
                                                                           smtp_sink):
    account.deliver(customer_mail("wang@cust.example", "VPN drops", "VPN disconnects every hour."))
    summary = run_once(desk_config)
    assert summary.outcomes == {"ticket": 1}
    [ack] = smtp_sink.wait_for(1)
    assert ack.rcpt_tos == ["wang@cust.example"] and ack.message["Subject"].startswith("[TS-000001]")
    assert undeleted(account) == 0
    assert account.count(processed_name(server)) == 1
    folders = account.folders()
    assert processed_name(server) in folders and server.folder("Helpdesk/Quarantine") in folders
    if processed_name(server) != "Helpdesk/Processed":
        assert "Helpdesk/Processed" not in folders  # the user's "/" spelling was not taken literally

    # `helpdesk check` says what it found on this server.
    line = helpdesk(desk_config, "check", password=account.password).stdout.splitlines()[1]
    assert line.startswith("ok   imap") and "auth password" in line
    assert f'processed "{processed_name(server)}"' in line
    assert f'quarantine "{server.folder("Helpdesk/Quarantine")}"' in line
    if server.name in ("dovecot-dot-inbox", "cyrus"):
        assert 'delimiter "."' in line and 'personal namespace "INBOX."' in line
    else:
        assert 'delimiter "/"' in line and 'personal namespace ""' in line
    detected = line.split("capabilities ", 1)[1].split(";")[0].split()
    if server.name == "dovecot-minimal":
        assert "never expunged by the desk" in line and "waits by polling" in line
        assert not {"MOVE", "IDLE", "UIDPLUS"} & set(detected)
    elif server.name == "dovecot-no-move":
        assert "COPY + \\Deleted + UID EXPUNGE" in line and "waits by polling" in line
        assert "UIDPLUS" in detected and not {"MOVE", "IDLE"} & set(detected)
    else:
        assert "marks handled mail by MOVE" in line and "waits by IDLE" in line


@pytest.mark.integration
@pytest.mark.both_stores  # what the store remembers decides here
def test_follow_up_reply_joins_its_ticket(server, account, desk_config, smtp_sink):
    account.deliver(customer_mail("li@cust.example", "Printer jams", "Paper jam on floor 3."))
    run_once(desk_config)
    [ack] = smtp_sink.wait_for(1)
    account.deliver(customer_mail("li@cust.example", "Re: Printer jams", "Still jamming.",
                                  in_reply_to=ack.message["Message-ID"]))
    summary = run_once(desk_config)
    assert summary.outcomes == {"follow-up": 1}
    listing = tickets(desk_config, password=account.password)
    assert [t["id"] for t in listing] == ["TS-000001"]
    texts = [m["text"] for m in ticket(desk_config, "TS-000001", password=account.password)["messages"]
             if m["direction"] == "in"]
    assert texts == ["Paper jam on floor 3.", "Still jamming."]
    assert undeleted(account) == 0 and account.count(processed_name(server)) == 2
    assert len(smtp_sink.messages()) == 1  # a follow-up gets no second acknowledgement


@pytest.mark.integration
def test_unusable_mail_is_quarantined_in_the_servers_quarantine_folder(server, account, tmp_path, smtp_sink):
    config = write_config(tmp_path / "desk", imap_port=account.port, imap_user=account.username,
                          imap_password=account.password, smtp_port=smtp_sink.port, notify_unassigned="none",
                          max_message_mb=0.05)
    account.deliver(customer_mail("big@cust.example", "Huge log", "x" * 80_000))
    account.deliver(b"To: support@example.com\r\nSubject: who am I\r\nMessage-ID: <anon@x>\r\n\r\nhello\r\n")
    account.deliver(customer_mail("ok@cust.example", "Fine", "A normal request."))
    summary = run_once(config)
    assert summary.quarantined == 2 and summary.outcomes.get("ticket") == 1
    assert undeleted(account) == 0
    assert account.count(server.folder("Helpdesk/Quarantine")) == 2
    assert account.count(processed_name(server)) == 1


@pytest.mark.integration
def test_a_mail_somebody_else_flagged_deleted_is_neither_read_nor_expunged(server, account, desk_config,
                                                                         smtp_sink):
    account.deliver(customer_mail("gone@cust.example", "Deleted by a colleague", "ignore me"))
    with account.client() as c:
        c.select_folder("INBOX")
        c.add_flags(c.search(["ALL"]), [b"\\Deleted"])
    account.deliver(customer_mail("new@cust.example", "Real request", "help"))
    run_once(desk_config)
    assert [t["customer"] for t in tickets(desk_config, password=account.password)] == ["new@cust.example"]
    with account.client() as c:
        c.select_folder("INBOX", readonly=True)
        left = c.fetch(c.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    subjects = {b"Deleted by a colleague" in d[b"BODY[HEADER.FIELDS (SUBJECT)]"]: d[b"FLAGS"] for d in left.values()}
    assert True in subjects, "the colleague's \\Deleted mail was expunged by the desk"
    assert MOVED_KEYWORD.encode() not in subjects[True]
    if server.name == "dovecot-minimal":
        # No UIDPLUS: the handled mail stays, flagged \Deleted and marked as copied, for a client to expunge.
        assert set(subjects[False]) >= {b"\\Deleted", MOVED_KEYWORD.encode()}
    else:
        assert False not in subjects  # moved (or UID EXPUNGEd) out of the inbox


@pytest.mark.integration
@pytest.mark.both_stores  # what the store remembers decides here
def test_crash_before_and_after_the_commit_loses_and_doubles_nothing(server, account, desk_config, smtp_sink):
    """A mail that kills the daemon is quarantined after three attempts; a mail re-read after the commit
    (the move never happened) is recognised and filed without a second acknowledgement."""
    account.deliver_many([customer_mail(f"n{i}@cust.example", f"Normal {i}", "fine") for i in range(3)]
                         + [customer_mail("evil@cust.example", "POISON pill", "boom")])
    deaths = 0
    for _ in range(6):
        env = env_for(account.password)
        env["MAILDESK_FAILPOINT"] = "kill-on-subject:POISON"
        proc = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(desk_config), "once"], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        if proc.returncode == -signal.SIGKILL:
            deaths += 1
            continue
        assert proc.returncode == 0, proc.stderr
        break
    assert deaths == 3
    assert undeleted(account) == 0
    assert account.count(server.folder("Helpdesk/Quarantine")) == 1
    assert account.count(processed_name(server)) == 3
    acks = sorted(r for m in smtp_sink.messages() for r in m.rcpt_tos)
    assert acks == ["n0@cust.example", "n1@cust.example", "n2@cust.example"]

    # As if the desk had died between its commit and the move: the mail is in the inbox again.
    account.deliver(account.fetch_all(processed_name(server))[0])
    summary = run_once(desk_config)
    assert summary.outcomes == {"duplicate": 1}
    assert undeleted(account) == 0 and account.count(processed_name(server)) == 4
    assert len(tickets(desk_config, password=account.password)) == 3
    assert len(smtp_sink.messages()) == 3


@pytest.mark.integration
def test_the_daemon_picks_up_new_mail_by_idle_or_by_polling(server, account, desk_config, smtp_sink, tmp_path):
    log = tmp_path / "daemon.log"
    proc = start_daemon(desk_config, password=account.password, log_path=log)
    try:
        time.sleep(1.5)  # connected and waiting (IDLE, or polling every 0.5 s where IDLE is missing)
        for i in range(2):
            account.deliver(customer_mail(f"later{i}@cust.example", f"Arrives later {i}", "hello"))
            smtp_sink.wait_for(i + 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_if_running(proc)
    assert sorted(t["customer"] for t in tickets(desk_config, password=account.password)) == [
        "later0@cust.example", "later1@cust.example"]
    assert undeleted(account) == 0


@pytest.mark.integration
@pytest.mark.parametrize("server", ["dovecot-dot-inbox"], indirect=True)
def test_names_already_under_the_namespace_and_special_use_quarantine(server, account, desk_config, smtp_sink):
    imap_settings(desk_config, processed_folder="INBOX/Desk/Done", quarantine_folder="\\Junk")
    account.deliver(customer_mail("ok@cust.example", "Fine", "A normal request."))
    account.deliver(b"To: support@example.com\r\nSubject: who am I\r\nMessage-ID: <anon2@x>\r\n\r\nhello\r\n")
    summary = run_once(desk_config)
    assert summary.quarantined == 1
    assert account.count("INBOX.Desk.Done") == 1 and account.count("INBOX.Junk") == 1
    assert "INBOX.INBOX.Desk.Done" not in account.folders()
    # Asking for a special-use folder the server lacks is one clear line, not a crash.
    imap_settings(desk_config, processed_folder="\\Archive")
    proc = helpdesk(desk_config, "check", password=account.password, check=False)
    line = proc.stdout.splitlines()[1]
    assert proc.returncode == 4 and line.startswith("FAIL imap") and "marks no folder \\Archive" in line
    assert "\\Junk (INBOX.Junk)" in line


@pytest.mark.integration
@pytest.mark.parametrize("server", ["dovecot-no-move"], indirect=True)
def test_a_copy_left_flagged_by_a_dead_desk_is_expunged_on_the_next_start(server, account, desk_config,
                                                                          smtp_sink):
    """Without MOVE the desk copies, flags (\\Deleted and its own keyword) and UID EXPUNGEs; a desk that
    died between the flag and the expunge finishes that expunge when it connects again, and only that."""
    account.deliver(customer_mail("done@cust.example", "Handled before the crash", "x"))
    account.deliver(customer_mail("other@cust.example", "Deleted by a colleague", "y"))
    with account.client() as c:
        c.create_folder("Helpdesk/Processed")
        c.select_folder("INBOX")
        first, second = sorted(c.search(["ALL"]))
        c.copy([first], "Helpdesk/Processed")
        c.add_flags([first], [b"\\Deleted", MOVED_KEYWORD.encode()])
        c.add_flags([second], [b"\\Deleted"])
    summary = run_once(desk_config)
    assert summary.handled == 0
    with account.client() as c:
        c.select_folder("INBOX", readonly=True)
        assert len(c.search(["ALL"])) == 1 and len(c.search(["DELETED", "UNKEYWORD", MOVED_KEYWORD])) == 1
    assert account.count("Helpdesk/Processed") == 1
