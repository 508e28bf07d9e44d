//! The per-session request limiter: one GCRA bucket (`governor`) per class of client frame,
//! so every frame type has a rate, and an abuse bucket that decides when a client that keeps
//! hitting the limits is closed (1008).
//!
//! The abuse bucket drains by one for every refused frame and refills at a tenth of its size
//! per second: allowed frames in between do not reset it, so a client cannot dodge the close
//! by interleaving good frames with a flood, while an occasional burst over a limit is
//! forgiven.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::Limits;
use crate::protocol::ClientRequest;

/// What the limiter decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused with `rate_limited`; the connection stays open.
    Limited,
    /// Refused, and the client has hit the limits too often: close with 1008.
    Abusive,
}

/// What a session does with a request, after its rate bucket and the in-flight cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refuse with `rate_limited` and this message; the connection stays open.
    Refused(String),
    /// Refuse with `rate_limited` ([`ABUSE_MESSAGE`]) and close with 1008.
    Abusive,
}

/// The error message and close reason of a session closed for abuse.
pub const ABUSE_MESSAGE: &str = "rate limit exceeded repeatedly";

/// Classes of client frames, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// `send`, `edit`, `delete`, `react`.
    Send,
    /// `presence`.
    Presence,
    /// `join`, `leave`: membership writes.
    Membership,
    /// `history`, `changes`: database reads.
    History,
    /// `watch`, `unwatch`.
    Watch,
    /// `auth`: token verification.
    Auth,
    /// `event`: custom events relayed to a room.
    Event,
    /// Everything else: `typing`, `receipt`, `ping`, and the notification socket's frames.
    Other,
}

impl RateClass {
    pub fn of(request: &ClientRequest) -> RateClass {
        match request {
            // Edits, deletes and reactions are writes like a send, and share its bucket.
            ClientRequest::Send(_)
            | ClientRequest::Edit { .. }
            | ClientRequest::Delete { .. }
            | ClientRequest::React { .. } => RateClass::Send,
            ClientRequest::Presence { .. } => RateClass::Presence,
            // Invitations, blocks and reports are writes like joins: the same bucket.
            ClientRequest::Join { .. }
            | ClientRequest::Leave { .. }
            | ClientRequest::Consent(_) => RateClass::Membership,
            ClientRequest::History { .. }
            | ClientRequest::Changes { .. }
            | ClientRequest::Members { .. } => RateClass::History,
            ClientRequest::Watch { .. } | ClientRequest::Unwatch { .. } => RateClass::Watch,
            ClientRequest::Auth { .. } => RateClass::Auth,
            ClientRequest::Event { .. } => RateClass::Event,
            ClientRequest::Typing { .. } | ClientRequest::Receipt { .. } | ClientRequest::Ping => {
                RateClass::Other
            }
        }
    }
}

type Bucket<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

fn bucket<C: Clock + Clone>(rate: u32, burst: u32, clock: &C) -> Bucket<C> {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), clock.clone())
}

/// The limits of one session. Generic over the clock so tests can drive time by hand.
pub struct RequestLimiter<C: Clock + Clone = DefaultClock>
where
    C::Instant: Reference,
{
    send: Bucket<C>,
    presence: Bucket<C>,
    membership: Bucket<C>,
    history: Bucket<C>,
    watch: Bucket<C>,
    auth: Bucket<C>,
    event: Bucket<C>,
    other: Bucket<C>,
    abuse: Bucket<C>,
}

