//! The token keys: [`JwtKeys`] (the verifying key with the pinned algorithm and claim checks)
//! and [`TokenSigner`] (the secret or a PEM private key), with the PEM public-key checks.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::Serialize;

use super::{
    algorithm_name, parse_algorithm, uses_secret, AuthError, AuthenticatedUser, Claims, KeyError,
};
use crate::config::{AuthSettings, Secret};
use crate::domain::{now_millis, UserId};
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
pub(super) fn probe_token(algorithm: Algorithm) -> String {
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
