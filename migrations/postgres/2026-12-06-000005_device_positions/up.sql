-- Where each device of a user left off, per room: the last seq the device reported as
-- delivered (or read). A returning device is replayed from here instead of the user's shared
-- watermark. Rows not moved for HERALD_DEVICE_TTL_DAYS are deleted.
CREATE TABLE device_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id)
);
CREATE INDEX device_positions_updated_at ON device_positions (updated_at);
