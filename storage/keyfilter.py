"""A Bloom filter over strings: "certainly not there" or "perhaps there".

The PostgreSQL store asks it before the server whether a mail's key is
processed: nearly every mail is new, and a round trip per mail was a fifth of
the intake's time (more on a loaded machine, where every round trip waits
for the server process to be scheduled).  Only "certainly not there" is
trusted; "perhaps there" goes to the server, so a false positive costs one
round trip and a false negative cannot happen for a key that was added.

Pure; no I/O.  Memory is about 1.2 bytes per key of capacity at 1% false
positives, whatever the keys' length.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


class KeyFilter:
    def __init__(self, capacity: int, error_rate: float = 0.01) -> None:
        self.capacity = max(1, capacity)
        self.bits = max(64, math.ceil(-self.capacity * math.log(error_rate) / math.log(2) ** 2))
        self.hashes = max(1, round(self.bits / self.capacity * math.log(2)))
        self._array = bytearray((self.bits + 7) // 8)
        self.count = 0  # keys added, removed ones included: the filter cannot forget

    @classmethod
    def of(cls, keys: Iterable[str], capacity: int, error_rate: float = 0.01) -> "KeyFilter":
        found = cls(capacity, error_rate)
        for key in keys:
            found.add(key)
        return found

    def _positions(self, key: str) -> list[int]:
        # Two 64-bit halves of one digest give every position (Kirsch and Mitzenmacher).
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        return [(h1 + i * h2) % self.bits for i in range(self.hashes)]

    def add(self, key: str) -> None:
        for p in self._positions(key):
            self._array[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, key: str) -> bool:
        return all(self._array[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    @property
    def full(self) -> bool:
        """More keys added than it was sized for: false positives grow, build a bigger one."""
        return self.count > self.capacity
