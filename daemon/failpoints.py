"""Fault injection for the crash tests: make a chosen mail kill the daemon outright.

Set ``MAILDESK_FAILPOINT=kill-on-subject:<text>`` and the process SIGKILLs
itself while handling any mail whose subject contains ``<text>`` — the
hardest crash there is (no exception handler, no ``finally``), which is what
the poison-mail guard must survive.  Unset (always, in production) it costs
one comparison per mail.
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("MAILDESK_FAILPOINT", "")
_KIND, _, _ARG = _SPEC.partition(":")


def on_mail(subject: str) -> None:
    if _KIND == "kill-on-subject" and _ARG and _ARG in subject:
        os.kill(os.getpid(), signal.SIGKILL)
