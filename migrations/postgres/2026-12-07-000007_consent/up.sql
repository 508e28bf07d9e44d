-- Invitations to private rooms (issue 18): pending until the invitee accepts (membership),
-- declines, the inviter or an owner revokes, or expires_at passes. One per (room, invitee).
CREATE TABLE invitations (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    invitee TEXT NOT NULL,
    inviter TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, invitee)
);
CREATE INDEX invitations_invitee_idx ON invitations (invitee, expires_at);
CREATE INDEX invitations_inviter_idx ON invitations (inviter, expires_at);

-- Blocks: `blocker` does not accept DMs, invitations, watches or presence views from `blocked`.
CREATE TABLE blocks (
    blocker TEXT NOT NULL,
    blocked TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked_idx ON blocks (blocked);

-- Reports of messages, one per (reporter, message); resolved by an admin.
CREATE TABLE reports (
    id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    reporter TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    resolution TEXT,
    UNIQUE (reporter, room_id, seq)
);
CREATE INDEX reports_open_idx ON reports (resolved_at, created_at);
