//! Authentication and transport security end to end: token algorithms (HS256/384/512 with the
//! secret, RS256/ES256 with a public key), `alg: none` and algorithm confusion, `iss`/`aud`,
//! `nbf`/`exp` with leeway, https and wss with rustls, CORS preflights, and REST rate limits
//! per IP and per token. Keys and the self-signed certificate live in tests/fixtures/.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::config::Settings;
use herald::startup::Application;
use herald::testkit::{TestDatabase, TEST_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{connect_ws, spawn_app_on, TestApp, WAIT};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    match std::fs::read(fixture(name)) {
        Ok(b) => b,
        Err(e) => panic!("fixture {name}: {e}"),
    }
}

fn now_secs() -> i64 {
    herald::domain::now_millis() / 1000
}

/// Claims for `sub` valid for an hour, with `extra` merged in (and `null` values removed).
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({"sub": sub, "exp": now_secs() + 3600, "iat": now_secs()});
    if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    match encode(&Header::new(alg), claims, key) {
        Ok(t) => t,
        Err(e) => panic!("signing a test token with {alg:?}: {e}"),
    }
}

fn hs(alg: Algorithm, claims: &Value) -> String {
    sign(
        alg,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        claims,
    )
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read_fixture("jwt-rs256-private.pem")).expect("rsa key");
    sign(Algorithm::RS256, &key, claims)
}

fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_fixture("jwt-es256-private.pem")).expect("ec key");
    sign(Algorithm::ES256, &key, claims)
}

/// An unsigned `alg: none` token for `sub`.
fn alg_none(sub: &str) -> String {
    let b64 = |v: &Value| base64url(v.to_string().as_bytes());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(sub, json!({})))
    )
}

fn base64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn spawn(tweak: impl FnOnce(&mut Settings)) -> (TestApp, TestDatabase) {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, tweak).await;
    (app, db)
}

/// `GET /v1/rooms` with `token`: (status, body).
async fn rooms(app: &TestApp, token: &str) -> (u16, Value) {
    app.get("/v1/rooms", Some(token)).await
}

/// Asserts a 401 with `code` whose message mentions `hint`.
fn assert_refused(resp: &(u16, Value), code: &str, hint: &str) {
    assert_eq!(resp.0, 401, "expected 401, got {resp:?}");
    assert_eq!(resp.1["error"]["code"], code, "{resp:?}");
    let msg = resp.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(hint),
        "message {msg:?} should mention {hint:?}"
    );
}

/// Opens `/v1/ws` with `token` and asserts `connection_ack` for `user` comes first.
async fn assert_ws_accepts(app: &TestApp, token: &str, user: &str) {
    let mut ws = match connect_ws(app.port, token).await {
        Ok(ws) => ws,
        Err(e) => panic!("WebSocket refused: {e}"),
    };
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(ack["data"]["user_id"], user);
    ws.close().await;
}

