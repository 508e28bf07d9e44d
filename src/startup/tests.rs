//! Unit tests of the start-up checks: rate-limit exemptions, CORS origins, TLS files.
use super::rest_limit::exempt_from_rest_limit;
use super::*;
use std::path::Path;

#[test]
fn websocket_socketio_and_operations_paths_are_exempt() {
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/ws",
        "/v1/ws/echo",
        "/ws/notifications/",
        "/ws/notifications",
        "/socket.io/",
        "/socket.io",
    ] {
        assert!(exempt_from_rest_limit(p), "{p}");
    }
    for p in ["/v1/rooms", "/v1/wsx", "/v1/admin/stats", "/", "/healthzz"] {
        assert!(!exempt_from_rest_limit(p), "{p}");
    }
}

#[test]
fn origins_must_be_scheme_host_port() {
    let ok = ["https://app.example", "http://localhost:3000", "app://x"];
    let list: Vec<String> = ok.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(allowed_origins(&list).unwrap().len(), 3);
    for bad in [
        "https://app.example/",
        "app.example",
        "*",
        "https://",
        "https://a.example/path",
        "1http://a",
        "https://a b",
    ] {
        assert!(
            matches!(
                allowed_origins(&[bad.to_owned()]),
                Err(StartupError::Origin(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn tls_files_are_checked() {
    let f = |n: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(n)
    };
    assert!(tls_config(None, None).unwrap().is_none());
    assert!(
        tls_config(Some(&f("tls-cert.pem")), Some(&f("tls-key.pem")))
            .unwrap()
            .is_some()
    );
    let e = tls_config(Some(&f("tls-cert.pem")), None).unwrap_err();
    assert!(e.to_string().contains("HERALD_TLS_KEY"), "{e}");
    let e = tls_config(Some(&f("missing.pem")), Some(&f("tls-key.pem"))).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = tls_config(Some(&f("tls-key.pem")), Some(&f("tls-key.pem"))).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let e = tls_config(Some(&f("tls-cert.pem")), Some(&f("tls-cert.pem"))).unwrap_err();
    assert!(e.to_string().contains("no PEM private key"), "{e}");
    let e = tls_config(Some(&f("tls-cert.pem")), Some(&f("jwt-es256-private.pem"))).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");
}
