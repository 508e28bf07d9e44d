//! HTTP routes. Handlers are thin: authenticate, parse, call the [`Engine`](crate::engine::Engine),
//! shape the JSON. Errors leave as `{"error":{"code","message"}}` through `AppError`.

pub mod admin;
pub mod admin_data;
pub mod changes;
pub mod consent;
pub mod dev;
pub mod health;
pub mod notifications;
pub mod openapi;
pub mod page;
pub mod presence;
pub mod rooms;
pub mod socketio;
pub mod webhooks;
pub mod ws;

use actix_web::http::Method;
use actix_web::{guard, web};

use crate::error::{AppError, ErrorCode};

/// The HTTP method of a [`RouteSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// The method's name as HTTP spells it (`GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// One route of the router. [`ROUTES`] is the route table: [`configure`] registers exactly
/// these and nothing else, so the OpenAPI drift test (tests/herald/openapi.rs) reads what the
/// router really serves rather than a second list kept by hand.
pub struct RouteSpec {
    pub verb: Verb,
    /// The path template, `{room}` style, as the OpenAPI document writes it.
    pub path: &'static str,
    /// Other paths the same handler answers (the slash-less twins of `/socket.io/` and
    /// `/ws/notifications/`). The OpenAPI document describes `path` and names these in its
    /// description.
    pub aliases: &'static [&'static str],
    /// A request body limit other than actix's default (Socket.IO long polling).
    pub payload_limit: Option<usize>,
    /// Attaches the handler.
    to: fn(actix_web::Route) -> actix_web::Route,
}

impl RouteSpec {
    /// `path` and its aliases.
    pub fn paths(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.path).chain(self.aliases.iter().copied())
    }
}

/// A [`RouteSpec`]: `route!(Get "/path" => handler)`, with `aliases [..]` and
/// `payload_limit N` when needed.
macro_rules! route {
    ($verb:ident $path:literal => $handler:path) => {
        route!($verb $path, aliases [], payload_limit None => $handler)
    };
    ($verb:ident $path:literal, aliases [$($alias:literal),*], payload_limit $limit:expr => $handler:path) => {
        RouteSpec {
            verb: Verb::$verb,
            path: $path,
            aliases: &[$($alias),*],
            payload_limit: $limit,
            to: |r| r.to($handler),
        }
    };
}

