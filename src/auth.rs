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

use std::future::{ready, Ready};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::config::{AuthSettings, Secret, Settings, MIN_SECRET_LEN};
use crate::domain::{now_millis, Millis, UserId};
use crate::error::{AppError, ErrorCode};

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

/// The claims of a token Herald mints: [`Claims`] plus the configured `iss` and `aud`.
#[derive(Serialize)]
struct MintClaims<'a> {
    #[serde(flatten)]
    claims: Claims,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
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

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Signs tokens: the secret for HS algorithms, a PEM private key for RS256/ES256. Minted tokens
/// carry the configured `iss` and `aud`.
pub struct TokenSigner {
    algorithm: Algorithm,
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl TokenSigner {
    /// A signer for the configured algorithm: with `secret` for HS algorithms, with the PEM
    /// private key in `private_key_file` for RS256/ES256.
    pub fn from_settings(
        auth: &AuthSettings,
        secret: Option<&Secret>,
        private_key_file: Option<&Path>,
    ) -> Result<Self, KeyError> {
        let algorithm = parse_algorithm(&auth.algorithm)?;
        let name = algorithm_name(algorithm);
        let key = if uses_secret(algorithm) {
            if private_key_file.is_some() {
                return Err(KeyError::PrivateKeyUnused(name));
            }
            let secret = secret.ok_or(KeyError::MissingSecret(name))?;
            EncodingKey::from_secret(secret.expose().as_bytes())
        } else {
            let path = private_key_file.ok_or(KeyError::MissingPrivateKey(name))?;
            let pem = read_key_file(path)?;
            let parsed = if algorithm == Algorithm::RS256 {
                EncodingKey::from_rsa_pem(&pem)
            } else {
                EncodingKey::from_ec_pem(&pem)
            };
            parsed.map_err(|e| KeyError::InvalidKey {
                path: path.display().to_string(),
                algorithm: name,
                kind: "private",
                reason: e.to_string(),
            })?
        };
        Ok(TokenSigner {
            algorithm,
            key,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
        })
    }

    /// Mints a token for `user` valid for `ttl`.
    pub fn mint(
        &self,
        user: &str,
        name: Option<&str>,
        roles: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let now = (now_millis() / 1000) as u64;
        let claims = MintClaims {
            claims: Claims {
                sub: user.to_owned(),
                exp: now + ttl.as_secs(),
                name: name.map(str::to_owned),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                iat: Some(now),
            },
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|e| AuthError::CannotSign(format!("cannot sign the token: {e}")))
    }
}

/// The verifying key with the pinned algorithm and claim checks, and (HS algorithms) the signer.
pub struct JwtKeys {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
    signer: Option<TokenSigner>,
    leeway: Duration,
}

impl JwtKeys {
    /// HS256 with `secret`, default leeway, no `iss`/`aud` checks (tests and tools).
    pub fn hs256(secret: &Secret) -> Self {
        let auth = AuthSettings::default();
        let signer = TokenSigner {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
            issuer: None,
            audience: None,
        };
        Self::assemble(
            Algorithm::HS256,
            &auth,
            DecodingKey::from_secret(secret.expose().as_bytes()),
            Some(signer),
        )
    }

    /// The keys `auth` describes. HS algorithms need `secret`; RS256/ES256 read the PEM
    /// public key in `auth.public_key_file` (the secret is not used then).
    pub fn from_settings(auth: &AuthSettings, secret: Option<&Secret>) -> Result<Self, KeyError> {
        let algorithm = parse_algorithm(&auth.algorithm)?;
        let name = algorithm_name(algorithm);
        if uses_secret(algorithm) {
            let secret = secret.ok_or(KeyError::MissingSecret(name))?;
            if let Some(p) = &auth.public_key_file {
                log::warn!(
                    "HERALD_JWT_PUBLIC_KEY_FILE ({}) is ignored: {name} tokens are verified with the secret",
                    p.display()
                );
            }
            let signer = TokenSigner::from_settings(auth, Some(secret), None)?;
            let decoding = DecodingKey::from_secret(secret.expose().as_bytes());
            Ok(Self::assemble(algorithm, auth, decoding, Some(signer)))
        } else {
            let path = auth
                .public_key_file
                .as_deref()
                .ok_or(KeyError::MissingPublicKey(name))?;
            let decoding = public_key(algorithm, path)?;
            Ok(Self::assemble(algorithm, auth, decoding, None))
        }
    }

