DROP TABLE reports;
DROP TABLE blocks;
DROP TABLE invitations;
