//! HTTP routes. Handlers are thin: authenticate, parse, call the [`Engine`](crate::engine::Engine),
//! shape the JSON. Errors leave as `{"error":{"code","message"}}` through `AppError`.

pub mod admin;
pub mod dev;
pub mod health;
pub mod notifications;
pub mod page;
pub mod presence;
pub mod rooms;
pub mod socketio;
pub mod ws;

use actix_web::web;

use crate::error::{AppError, ErrorCode};

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(query_config())
        .app_data(path_config())
        .route("/", web::get().to(page::index))
        .route("/web/{file:.*}", web::get().to(page::asset))
        .route("/v1/dev/login", web::post().to(dev::login))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/v1/ws", web::get().to(ws::native))
        .route("/v1/ws/echo", web::get().to(ws::echo))
        .route("/v1/rooms", web::post().to(rooms::create))
        .route("/v1/rooms", web::get().to(rooms::list))
        .route(
            "/v1/rooms/{room}/members/{user}",
            web::post().to(rooms::add_member),
        )
        .route(
            "/v1/rooms/{room}/members/{user}",
            web::delete().to(rooms::remove_member),
        )
        .route("/v1/rooms/{room}/messages", web::get().to(rooms::messages))
        .route(
            "/v1/rooms/{room}/messages",
            web::post().to(rooms::post_system_message),
        )
        .route(
            "/v1/rooms/{room}/messages/{message_id}/status",
            web::get().to(rooms::message_status),
        )
        .route("/v1/presence/{user}", web::get().to(presence::get_one))
        .route("/metrics", web::get().to(admin::metrics))
        .route("/v1/admin/presence", web::get().to(admin::presence_list))
        .route(
            "/v1/admin/presence/{user}",
            web::get().to(admin::presence_user),
        )
        .route(
            "/v1/admin/rooms/{room}/presence",
            web::get().to(admin::room_presence),
        )
        .route(
            "/v1/admin/users/{user}/disconnect",
            web::post().to(admin::disconnect_user),
        )
        .route("/v1/admin/stats", web::get().to(admin::stats))
        .route(
            "/v1/admin/notifications",
            web::post().to(notifications::send),
        )
        .route("/v1/notifications", web::get().to(notifications::list))
        .route(
            "/v1/notifications/unread_count",
            web::get().to(notifications::unread_count),
        )
        .route(
            "/v1/notifications/read_all",
            web::post().to(notifications::mark_all_read),
        )
        .route(
            "/v1/notifications/preferences",
            web::get().to(notifications::get_preferences),
        )
        .route(
            "/v1/notifications/preferences",
            web::put().to(notifications::put_preferences),
        )
        .route(
            "/v1/notifications/{id}/read",
            web::post().to(notifications::mark_read),
        )
        .route(
            "/v1/notifications/{id}",
            web::delete().to(notifications::delete),
        )
        .route("/ws/notifications/", web::get().to(ws::notifications))
        .route("/ws/notifications", web::get().to(ws::notifications))
        .service(
            web::resource(["/socket.io/", "/socket.io"])
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(web::get().to(socketio::get))
                .route(web::post().to(socketio::post)),
        )
        .route(
            "/v1/admin/presence/{user}",
            web::put().to(admin::set_presence),
        )
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::new(ErrorCode::NotFound, "no such route"))
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        // Room for a notification to 10,000 recipients.
        .limit(1024 * 1024)
        .error_handler(|e, _| {
            let code = match &e {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    ErrorCode::TooLarge
                }
                actix_web::error::JsonPayloadError::Deserialize(d) if d.is_data() => {
                    ErrorCode::InvalidData
                }
                _ => ErrorCode::InvalidJson,
            };
            AppError::new(code, e.to_string()).into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|e, _| AppError::new(ErrorCode::InvalidData, e.to_string()).into())
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|e, _| AppError::new(ErrorCode::InvalidData, e.to_string()).into())
}
