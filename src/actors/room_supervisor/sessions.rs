//! Sessions of the room supervisor: `Connect`, `SubscribeSession`, `Disconnect`, a room that
//! gave up (`RoomFailed`), the per-session subscription bookkeeping, and the report of a user's
//! rooms to the presence registry (`UserRoomsChanged`, `AttachPresence`).

use super::*;
use crate::actors::room::{Subscribe, Unsubscribe};

impl RoomSupervisor {
    /// The live sessions of `user`, for a room to subscribe in the same turn that makes
    /// the user a member (so no message can slip between membership and subscription).
    pub(super) fn handles_of(&self, user: &UserId) -> Vec<SessionHandle> {
        self.sessions
            .get(user)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any live session of `user` is subscribed to `room`: the user's rooms are the
    /// union of their sessions' rooms.
    pub(super) fn user_has_room(&self, user: &UserId, room: &RoomId) -> bool {
        self.sessions.get(user).is_some_and(|sessions| {
            sessions.keys().any(|id| {
                self.session_rooms
                    .get(id)
                    .is_some_and(|set| set.contains(room))
            })
        })
    }

    /// Tells the presence registry that `user`'s rooms gained `added` and lost `removed`
    /// (once per user, not per session). `do_send`: the registry's mailbox is unbounded and
    /// a lost change would leave presence announced in the wrong rooms.
    pub(super) fn report_rooms(&self, user: &UserId, added: Vec<RoomId>, removed: Vec<RoomId>) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        if let Some(presence) = &self.presence {
            presence.do_send(UserRoomsChanged {
                user: user.clone(),
                added,
                removed,
            });
        }
    }

    /// Records that every session of `user` is subscribed to `room`; tells the presence
    /// registry if the room is new to the user. With `notify_room`, also subscribes them at
    /// the room (when the room did not already).
    pub(super) fn subscribe_user(&mut self, user: &UserId, room: &RoomId, notify_room: bool) {
        let handles = self.handles_of(user);
        if handles.is_empty() {
            return;
        }
        let had = self.user_has_room(user, room);
        let addr = self.room(room);
        for h in handles {
            if self
                .session_rooms
                .entry(h.id)
                .or_default()
                .insert(room.clone())
                && notify_room
            {
                addr.do_send(Subscribe { handle: h.clone() });
            }
        }
        if !had {
            self.report_rooms(user, vec![room.clone()], vec![]);
        }
    }

    /// Unsubscribes every session of `user` from `room` and tells each session (for its
    /// local state), and the presence registry once if the user had the room.
    pub(super) fn unsubscribe_user(&mut self, user: &UserId, room: &RoomId) {
        let Some(sessions) = self.sessions.get(user) else {
            return;
        };
        let mut had = false;
        for h in sessions.values() {
            if let Some(set) = self.session_rooms.get_mut(&h.id) {
                if set.remove(room) {
                    had = true;
                    if let Some(e) = self.rooms.get(room) {
                        e.addr.do_send(Unsubscribe { session: h.id });
                    }
                    h.send_control(SessionControl::Unsubscribed { room: room.clone() });
                }
            }
        }
        if had {
            self.report_rooms(user, vec![], vec![room.clone()]);
        }
    }
}

/// Sent when a session opens, before its user's rooms are read: from now on membership
/// changes of the user reach this session too, so none can slip between that read and the
/// [`SubscribeSession`] that follows it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub handle: SessionHandle,
}

impl Handler<Connect> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let handle = msg.handle;
        self.session_rooms.entry(handle.id).or_default();
        self.sessions
            .entry(handle.user.clone())
            .or_default()
            .insert(handle.id, handle);
    }
}

/// Sent once the user's rooms are read: subscribe the session to all of them. Answers each
/// room's seq at the moment the session was subscribed there (see [`Subscribe`]); a room
/// that does not answer within `wait` (it is still loading from an unreachable database) is
/// left out of the answer but stays subscribed.
#[derive(Message)]
#[rtype(result = "HashMap<RoomId, i64>")]
pub struct SubscribeSession {
    pub handle: SessionHandle,
    pub rooms: Vec<RoomId>,
    /// `rooms` is every room of the user (the read was not cut short by its limit).
    pub complete: bool,
    pub wait: Duration,
}

