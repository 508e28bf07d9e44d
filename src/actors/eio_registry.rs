//! `EioRegistry`: Engine.IO session ids → their [`SocketIoSession`] actors, so that the many
//! HTTP requests (polls, posts) and the later WebSocket upgrade of one Engine.IO session
//! reach the same session actor.
//!
//! Sessions register when created and remove themselves when they stop. It sends nothing.

use std::collections::HashMap;

use actix::prelude::*;

use super::socketio_session::SocketIoSession;

#[derive(Default)]
pub struct EioRegistry {
    sessions: HashMap<String, Addr<SocketIoSession>>,
}

impl Actor for EioRegistry {
    type Context = Context<Self>;
}

/// Sent by the Socket.IO route when it creates a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterEio {
    pub sid: String,
    pub addr: Addr<SocketIoSession>,
}

impl Handler<RegisterEio> for EioRegistry {
    type Result = ();
    fn handle(&mut self, msg: RegisterEio, _: &mut Context<Self>) {
        self.sessions.insert(msg.sid, msg.addr);
    }
}

/// Asked by the Socket.IO route for every request that names a `sid`.
#[derive(Message)]
#[rtype(result = "Option<Addr<SocketIoSession>>")]
pub struct LookupEio {
    pub sid: String,
}

impl Handler<LookupEio> for EioRegistry {
    type Result = Option<Addr<SocketIoSession>>;
    fn handle(&mut self, msg: LookupEio, _: &mut Context<Self>) -> Self::Result {
        self.sessions
            .get(&msg.sid)
            .filter(|a| a.connected())
            .cloned()
    }
}

/// Sent by a session when it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveEio {
    pub sid: String,
}

impl Handler<RemoveEio> for EioRegistry {
    type Result = ();
    fn handle(&mut self, msg: RemoveEio, _: &mut Context<Self>) {
        self.sessions.remove(&msg.sid);
    }
}

/// Counts for stats.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountEio;

impl Handler<CountEio> for EioRegistry {
    type Result = usize;
    fn handle(&mut self, _: CountEio, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}
