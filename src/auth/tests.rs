//! Unit tests of the token keys, the signer and the key warnings.
use super::keys::probe_token;
use super::*;
use crate::config::{AuthSettings, Secret, Settings};
use crate::domain::now_millis;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

fn keys() -> JwtKeys {
    JwtKeys::hs256(&Secret::new("x".repeat(40)))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn auth(algorithm: &str, public_key: Option<&str>) -> AuthSettings {
    AuthSettings {
        algorithm: algorithm.into(),
        public_key_file: public_key.map(fixture),
        ..AuthSettings::default()
    }
}

fn claims(sub: &str, exp: u64) -> Claims {
    Claims {
        sub: sub.into(),
        exp,
        name: None,
        roles: vec![],
        iat: None,
    }
}

#[test]
fn minted_token_verifies() {
    let k = keys();
    let t = k
        .mint("alice", Some("Alice"), &["admin"], Duration::from_secs(60))
        .unwrap();
    let u = k.verify(&t).unwrap();
    assert_eq!(u.user_id.as_str(), "alice");
    assert!(u.is_admin());
    let exp_ms = now_millis() + 60_000;
    assert!((u.expires_at - exp_ms).abs() <= 2_000, "{}", u.expires_at);
}

#[test]
fn expired_and_foreign_tokens_are_refused() {
    let k = keys();
    let secret = EncodingKey::from_secret("x".repeat(40).as_bytes());
    let t = encode(&Header::new(Algorithm::HS256), &claims("a", 1000), &secret).unwrap();
    assert!(matches!(k.verify(&t), Err(AuthError::Expired)));
    let other = JwtKeys::hs256(&Secret::new("y".repeat(40)));
    let t = other.mint("a", None, &[], Duration::from_secs(60)).unwrap();
    assert!(matches!(k.verify(&t), Err(AuthError::Invalid(_))));
    // alg: none
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert!(k.verify(none).is_err());
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims("a", 9_999_999_999),
        &secret,
    )
    .unwrap();
    assert!(k.verify(&hs512).is_err());
}

#[test]
fn algorithms_parse_and_unknown_ones_are_refused() {
    assert_eq!(parse_algorithm("hs384").unwrap(), Algorithm::HS384);
    assert_eq!(parse_algorithm("ES256").unwrap(), Algorithm::ES256);
    for bad in ["none", "PS256", "RS512", ""] {
        let e = parse_algorithm(bad).unwrap_err();
        assert!(e.to_string().contains("unknown JWT algorithm"), "{e}");
    }
    let e = JwtKeys::from_settings(&auth("HS999", None), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::UnknownAlgorithm(_)));
}

#[test]
fn hs_needs_a_secret_and_public_key_algorithms_a_key_file() {
    let e = JwtKeys::from_settings(&auth("HS384", None), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::MissingSecret("HS384")), "{e}");
    let e = JwtKeys::from_settings(&auth("RS256", None), None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("HERALD_JWT_PUBLIC_KEY_FILE"), "{e}");
    let e = JwtKeys::from_settings(&auth("RS256", Some("no-such-file.pem")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::Read { .. }), "{e}");
    let e = JwtKeys::from_settings(&auth("RS256", Some("jwt-rs256-private.pem")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::PrivateKeyGiven(_)), "{e}");
    let e = JwtKeys::from_settings(&auth("ES256", Some("jwt-rs256-public.pem")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::InvalidKey { .. }), "{e}");
    let e = JwtKeys::from_settings(&auth("RS256", Some("jwt-es256-public.pem")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::InvalidKey { .. }), "{e}");
    let e = JwtKeys::from_settings(&auth("ES256", Some("jwt-p384-public.pem")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::InvalidKey { .. }), "{e}");
    let e = JwtKeys::from_settings(&auth("RS256", Some("tls.cnf")), None)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::InvalidKey { .. }), "{e}");
}

#[test]
fn private_key_signer_round_trips_and_verifier_cannot_mint() {
    for (alg, private, public) in [
        ("RS256", "jwt-rs256-private.pem", "jwt-rs256-public.pem"),
        ("ES256", "jwt-es256-private.pem", "jwt-es256-public.pem"),
    ] {
        let mut a = auth(alg, Some(public));
        a.issuer = Some("https://idp.example".into());
        a.audience = Some("herald".into());
        let keys = JwtKeys::from_settings(&a, None).unwrap();
        let e = keys
            .mint("bob", None, &[], Duration::from_secs(60))
            .unwrap_err();
        assert!(e.to_string().contains("--private-key"), "{e}");
        let e = TokenSigner::from_settings(&a, None, None).err().unwrap();
        assert!(matches!(e, KeyError::MissingPrivateKey(_)), "{e}");
        let signer = TokenSigner::from_settings(&a, None, Some(&fixture(private))).unwrap();
        let t = signer
            .mint("bob", Some("Bob"), &["service"], Duration::from_secs(60))
            .unwrap();
        let u = keys.verify(&t).unwrap();
        assert_eq!(u.user_id.as_str(), "bob");
        assert!(u.is_service());
    }
    let e = TokenSigner::from_settings(
        &auth("HS256", None),
        Some(&Secret::new("x".repeat(40))),
        Some(&fixture("jwt-rs256-private.pem")),
    )
    .err()
    .unwrap();
    assert!(matches!(e, KeyError::PrivateKeyUnused(_)), "{e}");
}

