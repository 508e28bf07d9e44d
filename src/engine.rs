//! `Engine`: the handles of the running actors, and the operations sessions, REST routes and
//! tests perform with them.
//!
//! Each operation turns a validated request into actor messages and maps the replies to
//! typed results, so the WebSocket session, the REST handlers and the testkit share one code
//! path. `Engine::start` wires the actors: the database readers and single writer on
//! `SyncArbiter`s, the commit queue, the room supervisor and the presence registry.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::actors::commit_queue::CommitQueue;
use crate::actors::database::{Database, ListUserRooms};
use crate::actors::notification_center::*;
use crate::actors::presence_registry::*;
use crate::actors::room::{Caller, History, Publish, Receipt, RoomOnline, Typing};
use crate::actors::room_supervisor::*;
use crate::actors::session::SessionHandle;
use crate::auth::JwtKeys;
use crate::config::{Hook, Settings};
use crate::db::models::{NewMessage, RoomSummary, StoredMessage};
use crate::db::DbPool;
use crate::domain::{ChosenStatus, ReceiptStatus, RoomId, SessionId, UserId};
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::protocol::{self, PresenceView, SendAck, SendRequest, SendTarget, TypingState};

/// The persistence actors as the rest of the engine sees them.
#[derive(Clone)]
pub struct Store {
    /// Reader threads (reads only).
    pub reader: Addr<Database>,
    /// The group-commit front of the single writer thread.
    pub commits: Addr<CommitQueue>,
    /// How long a client waits for a commit before it is told `unavailable` (the write
    /// itself stays queued and may still complete; retries are idempotent).
    pub write_timeout: std::time::Duration,
}

/// What a new session sends first and knows about its user's rooms.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// The `sync` frame, then the `unread_count` of notifications.
    pub frames: Vec<protocol::EncodedFrame>,
    /// The user's rooms with watermarks and unread counts.
    pub rooms: Vec<RoomSummary>,
    /// Where each room's stream of `message` frames starts, in replay order (rooms holding
    /// urgent, then high-priority messages first).
    pub replay: Vec<RoomReplay>,
}

/// Where one room's stream starts for a new session, and its first page.
#[derive(Debug, Clone)]
pub struct RoomReplay {
    pub room: RoomId,
    /// The stream continues after this seq.
    pub position: i64,
    /// The room's seq when the session was subscribed: everything up to it is replayed from
    /// the database, everything after arrives live.
    pub room_seq: i64,
    /// Messages left out because the backlog exceeded `replay_max` (`replay_truncated`).
    pub truncated: Option<(i64, i64)>,
    /// The first page after `position`, and whether the store holds more.
    pub first_page: Vec<StoredMessage>,
    pub more: bool,
}

/// Where a connecting client says it left off (docs/protocol.md, "Resume").
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The device it names (`device_id`): its stored positions are the resume points.
    pub device: Option<crate::domain::DeviceId>,
    /// Last seq the client holds, per room (query `since` or Socket.IO `auth.since`); wins
    /// over the device's stored position.
    pub since: std::collections::HashMap<RoomId, i64>,
}

/// Handles to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub rooms: Addr<RoomSupervisor>,
    pub presence: Addr<PresenceRegistry>,
    pub notifications: Addr<NotificationCenter>,
    /// Engine.IO session ids of Socket.IO clients.
    pub eio: Addr<crate::actors::eio_registry::EioRegistry>,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub keys: Arc<JwtKeys>,
    /// Rates of new connections per client address and per user.
    pub gate: Arc<crate::admission::ConnectGate>,
    pub started_at: Instant,
    /// The cached `/readyz` answer, shared by all HTTP workers.
    pub readiness: Arc<crate::readiness::Readiness>,
}

fn persist<T>(r: Result<Result<T, PersistError>, MailboxError>) -> Result<T, EngineError> {
    Ok(r.map_err(PersistError::from).and_then(|r| r)?)
}

