"""The intake runner: a batch of fetched mail -> store -> marked processed.

The order of durable steps is the whole point of this module:

1. record one handling attempt for every mail of the batch, commit;
2. parse, route and apply each mail in memory (the store sees the effects
   of earlier mails of the same batch);
3. commit the batch: tickets, outbox entries and processed keys together;
4. only then move the mails out of the inbox.

A crash before 3 leaves the mails in the inbox with an attempt recorded: they
are handled again, each alone, and after ``MAX_ATTEMPTS`` a mail that keeps
killing the daemon is quarantined instead of stopping the desk forever.  A
crash between 3 and 4 re-reads mails whose key is already processed: they
are only moved.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from functools import lru_cache
from datetime import datetime, timezone

from maildesk.daemon import failpoints
from maildesk.daemon.config import Config
from maildesk.daemon.mailbox import Fetched, Mailbox
from maildesk.daemon.parsing import BatchParser, InProcessParser, ParsedBatch
from maildesk.model import Address, InboundMail, OutboundMail
from maildesk.storage.store import TicketStore
from maildesk.templates import Renderer
from maildesk.parsers.commands import Vocabulary
from maildesk.workflow.apply import decide, handle
from maildesk.workflow.digest import PERIOD, DigestEntry, digest_id, has_room, new_digest, slot_of, with_entry
from maildesk.workflow.intake import DeskContext, Effects, ack_window_start
from maildesk.workflow.route import Directory

log = logging.getLogger("maildesk.intake")

MAX_ATTEMPTS = 3
# The team's new-ticket notifications of the last 10 minutes, counted like a sender's acknowledgements
# (same table, same pruning); the name has no "@", so no sender can share it.
TEAM_NOTICES = "desk:new-ticket-notices"


@dataclass(frozen=True)
class _NextBatch:
    """A batch fetched, and handed to the parser, before the desk asked for it."""

    session: int
    uids: list[int]
    fetched: list[Fetched]
    parsed: ParsedBatch


# Yielded by a batch whose next piece must not run inside the sender's round (see _batch).
OUTSIDE_ROUND = object()


@dataclass
class BatchResult:
    handled: int = 0
    moved: int = 0
    quarantined: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class BatchInProgress:
    """A batch being handled a piece at a time, while the desk waits for the SMTP server.

    ``step()`` does one piece (fetch, one mail, the commit and the move) and
    never raises: a failure stops the stepping and is raised by ``finish()``,
    which does whatever is left.  So an IMAP or store error in the middle of
    the sender's round cannot be mistaken for a failure of the mail being
    sent, and it reaches the main loop just as it would without the overlap.
    Suspects (mails in flight when the desk last died) are handled by
    ``finish()`` only, after the round.
    """

    def __init__(self, steps: Iterator[Future | object | None], result: BatchResult) -> None:
        self._steps = steps
        self._result = result
        self._error: Exception | None = None
        self._done = False
        self._held = False

    def step(self) -> None:
        if self._done or self._held:
            return
        try:
            # A future yielded here is not waited for: the next step asks again.
            if next(self._steps) is OUTSIDE_ROUND:
                self._held = True  # the rest waits for finish()
        except StopIteration:
            self._done = True
        except Exception as exc:  # noqa: BLE001 - kept for finish(), which runs outside the round
            self._error, self._done = exc, True

    def finish(self) -> BatchResult:
        if self._error is not None:
            raise self._error
        if not self._done:
            for pending in self._steps:
                if isinstance(pending, Future):
                    wait([pending])
            self._done = True
        return self._result


@lru_cache(maxsize=8)
def _context_template(config: Config, renderer: Renderer) -> DeskContext:
    # Everything but the time is fixed for the life of a config: built once, not per mail.
    return DeskContext(
        directory=directory_from(config), desk=Address(config.smtp.from_address, config.smtp.from_name),
        renderer=renderer, now=datetime.min,
        ack_limit_per_hour=config.tickets.ack_limit_per_hour,
        notify_unassigned=config.tickets.notify_unassigned,
        staff_language=config.team_language,
        max_attachment_bytes=config.tickets.max_attachment_bytes,
        vocabulary=Vocabulary.build(dict(config.procedure.commands)),
        reopen_days=config.procedure.reopen_days,
        require_authenticated_staff=config.procedure.require_authenticated_staff,
        authserv_id=config.procedure.authserv_id,
        notify_digest_after=config.tickets.notify_digest_after,
    )


def context_for(config: Config, renderer: Renderer, now: datetime) -> DeskContext:
    return replace(_context_template(config, renderer), now=now)


def apply_effects(store: TicketStore, effects: Effects, now: datetime,
                  in_flight: Collection[str] = frozenset()) -> None:
    """Write what a mail (or a timer) caused into the store, in memory until the commit.

    ``in_flight``: ids of outbox entries the sender is sending right now; they are not changed.
    """
    for blob in effects.blobs:
        store.attachments.put(blob)
    if effects.ticket is not None:
        store.save_ticket(effects.ticket)
    for out in effects.outbound:
        store.enqueue(out)
    for out in effects.outbox_updates:
        store.update_outbound(out)
    for item in effects.plans:
        store.add_plan(item)
    for record in effects.records:
        store.add_staff_record(record)
    if effects.acked_sender:
        store.record_ack(effects.acked_sender, now)
    if effects.team_noticed:
        store.record_ack(TEAM_NOTICES, now, keep=PERIOD)
    for entry in effects.digest:
        add_to_digest(store, entry, now, in_flight)


def team_notices_since(store: TicketStore, now: datetime) -> int:
    return store.acks_since(TEAM_NOTICES, now - PERIOD)


def add_to_digest(store: TicketStore, entry: DigestEntry, now: datetime,
                  in_flight: Collection[str] = frozenset()) -> None:
    """Append a folded ticket to its recipients' open digest, or open one.

    A digest is an outbox entry, pending until its time, under an id made of
    the recipients and a 10-minute slot, so the open one is found without an
    index: it can only be in this slot, the one before or the one after.  A
    new digest goes out at once unless the recipients got one less than 10
    minutes ago; then 10 minutes after that one.  A digest the sender is sending right
    now counts as sent: what it holds is on the wire already.  A full one
    (``MAX_TEXT_CHARS``) is continued by another, due at the same time.
    """
    slot = slot_of(now)
    found = {}
    for k in (slot, slot - 1, slot + 1):  # in a flood the first one looked at is the open one
        part, open_one = _last_part(store, entry.recipients, k)
        found[k] = open_one
        if open_one is not None and open_one.status == "pending" and open_one.id not in in_flight:
            if has_room(open_one, entry):
                store.update_outbound(with_entry(open_one, entry))
            else:  # full: the rest of the period's list follows at the same time
                store.enqueue(new_digest(entry, mail_id=digest_id(entry.recipients, k, part + 1),
                                         due=open_one.next_attempt_at or now))
            return
    due = now
    for last in (found[slot - 1], found[slot]):
        if last is not None:
            due = max(due, (last.sent_at or last.next_attempt_at or last.created_at) + PERIOD)
    slot = slot_of(due)
    while store.outbound(digest_id(entry.recipients, slot)) is not None:  # only if the clock went back
        slot += 1
    store.enqueue(new_digest(entry, mail_id=digest_id(entry.recipients, slot), due=due))


def _last_part(store: TicketStore, recipients: tuple[str, ...], slot: int) -> tuple[int, OutboundMail | None]:
    """The slot's digest, or its last continuation, with its part number."""
    part, found = 0, store.outbound(digest_id(recipients, slot))
    while found is not None and (following := store.outbound(digest_id(recipients, slot, part + 1))) is not None:
        part, found = part + 1, following
    return part, found


