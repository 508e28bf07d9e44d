//! The messages a `SocketIoSession` gets from its transports: packets posted or received
//! (`EioPackets`), long-polls (`Poll`), and the WebSocket upgrade (`ProbeReceived`,
//! `AttachWebSocket`, `ProbeAbandoned`, `ClaimUpgrade`, `TransportClosed`).

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{PacketSender, SocketIoSession, Transport};
use crate::actors::continuity::StreamSession;
use crate::socketio::eio;

/// Sent by a transport: Engine.IO packets from the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EioPackets {
    pub packets: Vec<String>,
}

impl Handler<EioPackets> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: EioPackets, ctx: &mut Context<Self>) {
        for p in msg.packets {
            self.on_packet(&p, ctx);
        }
    }
}

/// Why a poll was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// Another GET is already waiting (the protocol allows one).
    Overlap,
    /// The session is on a WebSocket now.
    WrongTransport,
}

/// Sent by the polling route for a GET: `reply` gets the queued packets at once, or the next
/// ones when there are none. The route owns the receiving end and its timeout, so a GET that
/// ends early (the client gave up, the timeout passed) closes it, and packets that find it
/// closed wait in the queue for the next GET instead of being lost.
#[derive(Message)]
#[rtype(result = "Result<(), PollError>")]
pub struct Poll {
    pub reply: oneshot::Sender<Vec<String>>,
}

impl Handler<Poll> for SocketIoSession {
    type Result = Result<(), PollError>;
    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Self::Result {
        let Transport::Polling { queue, waiting } = &mut self.transport else {
            return Err(PollError::WrongTransport);
        };
        // A poll whose request already ended does not count as waiting.
        if waiting.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return Err(PollError::Overlap);
        }
        if self.probing && queue.is_empty() {
            let _ = msg.reply.send(vec![eio::NOOP.to_string()]);
            return Ok(());
        }
        if !queue.is_empty() {
            match msg.reply.send(queue.drain(..).collect()) {
                Ok(()) => {
                    self.queued_bytes = 0;
                    // Room again: a replay waiting for it goes on.
                    self.next_page(ctx);
                }
                Err(packets) => queue.extend(packets),
            }
            return Ok(());
        }
        *waiting = Some(msg.reply);
        Ok(())
    }
}

/// Sent by the WebSocket transport: it received the `2probe` of an upgrade; a waiting poll is
/// answered with a noop so the client can finish it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeReceived;

impl Handler<ProbeReceived> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: ProbeReceived, _: &mut Context<Self>) {
        self.probing = true;
        if let Transport::Polling { waiting, .. } = &mut self.transport {
            if let Some(tx) = waiting.take() {
                let _ = tx.send(vec![eio::NOOP.to_string()]);
            }
        }
    }
}

/// Sent by the WebSocket transport when it takes over: after an upgrade (`5`) or at once for a
/// WebSocket-only session (which then gets its `open` packet over it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachWebSocket {
    pub out: PacketSender,
}

impl Handler<AttachWebSocket> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: AttachWebSocket, ctx: &mut Context<Self>) {
        if matches!(self.transport, Transport::WebSocket { .. }) {
            // The live socket stays; the newcomer is closed (ClaimUpgrade keeps this rare).
            msg.out.send(vec![super::OutPacket::End]);
            return;
        }
        self.probing = false;
        let previous = std::mem::replace(&mut self.transport, Transport::websocket(msg.out));
        match previous {
            Transport::Pending => {
                let open = Self::open_packet(self.port.settings(), &self.sid, &[]);
                self.send_packet(open, ctx);
            }
            Transport::Polling { mut queue, waiting } => {
                if let Some(tx) = waiting {
                    let _ = tx.send(vec![eio::NOOP.to_string()]);
                }
                self.queued_bytes = 0;
                for p in queue.drain(..) {
                    self.send_packet(p, ctx);
                }
            }
            Transport::WebSocket { .. } => {}
        }
    }
}

/// Sent by the WebSocket transport when its connection ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TransportClosed;

impl Handler<TransportClosed> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: TransportClosed, ctx: &mut Context<Self>) {
        match self.transport {
            Transport::WebSocket { .. } | Transport::Pending => ctx.stop(),
            Transport::Polling { .. } => {}
        }
    }
}

/// Sent by a WebSocket transport that ends before its upgrade completed: polling goes on as
/// before (polls are answered normally again, not with a noop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeAbandoned;

impl Handler<ProbeAbandoned> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: ProbeAbandoned, _: &mut Context<Self>) {
        self.probing = false;
        self.upgrade_claimed = false;
    }
}

/// Asked by the route before it accepts an upgrade request naming this session: true for
/// the first one while the session is on polling, false for any other (one upgrade at a
/// time, and never over a live WebSocket).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct ClaimUpgrade;

impl Handler<ClaimUpgrade> for SocketIoSession {
    type Result = bool;
    fn handle(&mut self, _: ClaimUpgrade, _: &mut Context<Self>) -> bool {
        if self.upgrade_claimed || !matches!(self.transport, Transport::Polling { .. }) {
            return false;
        }
        self.upgrade_claimed = true;
        true
    }
}
