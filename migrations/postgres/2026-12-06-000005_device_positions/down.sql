DROP TABLE device_positions;
