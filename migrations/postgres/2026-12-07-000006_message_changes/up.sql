-- Edits, deletes and reactions (docs/protocol.md "Edits, deletes and reactions").
-- A message keeps its seq for ever: an edit replaces its body, a delete leaves a tombstone
-- (body null) with deleted_at.
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;

-- Each room's change counter: every edit, delete and reaction takes the next change_seq,
-- so a device that was away fetches exactly what changed since the last one it holds.
ALTER TABLE rooms ADD COLUMN last_change BIGINT NOT NULL DEFAULT 0;

-- The room's change log, in change_seq order: kind is edit (body: the new body), delete,
-- react or unreact (emoji); actor is who did it.
CREATE TABLE message_changes (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    change_seq BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    body TEXT,
    emoji TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, change_seq)
);

-- Who reacted to which message with what.
CREATE TABLE reactions (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq, user_id, emoji)
);
