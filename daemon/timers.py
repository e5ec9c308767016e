"""The timer runner: feedback reminders, "no rating" marks and SLA alerts.

Every due timer is remembered as an event on its ticket in the same commit
as the mail it queues, so a restart, a clock jump or days of downtime never
send a reminder or an alert twice: the question asked is "is there a due
timer without its event?", not "has an interval passed in memory?".
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from maildesk.daemon.config import Config
from maildesk.daemon.intake import apply_effects, context_for
from maildesk.storage.base import Store
from maildesk.templates import Renderer
from maildesk.workflow.procedure import Timers, due_timers
from maildesk.workflow.similar import note_closed

log = logging.getLogger("maildesk.timers")


class TimerRunner:
    def __init__(self, config: Config, store: Store, renderer: Renderer,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.clock = clock
        p = config.procedure
        self.timers = Timers(reminder_days=p.reminder_days, no_rating_days=p.no_rating_days,
                             first_response_hours=p.first_response_hours, resolution_hours=p.resolution_hours)
        self._open: set[int] | None = None  # open ticket numbers at the last run

    def run_due(self) -> int:
        """Apply every due timer; returns how many tickets changed."""
        now = self.clock()
        ctx = context_for(self.config, self.renderer, now)
        changed = 0
        open_now: set[int] = set()
        # Deciding needs only stages and events; messages are read for the few tickets with
        # something due (a reminder threads into the customer's conversation).
        for light in self.store.open_tickets(with_messages=False):
            open_now.add(light.number)
            if due_timers(light, ctx, self.timers) is None:
                continue
            ticket = self.store.get_ticket(light.number)
            effects = due_timers(ticket, ctx, self.timers)
            apply_effects(self.store, effects, now)
            changed += 1
            log.info("%s: %s", ticket.tag, ", ".join(e.kind for e in effects.ticket.events[len(ticket.events):]))
        if changed:
            self.store.commit()
        self._tell_case_index(open_now)
        return changed

    def _tell_case_index(self, open_now: set[int]) -> None:
        """Tickets closed or reopened since the last run join or leave the similar-case index."""
        if self._open is not None:
            moved = (self._open - open_now) | (open_now - self._open)
            note_closed(self.store, [t for t in (self.store.get_ticket(n) for n in sorted(moved)) if t])
        self._open = open_now