impl Engine {
    /// Starts every actor in the current actix system.
    pub fn start(settings: Settings, pool: DbPool, keys: JwtKeys) -> Engine {
        let readers = settings.db_pool_size.max(1) as usize;
        let read_pool = pool.clone();
        let reader = SyncArbiter::start(readers, move || Database::new(read_pool.clone()));
        let writer = SyncArbiter::start(1, move || Database::new(pool.clone()));
        let commits = CommitQueue::new(
            writer,
            settings.commit_max_batch,
            settings.costs.commit_queue_max,
        )
        .start();
        let store = Store {
            reader,
            commits,
            write_timeout: settings.db_write_timeout,
        };
        let notifications = NotificationCenter::new(
            store.clone(),
            settings.clock.clone(),
            settings.notification_sweep,
        )
        .start();
        let rooms = RoomSupervisor::new(
            store.clone(),
            crate::actors::room::RoomPolicy {
                typing_timeout: settings.typing_timeout,
                typing_rate: settings.typing_rate,
                presence_coalesce: settings.presence_coalesce,
                max_room_members: settings.limits.max_room_members,
                max_rooms_per_user: settings.limits.max_rooms_per_user,
                load_retry: settings.room_load_retry,
                max_devices_per_user: settings.limits.max_devices_per_user as i64,
            },
            settings.room_idle,
            crate::actors::room::MessageNotifier {
                center: notifications.clone().recipient(),
                mentions: settings.notify_mentions,
                offline_direct: settings.notify_offline_direct,
                max_mentions: settings.costs.max_mentions,
                answering_window: settings.answering_window(),
            },
            settings.outbox_sweep,
        )
        .start();
        let presence = PresenceRegistry::new(
            store.clone(),
            rooms.clone(),
            PresencePolicy {
                grace: settings.presence_grace,
                sweep: settings.presence_sweep,
                auto_away: settings.auto_away,
                max_watch: settings.limits.max_watch,
                clock: settings.clock.clone(),
            },
        )
        .start();
        // The supervisor reports users' room changes to the registry; given now that both
        // run (the registry already holds the supervisor's address: no cycle at start).
        rooms.do_send(AttachPresence {
            presence: presence.clone().recipient(),
        });
        expire_device_positions(store.commits.clone(), settings.device_ttl);
        actix::spawn(async {
            let mut tick = actix::clock::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                crate::metrics::RATES.sample();
            }
        });
        Engine {
            rooms,
            presence,
            notifications,
            eio: crate::actors::eio_registry::EioRegistry::new(
                settings.limits.max_unauthenticated,
                settings.limits.max_unauthenticated_per_ip,
                settings.sio_recovery_window,
            )
            .start(),
            gate: Arc::new(crate::admission::ConnectGate::new(
                crate::admission::ConnectRates {
                    per_ip: settings.limits.connect_rate_per_ip,
                    per_ip_burst: settings.limits.connect_burst_per_ip,
                    per_user: settings.limits.connect_rate_per_user,
                    per_user_burst: settings.limits.connect_burst_per_user,
                    history_per_user: settings.limits.history_rate,
                    history_per_user_burst: settings.limits.history_burst,
                },
            )),
            store,
            settings: Arc::new(settings),
            keys: Arc::new(keys),
            started_at: Instant::now(),
            readiness: Arc::default(),
        }
    }

    /// Re-processes the notifications a previous process left unsettled (its outbox rows),
    /// without waiting for the first periodic sweep.
    pub fn sweep_outbox_at_start(&self) {
        self.rooms.do_send(SweepOutbox {
            min_age: self.settings.outbox_sweep,
        });
    }

    /// Registers a new session everywhere and says where each room's stream starts.
    ///
    /// Order matters (docs/protocol.md, "Continuity"): the session is subscribed to its rooms
    /// *before* anything is replayed, and each room answers its seq at that moment; the
    /// replay reads the database after that, so every message is either replayed or live
    /// (or both: the session drops the duplicate). The session holds live frames until its
    /// replay reaches them.
    pub async fn open_session(
        &self,
        handle: SessionHandle,
        resume: Resume,
    ) -> Result<SessionStart, EngineError> {
        self.rooms
            .send(Connect {
                handle: handle.clone(),
            })
            .await?;
        let start = persist(
            self.store
                .reader
                .send(crate::actors::database::LoadSessionStart {
                    user: handle.user.clone(),
                    device: resume.device.clone(),
                    // One more than the cap: a full answer proves the set complete.
                    rooms_limit: self.settings.limits.max_rooms_per_user as i64 + 1,
                    now: self.settings.clock.now(),
                })
                .await,
        )?;
        let rooms = start.rooms;
        // Resume points: what the client says, else what its device last reported.
        let mut points: std::collections::HashMap<RoomId, i64> = start
            .device_positions
            .iter()
            .filter_map(|(r, seq)| Some((RoomId::parse(r).ok()?, *seq)))
            .collect();
        points.extend(resume.since.iter().map(|(r, s)| (r.clone(), *s)));
        let ids: Vec<RoomId> = rooms
            .iter()
            .filter_map(|r| RoomId::parse(&r.room).ok())
            .collect();
        let complete = ids.len() <= self.settings.limits.max_rooms_per_user;
        // Presence first: the supervisor reports the user's rooms to the registry while
        // subscribing, and the registry must know the user by then.
        self.presence
            .send(SessionOpened {
                handle: handle.clone(),
                stored: start.user,
            })
            .await?;
        self.settings.hooks.run(Hook::BeforeSubscribe).await;
        let seqs = self
            .rooms
            .send(SubscribeSession {
                handle: handle.clone(),
                rooms: ids,
                complete,
                wait: self.settings.db_write_timeout,
            })
            .await?;
        self.notifications.do_send(NotificationSubscribe { handle });
        self.settings.hooks.run(Hook::BeforeReplay).await;
        let plans: Vec<(RoomId, RoomPlan)> = rooms
            .iter()
            .filter_map(|r| {
                let room = RoomId::parse(&r.room).ok()?;
                // A room that did not answer (still loading) falls back to the snapshot.
                let room_seq = seqs.get(&room).copied().unwrap_or(r.last_seq);
                let plan = RoomPlan::new(
                    r,
                    room_seq,
                    points.get(&room).copied(),
                    self.settings.replay_max,
                );
                Some((room, plan))
            })
            .collect();
        let replay = self.first_pages(plans).await?;
        let mut frames = Vec::with_capacity(2);
        frames.push(sync_frame(&rooms, &replay, &points));
        // The notification badge, so a client need not ask.
        if let Some(n) = start.unread_notifications {
            frames.push(unread_frame(n));
        }
        Ok(SessionStart {
            frames,
            rooms,
            replay,
        })
    }

    /// The first replay page of every room with a backlog, read in parallel, and the rooms
    /// in replay order: rooms holding urgent, then high-priority messages first.
    async fn first_pages(
        &self,
        plans: Vec<(RoomId, RoomPlan)>,
    ) -> Result<Vec<RoomReplay>, EngineError> {
        let fetches = plans.into_iter().map(|(room, plan)| async move {
            let (first_page, more) = if plan.room_seq > plan.position {
                self.replay_page(room.clone(), plan.position).await?
            } else {
                (Vec::new(), false)
            };
            Ok::<_, EngineError>(RoomReplay {
                room,
                position: plan.position,
                room_seq: plan.room_seq,
                truncated: plan.truncated,
                first_page,
                more,
            })
        });
        let mut replay = Vec::new();
        for r in futures_util::future::join_all(fetches).await {
            replay.push(r?);
        }
        let rank = |r: &RoomReplay| {
            r.first_page
                .iter()
                .filter_map(|m| crate::domain::Priority::parse(&m.priority))
                .max()
                .map(|p| p.max(crate::domain::Priority::Normal))
                .unwrap_or_default()
        };
        // Stable sort: rooms of equal rank keep their (room id) order.
        replay.sort_by_key(|r| std::cmp::Reverse(rank(r)));
        Ok(replay)
    }

    /// One page of a room's stream: messages after `after`, in seq order, at most
    /// `join_missed_limit` of them and `history_max_bytes` of bodies; true when more follow.
    pub async fn replay_page(
        &self,
        room: RoomId,
        after: i64,
    ) -> Result<(Vec<StoredMessage>, bool), EngineError> {
        let q = crate::actors::database::FetchHistory {
            room,
            before_seq: None,
            after_seq: Some(after),
            limit: self.settings.join_missed_limit.max(1),
            max_bytes: self.settings.history_max_bytes,
        };
        persist(self.store.reader.send(q).await)
    }

    /// Admits one more session of `user` from `ip`, or says which limit refuses it: the
    /// user's rate of new sessions, then (checked and counted in one step) sessions per user
    /// and connections per address. The ticket holds the session's place until dropped.
    pub async fn admit(
        &self,
        user: &UserId,
        ip: Option<std::net::IpAddr>,
    ) -> Result<AdmissionTicket, EngineError> {
        if let Err(refusal) = self.gate.check_user(user) {
            METRICS.refused.with_label_values(&[refusal.metric()]).inc();
            return Err(EngineError::RateLimited(refusal.to_string()));
        }
        let l = &self.settings.limits;
        self.rooms
            .send(AdmitSession {
                user: user.clone(),
                ip,
                max_sessions: l.max_sessions_per_user,
                max_per_ip: l.max_connections_per_ip,
            })
            .await?
    }

    /// Unregisters a session (idempotent).
    pub fn close_session(&self, session: SessionId, user: &UserId) {
        // do_send: our own actors' mailboxes are unbounded and this must never be lost.
        self.rooms.do_send(Disconnect {
            session,
            user: user.clone(),
        });
        self.notifications.do_send(NotificationUnsubscribe {
            session,
            user: user.clone(),
        });
        self.presence.do_send(SessionClosed {
            session,
            user: user.clone(),
        });
    }

    /// `join`: the ack's data.
    pub async fn join(
        &self,
        user: &UserId,
        _session: SessionId,
        room: RoomId,
        since_seq: Option<i64>,
    ) -> Result<Value, EngineError> {
        let joined = self
            .rooms
            .send(Join {
                user: user.clone(),
                room: room.clone(),
                since_seq,
                missed_limit: self.settings.join_missed_limit,
                missed_max_bytes: self.settings.history_max_bytes,
            })
            .await??;
        let members: Vec<PresenceView> = self
            .presence
            .send(GetPresence {
                users: joined.online,
            })
            .await??
            .into_iter()
            .filter(|p| p.status != crate::domain::VisibleStatus::Offline)
            .collect();
        Ok(json!({
            "room": room,
            "seq": joined.seq,
            "members": members,
            "missed": protocol::message_objects(&joined.missed),
            "has_more": joined.has_more,
        }))
    }

    pub async fn leave(&self, user: &UserId, room: RoomId) -> Result<(), EngineError> {
        self.rooms
            .send(Leave {
                user: user.clone(),
                room,
            })
            .await?
    }

    /// `send`: answers once the message is durably stored.
    pub async fn send_message(
        &self,
        user: &UserId,
        origin: Option<SessionId>,
        req: SendRequest,
    ) -> Result<SendAck, EngineError> {
        let room = match req.target {
            SendTarget::Room(r) => r,
            SendTarget::User(to) if &to == user => {
                return Err(EngineError::Invalid(
                    "you cannot send a direct message to yourself".into(),
                ))
            }
            SendTarget::User(to) => RoomId::direct(user, &to),
        };
        let message = NewMessage::new(
            user.clone(),
            req.kind,
            req.body,
            req.priority,
            req.client_msg_id,
        );
        self.publish(room, message, origin, false).await
    }

    /// Routes a new message to its room and answers the ack once it is stored.
    async fn publish(
        &self,
        room: RoomId,
        message: NewMessage,
        origin: Option<SessionId>,
        system: bool,
    ) -> Result<SendAck, EngineError> {
        let published = self
            .rooms
            .send(RoutePublish {
                room,
                publish: Publish {
                    message,
                    origin,
                    system,
                },
            })
            .await??;
        Ok(SendAck::of(&published.message, published.duplicate))
    }

    /// Stores and fans out a `system` message from an app backend or an admin (REST): the
    /// sender need not be a member; the room must exist. Retries with the same
    /// `client_msg_id` get the original.
    pub async fn post_system_message(
        &self,
        sender: &UserId,
        room: RoomId,
        body: &serde_json::Value,
        priority: crate::domain::Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, EngineError> {
        // The same bound as any message body: the text limit plus 1 KiB.
        let max = self.settings.max_text_bytes + 1024;
        let body = crate::domain::MessageBody::system_checked(body, max).map_err(|e| match e {
            crate::domain::SystemBodyError::NotAnObject => {
                EngineError::Invalid("body must be a JSON object".into())
            }
            crate::domain::SystemBodyError::TooLarge(n) => {
                EngineError::TooLarge(format!("body is {n} bytes; the limit is {max} bytes"))
            }
        })?;
        let message = NewMessage::new(
            sender.clone(),
            crate::domain::MessageKind::System,
            body,
            priority,
            client_msg_id,
        );
        self.publish(room, message, None, true).await
    }

    pub async fn typing(
        &self,
        user: &UserId,
        _session: SessionId,
        room: RoomId,
        state: TypingState,
    ) -> Result<(), EngineError> {
        self.rooms
            .send(RouteTyping {
                room,
                typing: Typing {
                    user: user.clone(),
                    state,
                },
            })
            .await?
    }

    pub async fn receipt(
        &self,
        user: &UserId,
        origin: Option<SessionId>,
        room: RoomId,
        seq: i64,
        status: ReceiptStatus,
    ) -> Result<(), EngineError> {
        self.device_receipt(user, origin, None, room, seq, status)
            .await
    }

    /// A receipt from a session that named its device: it also moves the device's position.
    pub async fn device_receipt(
        &self,
        user: &UserId,
        origin: Option<SessionId>,
        device: Option<crate::domain::DeviceId>,
        room: RoomId,
        seq: i64,
        status: ReceiptStatus,
    ) -> Result<(), EngineError> {
        self.rooms
            .send(RouteReceipt {
                room,
                receipt: Receipt {
                    user: user.clone(),
                    origin,
                    device,
                    seq,
                    status,
                },
            })
            .await?
    }

    pub async fn set_status(
        &self,
        user: &UserId,
        status: ChosenStatus,
        custom_message: Option<String>,
        custom_expires_at: Option<i64>,
        metadata: Option<Value>,
    ) -> Result<(), EngineError> {
        Ok(self
            .presence
            .send(SetStatus {
                user: user.clone(),
                status,
                custom_message,
                custom_expires_at,
                metadata,
            })
            .await?)
    }

    /// A page of history (members only, unless `admin`).
    pub async fn history(
        &self,
        user: &UserId,
        admin: bool,
        room: RoomId,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<StoredMessage>, bool), EngineError> {
        let h = History {
            user: user.clone(),
            admin,
            before_seq,
            after_seq,
            limit,
            max_bytes: self.settings.history_max_bytes,
        };
        self.rooms.send(RouteHistory { room, history: h }).await?
    }

    /// `watch`: only users who share a room with the watcher, unless open watching is
    /// configured or the watcher is an admin.
    pub async fn watch(
        &self,
        handle: SessionHandle,
        admin: bool,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceView>, EngineError> {
        self.check_may_see(&handle.user, admin, &users).await?;
        self.presence.send(Watch { handle, users }).await?
    }

    /// Refuses (with `forbidden`) when `viewer` may not see the presence of one of `users`.
    pub async fn check_may_see(
        &self,
        viewer: &UserId,
        admin: bool,
        users: &[UserId],
    ) -> Result<(), EngineError> {
        if admin || self.settings.open_watch {
            return Ok(());
        }
        let others: Vec<UserId> = users.iter().filter(|u| *u != viewer).cloned().collect();
        if others.is_empty() {
            return Ok(());
        }
        let q = crate::actors::database::FindCoMembers {
            user: viewer.clone(),
            others: others.clone(),
        };
        let shared: std::collections::HashSet<String> = persist(self.store.reader.send(q).await)?
            .into_iter()
            .collect();
        let denied: Vec<&str> = others
            .iter()
            .map(|u| u.as_str())
            .filter(|u| !shared.contains(*u))
            .collect();
        if denied.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Forbidden(format!(
                "you share no room with {}; presence is visible to room co-members only",
                denied.join(", ")
            )))
        }
    }

    pub async fn unwatch(&self, session: SessionId, users: Vec<UserId>) -> Result<(), EngineError> {
        Ok(self.presence.send(Unwatch { session, users }).await?)
    }

    pub async fn presence_of(&self, users: Vec<UserId>) -> Result<Vec<PresenceView>, EngineError> {
        self.presence.send(GetPresence { users }).await?
    }

    /// Admin listing of online users (see `ListOnline` for the filters).
    pub async fn list_online(&self, filter: ListOnline) -> Result<Vec<AdminPresence>, EngineError> {
        Ok(self.presence.send(filter).await?)
    }

    /// Admin view of one online user with every session and its subscribed rooms.
    pub async fn admin_presence(&self, user: UserId) -> Result<Option<AdminPresence>, EngineError> {
        let Some(mut p) = self.presence.send(GetAdminPresence { user }).await? else {
            return Ok(None);
        };
        let ids = p.sessions.iter().map(|s| s.id).collect();
        let mut rooms = self.rooms.send(GetSessionRooms { sessions: ids }).await?;
        for s in &mut p.sessions {
            s.subscribed_rooms = rooms.remove(&s.id).unwrap_or_default();
        }
        Ok(Some(p))
    }

    /// Server-wide counters for `/v1/admin/stats`.
    pub async fn stats(&self) -> Result<Value, EngineError> {
        let rooms = self.rooms.send(GetRoomStats).await?;
        let presence = self.presence.send(GetPresenceStats).await?;
        let commits = self
            .store
            .commits
            .send(crate::actors::commit_queue::GetCommitStats)
            .await?;
        let started = Instant::now();
        let db = self
            .store
            .reader
            .send(crate::actors::database::CheckReady)
            .await;
        let db_ms = started.elapsed().as_secs_f64() * 1000.0;
        let db_ok = matches!(db, Ok(Ok(())));
        let eio = self.eio.send(crate::actors::eio_registry::CountEio).await?;
        let m = &crate::metrics::METRICS;
        let refused = |reason: &str| m.refused.with_label_values(&[reason]).get();
        Ok(json!({
            "connections": m.connections.get(),
            "sessions": rooms.sessions,
            "users_online": presence.users_online,
            "users_visible": presence.users_visible,
            "active_rooms": rooms.active_rooms,
            "messages_in_per_s": crate::metrics::RATES.messages_in_per_s(),
            "frames_out_per_s": crate::metrics::RATES.frames_out_per_s(),
            "messages_in_total": m.messages_in.get(),
            "frames_out_total": m.frames_out.get(),
            "slow_consumers_total": m.slow_consumers.get(),
            "socketio_sessions": eio.sessions,
            "hostile": {
                "unauthenticated_sessions": eio.unauthenticated,
                "refused": {
                    "ip_rate": refused("ip_rate"),
                    "user_rate": refused("user_rate"),
                    "ip_unauthenticated": refused("ip_unauthenticated"),
                    "unauthenticated": refused("unauthenticated"),
                },
                "write_timeouts_total": m.write_timeouts.get(),
                "handshake_timeouts_total": m.handshake_timeouts.get(),
                "preauth_timeouts_total": m.preauth_timeouts.get(),
            },
            "persistence": commits,
            "database": {"reachable": db_ok, "latency_ms": db_ms},
            "uptime_s": self.started_at.elapsed().as_secs(),
            "resident_memory_bytes": crate::metrics::resident_bytes(),
        }))
    }

    pub async fn room_presence(&self, room: RoomId) -> Result<RoomOnline, EngineError> {
        self.rooms.send(GetRoomPresence { room }).await?
    }

    pub async fn create_room(&self, owner: &UserId, name: String) -> Result<RoomId, EngineError> {
        self.rooms
            .send(CreateRoom {
                owner: owner.clone(),
                name,
            })
            .await?
    }

    pub async fn change_member(
        &self,
        room: RoomId,
        user: UserId,
        by: Caller,
        add: bool,
    ) -> Result<bool, EngineError> {
        self.rooms
            .send(ChangeMember {
                room,
                user,
                by,
                add,
            })
            .await?
    }

    pub async fn user_rooms(
        &self,
        user: &UserId,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<RoomSummary>, EngineError> {
        persist(
            self.store
                .reader
                .send(ListUserRooms {
                    user: user.clone(),
                    after,
                    limit,
                })
                .await,
        )
    }

    /// Each recipient's state of a message (room members and admins).
    pub async fn message_status(
        &self,
        user: &UserId,
        admin: bool,
        room: RoomId,
        message_id: String,
    ) -> Result<crate::actors::room::MessageStatus, EngineError> {
        let addr = self.rooms.send(GetRoom { room }).await?;
        addr.send(crate::actors::room::GetMessageStatus {
            user: user.clone(),
            admin,
            message_id,
        })
        .await?
    }

    pub async fn disconnect_user(
        &self,
        user: UserId,
        code: u16,
        reason: String,
    ) -> Result<usize, EngineError> {
        // The registry first: it counts the user's sessions before any of them closes. Then
        // the notification center, for the notification sockets (it would also close the
        // native and Socket.IO sessions, which are already closing).
        let closed = self
            .presence
            .send(DisconnectUser {
                user: user.clone(),
                code,
                reason: reason.clone(),
            })
            .await?;
        self.notifications.do_send(CloseNotificationSessions {
            user: Some(user),
            code,
            reason,
        });
        Ok(closed)
    }
}

