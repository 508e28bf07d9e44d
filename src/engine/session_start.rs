//! Session start: registering a new session everywhere, planning where each room's stream
//! resumes, the first replay pages and the `sync` frame.

use super::{persist, Engine};
use crate::actors::notification_center::{unread_frame, NotificationSubscribe};
use crate::actors::presence_registry::SessionOpened;
use crate::actors::room_supervisor::{Connect, SubscribeSession};
use crate::actors::session::handle::SessionHandle;
use crate::config::Hook;
use crate::db::models::{RoomSummary, StoredMessage};
use crate::domain::RoomId;
use crate::error::EngineError;
use crate::protocol;

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
    /// Users who blocked this one: hidden from the session's presence and typing frames.
    pub blocked_by: Vec<crate::domain::UserId>,
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

impl Engine {
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
        let blocked_by = start.blocked_by;
        // Resume points: what the client says, else what its device last reported.
        let mut points = start.device_positions;
        points.extend(resume.since.iter().map(|(r, s)| (r.clone(), *s)));
        let ids: Vec<RoomId> = rooms.iter().map(|r| r.room.clone()).collect();
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
            .map(|r| {
                // A room that did not answer (still loading) falls back to the snapshot.
                let room_seq = seqs.get(&r.room).copied().unwrap_or(r.last_seq);
                let plan = RoomPlan::new(
                    r,
                    room_seq,
                    points.get(&r.room).copied(),
                    self.settings.replay_max,
                );
                (r.room.clone(), plan)
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
            blocked_by,
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
                .map(|m| m.priority)
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
            reactions_for: None,
        };
        persist(self.store.reader.send(q).await)
    }
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
                change_seq: r.change_seq,
                delivered_seq: r.delivered_seq,
                position: None,
                read_seq: r.read_seq,
                recovered: None,
                retained_from: r.retained_from,
                room: r.room.as_str(),
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
