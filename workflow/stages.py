"""The department's six-step procedure as a transition table.  Pure.

    received → diagnosing → proposed → executing → feedback → closed

Forward skips are allowed (a quick fix may go received → feedback).  Going
back happens only for a reason: the customer refuses a proposal
(proposed → diagnosing), says the problem is not solved (feedback →
executing), writes to a closed ticket within the reopen window, or a
technician says ``#reopen``.
"""
from __future__ import annotations

from maildesk.model import STAGES

ORDER = {stage: i for i, stage in enumerate(STAGES)}

# command -> (stage it leads to, stages it may be given in)
MOVES: dict[str, tuple[str, frozenset[str]]] = {
    "diagnose": ("diagnosing", frozenset({"received"})),
    "propose": ("proposed", frozenset({"received", "diagnosing", "proposed"})),  # a revised proposal is fine
    "execute": ("executing", frozenset({"received", "diagnosing", "proposed"})),
    "resolve": ("feedback", frozenset({"received", "diagnosing", "proposed", "executing"})),
    "close": ("closed", frozenset({"received", "diagnosing", "proposed", "executing", "feedback"})),
    "reopen": ("diagnosing", frozenset({"feedback", "closed"})),
}
# Commands that change no stage, and where they make sense.
OPEN = frozenset(STAGES) - {"closed"}
OTHERS: dict[str, frozenset[str]] = {
    "assign": OPEN,
    "priority": OPEN,
    "note": frozenset(STAGES),
    "plan": frozenset(STAGES),
    "commend": frozenset(STAGES),
    "warn": frozenset(STAGES),
    "risk": frozenset(STAGES),  # a risk can show up at any stage, even after closing
}

# Customer answers: (stage, answer) -> new stage
CUSTOMER_MOVES = {
    ("proposed", "confirm"): "executing",
    ("proposed", "reject"): "diagnosing",
    ("feedback", "not-solved"): "executing",
}


def target_of(command: str) -> str | None:
    move = MOVES.get(command)
    return move[0] if move else None


def is_allowed(command: str, stage: str) -> bool:
    if command in MOVES:
        return stage in MOVES[command][1]
    return stage in OTHERS.get(command, frozenset())


def allowed_now(stage: str, *, supervisor: bool = False) -> list[str]:
    """Commands that may be given at ``stage``, in procedure order."""
    names = [c for c in MOVES if is_allowed(c, stage)]
    names += [c for c in OTHERS if is_allowed(c, stage) and (supervisor or c not in ("plan", "commend", "warn"))]
    return names
