//! The JWT secret file (loaded, or created on first start) and the start-up warnings about how
//! keys are configured and kept.

use std::io::Write;
use std::path::Path;

use super::{algorithm_name, parse_algorithm, uses_secret};
use crate::config::{Secret, Settings, MIN_SECRET_LEN};
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
