//! `EchoSession`: the diagnostic echo endpoint (`GET /v1/ws/echo`, only with
//! `HERALD_DIAGNOSTICS=1`) for RFC 6455 conformance suites such as Autobahn. It runs the same
//! message assembly and close-code mapping as native sessions ([`FrameAssembler`]) and
//! echoes every text and binary message back (compressed when the client negotiated
//! permessage-deflate). No auth, no engine.

use actix::prelude::*;
use actix_web_actors::ws;

use crate::ws_wire::Wire;
use crate::wsframe::{answer_control, FrameAssembler, Incoming};

pub struct EchoSession {
    frames: FrameAssembler,
    wire: Wire,
}

impl EchoSession {
    pub fn new(max_message_bytes: usize, wire: Wire) -> Self {
        EchoSession {
            frames: FrameAssembler::new(max_message_bytes),
            wire,
        }
    }
}

impl Actor for EchoSession {
    type Context = ws::WebsocketContext<Self>;
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EchoSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match answer_control(self.wire.read(&mut self.frames, msg), &self.wire, ctx) {
            Some(Incoming::Text(t)) => self.wire.text(ctx, t),
            Some(Incoming::Binary(b)) => self.wire.binary(ctx, b),
            _ => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
