//! Development login (`HERALD_DEV_LOGIN`): `POST /v1/dev/login {"user":"alice"}` mints a
//! short-lived token for any valid user id, so the demo page at `/` can be tried without a
//! token issuer. The route answers 404 unless the setting is on, and start-up turns the
//! setting off (with a warning) unless the server binds a loopback address
//! ([`refuse_off_loopback`]). The REST rate limit applies to it like to every REST route.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::config::Settings;
use crate::domain::UserId;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

/// Life of a development token. Short on purpose: the page asks for a new one through
/// `getToken()` (the client's in-band refresh and every reconnect), so nothing long-lived
/// sits in the browser.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevLogin {
    user: String,
}

/// `POST /v1/dev/login`: 200 `{"token","user","expires_in"}`; 404 when `HERALD_DEV_LOGIN` is
/// off; 422 `invalid_data` for a user id outside `[A-Za-z0-9_.@-]{1,64}`. The token carries
/// no roles. A browser request from another origin gets 403 `forbidden`, so a web page the
/// developer happens to visit cannot mint tokens from their local server.
#[utoipa::path(
    post,
    path = "/v1/dev/login",
    tag = "web",
    request_body(content = Object, description = "`{\"user\": \"alice\"}`"),
    responses(
        (status = 200, description = "`{\"token\",\"user\",\"expires_in\"}`: a 15-minute token without roles.", body = Object),
        (status = 403, description = "A browser request from another origin.", body = crate::routes::openapi::ErrorBody),
        (status = 404, description = "`HERALD_DEV_LOGIN` is off.", body = crate::routes::openapi::ErrorBody),
        (status = 422, description = "Not a valid user id.", body = crate::routes::openapi::ErrorBody),
    ),
)]
pub async fn login(
    req: HttpRequest,
    engine: web::Data<Engine>,
    body: web::Json<DevLogin>,
) -> Result<HttpResponse, AppError> {
    if !engine.settings.dev_login {
        return Err(AppError::new(ErrorCode::NotFound, "no such route"));
    }
    if !same_origin(&req) {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            "dev login only answers pages of this server",
        ));
    }
    let user = UserId::parse(body.user.trim())?;
    let token = engine
        .keys
        .mint(user.as_str(), None, &[], DEV_TOKEN_TTL)
        .map_err(AppError::from)?;
    log::info!("dev login: token for {}", user.as_str());
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "token": token,
            "user": user.as_str(),
            "expires_in": DEV_TOKEN_TTL.as_secs(),
        })))
}

/// Whether the request has no `Origin` (not a cross-origin browser request) or one whose
/// host is the request's `Host`.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Turns `dev_login` off, with a warning, unless `bind` is a loopback address: anyone who
/// can reach the server could otherwise become any user.
pub fn refuse_off_loopback(settings: &mut Settings) {
    if settings.dev_login && !is_loopback_bind(&settings.bind) {
        log::warn!(
            "HERALD_DEV_LOGIN refused: {} is not a loopback address; dev login stays off",
            settings.bind
        );
        settings.dev_login = false;
    }
}

/// Whether `bind` (`host:port`) names a loopback address: `127.0.0.0/8`, `::1` or
/// `localhost`. Unspecified addresses (`0.0.0.0`, `::`) listen everywhere and are not.
pub fn is_loopback_bind(bind: &str) -> bool {
    if let Ok(addr) = bind.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_are_recognised() {
        for bind in [
            "127.0.0.1:8080",
            "127.0.0.1:0",
            "[::1]:8080",
            "localhost:8080",
        ] {
            assert!(is_loopback_bind(bind), "{bind}");
        }
        for bind in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "example.com:80",
        ] {
            assert!(!is_loopback_bind(bind), "{bind}");
        }
    }

    #[test]
    fn dev_login_is_turned_off_on_a_public_bind() {
        // Arrange
        let mut public = Settings {
            bind: "0.0.0.0:8080".into(),
            dev_login: true,
            ..Settings::default()
        };
        let mut local = Settings {
            bind: "127.0.0.1:8080".into(),
            dev_login: true,
            ..Settings::default()
        };
        // Act
        refuse_off_loopback(&mut public);
        refuse_off_loopback(&mut local);
        // Assert
        assert!(!public.dev_login);
        assert!(local.dev_login);
    }
}
