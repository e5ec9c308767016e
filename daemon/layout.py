"""How this IMAP server lays out folders, and what the desk may do there (pure decisions).

Servers differ in ways that decide real folder names and real commands:

* the hierarchy delimiter (``/`` on Dovecot's default and Gmail, ``.`` on
  Courier, Cyrus and many hosted servers) and the personal namespace prefix
  (``""`` or ``INBOX.``): the configured ``Helpdesk/Processed`` is written with
  ``/`` and becomes ``INBOX.Helpdesk.Processed`` on a ``.`` server with an
  ``INBOX.`` namespace;
* special-use folders (RFC 6154), which the configuration may name by their
  attribute (``quarantine_folder = "\\\\Junk"``);
* MOVE, UIDPLUS and IDLE, which decide how a handled mail leaves the inbox
  and how the desk waits for new mail;
* Gmail (``X-GM-EXT-1``), where folders are labels and All Mail keeps every
  message whatever label it loses.

``daemon/mailbox.py`` asks the server (CAPABILITY, NAMESPACE or ``LIST "" ""``,
``LIST``, the PERMANENTFLAGS of SELECT) and hands the answers to the functions
here as plain data; everything decided from them is tested without a server.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Set together with \Deleted on a handled mail that was copied (no MOVE): "a
# copy is in the processed or quarantine folder".  It tells the desk's own
# leftovers from mails somebody else flagged \Deleted.
MOVED_KEYWORD = "$MaildeskMoved"

# Special-use attributes (RFC 6154) a folder setting may name instead of a
# folder, per setting.  Conservative on purpose: \Junk only for quarantine and
# only when configured (a Junk folder is purged by many servers after some
# days, and mail filed there trains the spam filter against that customer);
# \Archive for processed mail; \All only on Gmail, where "move to All Mail"
# is how archiving works.  \Trash, \Drafts, \Sent and \Flagged never.
ALLOWED_SPECIAL_USE = {
    "processed_folder": ("\\Archive", "\\All"),
    "quarantine_folder": ("\\Junk", "\\Archive"),
    "folder": (),
}
# Virtual folders: a mail moved "out" of them is still in them, so reading
# one would find every handled mail again on every pass.
NEVER_WATCHED = ("\\All", "\\Flagged")
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


class LayoutError(Exception):
    """The configured folders cannot work on this server; the message says why and what to write."""


@dataclass(frozen=True)
class ServerFacts:
    """What the server said about itself, as plain data."""

    capabilities: frozenset[str]                    # upper case, e.g. "MOVE", "X-GM-EXT-1"
    delimiter: str | None                           # None: a flat server without hierarchy
    personal_prefix: str = ""                       # e.g. "INBOX." (from NAMESPACE; "" without it)
    # Every folder the LIST showed, with its attributes as written ("\\Junk", "\\HasChildren").
    folders: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    def special_use(self) -> dict[str, str]:
        """Attribute ("\\Junk") -> folder name, first folder carrying it."""
        found: dict[str, str] = {}
        for name, attributes in self.folders.items():
            for attribute in attributes:
                canonical = _canonical_attribute(attribute)
                if canonical in SPECIAL_USE:
                    found.setdefault(canonical, name)
        return found


@dataclass(frozen=True)
class Layout:
    """The folder names and commands the desk uses on this server."""

    delimiter: str | None
    personal_prefix: str
    watched: str          # server names
    processed: str
    quarantine: str
    marking: str          # "move" | "copy-expunge" | "copy-flag" (see marking_for)
    waiting: str          # "idle" | "poll"
    gmail: bool
    to_create: tuple[str, ...]
    # Configured name -> server name, for the names the intake runner passes in.
    names: Mapping[str, str] = field(default_factory=dict)
    special_use: Mapping[str, str] = field(default_factory=dict)

    def server_name(self, configured: str) -> str:
        return self.names.get(configured, configured)


def marking_for(capabilities: frozenset[str]) -> str:
    """How a handled mail leaves the inbox.

    ``move``: UID MOVE (RFC 6851), atomic.
    ``copy-expunge``: UID COPY, UID STORE +FLAGS (\\Deleted $MaildeskMoved), then
    UID EXPUNGE (UIDPLUS, RFC 4315) of exactly those UIDs.
    ``copy-flag``: UID COPY and UID STORE as above, but no EXPUNGE at all.  A plain
    EXPUNGE removes *every* \\Deleted mail of the folder, including mail another
    client flagged and the desk never handled; checking first that no such mail
    exists would still race with that client.  So without UIDPLUS the desk never
    expunges: handled mail stays in the inbox flagged \\Deleted until a mail
    client expunges it, and the desk's SEARCH UNDELETED never reads it again.
    """
    if "MOVE" in capabilities:
        return "move"
    if "UIDPLUS" in capabilities:
        return "copy-expunge"
    return "copy-flag"


def waiting_for(capabilities: frozenset[str], idle_configured: bool) -> str:
    return "idle" if idle_configured and "IDLE" in capabilities else "poll"


def can_set_keyword(permanent_flags: frozenset[str] | tuple[str, ...]) -> bool:
    """Whether the selected folder keeps a keyword we set (RFC 3501 PERMANENTFLAGS with \\*)."""
    flags = {f.lower() for f in permanent_flags}
    return "\\*" in flags or MOVED_KEYWORD.lower() in flags


def server_folder(configured: str, delimiter: str | None, prefix: str) -> str:
    """The server's name for a folder the user wrote with ``/``.

    ``Helpdesk/Processed`` -> ``INBOX.Helpdesk.Processed`` with delimiter ``.`` and
    prefix ``INBOX.``; a name already under the prefix (``INBOX/Helpdesk/Processed``
    or ``INBOX.Helpdesk.Processed``) is not prefixed twice.  INBOX is INBOX
    everywhere.
    """
    name = configured.strip()
    if name.upper() == "INBOX":
        return "INBOX"
    if delimiter is None:
        return name  # a flat server: "/" is an ordinary character in its names
    parts = [part for part in name.split("/") if part]
    joined = delimiter.join(parts)
    if parts and parts[0].upper() == "INBOX":
        # INBOX is case-insensitive (RFC 3501 5.1); the server spells it INBOX.
        joined = "INBOX" + joined[len(parts[0]):]
    if not prefix or _under(joined, prefix, delimiter):
        return joined
    return prefix + joined


def _under(name: str, prefix: str, delimiter: str) -> bool:
    bare = prefix[: -len(delimiter)] if prefix.endswith(delimiter) else prefix
    upper_name, upper_bare = _inbox_upper(name), _inbox_upper(bare)
    return upper_name == upper_bare or upper_name.startswith(upper_bare + delimiter)


def _inbox_upper(name: str) -> str:
    return "INBOX" + name[5:] if name[:5].upper() == "INBOX" else name


def _canonical_attribute(attribute: str) -> str:
    for known in SPECIAL_USE:
        if attribute.lower() == known.lower():
            return known
    return attribute


def plan(*, folder: str, processed_folder: str, quarantine_folder: str, idle: bool,
         facts: ServerFacts) -> Layout:
    """Decide the server folder names and the commands; raise LayoutError for settings that cannot work."""
    special = facts.special_use()
    names: dict[str, str] = {}
    for key, configured in (("folder", folder), ("processed_folder", processed_folder),
                            ("quarantine_folder", quarantine_folder)):
        names[configured] = _resolve(key, configured, facts, special)
    watched, processed, quarantine = names[folder], names[processed_folder], names[quarantine_folder]

    by_name = {_inbox_upper(n): n for n in facts.folders}
    watched_attributes = {_canonical_attribute(a) for a in facts.folders.get(by_name.get(_inbox_upper(watched),
                                                                                           watched), ())}
    for attribute in NEVER_WATCHED:
        if attribute in watched_attributes:
            where = "Gmail's All Mail" if facts.gmail and attribute == "\\All" else f"a {attribute} folder"
            raise LayoutError(f"imap.folder = {folder!r} is {where}, which keeps every mail the desk files "
                              f"away: the desk would read them all again; watch INBOX")
    for key, target in (("processed_folder", processed), ("quarantine_folder", quarantine)):
        if _inbox_upper(target) == _inbox_upper(watched):
            raise LayoutError(f"imap.{key} is the watched folder {watched!r}: handled mail would come back "
                              f"forever; name another folder")
    to_create = []
    for target in dict.fromkeys((processed, quarantine)):
        if _inbox_upper(target) not in by_name:
            to_create.append(target)
    return Layout(delimiter=facts.delimiter, personal_prefix=facts.personal_prefix, watched=watched,
                  processed=processed, quarantine=quarantine, marking=marking_for(facts.capabilities),
                  waiting=waiting_for(facts.capabilities, idle), gmail=facts.gmail, to_create=tuple(to_create),
                  names=names, special_use=special)


def _resolve(key: str, configured: str, facts: ServerFacts, special: Mapping[str, str]) -> str:
    if not configured.startswith("\\"):
        return server_folder(configured, facts.delimiter, facts.personal_prefix)
    attribute = _canonical_attribute(configured)
    allowed = ALLOWED_SPECIAL_USE[key]
    if attribute == "\\All" and not facts.gmail:
        allowed = tuple(a for a in allowed if a != "\\All")
    if not allowed:
        raise LayoutError(f"imap.{key} = {configured!r}: name the folder itself, not a special-use attribute")
    if attribute not in allowed:
        raise LayoutError(f"imap.{key} = {configured!r}: only {', '.join(allowed)} may be named by special use "
                          f"here")
    if attribute not in special:
        offered = ", ".join(f"{a} ({n})" for a, n in sorted(special.items())) or "none"
        raise LayoutError(f"imap.{key} = {configured!r}: the server marks no folder {attribute} "
                          f"(special-use folders it offers: {offered}); name the folder instead")
    return special[attribute]


def describe(layout: Layout, capabilities: frozenset[str]) -> str:
    """One line for ``helpdesk check``: what was detected and what the desk will do."""
    shown = [c for c in ("IDLE", "MOVE", "UIDPLUS", "NAMESPACE", "SPECIAL-USE", "X-GM-EXT-1") if c in capabilities]
    marking = {"move": "MOVE",
               "copy-expunge": "COPY + \\Deleted + UID EXPUNGE (no MOVE)",
               "copy-flag": "COPY + \\Deleted, never expunged by the desk (no MOVE, no UIDPLUS)"}[layout.marking]
    delimiter = "none (flat)" if layout.delimiter is None else f'"{layout.delimiter}"'
    special = " ".join(f"{a}={n}" for a, n in sorted(layout.special_use.items()))
    return (f"capabilities {' '.join(shown) or 'none of IDLE/MOVE/UIDPLUS'}; delimiter {delimiter}; "
            f'personal namespace "{layout.personal_prefix}"; folders watched "{layout.watched}", '
            f'processed "{layout.processed}", quarantine "{layout.quarantine}"'
            f"{'; special-use ' + special if special else ''}; marks handled mail by {marking}; "
            f"waits by {'IDLE' if layout.waiting == 'idle' else 'polling'}"
            f"{'; Gmail labels (All Mail keeps a copy of every mail)' if layout.gmail else ''}")
