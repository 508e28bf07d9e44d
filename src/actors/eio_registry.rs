//! `EioRegistry`: Engine.IO session ids → their [`SocketIoSession`] actors, so that the many
//! HTTP requests (polls, posts) and the later WebSocket upgrade of one Engine.IO session
//! reach the same session actor.
//!
//! It also owns the count of sessions that have not authenticated yet (no Socket.IO
//! CONNECT): an Engine.IO handshake needs no token, so these are capped in all and per client
//! address, admitted and counted in one step ([`RegisterEio`]). Sessions register when
//! created, say when they authenticate and remove themselves when they stop. It sends
//! nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use actix::prelude::*;

use super::socketio_session::SocketIoSession;
use crate::admission::{ip_key, Refusal};
use crate::metrics::METRICS;

struct Entry {
    addr: Addr<SocketIoSession>,
    /// The counted address while unauthenticated (`None` once authenticated).
    unauthenticated: Option<Option<IpAddr>>,
}

pub struct EioRegistry {
    sessions: HashMap<String, Entry>,
    unauthenticated: usize,
    unauthenticated_ips: HashMap<IpAddr, usize>,
    max_unauthenticated: usize,
    max_unauthenticated_per_ip: usize,
}

impl EioRegistry {
    pub fn new(max_unauthenticated: usize, max_unauthenticated_per_ip: usize) -> Self {
        EioRegistry {
            sessions: HashMap::new(),
            unauthenticated: 0,
            unauthenticated_ips: HashMap::new(),
            max_unauthenticated,
            max_unauthenticated_per_ip,
        }
    }

    fn authenticated(&mut self, sid: &str) {
        let Some(entry) = self.sessions.get_mut(sid) else {
            return;
        };
        let Some(ip) = entry.unauthenticated.take() else {
            return;
        };
        self.unauthenticated -= 1;
        METRICS.unauthenticated.dec();
        if let Some(ip) = ip {
            if let Some(n) = self.unauthenticated_ips.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.unauthenticated_ips.remove(&ip);
                }
            }
        }
    }
}

impl Actor for EioRegistry {
    type Context = Context<Self>;
}

/// Sent by the Socket.IO route when it creates a session, before the session runs: admits
/// it under the caps on unauthenticated sessions, or refuses it.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct RegisterEio {
    pub sid: String,
    pub addr: Addr<SocketIoSession>,
    pub ip: Option<IpAddr>,
}

impl Handler<RegisterEio> for EioRegistry {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, msg: RegisterEio, _: &mut Context<Self>) -> Self::Result {
        let ip = msg.ip.map(ip_key);
        if self.unauthenticated >= self.max_unauthenticated {
            return Err(Refusal::Unauthenticated {
                limit: self.max_unauthenticated,
            });
        }
        if let Some(ip) = ip {
            let n = self.unauthenticated_ips.entry(ip).or_default();
            if *n >= self.max_unauthenticated_per_ip {
                return Err(Refusal::IpUnauthenticated {
                    ip,
                    limit: self.max_unauthenticated_per_ip,
                });
            }
            *n += 1;
        }
        self.unauthenticated += 1;
        METRICS.unauthenticated.inc();
        self.sessions.insert(
            msg.sid,
            Entry {
                addr: msg.addr,
                unauthenticated: Some(ip),
            },
        );
        Ok(())
    }
}

/// Sent by a session after its Socket.IO CONNECT succeeded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EioAuthenticated {
    pub sid: String,
}

impl Handler<EioAuthenticated> for EioRegistry {
    type Result = ();
    fn handle(&mut self, msg: EioAuthenticated, _: &mut Context<Self>) {
        self.authenticated(&msg.sid);
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
            .map(|e| &e.addr)
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
        self.authenticated(&msg.sid);
        self.sessions.remove(&msg.sid);
    }
}

/// Counts for stats.
#[derive(Message)]
#[rtype(result = "EioCounts")]
pub struct CountEio;

/// Engine.IO sessions in all, and those not authenticated yet.
#[derive(MessageResponse, Debug, Clone, Copy)]
pub struct EioCounts {
    pub sessions: usize,
    pub unauthenticated: usize,
}

impl Handler<CountEio> for EioRegistry {
    type Result = EioCounts;
    fn handle(&mut self, _: CountEio, _: &mut Context<Self>) -> EioCounts {
        EioCounts {
            sessions: self.sessions.len(),
            unauthenticated: self.unauthenticated,
        }
    }
}
