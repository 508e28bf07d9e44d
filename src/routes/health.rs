//! `GET /healthz` (the process is up) and `GET /readyz` (the database is reachable and migrated).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::database::CheckReady;
use crate::engine::Engine;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    match engine.store.reader.send(CheckReady).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": e.to_string()})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": e.to_string()})),
    }
}
