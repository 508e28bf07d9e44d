//! `EioRegistry`: Engine.IO session ids → their [`SocketIoSession`] actors, so that the many
//! HTTP requests (polls, posts) and the later WebSocket upgrade of one Engine.IO session
//! reach the same session actor.
//!
//! It also owns the count of sessions that have not authenticated yet (no Socket.IO
//! CONNECT): an Engine.IO handshake needs no token, so these are capped in all and per client
//! address, admitted and counted in one step ([`RegisterEio`]). Sessions register when
//! created, say when they authenticate and remove themselves when they stop.
//!
//! It keeps the recovery logs of ended sessions by `pid` for the recovery window
//! (`HERALD_SIO_RECOVERY_MS`), at most [`MAX_RECOVERY_LOGS`] of them, so that a client that
//! reconnects can resume exactly where it was (see [`crate::recovery`]). It sends nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::socketio_session::SocketIoSession;
use crate::admission::{ip_key, Refusal};
use crate::domain::UserId;
use crate::metrics::METRICS;
use crate::recovery::RecoveryLog;

struct Entry {
    addr: Addr<SocketIoSession>,
    /// The counted address while unauthenticated (`None` once authenticated).
    unauthenticated: Option<Option<IpAddr>>,
}

/// Most recovery logs kept at once; past it, ended sessions are not recoverable.
pub const MAX_RECOVERY_LOGS: usize = 20_000;

pub struct EioRegistry {
    sessions: HashMap<String, Entry>,
    /// Recovery logs of ended sessions by `pid`: (user, log, when it may be dropped).
    recovery: HashMap<String, (UserId, RecoveryLog, Instant)>,
    recovery_window: Duration,
    unauthenticated: usize,
    unauthenticated_ips: HashMap<IpAddr, usize>,
    max_unauthenticated: usize,
    max_unauthenticated_per_ip: usize,
}

impl EioRegistry {
    pub fn new(
        max_unauthenticated: usize,
        max_unauthenticated_per_ip: usize,
        recovery_window: Duration,
    ) -> Self {
        EioRegistry {
            sessions: HashMap::new(),
            recovery: HashMap::new(),
            recovery_window,
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

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every =
            (self.recovery_window / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        ctx.run_interval(every, |act, _| {
            let now = Instant::now();
            act.recovery.retain(|_, (_, _, until)| *until > now);
        });
    }
}

/// Sent by a Socket.IO session when it ends: keep its recovery log for the window.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveRecovery {
    pub pid: String,
    pub user: UserId,
    pub log: RecoveryLog,
}

impl Handler<SaveRecovery> for EioRegistry {
    type Result = ();
    fn handle(&mut self, msg: SaveRecovery, _: &mut Context<Self>) {
        if self.recovery_window.is_zero() {
            return;
        }
        if self.recovery.len() >= MAX_RECOVERY_LOGS && !self.recovery.contains_key(&msg.pid) {
            log::debug!(
                "recovery logs full: session of {} not recoverable",
                msg.user
            );
            return;
        }
        let until = Instant::now() + self.recovery_window;
        self.recovery.insert(msg.pid, (msg.user, msg.log, until));
    }
}

/// Asked by a reconnecting Socket.IO session: the recovery log of `pid`, if it is still kept
/// and belongs to `user` (taken: a `pid` recovers once).
#[derive(Message)]
#[rtype(result = "Option<RecoveryLog>")]
pub struct TakeRecovery {
    pub pid: String,
    pub user: UserId,
}

impl Handler<TakeRecovery> for EioRegistry {
    type Result = Option<RecoveryLog>;
    fn handle(&mut self, msg: TakeRecovery, _: &mut Context<Self>) -> Self::Result {
        match self.recovery.remove(&msg.pid) {
            Some((user, log, until)) if user == msg.user && until > Instant::now() => Some(log),
            Some(other) if other.0 != msg.user => {
                // Another user's pid: not theirs to take; it stays for its owner.
                self.recovery.insert(msg.pid, other);
                None
            }
            _ => None,
        }
    }
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
