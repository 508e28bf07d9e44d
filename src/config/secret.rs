//! Secrets and database-URL redaction: `Secret` (never printed by `Debug`), the shortest
//! accepted JWT secret, and `redact_url`/`scrub_url` for logs and errors.

use super::*;

/// Shortest JWT secret accepted, in bytes (HS256 wants at least 256 bits of key).
pub const MIN_SECRET_LEN: usize = 32;

/// A secret whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `url` with its password replaced by `***`, for logs and error messages: the userinfo
/// password (`postgres://user:pw@host/db`) and any `password` or `sslpassword` query
/// parameter. URLs without a password come back unchanged.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            // The password ends at the last '@' of the authority (an '@' in it must be
            // percent-encoded, but be safe with sloppy URLs).
            match rest[..authority_end].rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                    None => base.to_owned(),
                },
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The passwords `url` carries (userinfo and `*password` query parameters), raw and
/// percent-decoded, so text that may quote them can be scrubbed.
fn url_passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((_, rest)) = base.split_once("://") {
        let authority = &rest[..rest.find(['/', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            if let Some((_, pw)) = authority[..at].split_once(':') {
                found.push(pw.to_owned());
            }
        }
    }
    for p in query.split('&') {
        if let Some((k, v)) = p.split_once('=') {
            if k.to_ascii_lowercase().contains("password") {
                found.push(v.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (an error message or log line) with the database URL and its password replaced by
/// their redacted forms. Drivers sometimes quote the URL or a piece of it (libpq quotes a
/// badly percent-encoded password, for one). Passwords shorter than 4 characters are only
/// removed as part of the URL: blanking every "ab" in a message would garble it, and such a
/// password is no secret anyway.
pub fn scrub_url(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for pw in url_passwords(url) {
        if pw.chars().count() >= 4 {
            out = out.replace(&pw, "***");
        }
    }
    out
}
