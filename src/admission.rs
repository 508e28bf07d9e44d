//! Admission before and at authentication: who the client is on the network (its address,
//! through trusted proxies), how fast one address and one user may open connections, and the
//! ticket that holds a session's place under the per-user and per-address caps.
//!
//! Rates are GCRA buckets (`governor`), keyed per address (IPv6 per /64, the block one
//! subscriber usually gets) and per user, pruned of idle keys so their memory stays bounded
//! whatever the number of addresses an attacker cycles through.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::UserId;

/// Why a connection was refused before its session started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many new connections from {ip}; retry in {} ms", .retry_after.as_millis())]
    IpRate { ip: IpAddr, retry_after: Duration },
    #[error("too many new connections for {user}; retry in {} ms", .retry_after.as_millis())]
    UserRate { user: UserId, retry_after: Duration },
    #[error("too many connections from {ip} still authenticating (limit {limit})")]
    IpUnauthenticated { ip: IpAddr, limit: usize },
    #[error("too many connections still authenticating (limit {limit})")]
    Unauthenticated { limit: usize },
}

impl Refusal {
    /// The `reason` label of `herald_refused_total`.
    pub fn metric(&self) -> &'static str {
        match self {
            Refusal::IpRate { .. } => "ip_rate",
            Refusal::UserRate { .. } => "user_rate",
            Refusal::IpUnauthenticated { .. } => "ip_unauthenticated",
            Refusal::Unauthenticated { .. } => "unauthenticated",
        }
    }

    /// How long the client should wait, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::IpRate { retry_after, .. } | Refusal::UserRate { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// The address a per-address limit counts: IPv4 as is (also when IPv4-mapped), IPv6 by /64.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
        v4 => v4,
    }
}

/// A CIDR block (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address or CIDR block (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

/// `net/prefix`, as [`FromStr`](std::str::FromStr) reads it (`herald config` prints it).
impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy. A header from an
/// untrusted peer is ignored (anyone can write one).
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.iter().any(|c| c.contains(ip)) => continue,
            Ok(ip) => return Some(ip),
            // A garbled hop: stop at the last address we could trust.
            Err(_) => break,
        }
    }
    Some(peer)
}

/// Rates of new connections: per client address (WebSocket upgrades, notification sockets,
/// Engine.IO handshakes) and per user (sessions that authenticated).
pub struct ConnectGate {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<UserId>>,
    /// `history` pages per user across all their sessions: a session's own bucket starts
    /// full, so without this a client that reconnects gets a fresh burst every time.
    history_per_user: Option<DefaultKeyedRateLimiter<UserId>>,
    checks: AtomicU64,
}

/// Connection rates and their bursts (0 rate: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct ConnectRates {
    pub per_ip: u32,
    pub per_ip_burst: u32,
    pub per_user: u32,
    pub per_user_burst: u32,
    /// `history` pages per second per user over all sessions, and burst.
    pub history_per_user: u32,
    pub history_per_user_burst: u32,
}

impl ConnectGate {
    /// Buckets are pruned of idle keys every this many checks.
    const PRUNE_EVERY: u64 = 4096;

    pub fn new(r: ConnectRates) -> Self {
        let quota = |rate: u32, burst: u32| {
            NonZeroU32::new(rate).map(|rate| {
                Quota::per_second(rate)
                    .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
            })
        };
        ConnectGate {
            per_ip: quota(r.per_ip, r.per_ip_burst).map(DefaultKeyedRateLimiter::keyed),
            per_user: quota(r.per_user, r.per_user_burst).map(DefaultKeyedRateLimiter::keyed),
            history_per_user: quota(r.history_per_user, r.history_per_user_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            checks: AtomicU64::new(0),
        }
    }

    fn prune(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % Self::PRUNE_EVERY == Self::PRUNE_EVERY - 1
        {
            if let Some(l) = &self.per_ip {
                l.retain_recent();
            }
            if let Some(l) = &self.per_user {
                l.retain_recent();
            }
            if let Some(l) = &self.history_per_user {
                l.retain_recent();
            }
        }
    }

    /// Takes one token of `class` from `user`'s buckets shared by all their sessions
    /// (only `history` has one); false when empty.
    pub fn check_user_class(&self, user: &UserId, class: crate::rate::RateClass) -> bool {
        match (class, &self.history_per_user) {
            (crate::rate::RateClass::History, Some(limiter)) => {
                self.prune();
                limiter.check_key(user).is_ok()
            }
            _ => true,
        }
    }

    /// Takes one new connection from `ip`'s bucket (no address: not limited).
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let (Some(limiter), Some(ip)) = (&self.per_ip, ip) else {
            return Ok(());
        };
        self.prune();
        let key = ip_key(ip);
        limiter.check_key(&key).map_err(|n| Refusal::IpRate {
            ip: key,
            retry_after: n.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Takes one new session from `user`'s bucket (reconnect storms).
    pub fn check_user(&self, user: &UserId) -> Result<(), Refusal> {
        let Some(limiter) = &self.per_user else {
            return Ok(());
        };
        self.prune();
        limiter.check_key(user).map_err(|n| Refusal::UserRate {
            user: user.clone(),
            retry_after: n.wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        use actix_web::test::TestRequest;
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        let via_proxy = TestRequest::default()
            .peer_addr("127.0.0.1:4000".parse().unwrap())
            .insert_header(("x-forwarded-for", "198.51.100.1, 203.0.113.5"))
            .to_http_request();
        assert_eq!(
            client_ip(&via_proxy, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        let direct = TestRequest::default()
            .peer_addr("192.0.2.1:4000".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.5"))
            .to_http_request();
        assert_eq!(
            client_ip(&direct, &trusted),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(&via_proxy, &[]),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn connection_rates_refuse_past_the_burst_per_key() {
        let gate = ConnectGate::new(ConnectRates {
            per_ip: 1,
            per_ip_burst: 2,
            per_user: 1,
            per_user_burst: 1,
            history_per_user: 1,
            history_per_user_burst: 2,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(gate.check_ip(Some(ip)).is_ok());
        assert!(gate.check_ip(Some(ip)).is_ok());
        let refused = gate.check_ip(Some(ip)).unwrap_err();
        assert!(refused.retry_after().is_some());
        assert!(gate.check_ip(Some("192.0.2.2".parse().unwrap())).is_ok());
        let u = UserId::parse("alice").unwrap();
        assert!(gate.check_user(&u).is_ok());
        assert!(matches!(gate.check_user(&u), Err(Refusal::UserRate { .. })));
        // History is shared by a user's sessions: a new session is no new budget.
        use crate::rate::RateClass;
        assert!(gate.check_user_class(&u, RateClass::History));
        assert!(gate.check_user_class(&u, RateClass::History));
        assert!(!gate.check_user_class(&u, RateClass::History));
        assert!(
            gate.check_user_class(&u, RateClass::Send),
            "only history is shared"
        );
    }
}
