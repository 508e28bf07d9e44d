-- Messages whose derived notifications (mentions, direct messages to offline users) are not
-- processed yet. Written in the transaction that stores the message, deleted in the one that
-- stores its notifications (or by itself when none is due), so a crash between the two
-- leaves a row that the periodic sweep re-processes.
CREATE TABLE notification_outbox (
    message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- The sweep reads the oldest rows first.
CREATE INDEX notification_outbox_created_idx ON notification_outbox (created_at);
