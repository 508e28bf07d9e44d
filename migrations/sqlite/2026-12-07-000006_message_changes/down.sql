DROP TABLE reactions;
DROP TABLE message_changes;
ALTER TABLE rooms DROP COLUMN last_change;
ALTER TABLE messages DROP COLUMN deleted_at;
ALTER TABLE messages DROP COLUMN edited_at;
