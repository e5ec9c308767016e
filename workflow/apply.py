"""One entry point from a routed mail to its ``Effects``.  Pure.

``decide`` refines the plain route with the procedure's rules (a closed
ticket written to too late opens a new, linked ticket; staff commands in a
mail that belongs to no ticket are directives or errors, never tickets);
``handle`` dispatches to the step that owns the case.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta

from maildesk.model import InboundMail
from maildesk.parsers.auth import staff_verdict
from maildesk.workflow.intake import (DeskContext, Effects, open_ticket, record_bounce, record_machine_mail)
from maildesk.workflow.procedure import (apply_customer_reply, apply_staff_reply, has_commands,
                                         record_forged_staff_mail, refuse_without_nda,
                                         reject_without_ticket)
from maildesk.workflow.route import Route, TicketLookup, route_mail
from maildesk.workflow.selfservice import SelfServiceRoute, read_view, wants_self_service
from maildesk.workflow.selfservice import answer as answer_staff
from maildesk.workflow.similar import SimilarCase, index_for

STAFF_ROLES = ("technician", "supervisor", "leadership")


@dataclass(frozen=True)
class NewTicketRoute(Route):
    """A new ticket, with the closed cases most like it (for the team's notification)."""

    similar: tuple[SimilarCase, ...] = ()


def decide(mail: InboundMail, lookup: TicketLookup, ctx: DeskContext) -> Route:
    route = _decide(mail, lookup, ctx)
    if route.kind == "new" and route.role == "customer":
        index = index_for(lookup)
        if index is not None and len(index):
            found = index.query(f"{mail.subject}\n{mail.text}")
            route = NewTicketRoute(**{f.name: getattr(route, f.name) for f in fields(Route)}, similar=tuple(found))
    return route


def _decide(mail: InboundMail, lookup: TicketLookup, ctx: DeskContext) -> Route:
    route = route_mail(mail, lookup, ctx.directory)
    if route.kind == "new" and route.role in STAFF_ROLES and has_commands(mail, ctx):
        route = Route("directive", route.role)
    if route.role in STAFF_ROLES and route.kind in ("staff-reply", "directive", "new", "follow-up") and \
            ctx.require_authenticated_staff:
        verdict = staff_verdict(mail.sender.email, mail.auth_results, ctx.authserv_id)
        if verdict.status != "pass":
            # A staff address whose mail the receiving server did not vouch for: no command is obeyed.
            return Route("forged", "customer", ticket=route.ticket,
                         reason=f"staff address not authenticated: {verdict.detail}")
    if route.kind == "directive" and wants_self_service(mail, ctx):
        # Questions to the desk and appraisal answers read the store here; the answer is pure.
        return SelfServiceRoute("self-service", route.role, view=read_view(mail, route.role, lookup, ctx))
    if route.kind == "staff-reply" and route.role == "technician" and \
            mail.sender.email not in ctx.directory.nda_signed:
        # Customer data is for technicians who signed the NDA: nothing of the ticket goes back.
        return Route("no-nda", route.role, ticket=route.ticket, reason="technician without a signed NDA")
    if route.kind == "follow-up" and route.ticket.stage == "closed":
        closed = next((e.at for e in reversed(route.ticket.events) if e.to_stage == "closed"), None)
        if closed is None or ctx.now - closed > timedelta(days=ctx.reopen_days):
            return Route("new", route.role, reason=f"continues closed ticket {route.ticket.tag}",
                         linked_to=route.ticket.tag)
    return route


def handle(mail: InboundMail, route: Route, ctx: DeskContext, *, number: int | None = None,
           tag: str | None = None, acks_last_hour: int = 0) -> Effects:
    """Dispatch on the route; ``number``/``tag`` are pre-allocated for a new ticket."""
    if route.kind == "new":
        if number is None or tag is None:
            raise ValueError("a new ticket needs a pre-allocated number and tag")
        # Similar closed cases travel to the team's notification in the context.
        ctx = replace(ctx, similar_cases=getattr(route, "similar", ()))
        return open_ticket(mail, number, tag, ctx, acks_last_hour=acks_last_hour, note=route.reason,
                           linked_to=route.linked_to)
    if route.kind == "follow-up":
        return apply_customer_reply(mail, route.ticket, ctx)
    if route.kind == "staff-reply":
        return apply_staff_reply(mail, route.ticket, route.role, ctx)
    if route.kind == "self-service":
        return answer_staff(mail, route, ctx)
    if route.kind == "directive":
        return reject_without_ticket(mail, route.role, ctx)
    if route.kind == "no-nda":
        return refuse_without_nda(mail, route.ticket, ctx)
    if route.kind == "forged":
        return record_forged_staff_mail(mail, route.ticket, ctx, number=number, tag=tag, reason=route.reason)
    if route.kind == "machine":
        return record_machine_mail(mail, route, ctx)
    if route.kind == "bounce":
        return record_bounce(mail, route, ctx)
    if route.kind == "own":
        return Effects("ignored", reason=route.reason)
    return Effects("quarantined", reason=route.reason)
