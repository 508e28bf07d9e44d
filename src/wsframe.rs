//! RFC 6455 message assembly shared by every WebSocket endpoint that carries text messages
//! (the native session, the notification socket, the Engine.IO transport and the diagnostic
//! echo): fragmented messages are reassembled up to the size limit, and protocol violations
//! map to the close codes RFC 6455 names — 1002 protocol error, 1007 invalid UTF-8, 1009 too
//! big. The control frames every endpoint answers alike (ping, close, violations), closing
//! with a code and the server's ping heartbeat live here too ([`answer_control`], [`close`],
//! [`heartbeat`]); each endpoint keeps only what its own wire says.

use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext};
use actix_http::ws::Item;
use actix_web::web::{Bytes, BytesMut};
use actix_web_actors::ws;

use crate::protocol::close_code;
use crate::ws_wire::Wire;

/// What a client sent, once assembled.
#[derive(Debug)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client closes; echo its reason.
    Close(Option<ws::CloseReason>),
    /// Close the connection with this code.
    Violation {
        code: u16,
        reason: &'static str,
    },
    /// A fragment was buffered; nothing to do yet.
    Nothing,
}

/// Closes the connection with `code` and `reason` and stops its actor.
pub fn close<A>(
    wire: &Wire,
    ctx: &mut ws::WebsocketContext<A>,
    code: u16,
    reason: impl Into<String>,
) where
    A: Actor<Context = ws::WebsocketContext<A>>,
{
    wire.close(
        ctx,
        Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.into()),
        }),
    );
    ctx.stop();
}

/// Answers the control part of what a client sent, the same on every endpoint: a ping gets
/// its pong, a close is echoed and ends the actor, a protocol violation closes with its code.
/// Gives back the text and binary messages, which are the endpoint's own business.
pub fn answer_control<A>(
    incoming: Incoming,
    wire: &Wire,
    ctx: &mut ws::WebsocketContext<A>,
) -> Option<Incoming>
where
    A: Actor<Context = ws::WebsocketContext<A>>,
{
    match incoming {
        m @ (Incoming::Text(_) | Incoming::Binary(_)) => return Some(m),
        Incoming::Ping(p) => wire.pong(ctx, &p),
        Incoming::Pong | Incoming::Nothing => {}
        Incoming::Close(reason) => {
            wire.close(ctx, reason);
            ctx.stop();
        }
        Incoming::Violation { code, reason } => {
            log::debug!("closing a websocket with {code}: {reason}");
            close(wire, ctx, code, reason);
        }
    }
    None
}

/// Pings the client every `interval`; a client not heard from (`last_heard`) for two
/// intervals, so two missed pongs and no other traffic, is gone: `timed_out` is told and the
/// actor stops.
pub fn heartbeat<A>(
    ctx: &mut ws::WebsocketContext<A>,
    interval: Duration,
    last_heard: fn(&A) -> Instant,
    timed_out: fn(&A),
) where
    A: Actor<Context = ws::WebsocketContext<A>>,
{
    ctx.run_interval(interval, move |act, ctx| {
        if last_heard(act).elapsed() > interval * 2 {
            timed_out(act);
            ctx.stop();
            return;
        }
        ctx.ping(b"");
    });
}

/// Reassembles fragmented messages of one connection.
pub struct FrameAssembler {
    /// (is_text, bytes so far) of the message being reassembled.
    parts: Option<(bool, BytesMut)>,
    /// How much of a text message being reassembled is known to be valid UTF-8.
    utf8_checked: usize,
    max: usize,
}

impl FrameAssembler {
    pub fn new(max_message_bytes: usize) -> Self {
        FrameAssembler {
            parts: None,
            utf8_checked: 0,
            max: max_message_bytes,
        }
    }

    pub fn push(&mut self, msg: Result<ws::Message, ws::ProtocolError>) -> Incoming {
        let msg = match msg {
            Ok(m) => m,
            Err(ws::ProtocolError::Overflow) => {
                return Incoming::Violation {
                    code: close_code::TOO_BIG,
                    reason: "message too big",
                }
            }
            Err(e) => {
                // actix reports invalid UTF-8 in a text frame as an I/O error naming it.
                if e.to_string().to_ascii_lowercase().contains("utf-8") {
                    return Incoming::Violation {
                        code: close_code::INVALID_PAYLOAD,
                        reason: "invalid UTF-8 in a text message",
                    };
                }
                return Incoming::Violation {
                    code: close_code::PROTOCOL_ERROR,
                    reason: "protocol error",
                };
            }
        };
        match msg {
            ws::Message::Text(t) if self.parts.is_none() => Incoming::Text(t.to_string()),
            ws::Message::Binary(b) if self.parts.is_none() => Incoming::Binary(b),
            ws::Message::Text(_) | ws::Message::Binary(_) => Incoming::Violation {
                code: close_code::PROTOCOL_ERROR,
                reason: "data frame inside a fragmented message",
            },
            ws::Message::Continuation(item) => self.fragment(item),
            ws::Message::Ping(p) => Incoming::Ping(p),
            ws::Message::Pong(_) => Incoming::Pong,
            ws::Message::Close(r) => Incoming::Close(r),
            ws::Message::Nop => Incoming::Nothing,
        }
    }

    fn fragment(&mut self, item: Item) -> Incoming {
        let (first, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        match (first, self.parts.as_mut()) {
            (Some(is_text), None) => {
                self.utf8_checked = 0;
                self.parts = Some((is_text, BytesMut::from(&chunk[..])));
            }
            (None, Some((_, buf))) => buf.extend_from_slice(&chunk),
            _ => {
                return Incoming::Violation {
                    code: close_code::PROTOCOL_ERROR,
                    reason: "unexpected continuation frame",
                }
            }
        }
        if self.parts.as_ref().is_some_and(|(_, b)| b.len() > self.max) {
            self.parts = None;
            return Incoming::Violation {
                code: close_code::TOO_BIG,
                reason: "message too big",
            };
        }
        // Fail fast: a text fragment that can never become valid UTF-8 closes the connection
        // now, not when the message ends (a character cut at the fragment end is fine).
        if let Some((true, buf)) = &self.parts {
            let from = self.utf8_checked.min(buf.len());
            match std::str::from_utf8(&buf[from..]) {
                Ok(_) => self.utf8_checked = buf.len(),
                Err(e) if e.error_len().is_some() => {
                    self.parts = None;
                    return Incoming::Violation {
                        code: close_code::INVALID_PAYLOAD,
                        reason: "invalid UTF-8 in a text message",
                    };
                }
                Err(e) => self.utf8_checked = from + e.valid_up_to(),
            }
        }
        if !last {
            return Incoming::Nothing;
        }
        let Some((is_text, buf)) = self.parts.take() else {
            return Incoming::Nothing;
        };
        self.utf8_checked = 0;
        if !is_text {
            return Incoming::Binary(buf.freeze());
        }
        match String::from_utf8(buf.to_vec()) {
            Ok(t) => Incoming::Text(t),
            Err(_) => Incoming::Violation {
                code: close_code::INVALID_PAYLOAD,
                reason: "invalid UTF-8 in a text message",
            },
        }
    }
}
