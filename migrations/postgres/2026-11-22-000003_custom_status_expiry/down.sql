ALTER TABLE users DROP COLUMN custom_expires_at;
