//! Session admission: the per-user and per-address session caps (`AdmitSession`), the
//! `AdmissionTicket` that holds a place, and `ReleaseAdmission` when it drops.

use super::*;

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
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        self.supervisor.do_send(ReleaseAdmission {
            user: self.user.clone(),
            ip: self.ip,
        });
    }
}

impl std::fmt::Debug for AdmissionTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdmissionTicket({}, {:?})", self.user, self.ip)
    }
}

impl Handler<AdmitSession> for RoomSupervisor {
    type Result = Result<AdmissionTicket, EngineError>;
    fn handle(&mut self, msg: AdmitSession, ctx: &mut Context<Self>) -> Self::Result {
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
        })
    }
}

/// Sent by a dropped [`AdmissionTicket`].
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseAdmission {
    user: UserId,
    ip: Option<IpAddr>,
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
    }
}
