//! Secrets and probes: no secret in `--help` or `herald config`, REST takes the token only from the
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
        &["config", "--help"],
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

/// A config file in a fresh temp directory, readable by everyone (mode 644).
fn world_readable_config(text: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("herald-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).expect("config file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    (dir, path)
}

#[test]
fn herald_config_prints_flag_env_file_and_default_values_without_secrets() {
    // Arrange: a config file with both secrets, partly overridden by a variable and a flag.
    let (dir, path) = world_readable_config(&format!(
        "database_url = \"postgres://u:{DB_PASSWORD}@h/db\"\n\
         jwt_secret = \"{JWT_SECRET}\"\n\
         replay_max = 77\n\
         send_rate = 5\n\
         outbox_bytes = 1048576\n"
    ));
    // Act
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["config", "--outbox-bytes", "2097152"])
        .env("HERALD_CONFIG", &path)
        .env("HERALD_SEND_RATE", "6")
        .env("HERALD_LOG", "warn")
        .output()
        .expect("herald runs");
    std::fs::remove_dir_all(&dir).ok();
    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let line = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no `{key}` in {stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("replay_max"), ["replay_max", "=", "77", "#", "file"]);
    assert_eq!(line("send_rate"), ["send_rate", "=", "6", "#", "env"]);
    assert_eq!(
        line("outbox_bytes"),
        ["outbox_bytes", "=", "2097152", "#", "flag"]
    );
    assert_eq!(
        line("bind"),
        ["bind", "=", "\"127.0.0.1:8080\"", "#", "default"]
    );
    assert_eq!(
        line("jwt_secret"),
        ["jwt_secret", "=", "\"<redacted>\"", "#", "file"]
    );
    assert_eq!(
        line("database_url"),
        [
            "database_url",
            "=",
            "\"postgres://u:***@h/db\"",
            "#",
            "file"
        ]
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(DB_PASSWORD), "prints the password: {text}");
        assert!(!text.contains(JWT_SECRET), "prints the JWT secret: {text}");
    }
    #[cfg(unix)]
    assert!(stderr.contains("readable by other users"), "{stderr}");
}

#[test]
fn an_unknown_key_or_a_missing_config_file_stops_herald_with_the_reason() {
    // Arrange
    let (dir, path) = world_readable_config("replay_maxx = 3\n");
    let missing = dir.join("missing.toml");
    for (file, expected) in [
        (&path, "unknown key `replay_maxx`"),
        (&missing, "missing.toml"),
    ] {
        // Act
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--config".as_ref(), file.as_os_str(), "config".as_ref()])
            .output()
            .expect("herald runs");
        // Assert
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).ok();
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
