//! The web pages: the demo chat page `GET /`, the admin dashboard `GET /admin`, and their
//! assets under `GET /web/...`, all embedded in the binary (`include_str!`), so nothing is
//! loaded from the network at run time. The pages' own code is in `src/web/`; the client
//! library the chat uses is `clients/js/`, served as is; the dashboard's chart library
//! (uPlot, MIT) is vendored minified under `src/web/vendor/` with its license.
//!
//! Headers: every answer carries a strict Content-Security-Policy (scripts, styles, images
//! and connections from this origin only; no inline script or style; no framing),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. The URLs are not
//! fingerprinted, so caches must revalidate (`Cache-Control: no-cache`); assets carry an
//! `ETag` and a matching `If-None-Match` gets 304.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

/// The page's Content-Security-Policy. `connect-src 'self'` covers the same-origin
/// `ws:`/`wss:` socket (CSP Level 3).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../web/index.html");
const ADMIN_HTML: &str = include_str!("../web/admin.html");

/// The marker in `index.html` that says whether the name form (dev login) is offered.
const DEV_LOGIN_OFF: &str = "data-dev-login=\"false\"";

const JS: &str = "text/javascript; charset=utf-8";

/// The assets under `/web/`: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../web/app.js")),
    ("chat.js", JS, include_str!("../web/chat.js")),
    ("view.js", JS, include_str!("../web/view.js")),
    ("admin.js", JS, include_str!("../web/admin.js")),
    (
        "admin-charts.js",
        JS,
        include_str!("../web/admin-charts.js"),
    ),
    ("admin-lists.js", JS, include_str!("../web/admin-lists.js")),
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_str!("../web/admin.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        JS,
        include_str!("../web/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../web/vendor/uPlot.min.css"),
    ),
    (
        "vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../web/vendor/uPlot.LICENSE"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("../web/icon.svg")),
    (
        "herald-client.js",
        JS,
        include_str!("../../clients/js/herald-client.js"),
    ),
    (
        "lib/backoff.js",
        JS,
        include_str!("../../clients/js/lib/backoff.js"),
    ),
    (
        "lib/delivered.js",
        JS,
        include_str!("../../clients/js/lib/delivered.js"),
    ),
    (
        "lib/emitter.js",
        JS,
        include_str!("../../clients/js/lib/emitter.js"),
    ),
    (
        "lib/errors.js",
        JS,
        include_str!("../../clients/js/lib/errors.js"),
    ),
    (
        "lib/heartbeat.js",
        JS,
        include_str!("../../clients/js/lib/heartbeat.js"),
    ),
    (
        "lib/outbox.js",
        JS,
        include_str!("../../clients/js/lib/outbox.js"),
    ),
    (
        "lib/positions.js",
        JS,
        include_str!("../../clients/js/lib/positions.js"),
    ),
    (
        "lib/token.js",
        JS,
        include_str!("../../clients/js/lib/token.js"),
    ),
];

/// `GET /`: the page. The name form is shown only when `HERALD_DEV_LOGIN` is on.
#[utoipa::path(
    get,
    path = "/",
    tag = "web",
    responses((status = 200, description = "The demo chat page (HTML, strict Content-Security-Policy; docs/web.md).", content_type = "text/html")),
)]
pub async fn index(engine: web::Data<Engine>) -> HttpResponse {
    let body = if engine.settings.dev_login {
        INDEX_HTML.replace(DEV_LOGIN_OFF, "data-dev-login=\"true\"")
    } else {
        INDEX_HTML.to_owned()
    };
    let mut resp = HttpResponse::Ok();
    secure(&mut resp);
    resp.content_type("text/html; charset=utf-8").body(body)
}

/// `GET /admin`: the live admin dashboard. It holds no data: the page signs in with an admin
/// token (typed, or from the URL fragment, which browsers never send) and reads the admin
/// REST routes with it.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "web",
    responses((status = 200, description = "The admin dashboard (HTML, strict Content-Security-Policy; docs/web.md). Its data comes from the admin routes, with the admin token the page is given.", content_type = "text/html")),
)]
pub async fn admin(req: HttpRequest) -> HttpResponse {
    // Unlike `/`, the dashboard's HTML is the same for every server: it gets an ETag too.
    respond(&req, "text/html; charset=utf-8", ADMIN_HTML)
}

/// `GET /web/{file}`: one embedded asset of the page (404 `not_found` for anything else).
#[utoipa::path(
    get,
    path = "/web/{file}",
    tag = "web",
    params(("file" = String, Path, description = "An asset of the page: `app.js`, `style.css`, `herald-client.js`...")),
    responses(
        (status = 200, description = "The asset, with an ETag."),
        (status = 304, description = "`If-None-Match` matched."),
        (status = 404, description = "No such asset.", body = crate::routes::openapi::ErrorBody),
    ),
)]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, AppError> {
    serve(&req, file.as_str())
}

/// `GET /web/lib/{file}`: one module of the embedded JavaScript client library.
#[utoipa::path(
    get,
    path = "/web/lib/{file}",
    tag = "web",
    params(("file" = String, Path, description = "A module of clients/js/lib: `backoff.js`, `outbox.js`...")),
    responses(
        (status = 200, description = "The module, with an ETag."),
        (status = 304, description = "`If-None-Match` matched."),
        (status = 404, description = "No such module.", body = crate::routes::openapi::ErrorBody),
    ),
)]
pub async fn lib_asset(
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &format!("lib/{}", file.as_str()))
}

/// `GET /web/vendor/{file}`: vendored third-party code (the chart library and its license).
#[utoipa::path(
    get,
    path = "/web/vendor/{file}",
    tag = "web",
    params(("file" = String, Path, description = "`uPlot.iife.min.js`, `uPlot.min.css` or `uPlot.LICENSE`.")),
    responses(
        (status = 200, description = "The file, with an ETag."),
        (status = 304, description = "`If-None-Match` matched."),
        (status = 404, description = "No such file.", body = crate::routes::openapi::ErrorBody),
    ),
)]
pub async fn vendor_asset(
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &format!("vendor/{}", file.as_str()))
}

fn serve(req: &HttpRequest, file: &str) -> Result<HttpResponse, AppError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(path, _, _)| *path == file)
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "no such file"))?;
    Ok(respond(req, content_type, body))
}

/// `body` with the page headers and its ETag, or 304 when `If-None-Match` names it.
fn respond(req: &HttpRequest, content_type: &'static str, body: &'static str) -> HttpResponse {
    let etag = etag(body);
    let fresh = if_none_match(req, &etag);
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    secure(&mut resp);
    resp.insert_header((header::ETAG, etag.as_str()));
    if fresh {
        return resp.finish();
    }
    resp.content_type(content_type).body(body)
}

/// The headers of every page answer: CSP, no sniffing, no referrer, revalidate.
fn secure(resp: &mut actix_web::HttpResponseBuilder) {
    resp.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
}

/// A strong ETag of an asset: the crate version and a hash of the content (SipHash with
/// fixed keys, so it is the same in every process of a build).
fn etag(body: &str) -> String {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), h.finish())
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == etag || t == "*" || t.strip_prefix("W/") == Some(etag))
}
