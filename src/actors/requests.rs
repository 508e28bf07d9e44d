//! `RequestSession`: the one pipeline a client request goes through, whatever the session's
//! wire protocol (`WsSession` on `/v1/ws`, `SocketIoSession` on `/socket.io/`).
//!
//! A parsed request gets the rate verdict (the session's buckets, its in-flight cap and the
//! user's shared buckets; abuse ends the session), `ping` and `auth` are answered by the
//! session itself (an accepted token re-arms the expiry timers), and every other request is
//! carried out by the engine (`SessionPort::execute`) through the session's `InFlight`, with
//! the continuity hooks of a `join` ([`StreamSession::join_sent`] /
//! [`StreamSession::join_answered`]), the session's own read receipt lowering its unread
//! counts, and the request metrics. Each session says only how an ack, an error, a pong and
//! an abuse close look on its wire.

use actix::prelude::*;
use serde_json::{json, Value};
use std::time::Instant;

use super::continuity::StreamSession;
use super::inflight::InFlight;
use super::session::SessionHandle;
use crate::auth::AuthenticatedUser;
use crate::domain::{rfc3339, ReceiptStatus};
use crate::engine::SessionPort;
use crate::error::ErrorCode;
use crate::metrics::METRICS;
use crate::protocol::ClientRequest;
use crate::rate::{Admission, RequestLimiter, ABUSE_MESSAGE};

/// The parts of a session the pipeline reads at once (split borrows of its fields).
pub struct RequestParts<'a, S: Actor> {
    pub port: &'a SessionPort,
    pub auth: &'a AuthenticatedUser,
    pub limiter: &'a mut RequestLimiter,
    pub inflight: &'a InFlight<S>,
}

pub trait RequestSession: StreamSession {
    /// What a reply is addressed to on the wire: the native `ref`, the Socket.IO ack id.
    type Reference: 'static;

    /// The session's port to the engine, user, limiter and requests in flight; `None` before the session
    /// is authenticated (no request is carried out then).
    fn request_parts(&mut self) -> Option<RequestParts<'_, Self>>;
    /// Takes a fresh token accepted by `auth`.
    fn set_auth(&mut self, fresh: AuthenticatedUser);
    /// The handle the engine reaches this session by.
    fn request_handle(&mut self, ctx: &mut Self::Ctx) -> Option<SessionHandle>;

    /// Writes a request's ack with its data.
    fn write_ack(&mut self, reference: &Self::Reference, data: &Value, ctx: &mut Self::Ctx);
    /// Writes a request's error (`retry_after_ms` when the server sheds load).
    fn write_error(
        &mut self,
        reference: &Self::Reference,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
        ctx: &mut Self::Ctx,
    );
    /// Answers a `ping` request.
    fn write_pong(&mut self, reference: &Self::Reference, ctx: &mut Self::Ctx);
    /// Ends a session whose client kept sending past its rate limits (after the error).
    fn close_abusive(&mut self, ctx: &mut Self::Ctx);

    /// Writes a request's error and counts it.
    fn fail(
        &mut self,
        reference: &Self::Reference,
        code: ErrorCode,
        message: &str,
        ctx: &mut Self::Ctx,
    ) {
        METRICS.errors.with_label_values(&[code.as_str()]).inc();
        self.write_error(reference, code, message, None, ctx);
    }

    /// Carries out one parsed client request and answers it on the session's wire.
    fn handle_request(
        &mut self,
        reference: Self::Reference,
        request: ClientRequest,
        ctx: &mut Self::Ctx,
    ) {
        let Some(parts) = self.request_parts() else {
            return;
        };
        let max_inflight = parts.port.settings().limits.max_inflight;
        let (port, user) = (parts.port, &parts.auth.user_id);
        let per_user = |class| port.check_user_class(user, class);
        match parts
            .limiter
            .admit(&request, parts.inflight.len(), max_inflight, per_user)
        {
            Admission::Allowed => {}
            Admission::Refused(msg) => {
                return self.fail(&reference, ErrorCode::RateLimited, &msg, ctx);
            }
            Admission::Abusive => {
                self.fail(&reference, ErrorCode::RateLimited, ABUSE_MESSAGE, ctx);
                return self.close_abusive(ctx);
            }
        }
        match request {
            ClientRequest::Ping => self.write_pong(&reference, ctx),
            ClientRequest::Auth { token } => {
                let refreshed = self
                    .request_parts()
                    .map(|p| p.port.refresh_auth(p.auth, &token));
                match refreshed {
                    Some(Ok(fresh)) => {
                        let data = json!({ "expires_at": rfc3339(fresh.expires_at) });
                        self.set_auth(fresh);
                        self.arm_expiry(ctx);
                        self.write_ack(&reference, &data, ctx);
                    }
                    Some(Err(e)) => self.fail(&reference, e.code, &e.message, ctx),
                    None => {}
                }
            }
            request => self.execute(reference, request, ctx),
        }
    }

    /// Hands a request to `SessionPort::execute` and answers it when it resolves, without
    /// blocking the session's mailbox meanwhile.
    fn execute(&mut self, reference: Self::Reference, request: ClientRequest, ctx: &mut Self::Ctx) {
        let Some(handle) = self.request_handle(ctx) else {
            return;
        };
        // Our own read receipt is not echoed back to us; count it here.
        let read = match &request {
            ClientRequest::Receipt {
                room,
                seq,
                status: ReceiptStatus::Read,
            } => Some((room.clone(), *seq)),
            _ => None,
        };
        let joining = match &request {
            ClientRequest::Join { room, since_seq } => {
                self.join_sent(room);
                Some((room.clone(), *since_seq))
            }
            _ => None,
        };
        let Some(parts) = self.request_parts() else {
            return;
        };
        let port = parts.port.clone();
        let admin = parts.auth.is_admin() || parts.auth.is_service();
        let kind = request.kind();
        let started = Instant::now();
        parts.inflight.run(
            async move { port.execute(handle, admin, request).await },
            move |res, act: &mut Self, ctx| {
                METRICS
                    .request_seconds
                    .with_label_values(&[kind])
                    .observe(started.elapsed().as_secs_f64());
                match &res {
                    Ok(data) => {
                        if let Some((room, seq)) = &read {
                            if act.unread().read_up_to(room, *seq) {
                                act.schedule_unread(ctx);
                            }
                        }
                        // The ack first: for a join, the replay that follows continues it.
                        act.write_ack(&reference, data, ctx);
                    }
                    Err(e) => {
                        let code = e.code();
                        METRICS.errors.with_label_values(&[code.as_str()]).inc();
                        let message = e.to_string();
                        act.write_error(&reference, code, &message, e.retry_after_ms(), ctx);
                    }
                }
                if let Some((room, since)) = joining {
                    act.join_answered(&room, since, res.as_ref().ok(), ctx);
                }
            },
            ctx,
        );
    }
}
