//! What every client-facing session does alike, whatever its wire protocol: the token-expiry
//! timers (a warning at expiry plus leeway, then the end of the session unless a fresh token
//! came within the refresh grace) and the coalesced `room_unread` frames. `WsSession` (native
//! protocol), `SocketIoSession` and `NotificationSocket` (seed protocol; expiry only, it has
//! no rooms) implement [`ClientSession`] to say how each step looks on their wire; the timing
//! lives here once.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::domain::now_millis;
use crate::unread::{UnreadCounts, UNREAD_COALESCE};

pub trait ClientSession: Actor<Context = <Self as ClientSession>::Ctx> + Sized {
    type Ctx: AsyncContext<Self>;

    /// When the session's token expires (Unix ms), if it has one.
    fn token_expires_at(&self) -> Option<i64>;
    /// The clock skew tolerated on `exp`, and how long a fresh token may take after the
    /// warning.
    fn leeway_and_grace(&self) -> (Duration, Duration);
    fn expiry_timers(&mut self) -> &mut Vec<SpawnHandle>;
    /// Tells the client its token expired and how long it has to send a fresh one.
    fn warn_token_expired(&mut self, grace: Duration, ctx: &mut Self::Ctx);
    /// Ends the session: the grace passed without a fresh token.
    fn end_expired(&mut self, ctx: &mut Self::Ctx);
    fn unread(&mut self) -> &mut UnreadCounts;
    /// Sends one native `room_unread` frame in the session's protocol.
    fn send_unread(&mut self, frame: crate::protocol::EncodedFrame, ctx: &mut Self::Ctx);

    /// (Re)arms the token-expiry timers; call at start and after each accepted `auth`.
    fn arm_expiry(&mut self, ctx: &mut Self::Ctx) {
        for t in self.expiry_timers().drain(..) {
            ctx.cancel_future(t);
        }
        let Some(expires_at) = self.token_expires_at() else {
            return;
        };
        let (leeway, grace) = self.leeway_and_grace();
        let until = (expires_at + leeway.as_millis() as i64 - now_millis()).max(0) as u64;
        let warn = ctx.run_later(Duration::from_millis(until), move |act, ctx| {
            // A fresh token re-armed the timers meanwhile.
            if act.token_expires_at() != Some(expires_at) {
                return;
            }
            act.warn_token_expired(grace, ctx);
            let close = ctx.run_later(grace, move |act, ctx| {
                if act.token_expires_at() == Some(expires_at) {
                    act.end_expired(ctx);
                }
            });
            act.expiry_timers().push(close);
        });
        self.expiry_timers().push(warn);
    }

    /// How long this session's delivered frames may wait to be written together (the
    /// write-gathering window; zero: never).
    fn delivery_gather(&self) -> Duration {
        Duration::ZERO
    }

    /// Sends the pending `room_unread` frames once they have been collected for
    /// [`UNREAD_COALESCE`]: with the first deliveries after that (see
    /// [`ClientSession::unread_with_deliveries`]), or on their own by a timer that allows
    /// for the delivery-gathering window.
    fn schedule_unread(&mut self, ctx: &mut Self::Ctx) {
        if self.unread().pending.is_some() {
            return;
        }
        let fallback = UNREAD_COALESCE + self.delivery_gather();
        let timer = ctx.run_later(fallback, |act, ctx| act.flush_unread(ctx));
        self.unread().pending = Some((timer, Instant::now() + UNREAD_COALESCE));
    }

    /// After a turn of delivered frames: pending `room_unread` frames that are due go out
    /// with them (the same write) rather than on their own when the timer fires.
    fn unread_with_deliveries(&mut self, ctx: &mut Self::Ctx) {
        let Some((timer, due)) = self.unread().pending else {
            return;
        };
        if Instant::now() < due {
            return;
        }
        ctx.cancel_future(timer);
        self.flush_unread(ctx);
    }

    fn flush_unread(&mut self, ctx: &mut Self::Ctx) {
        self.unread().pending = None;
        for f in self.unread().take_frames() {
            self.send_unread(f, ctx);
        }
    }
}
