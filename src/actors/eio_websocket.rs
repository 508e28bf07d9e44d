//! `EioWebSocket`: the WebSocket transport of one Engine.IO session. It forwards client
//! packets to its [`SocketIoSession`] and writes the session's packets to the socket; it
//! answers the `2probe` of a polling→WebSocket upgrade itself and hands the session over on
//! `5`. With `session.rs`, the WebSocket routes and the notification socket, the only code
//! that knows actix-web-actors.
//!
//! The session's packets come in batches on a [`PacketSender`], not as one actor message
//! each: a session queues what one turn produced (up to 16 deliveries from its inbox) and
//! sends it as one item, which the transport writes into the connection's queue together.
//! An actor message would cost two allocations and a wake-up per packet, on the session's
//! hottest path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;
use tokio::sync::mpsc;

use crate::protocol::{close_code, EncodedFrame};
use crate::socketio::Vocabulary;
use crate::ws_wire::Wire;
use crate::wsframe::{self, FrameAssembler, Incoming};

use super::socketio_session::{
    AttachWebSocket, EioPackets, ProbeAbandoned, ProbeReceived, SocketIoSession, TransportClosed,
};

pub struct EioWebSocket {
    session: Addr<SocketIoSession>,
    /// True for an upgrade (the session starts on polling and switches on `5`).
    upgrading: bool,
    outbox: usize,
    last_heard: Instant,
    frames: FrameAssembler,
    /// Where packets are written (compressed when negotiated).
    wire: Wire,
    /// An upgrade probe that has not completed (`2probe` … `5`) within this is closed.
    probe_timeout: std::time::Duration,
    /// Packets the session sent and this transport has not written (see [`PacketSender`]).
    queued: Option<Arc<AtomicUsize>>,
}

impl EioWebSocket {
    pub fn new(
        session: Addr<SocketIoSession>,
        upgrading: bool,
        outbox: usize,
        max_payload: usize,
        probe_timeout: std::time::Duration,
        wire: Wire,
    ) -> Self {
        EioWebSocket {
            session,
            upgrading,
            outbox,
            last_heard: Instant::now(),
            frames: FrameAssembler::new(max_payload),
            wire,
            probe_timeout,
            queued: None,
        }
    }
}

impl Actor for EioWebSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.upgrading {
            // A probe that does not speak, or never finishes the upgrade, is closed.
            ctx.run_later(self.probe_timeout, |act, ctx| {
                if act.upgrading {
                    crate::metrics::METRICS.preauth_timeouts.inc();
                    wsframe::close(
                        &act.wire,
                        ctx,
                        close_code::POLICY,
                        "upgrade not completed in time",
                    );
                }
            });
        } else {
            let out = self.packet_sender(ctx);
            self.session.do_send(AttachWebSocket { out });
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if self.upgrading {
            self.session.do_send(ProbeAbandoned);
        } else {
            self.session.do_send(TransportClosed);
        }
        Running::Stop
    }
}

impl EioWebSocket {
    /// Opens the channel the session's packets come in on.
    fn packet_sender(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> PacketSender {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<OutPacket>>();
        ctx.add_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let queued = Arc::new(AtomicUsize::new(0));
        self.queued = Some(queued.clone());
        PacketSender {
            tx,
            queued,
            cap: self.outbox,
        }
    }
}

/// How a session hands its packets to its WebSocket transport: batches on a channel, bounded
/// by the packets the transport has not taken yet (`HERALD_OUTBOX_FRAMES`).
#[derive(Clone, Debug)]
pub struct PacketSender {
    tx: mpsc::UnboundedSender<Vec<OutPacket>>,
    /// Packets sent and not yet written by the transport.
    queued: Arc<AtomicUsize>,
    cap: usize,
}

impl PacketSender {
    /// Whether `n` more packets fit, counting those the transport has not taken.
    pub fn has_room(&self, n: usize) -> bool {
        self.queued.load(Ordering::Relaxed) + n <= self.cap
    }

    /// Hands a batch over; false when the transport has ended.
    pub fn send(&self, batch: Vec<OutPacket>) -> bool {
        self.queued.fetch_add(batch.len(), Ordering::Relaxed);
        self.tx.send(batch).is_ok()
    }
}

/// An Engine.IO packet on its way out.
#[derive(Debug)]
pub enum OutPacket {
    /// This session's own packet.
    Text(String),
    /// A frame's event without an offset: on a WebSocket written from the bytes (and the
    /// compressed bytes) every recipient of the broadcast shares.
    Event(EncodedFrame, Vocabulary),
    /// The session ended: close the socket.
    End,
}

impl OutPacket {
    /// The packet as text (for the polling transport).
    pub fn into_text(self) -> String {
        match self {
            OutPacket::Text(t) => t,
            OutPacket::Event(f, v) => crate::socketio::event_packet(&f, v, None),
            OutPacket::End => String::new(),
        }
    }
}

impl From<String> for OutPacket {
    fn from(t: String) -> Self {
        OutPacket::Text(t)
    }
}

/// A batch of the session's packets, written in order.
impl StreamHandler<Vec<OutPacket>> for EioWebSocket {
    fn handle(&mut self, batch: Vec<OutPacket>, ctx: &mut Self::Context) {
        if let Some(q) = &self.queued {
            q.fetch_sub(batch.len(), Ordering::Relaxed);
        }
        for packet in batch {
            match packet {
                OutPacket::End => {
                    self.wire
                        .close(ctx, Some(ws::CloseCode::from(close_code::NORMAL).into()));
                    ctx.stop();
                    return;
                }
                OutPacket::Text(t) => self.wire.text(ctx, t),
                OutPacket::Event(f, v) => self.wire.sio_event(ctx, &f, v),
            }
        }
    }

    /// The session dropped its sender: it has ended.
    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EioWebSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match wsframe::answer_control(self.wire.read(&mut self.frames, msg), &self.wire, ctx) {
            Some(Incoming::Text(t)) => {
                if self.upgrading {
                    match t.as_str() {
                        "2probe" => {
                            self.wire.text(ctx, "3probe");
                            self.session.do_send(ProbeReceived);
                        }
                        "5" => {
                            self.upgrading = false;
                            let out = self.packet_sender(ctx);
                            self.session.do_send(AttachWebSocket { out });
                        }
                        _ => self.session.do_send(EioPackets { packets: vec![t] }),
                    }
                } else {
                    self.session.do_send(EioPackets { packets: vec![t] });
                }
            }
            Some(Incoming::Binary(_)) => self.wire.text(ctx, crate::socketio::event(
                "error",
                &serde_json::json!({"ok": false, "code": "binary_unsupported", "error": "binary attachments are not supported"}),
            )),
            _ => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
