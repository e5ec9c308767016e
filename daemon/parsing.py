"""Where fetched mail is parsed: in the desk's own process, or ahead of time in a helper process.

``parse_mail`` (parsers/mime.py) is a pure function of a mail's bytes, and
the most expensive step of intake.  With a backlog, the intake runner
fetches the next batch as soon as one is committed and hands its bytes to a
helper process, which parses them while the desk sends the acknowledgements
of the batch before; on a 2-core machine the two run side by side.

Where a mail is parsed changes nothing but time: the helper only turns
bytes into ``InboundMail`` objects, writes nothing, and a batch it parsed
is used only if the same mails are still the next ones waiting.  Whatever
goes wrong in the helper (it died, it could not start) costs only the
speed: that batch is parsed in the desk's own process, as without a
helper, under the same poison-mail guard (daemon/intake.py).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from maildesk.model import InboundMail

# The parsers are imported where they are used, not with this module: the daemon's command
# line starts the helper before it imports the rest of the desk, so both import side by side.

log = logging.getLogger("maildesk.intake")


def _helper_starts() -> None:
    """In the helper, once: end with the desk's process however it ends (Linux), and load the parsers now."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the helper ends when it finds its work queue closed
    # Its work can wait (a batch ahead, and the desk takes back what it has not started); the desk's
    # and the mail servers' cannot: on a busy machine the helper gets what CPU they leave.
    os.nice(HELPER_NICENESS)
    import maildesk.parsers  # noqa: F401 - its import (compiled patterns) is most of a helper's start


def _ready() -> None:
    """Nothing: sent to make the helper start."""


def _parse_one(data: bytes, max_attachment_bytes: int) -> InboundMail:
    from maildesk.parsers import parse_mail

    return parse_mail(data, max_attachment_bytes=max_attachment_bytes)


def _parse_all(datas: Sequence[bytes | None], max_attachment_bytes: int) -> list[InboundMail | None]:
    return [None if data is None else _parse_one(data, max_attachment_bytes) for data in datas]


class ParsedBatch(Protocol):
    def mail(self, index: int) -> InboundMail | None:
        """The ``index``-th mail of the batch, parsed (None for a mail fetched without its bytes)."""

    def pending(self, index: int) -> Future | None:
        """What ``mail(index)`` would wait for now, or None when it would not wait."""


class BatchParser(Protocol):
    # Whether parsing the next batch early gains anything (it does when another process parses it).
    parses_ahead: bool

    def start(self) -> None:
        """Get ready now rather than at the first backlog (a daemon does, so that the first one finds it ready)."""

    def parse(self, datas: Sequence[bytes | None], max_attachment_bytes: int) -> ParsedBatch: ...
    def close(self) -> None: ...


class _Later:
    """Parsed in this process, one mail at a time, when intake asks for it."""

    def __init__(self, datas: Sequence[bytes | None], max_attachment_bytes: int) -> None:
        self._datas = datas
        self._max = max_attachment_bytes

    def mail(self, index: int) -> InboundMail | None:
        data = self._datas[index]
        return None if data is None else _parse_one(data, self._max)

    def pending(self, index: int) -> Future | None:
        return None


class InProcessParser:
    """Every mail parsed by the desk itself, just before it is handled."""

    parses_ahead = False

    def start(self) -> None:
        pass

    def parse(self, datas: Sequence[bytes | None], max_attachment_bytes: int) -> ParsedBatch:
        return _Later(datas, max_attachment_bytes)

    def close(self) -> None:
        pass


class _Ahead:
    """A batch being parsed by the helper process, a few mails per request.

    The helper takes the requests in order; whatever it has not started when
    the desk needs it, the desk takes back and parses itself.  So when the
    helper is the slower of the two (its core also serves the mail servers),
    the desk does not wait for it with nothing to do: the work is shared out
    without a tuning knob.
    """

    def __init__(self, owner: "HelperProcessParser", chunks: list[Future], datas: Sequence[bytes | None],
                 max_attachment_bytes: int) -> None:
        self._owner = owner
        self._chunks = chunks
        self._fallback = _Later(datas, max_attachment_bytes)
        self._results: dict[int, list[InboundMail | None] | None] = {}  # chunk -> mails; None: the desk's
        self._lost = False
        self.taken_back = 0  # requests the desk took back from the helper's queue and parsed itself

    def _chunk(self, index: int) -> list[InboundMail | None] | None:
        number = index // CHUNK
        if number not in self._results:
            future = self._chunks[number]
            if future.cancel():
                self._results[number] = None  # not started: the desk parses it
                self.taken_back += 1
            else:
                try:
                    self._results[number] = future.result()
                except Exception as exc:  # noqa: BLE001 - the helper died or broke: the desk parses itself
                    for other in self._chunks:
                        other.cancel()
                    if not self._lost:
                        self._lost = True
                        self._owner.lost(exc)  # once per batch, not once per request the helper held
                    self._results[number] = None
        return self._results[number]

    def mail(self, index: int) -> InboundMail | None:
        mails = self._chunk(index)
        if mails is not None:
            return mails[index % CHUNK]
        return self._fallback.mail(index)

    def pending(self, index: int) -> Future | None:
        number = index // CHUNK
        if number in self._results:
            return None
        future = self._chunks[number]
        # Started (or handed to the helper's queue) and not done: ``mail()`` would wait for it.
        return future if future.running() else None


# How much lower the helper's CPU priority is than the desk's (nice(2), 0-19).
HELPER_NICENESS = 10

# Mails per request to the helper: small enough that the desk takes back most of what the
# helper cannot get to in time, large enough that a request costs little.
CHUNK = 5


class HelperProcessParser:
    """Batches parsed by one helper process, while the desk goes on with other work."""

    parses_ahead = True

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: a forked helper would share the desk's open files and sockets, and
            # so hold the store's lock (or keep the PostgreSQL session holding the lease alive)
            # after a killed desk, delaying its restart or the standby's take-over.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_helper_starts)
        return self._pool

    def start(self) -> None:
        try:
            self._executor().submit(_ready)  # a pool starts its process with the first work it is given
        except Exception as exc:  # noqa: BLE001 - no helper: batches are parsed by the desk
            self.lost(exc)

    def parse(self, datas: Sequence[bytes | None], max_attachment_bytes: int) -> ParsedBatch:
        datas = list(datas)
        try:
            executor = self._executor()
            chunks = [executor.submit(_parse_all, datas[i:i + CHUNK], max_attachment_bytes)
                      for i in range(0, len(datas), CHUNK)]
        except Exception as exc:  # noqa: BLE001 - e.g. no processes left on the machine
            self.lost(exc)
            return _Later(datas, max_attachment_bytes)
        return _Ahead(self, chunks, datas, max_attachment_bytes)

    def lost(self, exc: BaseException) -> None:
        log.warning("the parsing helper process failed (%s: %s); this batch is parsed by the desk itself",
                    exc.__class__.__name__, exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def parser_for(imap) -> BatchParser:
    """The parser ``[imap] parse_ahead`` asks for."""
    return HelperProcessParser() if imap.parse_ahead else InProcessParser()
