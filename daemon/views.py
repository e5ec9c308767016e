"""Tickets as the command line shows them: the JSON contract of ``tickets list/show``, and the
text for the terminal.

Subjects, names, bodies and event details come from mail: the terminal text
escapes their control and bidi characters (``maildesk.printable``), the JSON
writer escapes them in its own way (``maildesk.cli``).
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from maildesk.model import Ticket
from maildesk.parsers.own_text import without_own_text
from maildesk.parsers.reply import split_reply
from maildesk.printable import multi_line, one_line


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
            "new_text": new,
            "internal": m.internal,
            "attachments": [a.filename for a in m.attachments],
            "message_id": m.message_id,
            "kind": m.kind,
            "notes": list(m.notes),
        }
        for m, new in zip(t.messages, _new_texts(t))
    ]
    detail["events"] = [
        {"at": _local(e.at, tz), "actor": e.actor, "kind": e.kind, "from_stage": e.from_stage,
         "to_stage": e.to_stage, "detail": e.detail}
        for e in t.events
    ]
    return detail


def _new_texts(t: Ticket) -> list[str]:
    """What the desk reads as newly written in each message: for mail received, the splitter's new
    text minus the desk's own earlier mails on the ticket (the text commands are read from)."""
    sent: list[str] = []
    found = []
    for m in t.messages:
        if m.direction == "out":
            found.append(m.text)
            sent.append(m.text)
        else:
            found.append(without_own_text(split_reply(m.text).new, sent))
    return found


def summary_line(t: Ticket) -> str:
    """One line of ``tickets list``."""
    return f"{t.tag}  {t.stage:<10}  {one_line(t.customer):<32}  {one_line(t.subject)}"


def detail_text(detail: dict) -> str:
    """``tickets show`` for the terminal, from ``ticket_detail``."""
    customer = one_line(detail["customer"])
    if detail["customer_name"]:
        customer = f"{one_line(detail['customer_name'])} <{customer}>"
    lines = [f"{detail['id']} [{detail['stage']}] {one_line(detail['subject'])}", f"customer: {customer}"]
    for m in detail["messages"]:
        flag = " (internal)" if m["internal"] else ""
        to = ", ".join(one_line(r) for r in m["to"])
        lines += ["", f"--- {m['direction']} {m['date']} {one_line(m['from'])} -> {to}{flag}",
                  multi_line(m["text"].rstrip())]
    lines += ["", "events:"]
    for e in detail["events"]:
        line = f"  {e['at']} {one_line(e['actor'] or '')} {e['kind']} {e['from_stage'] or ''} -> {e['to_stage'] or ''}"
        if e["detail"]:
            line += f": {one_line(e['detail'])}"
        lines.append(line)
    return "\n".join(lines)


# -- staff records (``staff list/show``) -------------------------------------------------------

def staff_members(config) -> list[tuple[str, str, str]]:
    """(email, name, role) of everybody on the team, technicians first."""
    found = [(t.email, t.name, "technician") for t in config.team.technicians]
    if config.team.supervisor:
        found.append((config.team.supervisor, config.team.supervisor, "supervisor"))
    found += [(a, a, "leadership") for a in config.team.leadership]
    return found


def staff_summary(email: str, name: str, role: str, records, config) -> dict:
    mine = [r for r in records if r.technician == email]
    tech = config.team.technician(email)
    levels: dict[str, int] = {}
    for r in mine:
        if r.kind in ("commend", "warn"):
            key = f"{r.kind}:{r.level or 'unspecified'}"
            levels[key] = levels.get(key, 0) + 1
    periods = sorted({r.period for r in mine if r.kind == "appraisal"})
    return {"email": email, "name": name, "role": role,
            "nda_signed": tech.nda_signed.isoformat() if tech and tech.nda_signed else None,
            "commendations": sum(1 for r in mine if r.kind == "commend"),
            "warnings": sum(1 for r in mine if r.kind == "warn"),
            "by_level": levels, "appraisal_periods": periods}


def staff_detail(email: str, name: str, role: str, records, config, tz: ZoneInfo) -> dict:
    from maildesk.workflow.selfservice import merged_scores

    detail = staff_summary(email, name, role, records, config)
    mine = sorted((r for r in records if r.technician == email), key=lambda r: r.at)
    detail["records"] = [{"at": _local(r.at, tz), "kind": r.kind, "level": r.level, "reason": r.reason,
                          "by": r.author, "ticket": r.ticket} for r in mine if r.kind in ("commend", "warn")]
    detail["appraisals"] = []
    for period in detail["appraisal_periods"]:
        scores, comments = merged_scores([r for r in mine if r.kind == "appraisal" and r.period == period], email)
        detail["appraisals"].append({"period": period, "scores": scores, "comments": comments})
    return detail


def staff_line(summary: dict) -> str:
    """One line of ``staff list``."""
    nda = summary["nda_signed"] or "-"
    return (f"{one_line(summary['email']):<32}  {summary['role']:<10}  {one_line(summary['name']):<20}  "
            f"NDA {nda:<10}  commended {summary['commendations']}  warned {summary['warnings']}  "
            f"appraised {', '.join(summary['appraisal_periods']) or '-'}")


def staff_text(detail: dict) -> str:
    """``staff show`` for the terminal."""
    lines = [staff_line(detail), "", "record:"]
    for r in detail["records"]:
        where = f" ({r['ticket']})" if r["ticket"] else ""
        lines.append(f"  {r['at']} {r['kind']} {r['level'] or '-'} by {one_line(r['by'])}{where}: "
                     f"{one_line(r['reason'])}")
    if not detail["records"]:
        lines.append("  (none)")
    lines.append("appraisals:")
    for a in detail["appraisals"]:
        scores = ", ".join(f"{k} {v}" for k, v in a["scores"].items()) or "no scores yet"
        lines.append(f"  {a['period']}: {scores}" + "".join(f"; {one_line(c)}" for c in a["comments"]))
    if not detail["appraisals"]:
        lines.append("  (none)")
    return "\n".join(lines)