/// Deletes device positions idle for `ttl`, a minute after start and then hourly, so
/// devices that never come back do not accumulate (docs/configuration.md).
fn expire_device_positions(commits: Addr<CommitQueue>, ttl: std::time::Duration) {
    actix::spawn(async move {
        actix::clock::sleep(std::time::Duration::from_secs(60)).await;
        let mut tick = actix::clock::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = crate::domain::now_millis() - ttl.as_millis() as i64;
            let op = crate::db::models::WriteOp::ExpireDevicePositions { before };
            match commits
                .send(crate::actors::commit_queue::Commit { ops: vec![op] })
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::warn!("expiring device positions failed: {e}"),
                Err(_) => return, // the commit queue stopped: shutting down
            }
        }
    });
}

/// Where one room's stream starts: the client's resume point when it gave one the server
/// can honour, else the user's delivered watermark; cut to the last `replay_max` messages.
#[derive(Debug, Clone, Copy)]
struct RoomPlan {
    position: i64,
    room_seq: i64,
    truncated: Option<(i64, i64)>,
}

impl RoomPlan {
    fn new(r: &RoomSummary, room_seq: i64, since: Option<i64>, replay_max: i64) -> RoomPlan {
        // A resume point past the room's end is not one we can honour: the watermark is.
        let from = since
            .filter(|s| (0..=room_seq).contains(s))
            .unwrap_or(r.delivered_seq)
            .clamp(0, room_seq.max(0));
        let replay_max = replay_max.max(1);
        let (position, truncated) = if room_seq - from > replay_max {
            let to = room_seq - replay_max;
            (to, Some((from + 1, to)))
        } else {
            (from, None)
        };
        RoomPlan {
            position,
            room_seq,
            truncated,
        }
    }
}

