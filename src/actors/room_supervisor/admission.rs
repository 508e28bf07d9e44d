//! Session admission: the per-user and per-address session caps (`AdmitSession`), the
//! `AdmissionTicket` that holds a place, and `ReleaseAdmission` when it drops.

use super::*;
use crate::cluster::backplane::{ClaimSession, ReleaseSession};

/// Asked before a session starts: admits it, or refuses it when its user already has
/// `max_sessions` sessions or its client address `max_per_ip` (0: unlimited). The check and
/// the count are one step, so parallel connects cannot overshoot a cap; the returned ticket
/// holds the place until the session drops it.
#[derive(Message)]
#[rtype(result = "Result<AdmissionTicket, EngineError>")]
pub struct AdmitSession {
    pub user: UserId,
    pub ip: Option<IpAddr>,
    pub max_sessions: usize,
    pub max_per_ip: usize,
}

/// A session's place under the per-user and per-address caps; dropping it gives it back.
pub struct AdmissionTicket {
    user: UserId,
    ip: Option<IpAddr>,
    supervisor: Addr<RoomSupervisor>,
    /// Counted in the cluster's session counts (cluster mode): given back there too. A
    /// place claimed while Redis was away counts as claimed: the node rewrites its counts
    /// when Redis is back.
    counted: bool,
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        self.supervisor.do_send(ReleaseAdmission {
            user: self.user.clone(),
            ip: self.ip,
            counted: self.counted,
        });
    }
}

impl std::fmt::Debug for AdmissionTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdmissionTicket({}, {:?})", self.user, self.ip)
    }
}

impl Handler<AdmitSession> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<AdmissionTicket, EngineError>>;
    fn handle(&mut self, msg: AdmitSession, ctx: &mut Context<Self>) -> Self::Result {
        let max = msg.max_sessions;
        let user = msg.user.clone();
        let ticket = self.admit_here(msg, ctx);
        let backplane = match (&ticket, self.cluster.backplane()) {
            (Ok(_), Some(b)) => b.clone(),
            _ => return Box::pin(fut::ready(ticket)),
        };
        // Cluster mode: the cap holds over every node (Redis counts); while Redis cannot
        // answer, each node's own count is the cap (fail open, docs/cluster.md).
        Box::pin(
            backplane
                .send(ClaimSession {
                    user: user.clone(),
                    max,
                })
                .into_actor(self)
                .map(move |res, _, _| match res {
                    Ok(Ok(false)) => {
                        // Refused by the cluster: only this node's place goes back.
                        if let Ok(mut t) = ticket {
                            t.counted = false;
                        }
                        Err(EngineError::LimitExceeded(format!(
                            "{user} already has {max} sessions in the cluster, the limit"
                        )))
                    }
                    Ok(Ok(true)) => ticket,
                    Ok(Err(e)) => {
                        log::warn!("session cap checked on this node only: {e}");
                        ticket
                    }
                    Err(_) => ticket,
                }),
        )
    }
}

impl RoomSupervisor {
    /// This node's caps: one step, check and count.
    fn admit_here(
        &mut self,
        msg: AdmitSession,
        ctx: &mut Context<Self>,
    ) -> Result<AdmissionTicket, EngineError> {
        let sessions = self.admitted.get(&msg.user).copied().unwrap_or(0);
        if sessions >= msg.max_sessions {
            return Err(EngineError::LimitExceeded(format!(
                "{} already has {sessions} sessions, the limit",
                msg.user
            )));
        }
        let ip = msg.ip.map(crate::admission::ip_key);
        if let (true, Some(ip)) = (msg.max_per_ip > 0, ip) {
            if self.admitted_ips.get(&ip).copied().unwrap_or(0) >= msg.max_per_ip {
                return Err(EngineError::LimitExceeded(format!(
                    "too many connections from {ip} (limit {})",
                    msg.max_per_ip
                )));
            }
        }
        *self.admitted.entry(msg.user.clone()).or_default() += 1;
        if let Some(ip) = ip {
            *self.admitted_ips.entry(ip).or_default() += 1;
        }
        Ok(AdmissionTicket {
            user: msg.user,
            ip,
            supervisor: ctx.address(),
            counted: true,
        })
    }
}

/// Sent by a dropped [`AdmissionTicket`].
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseAdmission {
    user: UserId,
    ip: Option<IpAddr>,
    counted: bool,
}

impl Handler<ReleaseAdmission> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: ReleaseAdmission, _: &mut Context<Self>) {
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        release(&mut self.admitted, &msg.user);
        if let Some(ip) = msg.ip {
            release(&mut self.admitted_ips, &ip);
        }
        if let (true, Some(backplane)) = (msg.counted, self.cluster.backplane()) {
            backplane.do_send(ReleaseSession { user: msg.user });
        }
    }
}
