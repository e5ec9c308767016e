"""Reading ``Authentication-Results`` (RFC 8601): did the receiving server verify the sender?

Only results stamped with the receiving server's own ``authserv-id`` count: a
sender can write any ``Authentication-Results`` header into their mail, but a
well-run receiving server removes ones carrying its own id before adding its
verdict.  A sender is authenticated when DKIM passed for a signature of their
domain (``header.d``) or DMARC passed for it (``header.from``).
"""
from __future__ import annotations

import re

_COMMENT = re.compile(r"\([^()]*\)")


def authenticated_domains(headers: list[str], authserv_id: str) -> set[str]:
    domains: set[str] = set()
    wanted = authserv_id.strip().lower()
    for header in headers:
        text = _COMMENT.sub(" ", header)
        parts = [p.strip() for p in text.split(";")]
        if not parts[0] or parts[0].split()[0].lower() != wanted:
            continue
        for resinfo in parts[1:]:
            tokens = resinfo.split()
            if not tokens or "=" not in tokens[0]:
                continue
            method, _, result = tokens[0].lower().partition("=")
            if result != "pass" or method not in ("dkim", "dmarc"):
                continue
            props = dict(t.lower().split("=", 1) for t in tokens[1:] if "=" in t)
            domain = props.get("header.d") if method == "dkim" else props.get("header.from")
            if domain:
                domains.add(domain.strip().strip('"').rpartition("@")[2])
    return domains


def is_authenticated(sender: str, headers: list[str], authserv_id: str) -> bool:
    domain = sender.rpartition("@")[2].lower()
    return domain in authenticated_domains(headers, authserv_id)
