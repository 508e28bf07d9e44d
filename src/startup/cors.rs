//! CORS for the REST API: the configured origins, checked at start-up, and the middleware.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::header::{self};

use super::StartupError;

/// The configured CORS origins, checked: each must be `scheme://host[:port]`.
pub(super) fn allowed_origins(configured: &[String]) -> Result<Arc<[String]>, StartupError> {
    for origin in configured {
        let valid = origin.split_once("://").is_some_and(|(scheme, authority)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !authority.is_empty()
                && !authority
                    .chars()
                    .any(|c| "/?#@\\".contains(c) || c.is_whitespace() || c.is_control())
        });
        if !valid {
            return Err(StartupError::Origin(origin.clone()));
        }
    }
    Ok(configured.iter().cloned().collect())
}

/// CORS for the REST API: any origin (`*`) when `origins` is empty, else only those origins
/// (compared case-insensitively). Never with credentials: tokens travel in `Authorization`.
pub(super) fn cors(origins: &Arc<[String]>) -> Cors {
    let cors = if origins.is_empty() {
        Cors::default().allow_any_origin().send_wildcard()
    } else {
        let origins = Arc::clone(origins);
        Cors::default().allowed_origin_fn(move |origin, _| {
            origin.to_str().is_ok_and(|o| {
                origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(o))
            })
        })
    };
    cors.allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allow_any_header()
        .expose_headers([header::RETRY_AFTER])
        .max_age(3600)
}
