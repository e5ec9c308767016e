-- Read-only views for analysts, and a role that may read them and nothing else.
-- Customer addresses are masked (w***@cust.example) unless the desk's config
-- sets storage.analysts_see_addresses = true, which the desk writes into
-- analyst_settings when it starts and on `store migrate`.

CREATE TABLE analyst_settings (
    id             integer PRIMARY KEY CHECK (id = 1),
    show_addresses boolean NOT NULL
);
INSERT INTO analyst_settings VALUES (1, false);

-- SECURITY DEFINER: analysts may not read analyst_settings itself.
CREATE FUNCTION maildesk_mask(address text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT CASE
        WHEN address IS NULL THEN NULL
        WHEN (SELECT show_addresses FROM analyst_settings WHERE id = 1) THEN address
        WHEN position('@' IN address) = 0 THEN '***'
        ELSE left(address, 1) || '***@' || split_part(address, '@', 2)
    END
$$;

-- The analysts' names for things, in a schema of their own (public.tickets is the desk's table).
CREATE SCHEMA analytics;

CREATE VIEW analytics.tickets AS
SELECT number, tag, subject, maildesk_mask(customer) AS customer, stage, language, priority, assignee,
       rating, doc->>'rating_comment' AS rating_comment, doc->>'summary' AS summary,
       doc->>'lessons' AS lessons, (doc->>'linked_to') AS linked_to,
       created_at, updated_at, last_event_at
FROM tickets;

CREATE VIEW analytics.messages AS
SELECT t.number AS ticket, t.tag, m.ordinality AS position, m.value->>'direction' AS direction,
       CASE WHEN m.value->>'from' = t.customer THEN maildesk_mask(t.customer) ELSE m.value->>'from' END AS sender,
       (m.value->>'date')::timestamptz AS at, (m.value->>'internal')::boolean AS internal,
       m.value->>'kind' AS kind, m.value->>'text' AS text,
       jsonb_array_length(coalesce(m.value->'attachments', '[]'::jsonb)) AS attachments
FROM tickets t, jsonb_array_elements(t.doc->'messages') WITH ORDINALITY AS m;

CREATE VIEW analytics.events AS
SELECT t.number AS ticket, t.tag, e.ordinality AS position, (e.value->>'at')::timestamptz AS at,
       CASE WHEN e.value->>'actor' = t.customer THEN maildesk_mask(t.customer) ELSE e.value->>'actor' END AS actor,
       e.value->>'kind' AS kind, e.value->>'from_stage' AS from_stage, e.value->>'to_stage' AS to_stage,
       e.value->>'detail' AS detail
FROM tickets t, jsonb_array_elements(t.doc->'events') WITH ORDINALITY AS e;

CREATE VIEW analytics.ratings AS
SELECT number AS ticket, tag, assignee, rating, doc->>'rating_comment' AS comment, stage, updated_at
FROM tickets WHERE rating IS NOT NULL;

CREATE VIEW analytics.staff_records AS
SELECT id, at, author, kind, technician, reason, ticket, doc->>'level' AS level, doc->>'period' AS period
FROM staff_records;

-- Roles are shared by every database of the server: create it once, and only
-- where the migrating user may create roles (else an administrator does).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'maildesk_analyst') THEN
        BEGIN
            CREATE ROLE maildesk_analyst NOLOGIN;
        EXCEPTION WHEN insufficient_privilege OR unique_violation OR duplicate_object THEN
            RAISE NOTICE 'cannot create role maildesk_analyst; ask an administrator';
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'maildesk_analyst') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO maildesk_analyst', current_database());
        GRANT USAGE ON SCHEMA analytics TO maildesk_analyst;
        GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO maildesk_analyst;
        -- Not the tables themselves: their documents hold every address.
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
    END IF;
END
$$;