/// `{"type":"sync","data":{"rooms":[...],"unread_total":N}}`, sent right after `connection_ack`.
/// Each room says where its stream of `message` frames continues (`position`), and, for a
/// room the client gave a resume point for, whether it was honoured in full (`recovered`).
pub fn sync_frame(
    rooms: &[RoomSummary],
    replay: &[RoomReplay],
    points: &std::collections::HashMap<RoomId, i64>,
) -> protocol::EncodedFrame {
    let starts: std::collections::HashMap<&str, &RoomReplay> =
        replay.iter().map(|r| (r.room.as_str(), r)).collect();
    let list = rooms
        .iter()
        .map(|r| {
            let mut entry = protocol::SyncRoom {
                delivered_seq: r.delivered_seq,
                position: None,
                read_seq: r.read_seq,
                recovered: None,
                room: &r.room,
                seq: r.last_seq,
                unread: r.unread,
            };
            if let Some(start) = starts.get(r.room.as_str()) {
                entry.seq = start.room_seq.max(r.last_seq);
                entry.position = Some(start.position);
                if let Some(since) = points.get(&start.room) {
                    let honoured =
                        start.truncated.is_none() && *since <= start.room_seq && *since >= 0;
                    entry.recovered = Some(honoured);
                }
            }
            entry
        })
        .collect();
    let total: i64 = rooms.iter().map(|r| r.unread).sum();
    protocol::ServerFrame::Sync(protocol::Sync {
        rooms: list,
        unread_total: total,
    })
    .encode()
}

