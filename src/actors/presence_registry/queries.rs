//! Presence lookups and watching: what others see of users, and `presence` frames to
//! watchers. Who may watch whom is checked by the engine before `Watch` is sent.

use std::collections::HashMap;

use actix::prelude::*;

use super::PresenceRegistry;
use crate::actors::database::LoadUsers;
use crate::actors::session::handle::SessionHandle;
use crate::domain::{Millis, SessionId, UserId};
use crate::error::{EngineError, PersistError};
use crate::protocol::PresenceView;

/// Sent for a `watch`: `handle` receives `presence` frames about `users` from now on. Answers
/// their current presence.
#[derive(Message)]
#[rtype(result = "Result<Vec<PresenceView>, EngineError>")]
pub struct Watch {
    pub handle: SessionHandle,
    pub users: Vec<UserId>,
}

impl Handler<Watch> for PresenceRegistry {
    type Result = ResponseActFuture<Self, Result<Vec<PresenceView>, EngineError>>;
    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) -> Self::Result {
        let max = self.policy.max_watch;
        let set = self.watching.entry(msg.handle.id).or_default();
        let new = msg
            .users
            .iter()
            .filter(|u| !set.contains(*u))
            .collect::<std::collections::HashSet<_>>()
            .len();
        if set.len() + new > max {
            return Box::pin(actix::fut::ready(Err(EngineError::LimitExceeded(format!(
                "a session may watch at most {max} users"
            )))));
        }
        for u in &msg.users {
            set.insert(u.clone());
            self.watchers
                .entry(u.clone())
                .or_default()
                .insert(msg.handle.id, msg.handle.clone());
        }
        self.handle(GetPresence { users: msg.users }, ctx)
    }
}

/// Sent for an `unwatch`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub session: SessionId,
    pub users: Vec<UserId>,
}

impl Handler<Unwatch> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: Unwatch, _: &mut Context<Self>) {
        for u in &msg.users {
            if let Some(set) = self.watching.get_mut(&msg.session) {
                set.remove(u);
            }
            if let Some(w) = self.watchers.get_mut(u) {
                w.remove(&msg.session);
                if w.is_empty() {
                    self.watchers.remove(u);
                }
            }
        }
    }
}

/// Asked by sessions (join snapshot, watch) and REST: the presence others see of these users.
#[derive(Message)]
#[rtype(result = "Result<Vec<PresenceView>, EngineError>")]
pub struct GetPresence {
    pub users: Vec<UserId>,
}

impl Handler<GetPresence> for PresenceRegistry {
    type Result = ResponseActFuture<Self, Result<Vec<PresenceView>, EngineError>>;
    fn handle(&mut self, msg: GetPresence, _: &mut Context<Self>) -> Self::Result {
        let unknown: Vec<UserId> = msg
            .users
            .iter()
            .filter(|u| !self.users.contains_key(*u) && !self.remote.has(u))
            .cloned()
            .collect();
        let reader = self.store.reader.clone();
        Box::pin(
            async move {
                if unknown.is_empty() {
                    return Ok(Vec::new());
                }
                reader
                    .send(LoadUsers { users: unknown })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)
            }
            .into_actor(self)
            .map(move |stored, act, _| {
                // Offline users' last-seen comes from the database; if it is down, presence
                // still answers (with last_seen unknown) rather than fail.
                let stored: HashMap<UserId, Option<Millis>> = match stored {
                    Ok(rows) => rows.into_iter().map(|r| (r.id, r.last_seen)).collect(),
                    Err(e) => {
                        log::warn!("presence: last_seen lookup failed: {e}");
                        HashMap::new()
                    }
                };
                Ok(msg
                    .users
                    .iter()
                    .map(|u| match act.users.get(u) {
                        Some(e) => e.view(u),
                        None => match act.remote_presence(u) {
                            Some(e) => e.view(u),
                            None => {
                                PresenceView::offline(u.as_str(), stored.get(u).copied().flatten())
                            }
                        },
                    })
                    .collect())
            }),
        )
    }
}

/// Sent by the notification center in cluster mode: which of `users` have a session on any
/// node (here, or in another node's entry). Decides `message.undelivered` webhooks.
#[derive(Message)]
#[rtype(result = "std::collections::HashSet<UserId>")]
pub struct ConnectedAnywhere {
    pub users: Vec<UserId>,
}

impl Handler<ConnectedAnywhere> for PresenceRegistry {
    type Result = MessageResult<ConnectedAnywhere>;
    fn handle(&mut self, msg: ConnectedAnywhere, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.users
                .into_iter()
                .filter(|u| {
                    self.users.get(u).is_some_and(|e| !e.sessions.is_empty())
                        || self.remote.get(u).is_some_and(|r| r.sessions() > 0)
                })
                .collect(),
        )
    }
}
