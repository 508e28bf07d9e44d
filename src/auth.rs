//! JWT authentication: claims, the signing/verifying keys, the generated-secret file, and the
//! `AuthenticatedUser` extractor used by REST routes and the WebSocket handshake.
//!
//! Tokens are HS256 with a configured (or generated) secret. The algorithm is pinned, so
//! `alg: none` and tokens signed with any other algorithm are refused.

use std::future::{ready, Ready};
use std::io::Write;
use std::path::Path;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::config::{Secret, Settings, MIN_SECRET_LEN};
use crate::domain::{now_millis, Millis, UserId};
use crate::error::{AppError, ErrorCode};

/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECS: u64 = 5;

/// The claims Herald reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: pass ?token=<JWT> or Authorization: Bearer <JWT>")]
    Missing,
    #[error("token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("this needs the {0} role")]
    MissingRole(&'static str),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::MissingRole(_) => ErrorCode::Forbidden,
            AuthError::Missing | AuthError::Invalid(_) => ErrorCode::InvalidToken,
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user_id: UserId,
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// Token expiry, epoch milliseconds.
    pub expires_at: Millis,
}

impl AuthenticatedUser {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
    pub fn is_service(&self) -> bool {
        self.roles.iter().any(|r| r == "service")
    }
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AuthError::MissingRole("admin"))
        }
    }
}

/// Signing and verifying keys with the pinned algorithm.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn hs256(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<AuthenticatedUser, AuthError> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    other => AuthError::Invalid(format!("{other:?}")),
                }
            })?;
        let c = data.claims;
        let user_id = UserId::parse(&c.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        Ok(AuthenticatedUser {
            user_id,
            name: c.name,
            roles: c.roles,
            expires_at: (c.exp as i64).saturating_mul(1000),
        })
    }

    /// Mints a token for `user` valid for `ttl`.
    pub fn mint(
        &self,
        user: &str,
        name: Option<&str>,
        roles: &[&str],
        ttl: std::time::Duration,
    ) -> Result<String, AuthError> {
        let now = (now_millis() / 1000) as u64;
        let claims = Claims {
            sub: user.to_owned(),
            exp: now + ttl.as_secs(),
            name: name.map(str::to_owned),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            iat: Some(now),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// Why the JWT secret could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("HERALD_JWT_SECRET is {0} bytes long; it must be at least {MIN_SECRET_LEN} bytes")]
    TooShort(usize),
    #[error("secret file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The configured secret, or the one in the secret file, creating that file (mode 0600) with a
/// fresh random secret on first start.
pub fn load_or_create_secret(settings: &Settings) -> Result<Secret, SecretError> {
    if let Some(s) = &settings.jwt_secret {
        if s.expose().len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(s.expose().len()));
        }
        return Ok(s.clone());
    }
    let path = settings.secret_file_path();
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_LEN => return Ok(Secret::new(s.trim())),
        Ok(s) => return Err(SecretError::TooShort(s.trim().len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_owner_only(&path, &secret).map_err(io)?;
    log::info!("generated a JWT secret in {}", path.display());
    Ok(Secret::new(secret))
}

fn write_owner_only(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// The token of a request: `Authorization: Bearer`, else the `token` query parameter.
pub fn token_from_request(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        if let Some(t) = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some(t.trim().to_owned());
        }
    }
    web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Verifies the request's token against the engine's keys.
pub fn authenticate(req: &HttpRequest) -> Result<AuthenticatedUser, AppError> {
    let engine = req
        .app_data::<web::Data<crate::engine::Engine>>()
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "engine not configured"))?;
    let token = token_from_request(req).ok_or(AuthError::Missing)?;
    Ok(engine.keys.verify(&token)?)
}

impl FromRequest for AuthenticatedUser {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys() -> JwtKeys {
        JwtKeys::hs256(&Secret::new("x".repeat(40)))
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
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let k = keys();
        let old = Claims {
            sub: "a".into(),
            exp: 1000,
            name: None,
            roles: vec![],
            iat: None,
        };
        let t = encode(&Header::new(Algorithm::HS256), &old, &k.encoding).unwrap();
        assert!(matches!(k.verify(&t), Err(AuthError::Expired)));
        let other = JwtKeys::hs256(&Secret::new("y".repeat(40)));
        let t = other.mint("a", None, &[], Duration::from_secs(60)).unwrap();
        assert!(matches!(k.verify(&t), Err(AuthError::Invalid(_))));
        // alg: none
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(k.verify(none).is_err());
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "a".into(),
                exp: 9_999_999_999,
                name: None,
                roles: vec![],
                iat: None,
            },
            &EncodingKey::from_secret("x".repeat(40).as_bytes()),
        )
        .unwrap();
        assert!(k.verify(&hs512).is_err());
    }
}
