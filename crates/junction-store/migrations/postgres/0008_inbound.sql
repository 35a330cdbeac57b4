-- Queue intake (issue: events): the message ids already stored, so a
-- message redelivered after a crash is stored once.
CREATE TABLE inbound_messages (
    message_id  TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