impl RequestLimiter<DefaultClock> {
    pub fn new(l: &Limits) -> Self {
        Self::with_clock(l, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> RequestLimiter<C>
where
    C::Instant: Reference,
{
    pub fn with_clock(l: &Limits, clock: &C) -> Self {
        let threshold = l.abuse_threshold.max(1);
        // `threshold` refusals at once, or more than a tenth of it per second for long.
        let abuse_quota = Quota::with_period(Duration::from_secs(10) / threshold)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(threshold).unwrap_or(NonZeroU32::MIN));
        RequestLimiter {
            send: bucket(l.send_rate, l.send_burst, clock),
            presence: bucket(l.presence_rate, l.presence_burst, clock),
            membership: bucket(l.membership_rate, l.membership_burst, clock),
            history: bucket(l.history_rate, l.history_burst, clock),
            watch: bucket(l.watch_rate, l.watch_burst, clock),
            auth: bucket(l.auth_rate, l.auth_burst, clock),
            event: bucket(l.event_rate, l.event_burst, clock),
            other: bucket(l.frame_rate, l.frame_burst, clock),
            abuse: RateLimiter::direct_with_clock(abuse_quota, clock.clone()),
        }
    }

    /// Takes one token for `request`.
    pub fn check(&self, request: &ClientRequest) -> Verdict {
        self.check_class(RateClass::of(request))
    }

    /// Takes one token from `class`'s bucket.
    pub fn check_class(&self, class: RateClass) -> Verdict {
        let bucket = match class {
            RateClass::Send => &self.send,
            RateClass::Presence => &self.presence,
            RateClass::Membership => &self.membership,
            RateClass::History => &self.history,
            RateClass::Watch => &self.watch,
            RateClass::Auth => &self.auth,
            RateClass::Event => &self.event,
            RateClass::Other => &self.other,
        };
        if bucket.check().is_ok() {
            Verdict::Allowed
        } else {
            self.refused()
        }
    }

    /// Decides about `request` of a session with `in_flight` requests waiting for their
    /// answer, of at most `max_in_flight` (`ping` and `auth` are answered at once and do
    /// not wait). `per_user` is asked last, for buckets its user shares with their other
    /// sessions (so a new session is no fresh budget); false refuses.
    pub fn admit(
        &self,
        request: &ClientRequest,
        in_flight: usize,
        max_in_flight: usize,
        per_user: impl FnOnce(RateClass) -> bool,
    ) -> Admission {
        let mut verdict = self.check(request);
        let mut user_refused = false;
        if verdict == Verdict::Allowed && !per_user(RateClass::of(request)) {
            user_refused = true;
            verdict = self.refused();
        }
        let too_many = verdict == Verdict::Allowed
            && !matches!(request, ClientRequest::Ping | ClientRequest::Auth { .. })
            && in_flight >= max_in_flight;
        if too_many {
            verdict = self.refused();
        }
        match verdict {
            Verdict::Allowed => Admission::Allowed,
            Verdict::Limited if too_many => Admission::Refused(format!(
                "too many requests in flight (limit {max_in_flight}); wait for their replies"
            )),
            Verdict::Limited if user_refused => Admission::Refused(format!(
                "too many {} requests from this user's sessions; slow down",
                request.kind()
            )),
            Verdict::Limited => {
                Admission::Refused(format!("too many {} requests; slow down", request.kind()))
            }
            Verdict::Abusive => Admission::Abusive,
        }
    }

    /// Counts a refusal decided elsewhere (too many requests in flight) toward abuse.
    pub fn refused(&self) -> Verdict {
        if self.abuse.check().is_ok() {
            Verdict::Limited
        } else {
            Verdict::Abusive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn presence() -> ClientRequest {
        ClientRequest::Presence {
            status: crate::domain::ChosenStatus::Away,
            custom_message: None,
            custom_expires_at: None,
            metadata: None,
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            presence_rate: 10,
            presence_burst: 3,
            ..Limits::default()
        };
        let l = RequestLimiter::with_clock(&limits, &clock);
        for _ in 0..3 {
            assert_eq!(l.check(&presence()), Verdict::Allowed);
        }
        assert_eq!(l.check(&presence()), Verdict::Limited);
        clock.advance(Duration::from_millis(100));
        assert_eq!(l.check(&presence()), Verdict::Allowed, "refilled at 10/s");
        assert_eq!(l.check(&presence()), Verdict::Limited);
    }

    #[test]
    fn every_frame_type_has_a_bucket() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            membership_rate: 1,
            membership_burst: 1,
            history_rate: 1,
            history_burst: 1,
            watch_rate: 1,
            watch_burst: 1,
            auth_rate: 1,
            auth_burst: 1,
            frame_rate: 1,
            frame_burst: 1,
            event_rate: 1,
            event_burst: 1,
            ..Limits::default()
        };
        let l = RequestLimiter::with_clock(&limits, &clock);
        for class in [
            RateClass::Membership,
            RateClass::History,
            RateClass::Watch,
            RateClass::Auth,
            RateClass::Event,
            RateClass::Other,
        ] {
            assert_eq!(l.check_class(class), Verdict::Allowed, "{class:?}");
            assert_eq!(l.check_class(class), Verdict::Limited, "{class:?}");
        }
        assert_eq!(RateClass::of(&ClientRequest::Ping), RateClass::Other);
        // A `members` flood is paced with the other reads.
        let members = ClientRequest::Members {
            room: crate::domain::RoomId::parse("public:a").unwrap(),
            after: None,
            limit: 100,
        };
        assert_eq!(RateClass::of(&members), RateClass::History);
    }

    #[test]
    fn sustained_abuse_is_closed_even_between_allowed_frames() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            presence_rate: 1,
            presence_burst: 1,
            abuse_threshold: 3,
            ..Limits::default()
        };
        let l = RequestLimiter::with_clock(&limits, &clock);
        assert_eq!(l.check(&presence()), Verdict::Allowed);
        // Refused, allowed ping, refused...: the allowed frames do not reset the count.
        assert_eq!(l.check(&presence()), Verdict::Limited);
        assert_eq!(l.check(&ClientRequest::Ping), Verdict::Allowed);
        assert_eq!(l.check(&presence()), Verdict::Limited);
        assert_eq!(l.check(&ClientRequest::Ping), Verdict::Allowed);
        assert_eq!(l.check(&presence()), Verdict::Limited);
        assert_eq!(l.check(&presence()), Verdict::Abusive);
    }

    #[test]
    fn occasional_refusals_are_forgiven() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            presence_rate: 1,
            presence_burst: 1,
            abuse_threshold: 3,
            ..Limits::default()
        };
        let l = RequestLimiter::with_clock(&limits, &clock);
        for _ in 0..20 {
            assert_eq!(l.check(&presence()), Verdict::Allowed);
            assert_eq!(l.check(&presence()), Verdict::Limited);
            // 3 refusals per 10 s refill: one refusal every 5 s never adds up.
            clock.advance(Duration::from_secs(5));
        }
    }
}