/// A WebSocket upgrade request on `/v1/ws` with `token`: (status, JSON body).
async fn ws_upgrade_attempt(app: &TestApp, token: &str) -> (u16, Value) {
    let mut resp = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .get(format!("{}/v1/ws?token={token}", app.address))
        .insert_header(("Connection", "Upgrade"))
        .insert_header(("Upgrade", "websocket"))
        .insert_header(("Sec-WebSocket-Version", "13"))
        .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .send()
        .await
        .expect("upgrade request");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn rs256_settings(s: &mut Settings) {
    s.auth.algorithm = "RS256".into();
    s.auth.public_key_file = Some(fixture("jwt-rs256-public.pem"));
}

#[actix_rt::test]
async fn hs384_and_hs512_are_accepted_when_configured_and_hs256_is_refused_then() {
    for (name, alg) in [("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)] {
        let (app, _db) = spawn(|s| s.auth.algorithm = name.into()).await;
        let good = hs(alg, &claims("alice", json!({})));
        assert_eq!(rooms(&app, &good).await.0, 200, "{name}");
        assert_ws_accepts(&app, &good, "alice").await;
        // Minting follows the configured algorithm.
        assert_eq!(rooms(&app, &app.token("bob")).await.0, 200, "{name} mint");
        let hs256 = hs(Algorithm::HS256, &claims("alice", json!({})));
        assert_refused(&rooms(&app, &hs256).await, "invalid_token", name);
        app.stop().await;
    }
    // And the default, HS256, refuses HS512.
    let (app, _db) = spawn(|_| {}).await;
    let hs512 = hs(Algorithm::HS512, &claims("alice", json!({})));
    assert_refused(&rooms(&app, &hs512).await, "invalid_token", "HS256");
    app.stop().await;
}

#[actix_rt::test]
async fn rs256_and_es256_tokens_verify_with_the_configured_public_key() {
    let (app, _db) = spawn(rs256_settings).await;
    let token = rs256(&claims("alice", json!({"roles": ["admin"]})));
    assert_eq!(rooms(&app, &token).await.0, 200);
    assert_eq!(app.get("/v1/admin/stats", Some(&token)).await.0, 200);
    assert_ws_accepts(&app, &token, "alice").await;
    // The secret signs nothing any more, and neither does the other key pair.
    let hs256 = hs(Algorithm::HS256, &claims("alice", json!({})));
    assert_refused(&rooms(&app, &hs256).await, "invalid_token", "RS256");
    let es = es256(&claims("alice", json!({})));
    assert_refused(&rooms(&app, &es).await, "invalid_token", "RS256");
    // Claims changed under a valid RS256 signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = base64url(claims("mallory", json!({})).to_string().as_bytes());
    assert_refused(
        &rooms(&app, &parts.join(".")).await,
        "invalid_token",
        "signature",
    );
    app.stop().await;

    let (app, _db) = spawn(|s| {
        s.auth.algorithm = "ES256".into();
        s.auth.public_key_file = Some(fixture("jwt-es256-public.pem"));
    })
    .await;
    let token = es256(&claims("carol", json!({})));
    assert_eq!(rooms(&app, &token).await.0, 200);
    assert_ws_accepts(&app, &token, "carol").await;
    let rs = rs256(&claims("carol", json!({})));
    assert_refused(&rooms(&app, &rs).await, "invalid_token", "ES256");
    app.stop().await;
}

#[actix_rt::test]
async fn alg_none_is_refused_over_rest_and_websocket() {
    for rs in [false, true] {
        let (app, _db) = spawn(|s| {
            if rs {
                rs256_settings(s)
            }
        })
        .await;
        let none = alg_none("alice");
        assert_refused(&rooms(&app, &none).await, "invalid_token", "");
        let (status, body) = ws_upgrade_attempt(&app, &none).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_token");
        app.stop().await;
    }
}

#[actix_rt::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused_when_rs256_is_configured() {
    let (app, _db) = spawn(rs256_settings).await;
    let public_pem = read_fixture("jwt-rs256-public.pem");
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims("mallory", json!({})),
    );
    assert_refused(&rooms(&app, &confused).await, "invalid_token", "RS256");
    let (status, _) = ws_upgrade_attempt(&app, &confused).await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[actix_rt::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let (app, _db) = spawn(|s| {
        s.auth.issuer = Some("https://idp.example".into());
        s.auth.audience = Some("herald".into());
    })
    .await;
    let ok = json!({"iss": "https://idp.example", "aud": "herald"});
    let t = hs(Algorithm::HS256, &claims("alice", ok));
    assert_eq!(rooms(&app, &t).await.0, 200);
    assert_ws_accepts(&app, &t, "alice").await;
    // `aud` may be a list that contains ours.
    let t = hs(
        Algorithm::HS256,
        &claims(
            "alice",
            json!({"iss": "https://idp.example", "aud": ["other", "herald"]}),
        ),
    );
    assert_eq!(rooms(&app, &t).await.0, 200);
    // And `herald token` mints tokens that pass.
    assert_eq!(rooms(&app, &app.token("bob")).await.0, 200);

    let cases = [
        (
            json!({"iss": "https://evil.example", "aud": "herald"}),
            "iss",
        ),
        (json!({"iss": null, "aud": "herald"}), "iss"),
        (json!({"iss": "https://idp.example", "aud": "other"}), "aud"),
        (json!({"iss": "https://idp.example", "aud": null}), "aud"),
    ];
    for (extra, hint) in cases {
        let t = hs(Algorithm::HS256, &claims("alice", extra.clone()));
        assert_refused(&rooms(&app, &t).await, "invalid_token", hint);
        let (status, _) = ws_upgrade_attempt(&app, &t).await;
        assert_eq!(status, 401, "{extra}");
    }
    app.stop().await;

    // Without configuration neither is checked.
    let (app, _db) = spawn(|_| {}).await;
    let t = hs(
        Algorithm::HS256,
        &claims("alice", json!({"iss": "anyone", "aud": "anything"})),
    );
    assert_eq!(rooms(&app, &t).await.0, 200);
    app.stop().await;
}

#[actix_rt::test]
async fn nbf_in_the_future_is_refused_beyond_the_leeway_and_accepted_within_it() {
    let (app, _db) = spawn(|_| {}).await; // default leeway: 5 s
    let later = hs(
        Algorithm::HS256,
        &claims("alice", json!({"nbf": now_secs() + 60})),
    );
    assert_refused(&rooms(&app, &later).await, "invalid_token", "nbf");
    let (status, body) = ws_upgrade_attempt(&app, &later).await;
    assert_eq!(status, 401, "{body}");
    let soon = hs(
        Algorithm::HS256,
        &claims("alice", json!({"nbf": now_secs() + 2})),
    );
    assert_eq!(rooms(&app, &soon).await.0, 200);
    assert_ws_accepts(&app, &soon, "alice").await;
    app.stop().await;

    // The leeway is the configured one: with none, 2 s early is too early.
    let (app, _db) = spawn(|s| s.auth.leeway = Duration::ZERO).await;
    let soon = hs(
        Algorithm::HS256,
        &claims("alice", json!({"nbf": now_secs() + 3})),
    );
    assert_refused(&rooms(&app, &soon).await, "invalid_token", "nbf");
    app.stop().await;
}

#[actix_rt::test]
async fn expired_beyond_the_leeway_gets_401_json_before_the_upgrade() {
    let (app, _db) = spawn(|_| {}).await;
    let expired = hs(
        Algorithm::HS256,
        &claims("alice", json!({"exp": now_secs() - 60})),
    );
    let (status, body) = ws_upgrade_attempt(&app, &expired).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_refused(&rooms(&app, &expired).await, "token_expired", "expired");
    // Two seconds past `exp` is within the 5 s leeway.
    let just = hs(
        Algorithm::HS256,
        &claims("alice", json!({"exp": now_secs() - 2})),
    );
    assert_ws_accepts(&app, &just, "alice").await;
    app.stop().await;
}

#[actix_rt::test]
async fn start_up_refuses_an_unusable_token_configuration() {
    let db = TestDatabase::new();
    let cases: [(&str, Option<&str>, &str); 4] = [
        ("RS256", None, "HERALD_JWT_PUBLIC_KEY_FILE"),
        ("RS256", Some("missing.pem"), "missing.pem"),
        ("ES256", Some("jwt-rs256-public.pem"), "ES256"),
        ("PS512", None, "unknown JWT algorithm"),
    ];
    for (alg, key, hint) in cases {
        let mut settings = herald::testkit::test_settings(&db.url);
        settings.auth.algorithm = alg.into();
        settings.auth.public_key_file = key.map(fixture);
        match Application::build(settings).await {
            Ok(_) => panic!("{alg} with {key:?} must not start"),
            Err(e) => assert!(e.to_string().contains(hint), "{alg}: {e}"),
        }
    }
    // RS256 neither needs nor creates the secret.
    let secret_file = PathBuf::from(db.url.trim_start_matches("sqlite://"))
        .with_file_name("never-created")
        .join("herald.secret");
    let app = spawn_app_on(&db.url, |s| {
        rs256_settings(s);
        s.jwt_secret = None;
        s.jwt_secret_file = Some(secret_file.clone());
    })
    .await;
    assert!(!secret_file.exists());
    app.stop().await;
}

/// An awc client that trusts the test certificate (and nothing else).
fn tls_client() -> awc::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("tls-cert.pem")).expect("certificate") {
        roots.add(cert.expect("PEM")).expect("trust anchor");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(WAIT)
        .finish()
}

