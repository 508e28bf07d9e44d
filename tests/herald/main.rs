//! One integration-test binary (one link step): actor-level tests through the testkit, and
//! end-to-end tests against the real server on port 0. Every test gets a fresh database:
//! SQLite by default, PostgreSQL when `HERALD_TEST_DATABASE_URL` is set.

mod actors;
mod authz;
mod changes;
mod cluster;
mod compression;
mod consent;
mod continuity;
mod costs;
mod crash;
mod data_rights;
mod delivery;
mod devices;
mod events;
mod fault_proxy;
mod faults;
mod fuzz;
mod helpers;
mod hostile;
mod limits;
mod notification_socket;
mod notifications;
mod openapi;
mod presence;
mod raw_ws;
mod rest;
mod secrets;
mod security;
mod socketio;
mod storage;
mod web;
mod webhooks;
mod ws;