    fn assemble(
        algorithm: Algorithm,
        auth: &AuthSettings,
        decoding: DecodingKey,
        signer: Option<TokenSigner>,
    ) -> Self {
        // Only the configured algorithm: `alg: none` and every other algorithm are refused.
        let mut validation = Validation::new(algorithm);
        validation.leeway = auth.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &auth.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &auth.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience `aud` is not checked (a token may carry one).
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        JwtKeys {
            algorithm,
            decoding,
            validation,
            signer,
            leeway: Duration::from_secs(auth.leeway.as_secs()),
        }
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Clock skew tolerated on `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<AuthenticatedUser, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| self.refusal(e.kind()))?;
        let c = data.claims;
        let user_id = UserId::parse(&c.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        Ok(AuthenticatedUser {
            user_id,
            name: c.name,
            roles: c.roles,
            expires_at: i64::try_from(c.exp)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        })
    }

    fn refusal(&self, kind: &ErrorKind) -> AuthError {
        let why = match kind {
            ErrorKind::ExpiredSignature => return AuthError::Expired,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => format!(
                "signed with another algorithm than the configured {}",
                algorithm_name(self.algorithm)
            ),
            ErrorKind::InvalidSignature => "bad signature".to_owned(),
            ErrorKind::ImmatureSignature => "not valid yet (nbf is in the future)".to_owned(),
            ErrorKind::InvalidIssuer => "wrong issuer (iss)".to_owned(),
            ErrorKind::InvalidAudience => "wrong audience (aud)".to_owned(),
            ErrorKind::MissingRequiredClaim(c) => format!("the {c} claim is missing"),
            ErrorKind::InvalidClaimFormat(c) => format!("the {c} claim is malformed"),
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => "malformed token".to_owned(),
            other => format!("{other:?}"),
        };
        AuthError::Invalid(why)
    }

    /// Mints a token for `user` valid for `ttl` (HS algorithms; RS256/ES256 need a
    /// [`TokenSigner`] with the private key).
    pub fn mint(
        &self,
        user: &str,
        name: Option<&str>,
        roles: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        match &self.signer {
            Some(s) => s.mint(user, name, roles, ttl),
            None => Err(AuthError::CannotSign(
                KeyError::MissingPrivateKey(algorithm_name(self.algorithm)).to_string(),
            )),
        }
    }
}

/// Reads and checks the PEM public key of an RS256/ES256 configuration.
fn public_key(algorithm: Algorithm, path: &Path) -> Result<DecodingKey, KeyError> {
    let name = algorithm_name(algorithm);
    let pem = read_key_file(path)?;
    let shown = || path.display().to_string();
    if String::from_utf8_lossy(&pem).contains("PRIVATE KEY-----") {
        return Err(KeyError::PrivateKeyGiven(shown()));
    }
    let invalid = |reason: String| KeyError::InvalidKey {
        path: shown(),
        algorithm: name,
        kind: "public",
        reason,
    };
    let key = if algorithm == Algorithm::RS256 {
        DecodingKey::from_rsa_pem(&pem)
    } else {
        DecodingKey::from_ec_pem(&pem)
    }
    .map_err(|e| invalid(e.to_string()))?;
    // Try the key on a token with a dummy signature: a key the algorithm cannot use (an EC key
    // on another curve than P-256, say) fails here rather than on every token.
    let probe = probe_token(algorithm);
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match decode::<serde_json::Value>(&probe, &key, &validation) {
        Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => Ok(key),
        Err(e) => Err(invalid(e.to_string())),
        Ok(_) => Err(invalid("it accepts a forged signature".into())),
    }
}

/// `header.{}.signature` with an all-zero signature of the algorithm's length.
fn probe_token(algorithm: Algorithm) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b64 = |bytes: &[u8]| -> String {
        let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, algorithm_name(algorithm));
    let signature_len = if algorithm == Algorithm::ES256 {
        64
    } else {
        256
    };
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(b"{}"),
        b64(&vec![0u8; signature_len])
    )
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

/// Start-up warnings about how keys are configured and kept, one sentence each (the caller
/// logs them at warn; nothing here refuses to start, so existing deployments keep running):
///
/// - the secret file in use (HS algorithms without `HERALD_JWT_SECRET`) or the TLS private key
///   is readable by group or others (`mode & 0o077 != 0`): any local user could then mint
///   tokens or impersonate the server;
/// - RS256/ES256 without both `iss` and `aud` required: any token the identity provider signs,
///   for any application, would be accepted.
///
/// `mode_of` answers a file's Unix permission bits (`None`: missing, or not Unix); passing it
/// in keeps this a pure function that tests call with made-up modes.
pub fn key_warnings(settings: &Settings, mode_of: impl Fn(&Path) -> Option<u32>) -> Vec<String> {
    let mut warnings = Vec::new();
    let algorithm = parse_algorithm(&settings.auth.algorithm).ok();
    let mut private_files = Vec::new();
    if algorithm.is_some_and(uses_secret) && settings.jwt_secret.is_none() {
        private_files.push(("JWT secret file", settings.secret_file_path()));
    }
    if let Some(key) = &settings.tls_key {
        private_files.push(("TLS private key", key.clone()));
    }
    for (what, path) in private_files {
        if let Some(mode) = mode_of(&path).filter(|m| m & 0o077 != 0) {
            warnings.push(format!(
                "{what} {} is readable by other users (mode {:03o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    if let Some(a) = algorithm.filter(|a| !uses_secret(*a)) {
        let missing: Vec<&str> = [
            ("HERALD_JWT_ISSUER", settings.auth.issuer.is_none()),
            ("HERALD_JWT_AUDIENCE", settings.auth.audience.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, unset)| unset.then_some(name))
        .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "{} tokens are accepted without checking {}: any token the identity provider \
                 signs, for any application, is valid here; set {}",
                algorithm_name(a),
                if missing.len() == 2 {
                    "iss and aud"
                } else if missing[0] == "HERALD_JWT_ISSUER" {
                    "iss"
                } else {
                    "aud"
                },
                missing.join(" and ")
            ));
        }
    }
    warnings
}

/// The Unix permission bits of `path`, or `None` if it cannot be read (or off Unix).
pub fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).ok().map(|m| m.permissions().mode())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The token of an `Authorization: Bearer <JWT>` header, if the request has one.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// The token of a WebSocket handshake: `Authorization: Bearer`, else the `token` query
/// parameter (browsers cannot set headers on an upgrade). REST must use [`bearer_token`].
pub fn token_from_request(req: &HttpRequest) -> Option<String> {
    bearer_token(req).or_else(|| {
        web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().token)
    })
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn engine_keys(req: &HttpRequest) -> Result<&JwtKeys, AppError> {
    req.app_data::<web::Data<crate::engine::Engine>>()
        .map(|e| e.keys.as_ref())
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "engine not configured"))
}

/// Verifies a REST request's token, taken only from the `Authorization` header: `?token=` is
/// refused (401) because query strings are logged by proxies and servers.
pub fn authenticate(req: &HttpRequest) -> Result<AuthenticatedUser, AppError> {
    let keys = engine_keys(req)?;
    let token = bearer_token(req).ok_or(AuthError::MissingHeader)?;
    Ok(keys.verify(&token)?)
}

/// Verifies a WebSocket handshake's token: the `Authorization` header or `?token=`.
pub fn authenticate_socket(req: &HttpRequest) -> Result<AuthenticatedUser, AppError> {
    let keys = engine_keys(req)?;
    let token = token_from_request(req).ok_or(AuthError::Missing)?;
    Ok(keys.verify(&token)?)
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
}
