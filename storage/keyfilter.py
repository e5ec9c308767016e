"""The processed-key filter: "certainly not there" or "perhaps there".

The PostgreSQL store asks it before the server whether a mail's key is
processed: nearly every mail is new, and a round trip per mail was a fifth of
the intake's time (more on a loaded machine, where every round trip waits
for the server process to be scheduled).  Only "certainly not there" is
trusted; "perhaps there" goes to the server, so a false positive costs one
round trip and a false negative cannot happen for a key that was added.

The filter is rbloom's Bloom filter, hashing with Python's own ``hash``:
salted per process, which is fine for a filter that lives in one process and
is never saved.  Memory is about 1.2 bytes per key of capacity at 1% false
positives, whatever the keys' length.  Pure; no I/O.
"""
from __future__ import annotations

from collections.abc import Iterable

from rbloom import Bloom


class KeyFilter:
    """A Bloom filter sized for ``capacity`` keys, which knows when it was given more."""

    def __init__(self, capacity: int, error_rate: float = 0.01) -> None:
        self.capacity = max(1, capacity)
        self._bloom = Bloom(self.capacity, error_rate)
        self.count = 0  # keys added, removed ones included: the filter cannot forget

    @classmethod
    def of(cls, keys: Iterable[str], capacity: int, error_rate: float = 0.01) -> "KeyFilter":
        found = cls(capacity, error_rate)
        for key in keys:
            found.add(key)
        return found

    def add(self, key: str) -> None:
        self._bloom.add(key)
        self.count += 1

    def __contains__(self, key: str) -> bool:
        return key in self._bloom

    @property
    def full(self) -> bool:
        """More keys added than it was sized for: false positives grow, build a bigger one."""
        return self.count > self.capacity
