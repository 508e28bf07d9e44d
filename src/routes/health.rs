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

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

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