/// Every route, in registration order (the order matters where patterns overlap: the literal
/// `/v1/notifications/preferences` before `/v1/notifications/{id}`).
pub static ROUTES: &[RouteSpec] = &[
    route!(Get "/" => page::index),
    route!(Get "/web/{file}" => page::asset),
    route!(Get "/web/lib/{file}" => page::lib_asset),
    route!(Get "/web/vendor/{file}" => page::vendor_asset),
    route!(Get "/admin" => page::admin),
    route!(Post "/v1/dev/login" => dev::login),
    route!(Get "/healthz" => health::healthz),
    route!(Get "/readyz" => health::readyz),
    route!(Get "/v1/openapi.json" => openapi::document),
    route!(Get "/v1/ws" => ws::native),
    route!(Get "/v1/ws/echo" => ws::echo),
    route!(Post "/v1/rooms" => rooms::create),
    route!(Get "/v1/rooms" => rooms::list),
    route!(Post "/v1/rooms/{room}/members/{user}" => rooms::add_member),
    route!(Delete "/v1/rooms/{room}/members/{user}" => rooms::remove_member),
    route!(Get "/v1/rooms/{room}/messages" => rooms::messages),
    route!(Post "/v1/rooms/{room}/messages" => rooms::post_system_message),
    route!(Get "/v1/rooms/{room}/messages/{message_id}/status" => rooms::message_status),
    route!(Patch "/v1/rooms/{room}/messages/{seq}" => changes::edit),
    route!(Delete "/v1/rooms/{room}/messages/{seq}" => changes::delete),
    route!(Get "/v1/rooms/{room}/changes" => changes::list),
    route!(Get "/v1/presence/{user}" => presence::get_one),
    route!(Get "/metrics" => admin::metrics),
    route!(Get "/v1/admin/presence" => admin::presence_list),
    route!(Get "/v1/admin/presence/{user}" => admin::presence_user),
    route!(Get "/v1/admin/rooms" => admin::rooms_online),
    route!(Get "/v1/admin/rooms/{room}/presence" => admin::room_presence),
    route!(Post "/v1/admin/users/{user}/disconnect" => admin::disconnect_user),
    route!(Get "/v1/admin/stats" => admin::stats),
    route!(Post "/v1/admin/api-keys" => admin_data::create_api_key),
    route!(Get "/v1/admin/api-keys" => admin_data::list_api_keys),
    route!(Delete "/v1/admin/api-keys/{id}" => admin_data::revoke_api_key),
    route!(Get "/v1/admin/audit" => admin_data::audit),
    route!(Get "/v1/admin/users/{user}/export" => admin_data::export_user),
    route!(Delete "/v1/admin/users/{user}" => admin_data::erase_user),
    route!(Post "/v1/admin/notifications" => notifications::send),
    route!(Get "/v1/notifications" => notifications::list),
    route!(Get "/v1/notifications/unread_count" => notifications::unread_count),
    route!(Post "/v1/notifications/read_all" => notifications::mark_all_read),
    route!(Get "/v1/notifications/preferences" => notifications::get_preferences),
    route!(Put "/v1/notifications/preferences" => notifications::put_preferences),
    route!(Post "/v1/notifications/{id}/read" => notifications::mark_read),
    route!(Delete "/v1/notifications/{id}" => notifications::delete),
    route!(Get "/ws/notifications/", aliases ["/ws/notifications"], payload_limit None => ws::notifications),
    route!(Get "/socket.io/", aliases ["/socket.io"], payload_limit Some(SOCKET_IO_PAYLOAD) => socketio::get),
    route!(Post "/socket.io/", aliases ["/socket.io"], payload_limit Some(SOCKET_IO_PAYLOAD) => socketio::post),
    route!(Put "/v1/admin/presence/{user}" => admin::set_presence),
    // Invitations, blocks and reports (issue 18, `consent.rs`).
    route!(Post "/v1/rooms/direct" => consent::create_direct),
    route!(Delete "/v1/rooms/{room}/invitations/{user}" => consent::revoke),
    route!(Post "/v1/rooms/{room}/messages/{seq}/report" => consent::report),
    route!(Get "/v1/invitations" => consent::list_invitations),
    route!(Post "/v1/invitations/{room}/accept" => consent::accept),
    route!(Post "/v1/invitations/{room}/decline" => consent::decline),
    route!(Get "/v1/me/blocks" => consent::list_blocks),
    route!(Put "/v1/me/blocks/{user}" => consent::block),
    route!(Delete "/v1/me/blocks/{user}" => consent::unblock),
    route!(Get "/v1/admin/reports" => consent::list_reports),
    route!(Post "/v1/admin/reports/{id}/resolve" => consent::resolve_report),
    // The webhook outbox (issue 19, `webhooks.rs`).
    route!(Get "/v1/admin/webhooks/events" => webhooks::list_events),
    route!(Post "/v1/admin/webhooks/events/{id}/redrive" => webhooks::redrive_one),
    route!(Post "/v1/admin/webhooks/redrive" => webhooks::redrive_all),
];

/// The request body limit of Socket.IO long polling (a batch of packets).
const SOCKET_IO_PAYLOAD: usize = 16 * 1024 * 1024;

/// Every (method, path template) the router registers, aliases included.
pub fn registered_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES
        .iter()
        .flat_map(|r| r.paths().map(move |p| (r.verb.as_str(), p)))
}

/// Registers every route of [`ROUTES`]; anything else is 404 `not_found`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(query_config())
        .app_data(path_config());
    for spec in ROUTES {
        // One resource per (method, paths), guarded by the method, as `ServiceConfig::route`
        // does: another method falls through to the next resource and finally to 404.
        let mut resource = web::resource(spec.paths().collect::<Vec<_>>())
            .guard(guard::Method(spec.verb.method()));
        if let Some(limit) = spec.payload_limit {
            resource = resource.app_data(web::PayloadConfig::new(limit));
        }
        cfg.service(resource.route((spec.to)(web::route())));
    }
    cfg.default_service(web::to(not_found));
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