#[actix_rt::test]
async fn https_and_wss_are_served_with_the_configured_certificate() {
    let (app, _db) = spawn(|s| {
        s.tls_cert = Some(fixture("tls-cert.pem"));
        s.tls_key = Some(fixture("tls-key.pem"));
    })
    .await;
    let client = tls_client();
    let mut resp = client
        .get(format!("https://127.0.0.1:{}/healthz", app.port))
        .send()
        .await
        .expect("https request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.body().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "ok");
    // "localhost" is in the certificate too.
    let resp = client
        .get(format!("https://localhost:{}/healthz", app.port))
        .send()
        .await
        .expect("https request by name");
    assert_eq!(resp.status().as_u16(), 200);

    let url = format!(
        "wss://127.0.0.1:{}/v1/ws?token={}",
        app.port,
        app.token("alice")
    );
    let (_, mut framed) = client.ws(url).connect().await.expect("wss connects");
    let first = tokio::time::timeout(WAIT, framed.next())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("a valid frame");
    let ack: Value = match first {
        awc::ws::Frame::Text(b) => serde_json::from_slice(&b).expect("JSON frame"),
        other => panic!("expected connection_ack, got {other:?}"),
    };
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(ack["data"]["user_id"], "alice");

    // Plain http on the TLS port gets no answer.
    let plain = awc::Client::builder()
        .timeout(Duration::from_secs(2))
        .finish()
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "plain http must not be served on the TLS listener"
    );
    app.stop().await;
}

