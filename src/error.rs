//! Typed errors and their single mapping to wire error codes and HTTP statuses.
//!
//! `PersistError` comes out of the persistence layer, `EngineError` out of the actors,
//! `AuthError` out of token checks. Each has a stable [`ErrorCode`]; sessions put that code in
//! `error` frames and REST handlers turn it into `{"error":{"code","message"}}` with
//! [`ErrorCode::http_status`].

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The stable machine codes of `error` frames and REST error bodies (docs/protocol.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or not a JSON object.
    InvalidJson,
    /// The frame's `type` is not one the server knows.
    UnknownType,
    /// A field is missing, ill-typed or out of range.
    InvalidData,
    /// The caller may not do this (not a member, not the owner, not an admin).
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// A frame or body is larger than the configured limit.
    TooLarge,
    /// A rate limit was hit.
    RateLimited,
    /// A size limit of the server was reached (rooms per user, members per room, watch list,
    /// sessions per user, connections per IP).
    LimitExceeded,
    /// The database cannot be reached; nothing was stored. Retry later.
    Unavailable,
    /// A bug or an unexpected failure; nothing was stored.
    Internal,
    /// Missing, malformed or badly signed token.
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// Binary frames are not part of the native protocol.
    BinaryUnsupported,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidData => "invalid_data",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::BinaryUnsupported => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::InvalidData => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited | ErrorCode::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InvalidToken | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Which kind of constraint refused a write, so a caller can tell a duplicate from a
/// missing parent without reading the database's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    /// A unique index or primary key: the row exists already.
    Unique,
    /// A foreign key: the row it points at does not exist (or is still referenced).
    ForeignKey,
    NotNull,
    Check,
}

/// Failures of the persistence layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    /// The database cannot be reached or the transaction failed; nothing of it was stored.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the write (a bug in the caller's checks, or a race it lost).
    #[error("constraint violated: {message}")]
    Constraint {
        kind: ConstraintKind,
        /// The database's own text.
        message: String,
    },
    /// The commit queue is full: the write was refused before queueing; nothing was stored.
    #[error("the write queue is full; retry in {retry_after_ms} ms")]
    Overloaded { retry_after_ms: u64 },
}

impl From<diesel::result::Error> for PersistError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(kind, info) => {
                let kind = match kind {
                    DatabaseErrorKind::UniqueViolation => ConstraintKind::Unique,
                    DatabaseErrorKind::ForeignKeyViolation => ConstraintKind::ForeignKey,
                    DatabaseErrorKind::NotNullViolation => ConstraintKind::NotNull,
                    DatabaseErrorKind::CheckViolation => ConstraintKind::Check,
                    _ => return PersistError::Unavailable(info.message().to_owned()),
                };
                PersistError::Constraint {
                    kind,
                    message: info.message().to_owned(),
                }
            }
            other => PersistError::Unavailable(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for PersistError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        PersistError::Unavailable(e.to_string())
    }
}

impl From<actix::MailboxError> for PersistError {
    fn from(e: actix::MailboxError) -> Self {
        PersistError::Unavailable(format!("persistence actor: {e}"))
    }
}

/// Failures the engine reports to a client, on a socket or over REST.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    RateLimited(String),
    /// The server is shedding writes; the client should retry after `retry_after_ms`.
    #[error("the server is busy, nothing was stored; retry in {retry_after_ms} ms")]
    Overloaded { retry_after_ms: u64 },
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Invalid(_) => ErrorCode::InvalidData,
            EngineError::Forbidden(_) => ErrorCode::Forbidden,
            EngineError::NotFound(_) => ErrorCode::NotFound,
            EngineError::Conflict(_) => ErrorCode::Conflict,
            EngineError::Unavailable(_) => ErrorCode::Unavailable,
            EngineError::Internal(_) => ErrorCode::Internal,
            EngineError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            EngineError::TooLarge(_) => ErrorCode::TooLarge,
            EngineError::RateLimited(_) => ErrorCode::RateLimited,
            EngineError::Overloaded { .. } => ErrorCode::Unavailable,
        }
    }

    /// How long the client should wait before retrying, when the server said so.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            EngineError::Overloaded { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }

    pub fn no_access(room: &impl fmt::Display) -> Self {
        EngineError::Forbidden(format!(
            "you are not a member of room {room} and may not join it"
        ))
    }
}

impl From<PersistError> for EngineError {
    fn from(e: PersistError) -> Self {
        match e {
            // Not logged here: one failure reaches every waiter of its batch. The database
            // actor logs it once where it happens.
            PersistError::Unavailable(_) => EngineError::Unavailable(
                "storage is unavailable, nothing was stored; retry later".into(),
            ),
            PersistError::Constraint { message, .. } => EngineError::Conflict(message),
            PersistError::Overloaded { retry_after_ms } => {
                EngineError::Overloaded { retry_after_ms }
            }
        }
    }
}

