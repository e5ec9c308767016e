"""Reading ``Authentication-Results`` (RFC 8601): what did the receiving server verify?

Anyone can write an ``Authentication-Results`` header into a mail, so only
one header counts: the topmost one stamped with the receiving server's own
``authserv-id`` (``security.authserv_id``).  Mail servers add their header
on top of the ones already there, so the topmost header with our id is the
one our own server added; any copy of it further down came with the mail.
(The server should also strip foreign headers carrying its id; the README
says how.)

Tokenising is done by ``authres``, which honours RFC 8601 quoting and
comments: ``smtp.mailfrom="x;dkim=pass header.d=example.test;"@evil.test``
is one SPF property, not a DKIM pass.

Two questions are answered, with different strictness:

* ``staff_verdict``: may this mail act as a staff member?  Only when the
  header shows a DKIM pass for a signature of the sender's domain, or a
  DMARC pass for it, and no DKIM or DMARC failure of any kind.
* ``customer_verdict``: did the server *prove* the customer's address was
  forged?  Only then are their answers (confirm, rate, not fixed) held for a
  person; a mail with no verdict is treated as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import authres

# Results that say a check ran and the mail did not pass it.
FAILURES = frozenset({"fail", "permerror", "policy"})
_METHODS = ("dkim", "dmarc")


@dataclass(frozen=True)
class Verdict:
    status: str  # pass | fail | none
    detail: str  # what decided it, for the ticket's history and the supervisor


@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    domain: str  # the domain the result is about ("" when the header names none)


def trusted_results(headers: list[str], authserv_id: str) -> list[_Result] | None:
    """The DKIM and DMARC results of the topmost header with our authserv-id.

    None when there is no such header; ``[]`` when it holds no DKIM or DMARC
    result.  An unreadable header counts as absent: it proves nothing.
    """
    wanted = authserv_id.strip().lower()
    if not wanted:
        return None
    for header in headers:
        value = header.partition(":")[2] if header.lower().startswith("authentication-results:") else header
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(value)
        except Exception:  # noqa: BLE001 - authres raises several classes for malformed input
            if _first_token(value) == wanted:
                return None  # our own server's header, unreadable: no verdict at all
            continue
        if (parsed.authserv_id or "").lower() != wanted:
            continue
        found = []
        for result in parsed.results:
            method = (result.method or "").lower()
            if method in _METHODS:
                found.append(_Result(method, (result.result or "").lower(), _domain_of(method, result)))
        return found
    return None


def staff_verdict(sender: str, headers: list[str], authserv_id: str) -> Verdict:
    results = trusted_results(headers, authserv_id)
    if results is None:
        return Verdict("none", f"no Authentication-Results from {authserv_id or '(authserv_id not set)'}")
    failed = [r for r in results if r.result in FAILURES]
    if failed:
        return Verdict("fail", "; ".join(_describe(r) for r in failed))
    domain = _domain(sender)
    passed = [r for r in results if r.result == "pass" and aligned(r.domain, domain)]
    if passed:
        return Verdict("pass", "; ".join(_describe(r) for r in passed))
    return Verdict("none", f"no DKIM or DMARC pass for {domain}")


def customer_verdict(sender: str, headers: list[str], authserv_id: str) -> Verdict:
    results = trusted_results(headers, authserv_id)
    if results is None:
        return Verdict("none", "no verdict")
    domain = _domain(sender)
    # DMARC is the server's judgement on exactly this From domain: it decides when present.
    dmarc = [r for r in results if r.method == "dmarc" and (not r.domain or aligned(r.domain, domain))]
    if any(r.result in FAILURES for r in dmarc):
        return Verdict("fail", "; ".join(_describe(r) for r in dmarc if r.result in FAILURES))
    if any(r.result == "pass" for r in dmarc):
        return Verdict("pass", "dmarc=pass")
    dkim = [r for r in results if r.method == "dkim" and aligned(r.domain, domain)]
    if any(r.result == "pass" for r in dkim):
        return Verdict("pass", "dkim=pass")
    if any(r.result in FAILURES for r in dkim):
        return Verdict("fail", "; ".join(_describe(r) for r in dkim if r.result in FAILURES))
    return Verdict("none", "no verdict on the sender's domain")


def aligned(result_domain: str, sender_domain: str) -> bool:
    """DMARC's relaxed alignment: the same domain, or the sender's domain below it."""
    if not result_domain or "." not in result_domain:
        return False
    return sender_domain == result_domain or sender_domain.endswith("." + result_domain)


def _domain_of(method: str, result) -> str:
    props = {f"{(p.type or '').lower()}.{(p.name or '').lower()}": (p.value or "") for p in result.properties}
    if method == "dkim":
        value = props.get("header.d") or props.get("header.i", "")
    else:
        value = props.get("header.from", "")
    return _domain(value.strip().strip('"'))


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def _describe(result: _Result) -> str:
    return f"{result.method}={result.result}" + (f" ({result.domain})" if result.domain else "")


def _first_token(value: str) -> str:
    words = value.replace(";", " ").split()
    return words[0].lower() if words else ""
