"""Report periods (months, quarters) and the desk's origin, for scheduled mail.

Every scheduled mail (weekly report, appraisal, monthly summary) asks the
same question: "is there a completed period, due now, with no sent record?"
A period that ended before the desk existed is never owed: a new desk must
not open with a late report for the week before it was installed.  The
origin is the earlier of the desk's first start and its first ticket (a
store brought over from an older version keeps its history reported).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from maildesk.model import Ticket
from maildesk.storage.codec import dt_in

ORIGIN_JOB = "desk-origin"
# Ticket numbers start at 1; a few may have been allocated to mails that never became tickets.
_FIRST_NUMBERS = range(1, 51)


class JobStore(Protocol):
    def job_run(self, name: str, period: str) -> dict | None: ...
    def record_job_run(self, name: str, period: str, *, at: datetime, late: bool, detail: str = "") -> None: ...
    def get_ticket(self, number: int) -> Ticket | None: ...
    def commit(self) -> None: ...


def desk_origin(store: JobStore, now: datetime) -> datetime:
    """When this desk began: recorded at its first scheduled run, read back ever after."""
    found = store.job_run(ORIGIN_JOB, "first")
    if found is not None:
        return dt_in(found["at"])
    first = next((t for t in (store.get_ticket(n) for n in _FIRST_NUMBERS) if t is not None), None)
    origin = min(now, first.created_at) if first is not None else now
    store.record_job_run(ORIGIN_JOB, "first", at=origin, late=False,
                         detail="first ticket" if first is not None and origin < now else "first start")
    store.commit()
    return origin


@dataclass(frozen=True)
class Period:
    """A calendar month or quarter in a time zone; labels "2026-11" and "2026-Q4"."""

    kind: str  # monthly | quarterly
    year: int
    index: int  # month 1-12, or quarter 1-4
    tz: ZoneInfo

    @classmethod
    def containing(cls, kind: str, moment: datetime, tz: ZoneInfo) -> "Period":
        local = moment.astimezone(tz)
        index = local.month if kind == "monthly" else (local.month - 1) // 3 + 1
        return cls(kind, local.year, index, tz)

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo) -> "Period":
        m = re.fullmatch(r"(\d{4})-(?:(\d{1,2})|[Qq]([1-4]))", text.strip())
        if not m or (m.group(2) and not 1 <= int(m.group(2)) <= 12):
            raise ValueError(f"period {text!r} is not of the form YYYY-MM or YYYY-Qn")
        if m.group(2):
            return cls("monthly", int(m.group(1)), int(m.group(2)), tz)
        return cls("quarterly", int(m.group(1)), int(m.group(3)), tz)

    @property
    def months(self) -> int:
        return 1 if self.kind == "monthly" else 3

    @property
    def label(self) -> str:
        return f"{self.year}-{self.index:02d}" if self.kind == "monthly" else f"{self.year}-Q{self.index}"

    @property
    def first_month(self) -> int:
        return self.index if self.kind == "monthly" else (self.index - 1) * 3 + 1

    @property
    def start(self) -> datetime:
        return datetime.combine(date(self.year, self.first_month, 1), time(0), self.tz)

    @property
    def end(self) -> datetime:
        month = self.first_month + self.months
        year = self.year + (month - 1) // 12
        return datetime.combine(date(year, (month - 1) % 12 + 1, 1), time(0), self.tz)

    def previous(self) -> "Period":
        return Period.containing(self.kind, self.start - timedelta(days=1), self.tz)

    def next(self) -> "Period":
        return Period.containing(self.kind, self.end + timedelta(days=1), self.tz)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def first_weekday_on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def first_working_day(day: date) -> date:
    """Monday to Friday; a month starting on a weekend is summed up on the Monday after."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day
