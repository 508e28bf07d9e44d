-- Retention (docs/protocol.md "Retention"): bodies of messages older than the configured age
-- are deleted by a periodic, batched job; the rows stay as tombstones so seqs stay
-- gap-free, and each room remembers the first seq whose body may still be held.
ALTER TABLE rooms ADD COLUMN retained_from BIGINT NOT NULL DEFAULT 1;
-- The job walks live messages by age, and read notifications by the time they were read.
CREATE INDEX messages_live_created_idx ON messages (created_at) WHERE deleted_at IS NULL;
CREATE INDEX notifications_read_at_idx ON notifications (read_at) WHERE read_at IS NOT NULL;
