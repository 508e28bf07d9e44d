//! `GET /healthz` (the process is up) and `GET /readyz` (the database is reachable and migrated).
//!
//! Both are open (no token: probes must work without credentials) and cheap: `/readyz` answers
//! from [`Readiness`](crate::readiness::Readiness), which checks the database at most once a
//! second, and its body names no internals (the database error is logged, not returned).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::database::CheckReady;
use crate::engine::Engine;
use crate::error::PersistError;

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`: the process is up.", body = Object)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`: the database is reachable and migrated.", body = Object),
        (status = 503, description = "`{\"status\":\"unavailable\",\"reason\"}` (not the error body).", body = Object),
    ),
)]
pub async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    let reader = engine.store.reader.clone();
    let probe = || async move {
        reader
            .send(CheckReady)
            .await
            .map_err(PersistError::from)
            .and_then(|r| r)
    };
    match engine.readiness.check(probe).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": reason.to_string()})),
    }
}
