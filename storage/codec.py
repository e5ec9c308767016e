"""Documents <-> typed objects.  Times are stored as UTC ISO-8601 strings."""
from __future__ import annotations

from datetime import datetime, timezone

from maildesk.model import (Address, Event, Message, OutboundMail, OutboundPart, PlanItem, StaffRecord,
                            StoredAttachment, Ticket)


def dt_out(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat()


def dt_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def ticket_to_doc(t: Ticket) -> dict:
    return {
        "number": t.number,
        "tag": t.tag,
        "subject": t.subject,
        "customer": t.customer,
        "customer_name": t.customer_name,
        "stage": t.stage,
        "language": t.language,
        "created_at": dt_out(t.created_at),
        "updated_at": dt_out(t.updated_at),
        "assignee": t.assignee,
        "rating": t.rating,
        "priority": t.priority,
        "rating_comment": t.rating_comment,
        "summary": t.summary,
        "lessons": t.lessons,
        "linked_to": t.linked_to,
        "message_ids": list(t.message_ids),
        "messages": [message_to_doc(m) for m in t.messages],
        "events": [event_to_doc(e) for e in t.events],
    }


def ticket_from_doc(d: dict, *, with_messages: bool = True) -> Ticket:
    return Ticket(
        number=d["number"],
        tag=d["tag"],
        subject=d["subject"],
        customer=d["customer"],
        customer_name=d.get("customer_name", ""),
        stage=d["stage"],
        language=d.get("language", "en"),
        created_at=dt_in(d["created_at"]),
        updated_at=dt_in(d["updated_at"]),
        assignee=d.get("assignee"),
        rating=d.get("rating"),
        priority=d.get("priority", "normal"),
        rating_comment=d.get("rating_comment", ""),
        summary=d.get("summary", ""),
        lessons=d.get("lessons", ""),
        linked_to=d.get("linked_to"),
        message_ids=list(d.get("message_ids", [])),
        messages=[message_from_doc(m) for m in d.get("messages", [])] if with_messages else [],
        events=[event_from_doc(e) for e in d.get("events", [])],
    )


def message_to_doc(m: Message) -> dict:
    return {
        "direction": m.direction,
        "from": m.sender,
        "to": list(m.recipients),
        "date": dt_out(m.date),
        "text": m.text,
        "message_id": m.message_id,
        "internal": m.internal,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in m.attachments
        ],
        "notes": list(m.notes),
        "kind": m.kind,
    }


def message_from_doc(d: dict) -> Message:
    return Message(
        direction=d["direction"],
        sender=d["from"],
        recipients=list(d.get("to", [])),
        date=dt_in(d["date"]),
        text=d.get("text", ""),
        message_id=d.get("message_id"),
        internal=d.get("internal", False),
        attachments=[StoredAttachment(**a) for a in d.get("attachments", [])],
        notes=list(d.get("notes", [])),
        kind=d.get("kind", ""),
    )


def event_to_doc(e: Event) -> dict:
    return {"at": dt_out(e.at), "actor": e.actor, "kind": e.kind, "from_stage": e.from_stage,
            "to_stage": e.to_stage, "detail": e.detail}


def event_from_doc(d: dict) -> Event:
    return Event(at=dt_in(d["at"]), actor=d["actor"], kind=d["kind"], from_stage=d.get("from_stage"),
                 to_stage=d.get("to_stage"), detail=d.get("detail", ""))


def outbound_to_doc(o: OutboundMail) -> dict:
    return {
        "id": o.id,
        "message_id": o.message_id,
        "kind": o.kind,
        "sender": [o.sender.email, o.sender.name],
        "recipients": list(o.recipients),
        "subject": o.subject,
        "text": o.text,
        "created_at": dt_out(o.created_at),
        "ticket": o.ticket,
        "html": o.html,
        "to_header": [[a.email, a.name] for a in o.to_header],
        "reply_to": o.reply_to,
        "in_reply_to": o.in_reply_to,
        "references": list(o.references),
        "language": o.language,
        "auto_submitted": o.auto_submitted,
        "status": o.status,
        "attempts": o.attempts,
        "next_attempt_at": dt_out(o.next_attempt_at),
        "last_error": o.last_error,
        "sent_at": dt_out(o.sent_at),
        "parts": [[p.filename, p.content_type, p.sha256, p.content_id, p.description] for p in o.parts],
    }


def outbound_from_doc(d: dict) -> OutboundMail:
    return OutboundMail(
        id=d["id"],
        message_id=d["message_id"],
        kind=d["kind"],
        sender=Address(*d["sender"]),
        recipients=list(d["recipients"]),
        subject=d["subject"],
        text=d["text"],
        created_at=dt_in(d["created_at"]),
        ticket=d.get("ticket"),
        html=d.get("html"),
        to_header=[Address(*a) for a in d.get("to_header", [])],
        reply_to=d.get("reply_to"),
        in_reply_to=d.get("in_reply_to"),
        references=list(d.get("references", [])),
        language=d.get("language", "en"),
        auto_submitted=d.get("auto_submitted", "auto-generated"),
        status=d.get("status", "pending"),
        attempts=d.get("attempts", 0),
        next_attempt_at=dt_in(d.get("next_attempt_at")),
        last_error=d.get("last_error", ""),
        sent_at=dt_in(d.get("sent_at")),
        parts=[OutboundPart(*p) for p in d.get("parts", [])],
    )


def plan_to_doc(p: PlanItem) -> dict:
    return {"at": dt_out(p.at), "author": p.author, "text": p.text, "ticket": p.ticket}


def plan_from_doc(d: dict) -> PlanItem:
    return PlanItem(at=dt_in(d["at"]), author=d["author"], text=d["text"], ticket=d.get("ticket"))


def record_to_doc(r: StaffRecord) -> dict:
    return {"at": dt_out(r.at), "author": r.author, "kind": r.kind, "technician": r.technician,
            "reason": r.reason, "ticket": r.ticket, "level": r.level, "period": r.period,
            "scores": [list(s) for s in r.scores]}


def record_from_doc(d: dict) -> StaffRecord:
    # Records written before levels and appraisals existed have none of the last three keys.
    return StaffRecord(at=dt_in(d["at"]), author=d["author"], kind=d["kind"], technician=d["technician"],
                       reason=d["reason"], ticket=d.get("ticket"), level=d.get("level", ""),
                       period=d.get("period", ""), scores=tuple((c, int(v)) for c, v in d.get("scores", ())))