impl Handler<SubscribeSession> for RoomSupervisor {
    type Result = ResponseFuture<HashMap<RoomId, i64>>;
    fn handle(&mut self, msg: SubscribeSession, ctx: &mut Context<Self>) -> Self::Result {
        // The session may have closed while the rooms were loading.
        if !self.session_rooms.contains_key(&msg.handle.id) {
            return Box::pin(async { HashMap::new() });
        }
        let mut answers = Vec::with_capacity(msg.rooms.len());
        for id in msg.rooms {
            let addr = self.room(&id);
            // Through the in-flight set, so that the request outlives the wait below: actix
            // skips a queued request whose asker stopped waiting, and a room still loading
            // must subscribe the session once it loads.
            let answer = self.inflight.answer(
                addr.send(Subscribe {
                    handle: msg.handle.clone(),
                }),
                |res, _: &mut Self, _| res,
                ctx,
            );
            let wait = msg.wait;
            let room = id.clone();
            answers.push(async move {
                match actix::clock::timeout(wait, answer).await {
                    Ok(Some(Ok(Some(seq)))) => Some((room, seq)),
                    _ => None,
                }
            });
            if let Some(set) = self.session_rooms.get_mut(&msg.handle.id) {
                set.insert(id);
            }
        }
        if msg.complete {
            self.complete.insert(msg.handle.id);
        }
        // Every room of this session that no other session of the user has. A room already
        // added by a join between `Connect` and now is reported again: the registry may not
        // have known the user then (it learns of the session just before this message), and
        // it ignores rooms it already has.
        let user = &msg.handle.user;
        let added: Vec<RoomId> = self
            .session_rooms
            .get(&msg.handle.id)
            .map(|set| {
                set.iter()
                    .filter(|room| {
                        !self.sessions.get(user).is_some_and(|sessions| {
                            sessions.keys().any(|id| {
                                *id != msg.handle.id
                                    && self
                                        .session_rooms
                                        .get(id)
                                        .is_some_and(|s| s.contains(*room))
                            })
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.report_rooms(user, added, vec![]);
        Box::pin(async move {
            futures_util::future::join_all(answers)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }
}

/// Sent when a session closes (idempotent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub user: UserId,
}

impl Handler<Disconnect> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        if let Some(map) = self.sessions.get_mut(&msg.user) {
            map.remove(&msg.session);
            if map.is_empty() {
                self.sessions.remove(&msg.user);
            }
        }
        self.complete.remove(&msg.session);
        for room in self.session_rooms.remove(&msg.session).unwrap_or_default() {
            if let Some(e) = self.rooms.get(&room) {
                e.addr.do_send(Unsubscribe {
                    session: msg.session,
                });
            }
        }
    }
}

/// Sent by a room that gave up loading (after `room_load_retry`), just before it stops:
/// forget the room, so that its next use starts a fresh one, and unsubscribe every session
/// counted as subscribed to it, telling each ([`SessionControl::RoomUnavailable`]). The room
/// waits for this to be handled, so no session can have been subscribed to a newer room of
/// the same id meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomFailed {
    pub room: RoomId,
    /// The room that failed, so a newer room of the same id is never forgotten by mistake.
    pub addr: Addr<Room>,
    /// What the sessions are told.
    pub reason: String,
}

impl Handler<RoomFailed> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: RoomFailed, _: &mut Context<Self>) {
        match self.rooms.get(&msg.room) {
            Some(e) if e.addr != msg.addr => {
                log::warn!("room {}: a stale room actor gave up loading", msg.room);
                return;
            }
            Some(_) => {
                self.rooms.remove(&msg.room);
                METRICS.rooms_active.dec();
            }
            None => {}
        }
        let mut told = 0;
        let mut users = HashSet::new();
        for h in self.sessions.values().flat_map(|m| m.values()) {
            if let Some(set) = self.session_rooms.get_mut(&h.id) {
                if set.remove(&msg.room) {
                    users.insert(h.user.clone());
                    // Its room set is no longer the user's full set: membership questions
                    // go to the rooms again.
                    self.complete.remove(&h.id);
                    h.send_control(SessionControl::RoomUnavailable {
                        room: msg.room.clone(),
                        reason: msg.reason.clone(),
                    });
                    told += 1;
                }
            }
        }
        for user in &users {
            self.report_rooms(user, vec![], vec![msg.room.clone()]);
        }
        log::warn!(
            "room {} gave up loading; {told} sessions unsubscribed",
            msg.room
        );
    }
}

/// Cluster mode: asked by a room of the presence registry when it starts: which of these
/// users (its members) are connected anywhere in the cluster. Defined here, like
/// [`UserRoomsChanged`], to keep the module dependency one-way.
#[derive(Message, Debug)]
#[rtype(result = "Vec<UserId>")]
pub struct OnlineAmong {
    pub users: Vec<UserId>,
}

/// Sent by `Engine::start` in cluster mode: where rooms ask [`OnlineAmong`]. Rooms started
/// before it (none in practice) learn their members connected on other nodes only from
/// presence changes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachOnlineLookup {
    pub lookup: Recipient<OnlineAmong>,
}

impl Handler<AttachOnlineLookup> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AttachOnlineLookup, _: &mut Context<Self>) {
        self.online_lookup = Some(msg.lookup);
    }
}

/// Sent by the room supervisor to the presence registry when the rooms of `user` (the union
/// over the user's live sessions) gained or lost rooms: once per user and change, however
/// many sessions the user has. Defined here rather than in the registry's file to keep the
/// module dependency one-way (see the module doc).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct UserRoomsChanged {
    pub user: UserId,
    pub added: Vec<RoomId>,
    pub removed: Vec<RoomId>,
}

/// Sent by `Engine::start` to the room supervisor once the presence registry runs: where to
/// report [`UserRoomsChanged`]. A later one replaces the earlier (tests use this to observe
/// the reports).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachPresence {
    pub presence: Recipient<UserRoomsChanged>,
}

impl Handler<AttachPresence> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AttachPresence, _: &mut Context<Self>) {
        self.presence = Some(msg.presence);
    }
}