#[test]
fn hs_mint_carries_configured_issuer_and_audience() {
    let secret = Secret::new("z".repeat(40));
    let mut a = auth("HS512", None);
    a.issuer = Some("idp".into());
    a.audience = Some("herald".into());
    let keys = JwtKeys::from_settings(&a, Some(&secret)).unwrap();
    let t = keys
        .mint("carol", None, &[], Duration::from_secs(60))
        .unwrap();
    assert_eq!(keys.verify(&t).unwrap().user_id.as_str(), "carol");
    // The same secret without iss/aud is refused (both are required when configured).
    let plain = JwtKeys::from_settings(&auth("HS512", None), Some(&secret)).unwrap();
    let t = plain
        .mint("carol", None, &[], Duration::from_secs(60))
        .unwrap();
    assert!(matches!(keys.verify(&t), Err(AuthError::Invalid(m)) if m.contains("iss")));
}

#[test]
fn probe_token_is_base64url() {
    let t = probe_token(Algorithm::ES256);
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9");
    assert_eq!(parts[1], "e30");
    assert_eq!(parts[2].len(), 86);
}

fn warnings_for(settings: &Settings, mode: Option<u32>) -> Vec<String> {
    key_warnings(settings, |_| mode)
}

#[test]
fn a_group_or_world_readable_secret_file_is_warned_about() {
    // Arrange: HS256 with the secret kept in a file.
    let settings = Settings {
        jwt_secret_file: Some(PathBuf::from("/srv/herald/herald.secret")),
        ..Settings::default()
    };
    // Act / Assert
    for mode in [0o644, 0o640, 0o604, 0o100_660] {
        let w = warnings_for(&settings, Some(mode));
        assert_eq!(w.len(), 1, "{mode:o}: {w:?}");
        assert!(
            w[0].contains("/srv/herald/herald.secret") && w[0].contains("chmod 600"),
            "{}",
            w[0]
        );
    }
    assert!(warnings_for(&settings, Some(0o600)).is_empty());
    assert!(warnings_for(&settings, Some(0o400)).is_empty());
    assert!(warnings_for(&settings, None).is_empty(), "no file yet");
    // A secret from the environment: the file is not used, so its mode does not matter.
    let env_secret = Settings {
        jwt_secret: Some(Secret::new("s".repeat(40))),
        ..settings.clone()
    };
    assert!(warnings_for(&env_secret, Some(0o644)).is_empty());
    // A readable TLS private key is warned about too.
    let tls = Settings {
        jwt_secret: Some(Secret::new("s".repeat(40))),
        tls_key: Some(PathBuf::from("/etc/herald/key.pem")),
        ..Settings::default()
    };
    let w = warnings_for(&tls, Some(0o644));
    assert!(w.len() == 1 && w[0].contains("TLS private key"), "{w:?}");
}

#[test]
fn public_key_algorithms_without_iss_and_aud_are_warned_about() {
    for alg in ["RS256", "ES256"] {
        let mut settings = Settings {
            auth: auth(alg, Some("jwt-rs256-public.pem")),
            ..Settings::default()
        };
        let w = warnings_for(&settings, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(alg) && w[0].contains("HERALD_JWT_ISSUER and HERALD_JWT_AUDIENCE"),
            "{}",
            w[0]
        );
        settings.auth.issuer = Some("https://idp.example".into());
        let w = warnings_for(&settings, None);
        assert!(
            w.len() == 1 && w[0].ends_with("set HERALD_JWT_AUDIENCE"),
            "{w:?}"
        );
        settings.auth.audience = Some("herald".into());
        assert!(warnings_for(&settings, None).is_empty());
        // The secret file is not used by public-key algorithms, whatever its mode.
        assert!(warnings_for(&settings, Some(0o666)).is_empty());
    }
    // HS256 does not need iss/aud: the secret is Herald's own.
    assert!(warnings_for(&Settings::default(), None).is_empty());
}
