-- Ticket events as rows, so the weekly report counts them in SQL instead of
-- decoding a year of ticket documents (storage/postgres_report.py).
--
-- The ticket document stays the truth; this table follows it through a
-- trigger on tickets, so every way a ticket is written (the desk's saves,
-- `store import`, COPY in bench/store.py) keeps it exact, and no client code
-- has to remember it.  position is the event's place in the document's list,
-- from 1 (as analytics.events always numbered them).

CREATE TABLE ticket_events (
    number     integer NOT NULL,
    position   integer NOT NULL,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    kind       text NOT NULL,
    from_stage text,
    to_stage   text,
    detail     text,
    PRIMARY KEY (number, position)
);
-- The report's week and nine-week window are ranges of time.
CREATE INDEX ticket_events_at ON ticket_events (at);
-- Moves into and out of closed, with what the report counts of them: the open tickets at each of
-- its nine week ends are read from this small index alone (about one entry per ticket).
CREATE INDEX ticket_events_closed ON ticket_events (at) INCLUDE (from_stage, to_stage)
    WHERE to_stage = 'closed' OR from_stage = 'closed';

-- The open tickets with what the report lists of them (its carried-over cases): read from the
-- index alone.  It replaces 0001's index on the same rows, so a save updates no more indexes.
DROP INDEX tickets_open;
CREATE INDEX tickets_open ON tickets (number) INCLUDE (created_at, tag, subject, customer, stage, assignee, priority)
    WHERE stage <> 'closed';

-- Events are appended, never edited: a save usually adds the positions not
-- yet stored, after one index lookup.  A document whose list got shorter, or
-- whose last stored event differs, is copied again whole (delete + insert).
CREATE FUNCTION maildesk_sync_ticket_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    events jsonb := coalesce(NEW.doc->'events', '[]'::jsonb);
    wanted integer := jsonb_array_length(events);
    have   integer;
    last   ticket_events;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.number <> NEW.number THEN
        DELETE FROM ticket_events WHERE number = OLD.number;
    END IF;
    IF TG_OP = 'INSERT' THEN
        have := 0;  -- a new row (also every row of a COPY): nothing stored yet, no lookup
    ELSE
        SELECT * INTO last FROM ticket_events WHERE number = NEW.number ORDER BY position DESC LIMIT 1;
        have := coalesce(last.position, 0);
        IF have > wanted OR (have > 0 AND (
                last.at IS DISTINCT FROM (events->(have - 1)->>'at')::timestamptz
                OR last.kind IS DISTINCT FROM events->(have - 1)->>'kind'
                OR last.actor IS DISTINCT FROM events->(have - 1)->>'actor'
                OR last.to_stage IS DISTINCT FROM events->(have - 1)->>'to_stage')) THEN
            DELETE FROM ticket_events WHERE number = NEW.number;
            have := 0;
        END IF;
    END IF;
    IF wanted > have THEN
        INSERT INTO ticket_events (number, position, at, actor, kind, from_stage, to_stage, detail)
        SELECT NEW.number, e.i, (e.v->>'at')::timestamptz, e.v->>'actor', e.v->>'kind', e.v->>'from_stage',
               e.v->>'to_stage', e.v->>'detail'
        FROM jsonb_array_elements(events) WITH ORDINALITY AS e(v, i)
        WHERE e.i > have;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION maildesk_drop_ticket_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ticket_events WHERE number = OLD.number;
    RETURN NULL;
END
$$;

CREATE FUNCTION maildesk_truncate_ticket_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE ticket_events;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_events_sync AFTER INSERT OR UPDATE OF doc, number ON tickets
    FOR EACH ROW EXECUTE FUNCTION maildesk_sync_ticket_events();
CREATE TRIGGER tickets_events_drop AFTER DELETE ON tickets
    FOR EACH ROW EXECUTE FUNCTION maildesk_drop_ticket_events();
CREATE TRIGGER tickets_events_truncate AFTER TRUNCATE ON tickets
    FOR EACH STATEMENT EXECUTE FUNCTION maildesk_truncate_ticket_events();

-- The tickets already stored.
INSERT INTO ticket_events (number, position, at, actor, kind, from_stage, to_stage, detail)
SELECT t.number, e.i, (e.v->>'at')::timestamptz, e.v->>'actor', e.v->>'kind', e.v->>'from_stage',
       e.v->>'to_stage', e.v->>'detail'
FROM tickets t, jsonb_array_elements(coalesce(t.doc->'events', '[]'::jsonb)) WITH ORDINALITY AS e(v, i);
ANALYZE ticket_events;

-- Analysts' events from the rows: the same columns, types and masking as in 0002.
CREATE OR REPLACE VIEW analytics.events AS
SELECT t.number AS ticket, t.tag, e.position::bigint AS position, e.at,
       CASE WHEN e.actor = t.customer THEN maildesk_mask(t.customer) ELSE e.actor END AS actor,
       e.kind, e.from_stage, e.to_stage, e.detail
FROM tickets t JOIN ticket_events e ON e.number = t.number;
