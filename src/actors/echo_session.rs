//! `EchoSession`: the diagnostic echo endpoint (`GET /v1/ws/echo`, only with
//! `HERALD_DIAGNOSTICS=1`) for RFC 6455 conformance suites such as Autobahn. It runs the same
//! message assembly and close-code mapping as native sessions ([`FrameAssembler`]) and
//! echoes every text and binary message back. No auth, no engine.

use actix::prelude::*;
use actix_web_actors::ws;

use crate::wsframe::{answer_control, FrameAssembler, Incoming};

pub struct EchoSession {
    frames: FrameAssembler,
}

impl EchoSession {
    pub fn new(max_message_bytes: usize) -> Self {
        EchoSession {
            frames: FrameAssembler::new(max_message_bytes),
        }
    }
}

impl Actor for EchoSession {
    type Context = ws::WebsocketContext<Self>;
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EchoSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match answer_control(self.frames.push(msg), ctx) {
            Some(Incoming::Text(t)) => ctx.text(t),
            Some(Incoming::Binary(b)) => ctx.binary(b),
            _ => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
