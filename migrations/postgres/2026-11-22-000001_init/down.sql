DROP TABLE messages;
DROP TABLE members;
DROP TABLE rooms;
DROP TABLE users;
