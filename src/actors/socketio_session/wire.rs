//! How the behaviours every session shares look on the Socket.IO wire: requests and their
//! acknowledgements (`RequestSession`), token expiry and unread counts (`ClientSession`), and
//! room streams (`StreamSession`).

use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Value};

use super::{SocketIoSession, Transport};
use crate::actors::client_session::ClientSession;
use crate::actors::continuity::StreamSession;
use crate::actors::requests::{RequestParts, RequestSession};
use crate::actors::session::{FrameMeta, OutboxGauge, SessionHandle};
use crate::auth::AuthenticatedUser;
use crate::engine::SessionPort;
use crate::error::ErrorCode;
use crate::protocol::EncodedFrame;
use crate::socketio as sio;
use crate::stream::RoomStreams;
use crate::unread::UnreadCounts;
impl RequestSession for SocketIoSession {
    type Reference = Option<u64>;

    fn request_parts(&mut self) -> Option<RequestParts<'_, Self>> {
        Some(RequestParts {
            port: &self.port,
            auth: self.auth.as_ref()?,
            limiter: &mut self.limiter,
            inflight: &self.inflight,
        })
    }
    fn set_auth(&mut self, fresh: AuthenticatedUser) {
        self.auth = Some(fresh);
    }
    fn request_handle(&mut self, ctx: &mut Context<Self>) -> Option<SessionHandle> {
        self.handle_handle(ctx)
    }
    /// The acknowledgement gets the ack's data with `"ok": true` (an object's fields, else
    /// as `data`); without a callback nothing is sent.
    fn write_ack(&mut self, ack_id: &Option<u64>, data: &Value, ctx: &mut Context<Self>) {
        let Some(id) = *ack_id else {
            return;
        };
        let payload = match data {
            Value::Object(m) => {
                let mut m = m.clone();
                m.insert("ok".into(), Value::Bool(true));
                Value::Object(m)
            }
            other => json!({"ok": true, "data": other}),
        };
        self.emit(sio::ack(id, &payload), ctx);
    }
    /// `{"ok":false,"code","error"[,"retry_after_ms"]}` to the acknowledgement callback, or
    /// as an `error` event without one.
    fn write_error(
        &mut self,
        ack_id: &Option<u64>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let mut payload = json!({"ok": false, "code": code.as_str(), "error": message});
        if let Some(ms) = retry_after_ms {
            payload["retry_after_ms"] = json!(ms);
        }
        match ack_id {
            Some(id) => self.emit(sio::ack(*id, &payload), ctx),
            None => self.emit(sio::event("error", &payload), ctx),
        }
    }
    fn write_pong(&mut self, ack_id: &Option<u64>, ctx: &mut Context<Self>) {
        self.write_ack(ack_id, &json!({}), ctx);
    }
    fn close_abusive(&mut self, ctx: &mut Context<Self>) {
        self.shutdown(ctx);
    }
}

impl ClientSession for SocketIoSession {
    type Ctx = Context<Self>;

    fn token_expires_at(&self) -> Option<i64> {
        self.auth.as_ref().map(|a| a.expires_at)
    }
    fn leeway_and_grace(&self) -> (std::time::Duration, std::time::Duration) {
        let auth = &self.port.settings().auth;
        (auth.leeway, auth.refresh_grace)
    }
    fn expiry_timers(&mut self) -> &mut Vec<SpawnHandle> {
        &mut self.expiry_timers
    }
    /// As on the native socket, as an `error` event.
    fn warn_token_expired(&mut self, grace: std::time::Duration, ctx: &mut Context<Self>) {
        let err = json!({
            "ok": false,
            "code": ErrorCode::TokenExpired.as_str(),
            "error": format!(
                "token expired; send auth with a fresh token within {} ms",
                grace.as_millis()
            ),
        });
        self.emit(sio::event("error", &err), ctx);
    }
    fn end_expired(&mut self, ctx: &mut Context<Self>) {
        self.emit(sio::DISCONNECT.to_string(), ctx);
        self.shutdown(ctx);
    }
    fn unread(&mut self) -> &mut UnreadCounts {
        &mut self.unread
    }
    fn delivery_gather(&self) -> std::time::Duration {
        self.port.settings().ws_write_gather
    }
    fn send_unread(&mut self, frame: EncodedFrame, ctx: &mut Context<Self>) {
        self.emit(sio::event_packet(&frame, self.vocabulary, None), ctx);
    }
}

impl StreamSession for SocketIoSession {
    fn streams(&mut self) -> &mut RoomStreams {
        &mut self.streams
    }
    fn port(&self) -> &SessionPort {
        &self.port
    }
    fn outbox(&self) -> &Arc<OutboxGauge> {
        &self.slow
    }
    fn hidden(&self) -> &crate::protocol::HiddenUsers {
        &self.hidden
    }
    fn count_unread(&mut self, meta: &FrameMeta) -> bool {
        match &self.auth {
            Some(a) => self.unread.apply(&a.user_id, meta),
            None => false,
        }
    }
    fn write_message(
        &mut self,
        frame: EncodedFrame,
        room: &crate::domain::RoomId,
        seq: i64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some((_, log)) = &mut self.recovery else {
            return self.write_native(frame, ctx);
        };
        let offset = log.sent(room, seq);
        // An offset makes the event this session's own; without one it is shared.
        let packet = match log.offsets {
            true => sio::event_packet(&frame, self.vocabulary, Some(offset)).into(),
            false => super::OutPacket::Event(frame, self.vocabulary),
        };
        let written = self.send_packet(packet, ctx);
        if !written {
            // Not sent after all: a later offset must not claim it was received.
            if let Some((_, log)) = &mut self.recovery {
                log.unsend(offset);
            }
        }
        written
    }

    fn write_native(&mut self, frame: EncodedFrame, ctx: &mut Context<Self>) -> bool {
        // On a WebSocket the event's bytes are made once per broadcast and shared.
        self.send_packet(super::OutPacket::Event(frame, self.vocabulary), ctx)
    }
    fn ready_for_page(&self) -> bool {
        match &self.transport {
            Transport::WebSocket { .. } => !self.transport_full,
            // Half the bound: a page never finds the queue nearly full.
            Transport::Polling { .. } => self.queued_bytes < self.port.settings().outbox_bytes / 2,
            Transport::Pending => false,
        }
    }
}
