//! Secrets and probes: no secret in `--help`, REST takes the token only from the
//! `Authorization` header (the sockets still take `?token=`), and `/readyz` is open, cheap and
//! silent about internals.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{connect_path, connect_ws, spawn_app, spawn_app_on, WAIT};

const DB_PASSWORD: &str = "s3cretpw";
const JWT_SECRET: &str = "jwt-secret-0123456789-abcdefghijklmnop";

#[test]
fn help_never_prints_the_database_password_or_the_jwt_secret() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["token", "--help"],
    ] {
        // Arrange / Act
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .env(
                "HERALD_DATABASE_URL",
                format!("postgres://u:{DB_PASSWORD}@h/db"),
            )
            .env("HERALD_JWT_SECRET", JWT_SECRET)
            .output()
            .expect("herald runs");
        // Assert
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("HERALD_DATABASE_URL"), "{args:?}: {text}");
        assert!(!text.contains(DB_PASSWORD), "{args:?} prints the password");
        assert!(!text.contains(JWT_SECRET), "{args:?} prints the JWT secret");
    }
}

#[actix_web::test]
async fn rest_refuses_a_query_string_token_and_the_sockets_still_take_it() {
    // Arrange
    let (app, _db) = spawn_app().await;
    let token = app.token("alice");
    // Act: a valid token, but in the query string.
    let (status, body) = app.get(&format!("/v1/rooms?token={token}"), None).await;
    // Assert: 401 with the usual JSON error, naming the header to use.
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Authorization header"), "{message}");
    for path in [
        "/v1/notifications/unread_count",
        "/v1/presence/alice",
        "/v1/admin/stats",
    ] {
        let (status, _) = app
            .get(&format!("{path}?token={}", app.admin_token("root")), None)
            .await;
        assert_eq!(status, 401, "{path}");
    }
    // The header still works, and wins over the query string.
    assert_eq!(app.get("/v1/rooms", Some(&token)).await.0, 200);
    assert_eq!(
        app.get("/v1/rooms?token=garbage", Some(&token)).await.0,
        200
    );
    // The sockets take `?token=` (browsers cannot set headers on an upgrade).
    let mut native = connect_ws(app.port, &token).await.expect("native socket");
    assert_eq!(native.recv().await["type"], "connection_ack");
    let mut seed = connect_path(app.port, &format!("/ws/notifications/?token={token}"))
        .await
        .expect("seed socket");
    assert_eq!(seed.recv().await, json!({"type": "connection_ack"}));
}

async fn readyz_raw(address: &str, header: Option<&str>) -> (u16, String) {
    let mut req = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .get(format!("{address}/readyz"));
    if let Some(h) = header {
        req = req.insert_header(("Authorization", h));
    }
    let mut resp = req.send().await.expect("readyz answers");
    let body = resp.body().await.unwrap_or_default();
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn readyz_needs_no_token_names_no_internals_and_checks_the_database_once_per_second() {
    // Arrange: a database that cannot be opened; each real check waits out the pool timeout.
    let dir = std::env::temp_dir().join(format!(
        "herald-private-path-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}/no/such/dir/herald.db", dir.display());
    let app = spawn_app_on(&url, |s| {
        s.db_timeout = Duration::from_millis(400);
        s.db_pool_size = 1;
    })
    .await;
    // Act / Assert: open to anyone, whatever (or no) token they send.
    for header in [None, Some("Bearer garbage")] {
        let (status, body) = readyz_raw(&app.address, header).await;
        assert_eq!(status, 503, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(
            body,
            json!({"status": "unavailable", "reason": "database unavailable"}),
            "no driver text, no paths"
        );
    }
    // A flood costs at most about one database check per second: 40 calls would take 16 s
    // if each one checked (400 ms each on one reader).
    let started = Instant::now();
    let calls = (0..40).map(|_| readyz_raw(&app.address, None));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 503, "{body}");
        assert!(!body.contains("herald-private-path"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "40 /readyz took {:?}",
        started.elapsed()
    );
}