impl Engine {
    /// Graceful shutdown of the engine: close every session with 1001, record last-seen for
    /// everyone still online, and wait until every queued write is committed.
    pub async fn shutdown(&self) {
        let closed = self
            .presence
            .send(CloseAllSessions {
                code: protocol::close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            })
            .await
            .unwrap_or(0);
        let _ = self
            .notifications
            .send(CloseNotificationSessions {
                user: None,
                code: protocol::close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            })
            .await;
        let flushed = self.presence.send(FlushLastSeen).await.unwrap_or(0);
        // Sessions close asynchronously; give their last frames and writes a moment to queue.
        actix::clock::sleep(std::time::Duration::from_millis(100)).await;
        if let Err(e) = self
            .store
            .commits
            .send(crate::actors::commit_queue::Drain)
            .await
        {
            log::error!("shutdown: commit queue unreachable: {e}");
        }
        log::info!("shutdown: closed {closed} sessions, recorded last-seen of {flushed} users, writes drained");
    }
}

/// Notifications.
impl Engine {
    /// Creates a notification for each user (preferences applied).
    pub async fn notify(
        &self,
        users: Vec<UserId>,
        spec: crate::notification::NotificationSpec,
        idempotency_key: Option<String>,
        source: crate::notification::NotificationSource,
    ) -> Result<Vec<Notified>, EngineError> {
        spec.validate()?;
        self.notifications
            .send(Notify {
                users,
                spec,
                idempotency_key,
                source,
                outbox: None,
            })
            .await?
    }

