//! Token buckets and the per-session request limiter built on them: sends and presence
//! changes per second with a burst, and the point where a client that keeps hitting the limit
//! counts as abusive (the session then closes with 1008).

use std::time::Instant;

use crate::config::Limits;
use crate::protocol::ClientRequest;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the limiter decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused with `rate_limited`; the connection stays open.
    Limited,
    /// Refused, and the client has hit the limit too often in a row: close with 1008.
    Abusive,
}

/// The limits of one session.
#[derive(Debug, Clone)]
pub struct RequestLimiter {
    sends: TokenBucket,
    presence: TokenBucket,
    limited_in_a_row: u32,
    abuse_threshold: u32,
}

impl RequestLimiter {
    pub fn new(l: &Limits) -> Self {
        RequestLimiter {
            sends: TokenBucket::new(l.send_rate, l.send_burst),
            presence: TokenBucket::new(l.presence_rate, l.presence_burst),
            limited_in_a_row: 0,
            abuse_threshold: l.abuse_threshold,
        }
    }

    pub fn check(&mut self, request: &ClientRequest) -> Verdict {
        let allowed = match request {
            ClientRequest::Send(_) => self.sends.try_take(),
            ClientRequest::Presence { .. } => self.presence.try_take(),
            _ => return Verdict::Allowed,
        };
        if allowed {
            self.limited_in_a_row = 0;
            Verdict::Allowed
        } else {
            self.limited_in_a_row += 1;
            if self.limited_in_a_row >= self.abuse_threshold {
                Verdict::Abusive
            } else {
                Verdict::Limited
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(1000, 3);
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(b.try_take(), "refilled at 1000/s");
    }

    #[test]
    fn sustained_abuse_is_detected() {
        let limits = Limits {
            presence_rate: 1,
            presence_burst: 1,
            abuse_threshold: 3,
            ..Limits::default()
        };
        let mut l = RequestLimiter::new(&limits);
        let p = ClientRequest::Presence {
            status: crate::domain::ChosenStatus::Away,
            custom_message: None,
            custom_expires_at: None,
            metadata: None,
        };
        assert_eq!(l.check(&p), Verdict::Allowed);
        assert_eq!(l.check(&p), Verdict::Limited);
        assert_eq!(l.check(&p), Verdict::Limited);
        assert_eq!(l.check(&p), Verdict::Abusive);
        assert_eq!(l.check(&ClientRequest::Ping), Verdict::Allowed);
    }
}