/// A CORS preflight for `GET /v1/rooms` with an `Authorization` header from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> awc::ClientResponse {
    awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .request(
            actix_web::http::Method::OPTIONS,
            format!("{}/v1/rooms", app.address),
        )
        .insert_header(("Origin", origin))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .insert_header(("Access-Control-Request-Headers", "authorization"))
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(resp: &'a awc::ClientResponse, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[actix_rt::test]
async fn cors_allows_any_origin_without_credentials_by_default() {
    let (app, _db) = spawn(|_| {}).await;
    let resp = preflight(&app, "https://anywhere.example").await;
    assert!(resp.status().is_success(), "{:?}", resp.status());
    assert_eq!(header(&resp, "access-control-allow-origin"), Some("*"));
    assert!(header(&resp, "access-control-allow-methods").is_some_and(|m| m.contains("GET")));
    assert!(header(&resp, "access-control-allow-headers")
        .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));
    assert_eq!(header(&resp, "access-control-allow-credentials"), None);
    // An actual request gets the header too.
    let resp = awc::Client::new()
        .get(format!("{}/v1/rooms", app.address))
        .insert_header(("Origin", "https://anywhere.example"))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some("*"));
    app.stop().await;
}

#[actix_rt::test]
async fn cors_follows_the_allow_list() {
    let (app, _db) = spawn(|s| {
        s.allowed_origins = vec!["https://app.example".into(), "http://localhost:3000".into()]
    })
    .await;
    for origin in ["https://app.example", "http://localhost:3000"] {
        let resp = preflight(&app, origin).await;
        assert!(resp.status().is_success(), "{origin}: {:?}", resp.status());
        assert_eq!(header(&resp, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(&resp, "access-control-allow-credentials"), None);
    }
    let resp = preflight(&app, "https://evil.example").await;
    assert!(!resp.status().is_success(), "{:?}", resp.status());
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    // An actual request from another origin gets no CORS header (the browser hides it).
    let resp = awc::Client::new()
        .get(format!("{}/v1/rooms", app.address))
        .insert_header(("Origin", "https://evil.example"))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    app.stop().await;

    // A malformed entry is a start-up error.
    let db = TestDatabase::new();
    let mut settings = herald::testkit::test_settings(&db.url);
    settings.allowed_origins = vec!["https://app.example/".into()];
    match Application::build(settings).await {
        Ok(_) => panic!("an origin with a path must not start"),
        Err(e) => assert!(e.to_string().contains("HERALD_ALLOWED_ORIGINS"), "{e}"),
    }
}

/// `GET path` with an optional token: (status, Retry-After, body).
async fn get_with_retry_after(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .get(format!("{}{path}", app.address));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.expect("request");
    let retry = header(&resp, "retry-after").map(str::to_owned);
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        retry,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[actix_rt::test]
async fn rest_rate_limit_per_ip_answers_429_rate_limited_with_retry_after() {
    let (app, _db) = spawn(|s| {
        s.limits.rest_rate = 1;
        s.limits.rest_burst = 3;
    })
    .await;
    // Requests without a valid token draw from the client address's bucket.
    for _ in 0..3 {
        assert_eq!(get_with_retry_after(&app, "/v1/rooms", None).await.0, 401);
    }
    let (status, retry, body) = get_with_retry_after(&app, "/v1/rooms", None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // A bad token is no way around it.
    let (status, _, _) = get_with_retry_after(&app, "/v1/rooms", Some("garbage")).await;
    assert_eq!(status, 429);
    // Operations endpoints and WebSocket upgrades are not limited.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, body) = get_with_retry_after(&app, path, None).await;
        assert_ne!(status, 429, "{path}: {body}");
    }
    for _ in 0..3 {
        assert_ws_accepts(&app, &app.token("alice"), "alice").await;
    }
    // The bucket refills at the configured rate.
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_with_retry_after(&app, "/v1/rooms", None).await.0, 401);
    app.stop().await;
}

#[actix_rt::test]
async fn rest_rate_limit_per_token_keeps_tokens_apart() {
    let (app, _db) = spawn(|s| {
        s.limits.rest_rate = 1;
        s.limits.rest_burst = 2;
    })
    .await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    for _ in 0..2 {
        assert_eq!(rooms(&app, &alice).await.0, 200);
    }
    let (status, retry, body) = get_with_retry_after(&app, "/v1/rooms", Some(&alice)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry.is_some());
    // Another token from the same address has its own bucket, and so do requests without one.
    for _ in 0..2 {
        assert_eq!(rooms(&app, &bob).await.0, 200);
    }
    assert_eq!(rooms(&app, &bob).await.0, 429);
    assert_eq!(get_with_retry_after(&app, "/v1/rooms", None).await.0, 401);
    app.stop().await;
}

#[actix_rt::test]
async fn rest_rate_limit_zero_is_unlimited_and_defaults_do_not_throttle_normal_use() {
    let (app, _db) = spawn(|s| {
        s.limits.rest_rate = 0;
        s.limits.rest_burst = 1;
    })
    .await;
    let t = app.token("alice");
    for _ in 0..20 {
        assert_eq!(rooms(&app, &t).await.0, 200);
    }
    app.stop().await;

    let (app, _db) = spawn(|_| {}).await;
    let t = app.token("alice");
    for _ in 0..150 {
        assert_eq!(rooms(&app, &t).await.0, 200);
    }
    app.stop().await;
}

/// Upgraded TLS connections use the same transport as plain ones: a wss client that joins a
/// room and stops reading is dropped (byte-bounded outbox, write deadline) and goes offline.
/// Before, TLS connections stayed
/// in actix-http's dispatcher, whose session stopped being polled once its peer stopped
/// reading: the zombie stayed online.
#[actix_rt::test]
async fn a_wss_client_that_stops_reading_is_dropped_like_a_plain_one() {
    let (app, _db) = spawn(|s| {
        s.tls_cert = Some(fixture("tls-cert.pem"));
        s.tls_key = Some(fixture("tls-key.pem"));
        s.outbox_bytes = 1024 * 1024;
        s.write_timeout = Duration::from_secs(1);
        s.limits.send_rate = 5000;
        s.limits.send_burst = 5000;
    })
    .await;
    let client = tls_client();
    let ws_url = |user: &str| {
        format!(
            "wss://127.0.0.1:{}/v1/ws?token={}",
            app.port,
            app.token(user)
        )
    };
    let (_, mut zombie) = client
        .ws(ws_url("zombie"))
        .connect()
        .await
        .expect("wss connects");
    let join = json!({"type": "join", "ref": "j", "data": {"room": "public:tls"}}).to_string();
    zombie
        .send(awc::ws::Message::Text(join.into()))
        .await
        .expect("join");
    // The flooder reads everything, over wss too.
    let (_, framed) = client
        .ws(ws_url("flooder"))
        .max_frame_size(4 * 1024 * 1024)
        .connect()
        .await
        .expect("wss connects");
    let mut flooder = crate::helpers::WsClient::from_framed(framed);
    flooder.recv_type("sync").await;
    flooder.ok("join", json!({"room": "public:tls"})).await;
    let text = "t".repeat(60_000);
    // 400 messages of 60 KB: far more than the socket buffers and the 1 MiB outbox hold.
    for batch in 0..16 {
        for i in 0..25 {
            let f = json!({"type": "send", "ref": format!("{batch}-{i}"),
                "data": {"room": "public:tls", "kind": "text", "body": {"text": text}}});
            flooder.send_text(&f.to_string()).await;
        }
        let mut acks = 0;
        while acks < 25 {
            if flooder.recv().await["type"] == "ack" {
                acks += 1;
            }
        }
    }
    let offline_within = Duration::from_secs(10);
    let started = std::time::Instant::now();
    loop {
        let mut resp = client
            .get(format!("https://127.0.0.1:{}/v1/presence/zombie", app.port))
            .insert_header((
                "Authorization",
                format!("Bearer {}", app.admin_token("ops")),
            ))
            .send()
            .await
            .expect("https request");
        let v: Value = resp.json().await.expect("JSON");
        if v["status"] == "offline" {
            break;
        }
        assert!(
            started.elapsed() < offline_within,
            "a wss zombie was still {} {:?} after the flood",
            v["status"],
            started.elapsed()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    drop(zombie);
    app.stop().await;
}
