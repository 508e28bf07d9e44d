//! `InFlight`: the requests a session has in flight, driven as one stream.
//!
//! actix polls every future spawned into an actor's context each time the actor wakes, so a
//! client pipelining n requests would cost O(n) per wake-up and O(n²) in all (the profile of
//! the `persist` benchmark showed it as the top cost). A session hands each request future to
//! its `InFlight` instead: one spawned item, a `FuturesUnordered` that polls only the futures
//! that were woken, whose completions run back in the session's own context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, Stream};
use tokio::sync::mpsc;

/// What to do with a finished request, run on the actor.
type Completion<A> = Box<dyn FnOnce(&mut A, &mut <A as Actor>::Context)>;

pub struct InFlight<A: Actor> {
    tx: mpsc::UnboundedSender<LocalBoxFuture<'static, Completion<A>>>,
    rx: Option<mpsc::UnboundedReceiver<LocalBoxFuture<'static, Completion<A>>>>,
}

impl<A> Default for InFlight<A>
where
    A: Actor,
    A::Context: AsyncContext<A>,
{
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        InFlight { tx, rx: Some(rx) }
    }
}

impl<A> InFlight<A>
where
    A: Actor,
    A::Context: AsyncContext<A>,
{
    /// Spawns the driver into the actor's context (from `started`); requests queued before
    /// then start at that point.
    pub fn start(&mut self, ctx: &mut A::Context) {
        let Some(rx) = self.rx.take() else {
            return;
        };
        let driver = Driver {
            rx,
            running: FuturesUnordered::new(),
            closed: false,
        };
        ctx.spawn(
            actix::fut::wrap_stream::<_, A>(driver)
                .map(|done: Completion<A>, act, ctx| done(act, ctx))
                .finish(),
        );
    }

    /// Runs `fut` alongside the actor and then `done` with its output on the actor. If the
    /// actor stops first, `done` never runs.
    pub fn run<F, T>(&self, fut: F, done: impl FnOnce(T, &mut A, &mut A::Context) + 'static)
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        let job: LocalBoxFuture<'static, Completion<A>> = Box::pin(async move {
            let out = fut.await;
            Box::new(move |act: &mut A, ctx: &mut A::Context| done(out, act, ctx)) as Completion<A>
        });
        // Fails only once the actor has stopped, when nobody waits for the answer.
        let _ = self.tx.send(job);
    }
}

struct Driver<A: Actor> {
    rx: mpsc::UnboundedReceiver<LocalBoxFuture<'static, Completion<A>>>,
    running: FuturesUnordered<LocalBoxFuture<'static, Completion<A>>>,
    closed: bool,
}

impl<A: Actor> Stream for Driver<A> {
    type Item = Completion<A>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.closed {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(job)) => this.running.push(job),
                Poll::Ready(None) => this.closed = true,
                Poll::Pending => break,
            }
        }
        match Pin::new(&mut this.running).poll_next(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(done)),
            _ if this.closed && this.running.is_empty() => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}
