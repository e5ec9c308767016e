"""The processed-key filter (storage/keyfilter.py): never "not there" for a key it was given."""
from __future__ import annotations

from maildesk.storage.keyfilter import KeyFilter


def test_every_added_key_is_reported_perhaps_there():
    keys = [f"<m{i}@cust.example>|sha256:{i:064x}" for i in range(20_000)] + ["", "回复：打印机", "\udcff"]
    found = KeyFilter.of(keys, capacity=len(keys))
    assert all(key in found for key in keys)


def test_keys_never_added_are_mostly_reported_certainly_absent():
    found = KeyFilter.of((f"old{i}" for i in range(10_000)), capacity=10_000, error_rate=0.01)
    false_positives = sum(f"new{i}" in found for i in range(10_000))
    assert false_positives < 300  # sized for 1%; three times that would mean the sizing is wrong


def test_an_empty_filter_has_nothing_and_a_filter_past_its_capacity_says_so():
    empty = KeyFilter(capacity=100)
    assert "anything" not in empty and not empty.full
    crowded = KeyFilter.of((str(i) for i in range(101)), capacity=100)
    assert crowded.full