impl From<actix::MailboxError> for EngineError {
    fn from(e: actix::MailboxError) -> Self {
        EngineError::Unavailable(format!("engine actor unavailable: {e}"))
    }
}

impl From<crate::domain::InvalidInput> for EngineError {
    fn from(e: crate::domain::InvalidInput) -> Self {
        EngineError::Invalid(e.0)
    }
}

/// The error of a REST handler: a code, a message and the HTTP status of the code.
#[derive(Debug, Clone)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up) when waiting helps.
    pub retry_after: Option<std::time::Duration>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.http_status()
    }
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(wait) = self.retry_after {
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs));
        }
        res.json(serde_json::json!({
            "error": {"code": self.code.as_str(), "message": self.message}
        }))
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        let app = AppError::new(e.code(), e.to_string());
        match e.retry_after_ms() {
            Some(ms) => app.with_retry_after(std::time::Duration::from_millis(ms)),
            None => app,
        }
    }
}

impl From<crate::auth::AuthError> for AppError {
    fn from(e: crate::auth::AuthError) -> Self {
        AppError::new(e.code(), e.to_string())
    }
}

impl From<crate::domain::InvalidInput> for AppError {
    fn from(e: crate::domain::InvalidInput) -> Self {
        AppError::new(ErrorCode::InvalidData, e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status and the exact JSON body of an error response.
    async fn wire(err: AppError) -> (StatusCode, Option<String>, serde_json::Value) {
        let resp = err.error_response();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(actix_web::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[actix_web::test]
    async fn rest_error_body_has_code_and_message() {
        // Arrange
        let err = AppError::new(ErrorCode::Forbidden, "no");

        // Act
        let (status, retry_after, body) = wire(err).await;

        // Assert
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(retry_after, None);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "forbidden", "message": "no"}})
        );
    }

    #[actix_web::test]
    async fn an_engine_error_keeps_its_code_message_and_retry_after_on_the_wire() {
        // Arrange
        let err = AppError::from(EngineError::Overloaded {
            retry_after_ms: 1500,
        });

        // Act
        let (status, retry_after, body) = wire(err).await;

        // Assert
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("2"), "1.5 s rounds up");
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "unavailable",
                "message": "the server is busy, nothing was stored; retry in 1500 ms"
            }})
        );
    }

    #[test]
    fn persistence_failures_map_to_engine_errors_by_kind() {
        use diesel::result::{DatabaseErrorKind, Error};

        // Arrange
        let db_error = |kind| Error::DatabaseError(kind, Box::new("refused".to_owned()));
        let cases = [
            (
                db_error(DatabaseErrorKind::UniqueViolation),
                Some(ConstraintKind::Unique),
            ),
            (
                db_error(DatabaseErrorKind::ForeignKeyViolation),
                Some(ConstraintKind::ForeignKey),
            ),
            (
                db_error(DatabaseErrorKind::NotNullViolation),
                Some(ConstraintKind::NotNull),
            ),
            (
                db_error(DatabaseErrorKind::CheckViolation),
                Some(ConstraintKind::Check),
            ),
            (db_error(DatabaseErrorKind::ClosedConnection), None),
            (Error::DeserializationError("bad row".into()), None),
            (Error::NotFound, None),
        ];

        for (diesel_error, constraint) in cases {
            // Act
            let persist = PersistError::from(diesel_error);
            let engine = EngineError::from(persist.clone());

            // Assert
            match (constraint, &persist) {
                (Some(kind), PersistError::Constraint { kind: k, message }) => {
                    assert_eq!((*k, message.as_str()), (kind, "refused"));
                    assert_eq!(engine.code(), ErrorCode::Conflict);
                    assert_eq!(engine.to_string(), "refused");
                }
                (None, PersistError::Unavailable(_)) => {
                    assert_eq!(engine.code(), ErrorCode::Unavailable);
                    assert_eq!(
                        engine.to_string(),
                        "storage is unavailable, nothing was stored; retry later",
                        "the cause stays in the log, not on the wire"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let overloaded = EngineError::from(PersistError::Overloaded { retry_after_ms: 20 });
        assert_eq!(
            (overloaded.code(), overloaded.retry_after_ms()),
            (ErrorCode::Unavailable, Some(20))
        );
    }

    #[test]
    fn codes_are_stable_strings() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::RateLimited).unwrap(),
            "\"rate_limited\""
        );
        assert_eq!(ErrorCode::InvalidJson.as_str(), "invalid_json");
    }
}
