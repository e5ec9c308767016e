"""Tickets as the command line shows them (the JSON contract of ``tickets list/show``)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from maildesk.model import Ticket


def _local(value: datetime | None, tz: ZoneInfo) -> str | None:
    return None if value is None else value.astimezone(tz).isoformat()


def ticket_summary(t: Ticket, tz: ZoneInfo) -> dict:
    return {
        "id": t.tag,
        "subject": t.subject,
        "customer": t.customer,
        "stage": t.stage,
        "assignee": t.assignee,
        "created_at": _local(t.created_at, tz),
        "updated_at": _local(t.updated_at, tz),
        "rating": t.rating,
        "priority": t.priority,
        "language": t.language,
    }


def ticket_detail(t: Ticket, tz: ZoneInfo) -> dict:
    detail = ticket_summary(t, tz)
    detail["customer_name"] = t.customer_name
    detail["linked_to"] = t.linked_to
    detail["summary"] = t.summary
    detail["lessons"] = t.lessons
    detail["rating_comment"] = t.rating_comment
    detail["messages"] = [
        {
            "direction": m.direction,
            "from": m.sender,
            "to": list(m.recipients),
            "date": _local(m.date, tz),
            "text": m.text,
            "internal": m.internal,
            "attachments": [a.filename for a in m.attachments],
            "message_id": m.message_id,
            "kind": m.kind,
            "notes": list(m.notes),
        }
        for m in t.messages
    ]
    detail["events"] = [
        {"at": _local(e.at, tz), "actor": e.actor, "kind": e.kind, "from_stage": e.from_stage,
         "to_stage": e.to_stage, "detail": e.detail}
        for e in t.events
    ]
    return detail
