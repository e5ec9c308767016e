"""Reading Authentication-Results (RFC 8601): whom the receiving server vouched for (no servers)."""
from __future__ import annotations

import pytest

from maildesk.parsers.auth import aligned, customer_verdict, staff_verdict

ID = "mx.example.com"
PASS = f"{ID}; dkim=pass header.d=example.com header.s=sel; dmarc=pass header.from=example.com"


@pytest.mark.parametrize("headers, status", [
    ([PASS], "pass"),
    ([f"Authentication-Results: {PASS}"], "pass"),  # with its field name, as some callers keep it
    ([f"{ID} 1; dkim=pass (2048-bit key) header.i=@example.com header.b=abc"], "pass"),  # version, header.i
    ([f"{ID}; dkim=pass header.d=mail.example.com"], "none"),  # signed by a subdomain: not the sender's
    ([f"{ID}; dmarc=pass header.from=example.com.evil.test"], "none"),
    ([f"{ID}; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"], "fail"),  # any failure wins
    ([f"{ID}; dkim=pass header.d=example.com; dkim=permerror header.d=other.test"], "fail"),
    # Only the topmost header with our id counts: the one our own server added.
    ([f"{ID}; dmarc=fail header.from=example.com", PASS], "fail"),
    ([f"{ID}; none", PASS], "none"),
    (["other.example; dkim=pass header.d=example.com", PASS], "pass"),
    (["other.example; dkim=pass header.d=example.com"], "none"),
    # RFC 8601 quoting and comments are honoured, not split on.
    ([f'{ID}; spf=pass smtp.mailfrom="x;dkim=pass header.d=example.com;"@evil.test'], "none"),
    ([f"{ID}; spf=fail (dkim=pass header.d=example.com) smtp.mailfrom=evil.test"], "none"),
    ([f"{ID} (dkim=pass header.d=example.com); spf=pass smtp.mailfrom=evil.test"], "none"),
    ([f"{ID}; dkim=pass header.d=example.com; ;;; garbage ="], "none"),  # unreadable: proves nothing
    ([], "none"),
])
def test_staff_verdict(headers, status):
    assert staff_verdict("alice@example.com", headers, ID).status == status


def test_staff_verdict_without_an_authserv_id_is_never_a_pass():
    assert staff_verdict("alice@example.com", [PASS], "").status == "none"


@pytest.mark.parametrize("headers, status", [
    ([f"{ID}; dkim=none; dmarc=fail header.from=cust.test"], "fail"),
    ([f"{ID}; dkim=fail header.d=cust.test"], "fail"),
    ([f"{ID}; dkim=fail header.d=esp.example; dkim=pass header.d=cust.test"], "pass"),
    ([f"{ID}; dkim=fail header.d=esp.example"], "none"),  # another domain's broken signature proves nothing
    ([f"{ID}; dmarc=pass header.from=cust.test; dkim=fail header.d=cust.test"], "pass"),  # DMARC decides
    ([f"{ID}; spf=fail smtp.mailfrom=cust.test"], "none"),
    (["evil.test; dmarc=fail header.from=cust.test"], "none"),
    ([], "none"),
])
def test_customer_verdict(headers, status):
    assert customer_verdict("wang@cust.test", headers, ID).status == status


def test_relaxed_alignment():
    assert aligned("example.com", "example.com") and aligned("example.com", "mail.example.com")
    assert not aligned("mail.example.com", "example.com") and not aligned("com", "example.com")
    assert not aligned("", "example.com") and not aligned("ample.com", "example.com")