def directory_from(config: Config) -> Directory:
    return Directory(
        support_address=config.support_address,
        prefix=config.tickets.prefix,
        technicians=frozenset(t.email for t in config.team.technicians),
        supervisor=config.team.supervisor,
        leadership=frozenset(config.team.leadership),
        nda_signed=frozenset(t.email for t in config.team.technicians if t.nda_signed),
        names=tuple((t.email, t.name) for t in config.team.technicians),
        internal_domains=frozenset(config.team.internal_domains),
    )


class IntakeRunner:
    def __init__(self, config: Config, store: TicketStore, mailbox: Mailbox, renderer: Renderer,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), *,
                 parser: BatchParser | None = None,
                 outbox_in_flight: Callable[[], Collection[str]] = frozenset) -> None:
        self.config = config
        # The outbox entries being sent while this runner works (see BatchInProgress).
        self.outbox_in_flight = outbox_in_flight
        self.store = store
        self.mailbox = mailbox
        self.renderer = renderer
        self.clock = clock
        self.parser = parser if parser is not None else InProcessParser()
        self.directory = directory_from(config)
        self.desk = Address(config.smtp.from_address, config.smtp.from_name)
        # Per mail only the time changes (context_for would hash the whole config each time).
        self._context = _context_template(config, renderer)
        self._next: _NextBatch | None = None

    def run_batch(self) -> BatchResult:
        """Handle up to one batch of waiting mail; returns what happened."""
        return self.begin_batch().finish()

    def begin_batch(self) -> "BatchInProgress":
        """The next batch, handled piece by piece by ``step()`` (in the sender's waits) and
        completed by ``finish()``.  Nothing happens until the first step."""
        result = BatchResult()
        return BatchInProgress(self._batch(result), result)

    def _batch(self, result: BatchResult) -> Iterator[Future | object | None]:
        """The work of one batch, suspended between mails: each ``yield`` is a point where the
        store holds only whole mails' effects, so a commit made meanwhile (the sender's) commits
        nothing half done.  A yielded future is what the next piece waits for."""
        waiting = self.mailbox.waiting_uids()
        size = self.config.imap.batch_size
        uids = waiting[:size]
        ahead, self._next = self._next, None
        if not uids:
            return
        if ahead is not None and (ahead.session, ahead.uids) == (self.mailbox.sessions, uids):
            fetched, parsed = ahead.fetched, ahead.parsed
        else:
            fetched, parsed = self._fetch(uids)
        if not fetched:
            return  # gone between the search and the fetch (another client, or another desk, moved them)
        following = waiting[size:2 * size]
        if self.parser.parses_ahead and following:
            # A backlog: the batch after this one is parsed elsewhere while the desk handles this
            # one and sends its mail.  Used only if the same mails are still the next ones waiting.
            self._next = _NextBatch(self.mailbox.sessions, following, *self._fetch(following))
        hashes = {f.uid: _raw_key(f) for f in fetched}
        mails = {f.uid: (parsed, i) for i, f in enumerate(fetched)}
        # Mails that were in flight when the daemon last died are handled one
        # at a time, so a poison mail cannot drag its batch neighbours to quarantine.
        suspects = [f for f in fetched if self.store.attempts(hashes[f.uid]) > 0]
        groups = [[f] for f in suspects] if suspects else [fetched]
        if suspects:
            # A death while a suspect is handled alone counts against it: not while the sender
            # works too, or a death the sending caused would be blamed on an innocent mail.
            yield OUTSIDE_ROUND
        for group in groups:
            yield from self._run_group(group, hashes, mails, result)

    def _fetch(self, uids: list[int]) -> tuple[list[Fetched], ParsedBatch]:
        fetched = self.mailbox.fetch(uids, self.config.tickets.max_message_bytes)
        return fetched, self.parser.parse([f.data for f in fetched], self.config.tickets.max_attachment_bytes)

    def _run_group(self, group: list[Fetched], hashes: dict[int, str],
                   mails: dict[int, tuple[ParsedBatch, int]], result: BatchResult) -> Iterator[Future | None]:
        # The attempt marks the group as in flight until its commit: a death in between counts
        # against its mails.  So the wait for the parse comes first, and a suspect (handled alone)
        # never runs inside a sending round (_batch yields OUTSIDE_ROUND for it).
        yield None
        first, index = mails[group[0].uid]
        while (parsing := first.pending(index)) is not None:
            yield parsing
        to_processed: list[int] = []
        to_quarantine: list[int] = []
        poisoned: list[Fetched] = []
        for f in group:
            if self.store.attempts(hashes[f.uid]) >= MAX_ATTEMPTS:
                poisoned.append(f)
            else:
                self.store.record_attempt(hashes[f.uid])
        self.store.commit()

        for f in group:
            batch, index = mails[f.uid]
            while (parsing := batch.pending(index)) is not None:
                yield parsing  # the helper is parsing this mail right now
            started = time.perf_counter()
            if f in poisoned:
                outcome = self._quarantine(f, hashes[f.uid],
                                           f"handling it stopped the daemon {MAX_ATTEMPTS} times")
            elif f.data is None:
                outcome = self._quarantine(f, hashes[f.uid],
                                           f"message of {f.size} bytes is larger than the limit of "
                                           f"{self.config.tickets.max_message_bytes} bytes")
            else:
                outcome = self._handle_one(f, hashes[f.uid], *mails[f.uid])
            (to_quarantine if outcome == "quarantined" else to_processed).append(f.uid)
            result.handled += 1
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            log.debug("uid %s handled in %.1f ms", f.uid, (time.perf_counter() - started) * 1000)
            yield None

        self.store.commit()
        # The effects are durable: now, and only now, the mails may leave the inbox.  The server
        # moves them while the desk goes on sending; the batch is done when they have left.
        moving = self.mailbox.move_soon([(to_processed, self.config.imap.processed_folder),
                                         (to_quarantine, self.config.imap.quarantine_folder)])
        while not moving.done():
            yield moving
        moving.result()  # an IMAP error is the batch's, as it was when the desk waited for the move
        result.moved += len(to_processed)
        result.quarantined += len(to_quarantine)

    def _processed_under_old_key(self, mail):
        """A mail whose effects were committed under the key of earlier versions (its bare
        Message-ID) but which had not yet left the inbox when the desk was upgraded.  Keys of
        that shape are never written any more and are pruned with the rest after 30 days, so
        this only bridges the mails in flight at the upgrade."""
        if not mail.message_id or "|" not in mail.key:
            return None
        return self.store.processed(mail.message_id[1:-1])

    def _handle_one(self, fetched: Fetched, raw_key: str, parsed: ParsedBatch, index: int) -> str:
        started = time.perf_counter()
        mail = parsed.mail(index)
        failpoints.on_mail(mail.subject)
        done = self.store.processed(mail.key) or self._processed_under_old_key(mail)
        if done is not None:
            self.store.clear_attempts(raw_key)
            log.info("mail %s already handled (%s %s); moving it out of the inbox", mail.key,
                     done.outcome, done.ticket or "")
            return "duplicate" if done.outcome != "quarantined" else "quarantined"
        try:
            effects = self._effects_for(mail)
        except Exception as exc:  # noqa: BLE001 - one bad mail must not stop the desk
            log.error("mail %s could not be handled: %s", mail.key, exc, exc_info=True)
            return self._quarantine(fetched, raw_key, f"internal error: {exc.__class__.__name__}: {exc}",
                                    key=mail.key)
        now = self.clock()
        self._apply(effects, mail, now)
        self.store.clear_attempts(raw_key)
        outcome = "quarantined" if effects.outcome == "quarantined" else effects.outcome
        # One line per mail, key=value, for grep and log shippers alike.
        log.info("mail message_id=%s from=%s outcome=%s ticket=%s ms=%.1f%s", mail.message_id or mail.key,
                 mail.sender.email if mail.sender else "-", outcome,
                 effects.ticket.tag if effects.ticket else "-", (time.perf_counter() - started) * 1000,
                 f' reason="{effects.reason}"' if effects.reason else "")
        return outcome

    def _effects_for(self, mail: InboundMail) -> Effects:
        now = self.clock()
        ctx = replace(self._context, now=now)
        route = decide(mail, self.store, ctx)
        if route.kind == "new" or (route.kind == "forged" and route.ticket is None):
            number = self.store.allocate_ticket_number()
            acks = self.store.acks_since(mail.sender.email, ack_window_start(now))
            if ctx.notify_digest_after:
                ctx = replace(ctx, team_notices_recent=team_notices_since(self.store, now))
            return handle(mail, route, ctx, number=number, tag=self.store.format_tag(number),
                          acks_last_hour=acks)
        return handle(mail, route, ctx)

    def _apply(self, effects: Effects, mail: InboundMail, now: datetime) -> None:
        apply_effects(self.store, effects, now, self.outbox_in_flight())
        self.store.record_processed(mail.key, effects.outcome,
                                    ticket=effects.ticket.tag if effects.ticket else None,
                                    reason=effects.reason, at=now)

    def _quarantine(self, fetched: Fetched, raw_key: str, reason: str, *, key: str | None = None) -> str:
        self.store.record_processed(key or raw_key, "quarantined", ticket=None, reason=reason, at=self.clock())
        self.store.clear_attempts(raw_key)
        log.warning('mail message_id=%s uid=%s outcome=quarantined reason="%s"', key or raw_key, fetched.uid, reason)
        return "quarantined"


def _raw_key(fetched: Fetched) -> str:
    if fetched.data is None:
        return f"uid-size:{fetched.uid}:{fetched.size}"
    return "sha256:" + hashlib.sha256(fetched.data).hexdigest()
