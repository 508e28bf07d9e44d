-- When the server clears the custom status message (it survives reconnects).
ALTER TABLE users ADD COLUMN custom_expires_at BIGINT;
