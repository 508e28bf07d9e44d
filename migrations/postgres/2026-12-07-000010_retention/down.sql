DROP INDEX notifications_read_at_idx;
DROP INDEX messages_live_created_idx;
ALTER TABLE rooms DROP COLUMN retained_from;
