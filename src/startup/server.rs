//! The HTTP server: the per-worker `App` (routes, REST rate limit, CORS) and the server
//! assembled with actix-http's upgrade hook, which hands WebSocket upgrades to `ws_transport`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use std::rc::Rc;

use crate::engine::Engine;

use super::cors::cors;
use super::rest_limit::{limit_rest, RestLimiter};

/// How long a graceful shutdown waits for connections to finish, in seconds.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// The application: routes, the REST rate limit and CORS (built once per worker).
pub(super) fn app(
    data: web::Data<Engine>,
    limiter: Option<Arc<RestLimiter>>,
    origins: Arc<[String]>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data)
        .configure(crate::routes::configure)
        .wrap(from_fn(move |req, next| {
            limit_rest(limiter.clone(), req, next)
        }))
        // Outermost: preflights are answered before the rate limit, and 429s carry
        // CORS headers so a browser can read them.
        .wrap(cors(&origins))
}

/// The server, assembled like `HttpServer::listen` plus actix-http's upgrade hook: WebSocket
/// upgrades leave the HTTP/1 dispatcher and its buffers (`ws_transport`), on plain TCP and
/// with TLS (rustls) alike, so every upgraded socket has the same byte-bounded outbox and
/// write deadline.
pub(super) fn build_server<F, T, B>(
    listener: TcpListener,
    workers: usize,
    transport: crate::ws_transport::TransportLimits,
    tls: Option<rustls::ServerConfig>,
    make_app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    use actix_service::{map_config, IntoServiceFactory as _, ServiceFactoryExt as _};
    use actix_web::dev::AppConfig;

    let mut builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    // Lets idle keep-alive connections close at once on shutdown instead of holding it up.
    let shutdown_signal = builder.graceful_shutdown_signal();
    // A macro, not a closure: the builder's stream type differs between the two listeners.
    macro_rules! http_service {
        () => {{
            let shutdown_signal = shutdown_signal.clone();
            actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown_signal.clone();
                    async move { signal.notified().await }
                })
                .tcp_nodelay(true)
                // The request head is the first stage before authentication.
                .client_request_timeout(transport.handshake_timeout)
        }};
    }
    let builder = match tls {
        None => builder.listen("herald", listener, move || {
            let http = make_app()
                .into_factory()
                .map_err(|err| err.error_response());
            http_service!()
                .upgrade(upgrade_service(make_app.clone(), transport))
                .finish(map_config(http, |_| AppConfig::default()))
                .tcp()
        }),
        Some(config) => builder.listen("herald", listener, move || {
            let http = make_app()
                .into_factory()
                .map_err(|err| err.error_response());
            http_service!()
                .upgrade(upgrade_service(make_app.clone(), transport))
                .finish(map_config(http, |_| AppConfig::default()))
                .rustls_0_23(config.clone())
        }),
    };
    builder.map(|b| b.run())
}

/// The service that takes an upgrade request (and its connection) over from the HTTP/1
/// dispatcher: one per worker, running the same `App` as the dispatcher.
fn upgrade_service<F, T, B, Io>(
    make_app: F,
    transport: crate::ws_transport::TransportLimits,
) -> impl actix_service::ServiceFactory<
    (
        actix_http::Request,
        actix_codec::Framed<Io, actix_http::h1::Codec>,
    ),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: Fn() -> App<T> + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
    Io: actix_codec::AsyncRead + actix_codec::AsyncWrite + Unpin + 'static,
{
    use actix_service::{fn_factory, fn_service, IntoServiceFactory as _, ServiceFactory as _};
    use actix_web::dev::AppConfig;

    fn_factory(move || {
        let factory = make_app().into_factory();
        async move {
            let app = Rc::new(factory.new_service(AppConfig::default()).await?);
            Ok::<_, ()>(fn_service(
                move |(req, framed): (
                    actix_http::Request,
                    actix_codec::Framed<Io, actix_http::h1::Codec>,
                )| {
                    let app = app.clone();
                    async move {
                        // A peer that resets its socket ends the connection; not an error.
                        if let Err(e) =
                            crate::ws_transport::serve_upgrade(app, req, framed, transport).await
                        {
                            log::debug!("upgraded connection ended: {e}");
                        }
                        Ok::<_, actix_web::Error>(())
                    }
                },
            ))
        }
    })
}