    /// Marks one notification (or all with `None`) read; answers the new unread count.
    pub async fn mark_notifications_read(
        &self,
        user: &UserId,
        id: Option<String>,
    ) -> Result<i64, EngineError> {
        self.notifications
            .send(MarkRead {
                user: user.clone(),
                id,
            })
            .await?
    }

    pub async fn delete_notification(
        &self,
        user: &UserId,
        id: String,
    ) -> Result<bool, EngineError> {
        self.notifications
            .send(DeleteNotification {
                user: user.clone(),
                id,
            })
            .await?
    }

    pub async fn notification_unread(&self, user: &UserId) -> Result<i64, EngineError> {
        let q = crate::actors::database::CountUnreadNotifications {
            users: vec![user.clone()],
            now: self.settings.clock.now(),
        };
        Ok(persist(self.store.reader.send(q).await)?
            .first()
            .map(|c| c.1)
            .unwrap_or(0))
    }

    pub async fn list_notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        kind: Option<String>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<crate::db::models::NotificationRow>, EngineError> {
        let q = crate::actors::database::ListNotifications {
            user: user.clone(),
            unread_only,
            kind,
            before,
            limit,
            now: self.settings.clock.now(),
        };
        persist(self.store.reader.send(q).await)
    }

    pub async fn preferences(
        &self,
        user: &UserId,
    ) -> Result<crate::notification::Preferences, EngineError> {
        let q = crate::actors::database::LoadPreferences {
            users: vec![user.clone()],
        };
        let docs = persist(self.store.reader.send(q).await)?;
        Ok(docs
            .first()
            .and_then(|(_, d)| serde_json::from_str(d).ok())
            .unwrap_or_default())
    }

