-- Users seen by the server: chosen status, custom status and last-seen.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL DEFAULT 'online',
    custom_message TEXT,
    last_seen BIGINT,
    updated_at BIGINT NOT NULL
);

-- Rooms; last_seq is the seq of the newest message, advanced in the same transaction that stores it.
CREATE TABLE rooms (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0
);

-- Persistent membership with the member's delivered/read watermarks.
CREATE TABLE members (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX members_user_idx ON members (user_id);

-- Message history; (room_id, seq) is gap-free per room, (sender, client_msg_id) makes retries idempotent.
CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    priority TEXT NOT NULL,
    client_msg_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (room_id, seq),
    UNIQUE (sender, client_msg_id)
);
