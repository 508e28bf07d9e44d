//! JWT authentication: claims, the signing/verifying keys, the generated-secret file, and the
//! `AuthenticatedUser` extractor used by REST routes and the WebSocket handshake.
//!
//! Where the token may travel: REST takes it only from `Authorization: Bearer` ([`authenticate`]);
//! the WebSocket handshakes (`/v1/ws`, `/ws/notifications/`) also take `?token=`
//! ([`authenticate_socket`]), because browsers cannot set headers on a WebSocket upgrade. A query
//! string ends up in access logs, proxy logs and browser history, so REST refuses it: a token
//! there would be logged on every call, and REST clients can always send a header.
//!
//! One algorithm is configured (`HERALD_JWT_ALGORITHM`) and pinned: HS256, HS384 or HS512 with
//! the secret, RS256 or ES256 with a PEM public key (`HERALD_JWT_PUBLIC_KEY_FILE`). A token whose
//! header names any other algorithm is refused, which also refuses `alg: none` and algorithm
//! confusion (an HS256 token "signed" with the RSA public key as HMAC secret). `exp` is required,
//! `nbf` is checked when present, both with the configured leeway; `iss` and `aud` are required
//! and checked when an issuer or audience is configured.
//!
//! [`JwtKeys`] verifies; it also mints for HS algorithms (the secret signs). RS256/ES256 tokens
//! are signed by the identity provider's private key: [`TokenSigner`] loads one for
//! `herald token --private-key FILE`.
//!
//! Files: this one holds the claims, the refusals (`AuthError`, `KeyError`), the verified caller
//! and the algorithm names; `keys.rs` the verifying and signing keys; `secret.rs` the generated
//! secret file and the start-up key warnings; `extractor.rs` where a request's token is read.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::domain::{Millis, UserId};
use crate::error::ErrorCode;

mod extractor;
mod keys;
mod secret;
#[cfg(test)]
mod tests;

pub use extractor::{
    authenticate, authenticate_socket, bearer_token, token_from_request, BEARER_PROTOCOL_PREFIX,
    WS_PROTOCOL,
};
pub use keys::{JwtKeys, TokenSigner};
pub use secret::{file_mode, key_warnings, load_or_create_secret, SecretError};

/// The algorithms a server can be configured with.
pub const SUPPORTED_ALGORITHMS: &str = "HS256, HS384, HS512, RS256, ES256";

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
    /// A REST request carried no `Authorization` header (perhaps `?token=`, refused on REST).
    #[error("missing token: send it in the Authorization header (Authorization: Bearer <JWT>); ?token= is accepted only by the WebSocket endpoints")]
    MissingHeader,
    #[error("token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("this needs the {0} role")]
    MissingRole(&'static str),
    /// This process holds no key that can sign tokens of the configured algorithm.
    #[error("{0}")]
    CannotSign(String),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::MissingRole(_) => ErrorCode::Forbidden,
            AuthError::Missing | AuthError::MissingHeader | AuthError::Invalid(_) => {
                ErrorCode::InvalidToken
            }
            AuthError::CannotSign(_) => ErrorCode::Internal,
        }
    }
}

/// Why the token keys could not be set up (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown JWT algorithm {0:?} (HERALD_JWT_ALGORITHM): use one of {SUPPORTED_ALGORITHMS}"
    )]
    UnknownAlgorithm(String),
    #[error("JWT algorithm {0} needs a secret (HERALD_JWT_SECRET or the secret file)")]
    MissingSecret(&'static str),
    #[error("JWT algorithm {0} needs a PEM public key: set HERALD_JWT_PUBLIC_KEY_FILE")]
    MissingPublicKey(&'static str),
    #[error("cannot read JWT key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT key file {path} is not a valid {algorithm} {kind} key in PEM form: {reason}")]
    InvalidKey {
        path: String,
        algorithm: &'static str,
        kind: &'static str,
        reason: String,
    },
    #[error(
        "JWT public key file {0} holds a private key; give the public key \
         (openssl pkey -in PRIVATE.pem -pubout -out public.pem)"
    )]
    PrivateKeyGiven(String),
    #[error(
        "--private-key is only used with RS256 and ES256; {0} tokens are signed with the secret"
    )]
    PrivateKeyUnused(&'static str),
    #[error("{0} tokens are signed with the issuer's private key: pass --private-key FILE (PEM)")]
    MissingPrivateKey(&'static str),
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user_id: UserId,
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// Token expiry (the `exp` claim), epoch milliseconds.
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
    /// App backends (`service`) and admins: notifications, system messages.
    pub fn require_service_or_admin(&self) -> Result<(), AuthError> {
        if self.is_service() || self.is_admin() {
            Ok(())
        } else {
            Err(AuthError::MissingRole("service or admin"))
        }
    }
}

/// The configured algorithm: `HS256`, `HS384`, `HS512`, `RS256` or `ES256` (any case).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        _ => Err(KeyError::UnknownAlgorithm(name.to_owned())),
    }
}

/// Whether tokens of `algorithm` are verified with the shared secret (the HS family).
pub fn uses_secret(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "unsupported",
    }
}
