-- Webhook outbox (docs/webhooks.md): one row per event not yet delivered to every endpoint
-- subscribed to its type. Written in the transaction of the fact it reports (a message, a
-- notification) or by itself (presence); the webhook sender deletes a row once every
-- endpoint acknowledged it, and marks it `dead` once it is older than the give-up age.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    event_type TEXT NOT NULL,
    -- The event's `data` object (JSON).
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- pending | dead
    state TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    -- Start of the give-up window: created_at, or the time of the last re-drive.
    retry_from BIGINT NOT NULL,
    -- Endpoints (names, comma-separated) that already acknowledged the event.
    delivered_to TEXT NOT NULL DEFAULT '',
    last_error TEXT
);
-- The sender reads due pending rows in order; the admin list filters by state.
CREATE INDEX webhook_events_due_idx ON webhook_events (state, next_attempt_at);
CREATE INDEX webhook_events_created_idx ON webhook_events (state, created_at);
