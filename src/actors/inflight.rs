//! `InFlight`: the requests a session has in flight, driven as one stream.
//!
//! actix polls every future spawned into an actor's context each time the actor wakes, so a
//! client pipelining n requests would cost O(n) per wake-up and O(n²) in all (the profile of
//! the `persist` benchmark showed it as the top cost). A session hands each request future to
//! its `InFlight` instead: while anything is in flight, one spawned item drives a
//! `FuturesUnordered` that polls only the futures that were woken, and each completion runs
//! back in the session's own context. With nothing in flight there is no item at all, so a
//! session that only receives (most of a room) pays nothing for it on each delivery. The
//! room supervisor uses it the same way for connects and joins, which arrive by the thousand
//! in a connect storm.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, Stream};

/// What to do with a finished request, run on the actor.
type Completion<A> = Box<dyn FnOnce(&mut A, &mut <A as Actor>::Context)>;

type Running<A> = Rc<RefCell<FuturesUnordered<LocalBoxFuture<'static, Completion<A>>>>>;

pub struct InFlight<A: Actor> {
    running: Running<A>,
    /// Whether the driver item is spawned.
    driving: Rc<Cell<bool>>,
}

impl<A: Actor> Default for InFlight<A> {
    fn default() -> Self {
        InFlight {
            running: Rc::new(RefCell::new(FuturesUnordered::new())),
            driving: Rc::new(Cell::new(false)),
        }
    }
}

impl<A> InFlight<A>
where
    A: Actor,
    A::Context: AsyncContext<A>,
{
    /// Requests in flight now (the per-session cap counts these).
    pub fn len(&self) -> usize {
        self.running.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `fut` alongside the actor and then `done` with its output on the actor. If the
    /// actor stops first, `done` never runs.
    pub fn run<F, T>(
        &self,
        fut: F,
        done: impl FnOnce(T, &mut A, &mut A::Context) + 'static,
        ctx: &mut A::Context,
    ) where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        self.running.borrow_mut().push(Box::pin(async move {
            let out = fut.await;
            Box::new(move |act: &mut A, ctx: &mut A::Context| done(out, act, ctx)) as Completion<A>
        }));
        if !self.driving.replace(true) {
            // The context polls its items after the handler that called us returns, so the
            // new future is polled (and registers its waker) in this same turn.
            let driver = Driver {
                running: self.running.clone(),
                driving: self.driving.clone(),
            };
            ctx.spawn(
                actix::fut::wrap_stream::<_, A>(driver)
                    .map(|done: Completion<A>, act, ctx| done(act, ctx))
                    .finish(),
            );
        }
    }

    /// For a handler whose answer needs the actor after some outside work: runs `fut`, then
    /// `done` on the actor, and resolves to what `done` returns (`None` if the actor stopped
    /// first). Return it from the handler as a `ResponseFuture`, not an actor future.
    pub fn answer<F, T, R>(
        &self,
        fut: F,
        done: impl FnOnce(T, &mut A, &mut A::Context) -> R + 'static,
        ctx: &mut A::Context,
    ) -> impl Future<Output = Option<R>> + 'static
    where
        F: Future<Output = T> + 'static,
        T: 'static,
        R: 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.run(
            fut,
            move |out, act, ctx| {
                // The asker may have gone; the actor's state is updated either way.
                let _ = tx.send(done(out, act, ctx));
            },
            ctx,
        );
        async move { rx.await.ok() }
    }
}

struct Driver<A: Actor> {
    running: Running<A>,
    driving: Rc<Cell<bool>>,
}

impl<A: Actor> Stream for Driver<A> {
    type Item = Completion<A>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut running = this.running.borrow_mut();
        match Pin::new(&mut *running).poll_next(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(done)),
            // Nothing left in flight: the driver ends; the next request spawns a new one.
            Poll::Ready(None) => {
                this.driving.set(false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