    pub async fn set_preferences(
        &self,
        user: &UserId,
        prefs: &crate::notification::Preferences,
    ) -> Result<(), EngineError> {
        prefs.validate()?;
        let doc = serde_json::to_string(prefs).map_err(|e| EngineError::Internal(e.to_string()))?;
        let op = crate::db::models::WriteOp::SavePreferences {
            user: user.clone(),
            prefs: doc,
            at: self.settings.clock.now(),
        };
        persist(
            self.store
                .commits
                .send(crate::actors::commit_queue::Commit { ops: vec![op] })
                .await,
        )?;
        Ok(())
    }
}

/// Requests of any kind of session.
impl Engine {
    /// Carries out a client request for the session `handle` and answers the ack's data.
    /// `ping` and `auth` concern the connection itself and are handled by the session.
    pub async fn execute(
        &self,
        handle: SessionHandle,
        admin: bool,
        request: crate::protocol::ClientRequest,
    ) -> Result<Value, EngineError> {
        use crate::protocol::ClientRequest as R;
        let user = handle.user.clone();
        let session = handle.id;
        match request {
            R::Join { room, since_seq } => self.join(&user, session, room, since_seq).await,
            R::Leave { room } => self.leave(&user, room).await.map(|_| json!({})),
            R::Send(req) => {
                let ack = self.send_message(&user, Some(session), req).await?;
                serde_json::to_value(ack).map_err(|e| EngineError::Internal(e.to_string()))
            }
            R::Typing { room, state } => self
                .typing(&user, session, room, state)
                .await
                .map(|_| json!({})),
            R::Receipt { room, seq, status } => self
                .device_receipt(
                    &user,
                    Some(session),
                    handle.device.clone(),
                    room,
                    seq,
                    status,
                )
                .await
                .map(|_| json!({})),
            R::Presence {
                status,
                custom_message,
                custom_expires_at,
                metadata,
            } => self
                .set_status(&user, status, custom_message, custom_expires_at, metadata)
                .await
                .map(|_| json!({})),
            R::History {
                room,
                before_seq,
                after_seq,
                limit,
            } => {
                let (messages, has_more) = self
                    .history(&user, false, room, before_seq, after_seq, limit)
                    .await?;
                Ok(json!({"messages": protocol::message_objects(&messages), "has_more": has_more}))
            }
            R::Watch { users } => self
                .watch(handle, admin, users)
                .await
                .map(|p| json!({ "presence": p })),
            R::Unwatch { users } => self
                .unwatch(session, users)
                .await
                .map(|_| json!({ "presence": [] })),
            R::Ping => Ok(json!({})),
            R::Auth { .. } => Err(EngineError::Internal(
                "auth is handled by the session".into(),
            )),
        }
    }

    /// Verifies a fresh token for the same user (the `auth` request).
    pub fn refresh_auth(
        &self,
        current: &crate::auth::AuthenticatedUser,
        token: &str,
    ) -> Result<crate::auth::AuthenticatedUser, crate::error::AppError> {
        let fresh = self.keys.verify(token)?;
        if fresh.user_id != current.user_id {
            return Err(crate::error::AppError::new(
                crate::error::ErrorCode::Forbidden,
                "the new token names another user; reconnect to switch users",
            ));
        }
        Ok(fresh)
    }
}
