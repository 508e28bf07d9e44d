-- Notifications of one user each; JSON columns (actions, data) are stored as text.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    image_url TEXT,
    actions TEXT NOT NULL,
    data TEXT NOT NULL,
    priority TEXT NOT NULL,
    source_user TEXT,
    source_room TEXT,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    -- When it was pushed live (NULL while held by quiet hours or do-not-disturb).
    delivered_at BIGINT,
    read_at BIGINT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at);

-- One JSON document of preferences per user.
CREATE TABLE notification_prefs (
    user_id TEXT PRIMARY KEY NOT NULL,
    prefs TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
