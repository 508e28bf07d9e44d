//! Database faults: start-up with the database down, outages and stalls while clients are
//! connected. Outages are injected with a TCP proxy between Herald and PostgreSQL, never by
//! stopping the shared server, so on SQLite (no network) only the start-up case applies.
//!
//! This file holds that start-up case; `postgres.rs` the tests that need PostgreSQL, each
//! `#[ignore]`d and failing when run without it.

use std::time::Duration;

use crate::helpers::spawn_app_on;

mod postgres;

#[actix_web::test]
async fn readyz_is_503_with_a_reason_while_the_database_cannot_be_opened() {
    let dir =
        std::env::temp_dir().join(format!("herald-missing-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/no/such/dir/herald.db", dir.display());
    let app = spawn_app_on(&url, |s| s.db_timeout = Duration::from_millis(300)).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503);
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert_eq!(
        app.get("/healthz", None).await.0,
        200,
        "the process itself is up"
    );
}
