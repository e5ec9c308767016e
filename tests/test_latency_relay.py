"""The benchmark's delay relay (bench/latency.py): a far server on loopback, bytes unchanged."""
from __future__ import annotations

import smtplib
import time

import pytest

from bench.latency import DelayRelay

pytestmark = pytest.mark.integration


def test_mail_through_the_relay_arrives_unchanged_and_each_round_trip_waits_the_delay_twice(smtp_sink):
    relay = DelayRelay(smtp_sink.host, smtp_sink.port, delay_ms=50).start()
    try:
        with smtplib.SMTP(smtp_sink.host, relay.port, timeout=10) as client:
            started = time.monotonic()
            code, _ = client.noop()
            round_trip = time.monotonic() - started
            lines = [b"%04d " % i + bytes(range(33, 127)) for i in range(2000)]  # some 200 KB
            body = b"Subject: far\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
            client.sendmail("desk@example.com", ["far@cust.example"], body)
    finally:
        relay.stop()
    assert code == 250
    assert round_trip >= 0.1, "held 50 ms on the way there and 50 ms on the way back"
    [received] = smtp_sink.messages()
    assert received.rcpt_tos == ["far@cust.example"]
    assert received.data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1].splitlines() == lines
