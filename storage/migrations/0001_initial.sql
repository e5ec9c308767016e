-- The helpdesk's tables.  A ticket is kept whole as the same JSON document the
-- TinyDB store holds (storage/codec.py), with the columns the daemon searches
-- or analysts filter on beside it; messages and events are read through views.

CREATE TABLE tickets (
    number        integer PRIMARY KEY,
    tag           text NOT NULL,
    subject       text NOT NULL,
    customer      text NOT NULL,
    stage         text NOT NULL,
    language      text NOT NULL,
    priority      text NOT NULL,
    assignee      text,
    rating        integer,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- Time of the last event: reports skip tickets closed and quiet since before their window.
    last_event_at timestamptz,
    doc           jsonb NOT NULL
);
CREATE INDEX tickets_open ON tickets (number) WHERE stage <> 'closed';
CREATE INDEX tickets_activity ON tickets (last_event_at);
CREATE INDEX tickets_created ON tickets (created_at);

-- Every Message-ID of a ticket's mails: replies and bounces find their ticket.
CREATE TABLE ticket_message_ids (
    message_id text PRIMARY KEY,
    number     integer NOT NULL
);

CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters VALUES ('next_ticket', 1);

CREATE TABLE outbox (
    id              text PRIMARY KEY,
    -- Queue order among mails created at the same instant.
    seq             bigserial NOT NULL,
    message_id      text NOT NULL,
    kind            text NOT NULL,
    ticket          text,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    doc             jsonb NOT NULL
);
CREATE INDEX outbox_message_id ON outbox (message_id);
CREATE INDEX outbox_pending ON outbox (created_at, seq) WHERE status = 'pending';

CREATE TABLE processed (
    key     text PRIMARY KEY,
    outcome text NOT NULL,
    ticket  text,
    reason  text NOT NULL,
    at      timestamptz NOT NULL
);
CREATE INDEX processed_at ON processed (at);

CREATE TABLE attempts (
    key   text PRIMARY KEY,
    count integer NOT NULL
);

CREATE TABLE acks (
    sender text PRIMARY KEY,
    times  jsonb NOT NULL
);

CREATE TABLE plans (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL,
    author text NOT NULL,
    text   text NOT NULL,
    ticket text,
    doc    jsonb NOT NULL
);

CREATE TABLE staff_records (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    author     text NOT NULL,
    kind       text NOT NULL,
    technician text NOT NULL,
    reason     text NOT NULL,
    ticket     text,
    -- The whole record (storage/codec.py), so fields added later need no migration to be kept.
    doc        jsonb NOT NULL
);

CREATE TABLE jobs (
    name   text NOT NULL,
    period text NOT NULL,
    at     timestamptz NOT NULL,
    late   boolean NOT NULL,
    detail text NOT NULL,
    PRIMARY KEY (name, period)
);

-- Content-addressed like the attachment folder of the TinyDB store.
CREATE TABLE attachments (
    sha256 text PRIMARY KEY,
    data   bytea NOT NULL
);

-- The outbox's delivery log (storage/delivery_log.py has the file version): what the
-- SMTP server accepted since the last commit of the sent marks, written by a session
-- of its own without waiting for the disk, so a killed desk (or the standby taking
-- over from it) resends at most the one mail per connection that was in flight.
CREATE TABLE delivery_log (
    seq     bigserial PRIMARY KEY,
    mail_id text NOT NULL,
    state   text NOT NULL,
    at      timestamptz
);

-- Which desk works (active/standby): one row, a lease with a fencing token.
-- The active desk renews expires_at; every commit checks that the token is
-- still its own, so a desk that froze and woke up late cannot write.
CREATE TABLE desk_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text NOT NULL,
    token       bigint NOT NULL,
    acquired_at timestamptz,
    expires_at  timestamptz NOT NULL
);
INSERT INTO desk_lease VALUES (1, '', 0, NULL, '-infinity');
