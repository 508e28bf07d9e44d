//! The REST rate limit: GCRA buckets per token and per client IP (`RestLimiter`), the paths
//! it does not apply to, and the middleware that answers 429 `rate_limited`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::auth::{bearer_token, JwtKeys};
use crate::config::Limits;
use crate::error::{AppError, ErrorCode};

/// Paths the REST rate limit does not apply to: WebSocket upgrades (they have their own
/// limits), Socket.IO (long polling is many requests by design) and operations endpoints.
pub(super) fn exempt_from_rest_limit(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/v1/ws" | "/socket.io"
    ) || path.starts_with("/v1/ws/")
        || path.starts_with("/ws/")
        || path.starts_with("/socket.io/")
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestKey {
    /// A request with a valid token: the token's bucket.
    Token(u64),
    /// Anything else (no token, a bad or expired one): the client address's bucket (IPv6 by
    /// /64, the block one subscriber usually gets).
    Ip(IpAddr),
}

/// The REST rate limits: one GCRA token bucket per valid token and one per client IP for
/// requests without a valid token, each `rest_rate` per second with `rest_burst`.
pub struct RestLimiter {
    per_token: DefaultKeyedRateLimiter<u64>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    keys: Arc<JwtKeys>,
    hasher: RandomState,
    checks: AtomicU64,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted: Vec<crate::admission::Cidr>,
}

impl RestLimiter {
    /// Buckets pruned of idle keys every this many checks.
    const PRUNE_EVERY: u64 = 1024;

    /// The limiter of `limits`, or `None` when `rest_rate` is 0 (unlimited).
    pub fn new(
        limits: &Limits,
        keys: Arc<JwtKeys>,
        trusted: Vec<crate::admission::Cidr>,
    ) -> Option<Self> {
        let rate = NonZeroU32::new(limits.rest_rate)?;
        let burst = NonZeroU32::new(limits.rest_burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(RestLimiter {
            per_token: DefaultKeyedRateLimiter::keyed(quota),
            per_ip: DefaultKeyedRateLimiter::keyed(quota),
            keys,
            hasher: RandomState::new(),
            checks: AtomicU64::new(0),
            trusted,
        })
    }

    fn key(&self, req: &ServiceRequest) -> RestKey {
        if let Some(token) = bearer_token(req.request()) {
            if self.keys.verify(&token).is_ok() {
                return RestKey::Token(self.hasher.hash_one(&token));
            }
        }
        let ip = crate::admission::client_ip(req.request(), &self.trusted)
            .map(crate::admission::ip_key)
            .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        RestKey::Ip(ip)
    }

    /// Takes one request from the request's bucket; `Err` holds how long until one is free.
    fn admit(&self, req: &ServiceRequest) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % Self::PRUNE_EVERY == Self::PRUNE_EVERY - 1
        {
            self.per_token.retain_recent();
            self.per_ip.retain_recent();
        }
        match self.key(req) {
            RestKey::Token(t) => self
                .per_token
                .check_key(&t)
                .map_err(|n| n.wait_time_from(self.per_token.clock().now())),
            RestKey::Ip(ip) => self
                .per_ip
                .check_key(&ip)
                .map_err(|n| n.wait_time_from(self.per_ip.clock().now())),
        }
    }
}

/// The REST rate-limit middleware: 429 `rate_limited` with `Retry-After` (whole seconds,
/// rounded up) once the request's bucket is empty.
pub(super) async fn limit_rest<B: MessageBody>(
    limiter: Option<Arc<RestLimiter>>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if let Some(limiter) = limiter.as_deref() {
        if !exempt_from_rest_limit(req.path()) {
            if let Err(wait) = limiter.admit(&req) {
                let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                let mut resp = AppError::new(
                    ErrorCode::RateLimited,
                    format!("too many requests; retry in {secs} s"),
                )
                .error_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return Ok(req.into_response(resp).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
