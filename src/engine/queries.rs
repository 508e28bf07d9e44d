//! REST and admin reads: online listings, a user's sessions, a room's presence, a user's
//! rooms, a message's delivery status and the server-wide stats.

use std::time::Instant;

use serde_json::{json, Value};

use super::{persist, Engine};
use crate::actors::database::ListUserRooms;
use crate::actors::presence_registry::{
    AdminPresence, GetAdminPresence, GetPresenceStats, ListOnline, ListRoomsOnline,
    RemoteRoomSessions, RoomsOnline,
};
use crate::actors::room::RoomOnline;
use crate::actors::room_supervisor::{GetRoom, GetRoomPresence, GetRoomStats, GetSessionRooms};
use crate::cluster::backplane::ReadPresenceEntries;
use crate::db::models::RoomSummary;
use crate::domain::{RoomId, UserId};
use crate::error::EngineError;

/// Node figures that `cluster.total` leaves out: a sum of them means nothing.
const NOT_ADDED_UP: &[&str] = &["sampled_at_ms"];

impl Engine {
    /// Admin listing of online users (see `ListOnline` for the filters).
    pub async fn list_online(&self, filter: ListOnline) -> Result<Vec<AdminPresence>, EngineError> {
        let mut users = self.presence.send(filter).await?;
        self.add_remote_sessions(&mut users).await;
        Ok(users)
    }

    /// Cluster mode: adds the sessions users have on other nodes, read from those nodes'
    /// Redis hashes in one round trip (the registry keeps only their number). If Redis
    /// cannot answer, the views keep this node's sessions and the device counts.
    async fn add_remote_sessions(&self, views: &mut [AdminPresence]) {
        let Some(backplane) = self.cluster.backplane() else {
            return;
        };
        let mut keys = Vec::new();
        for (i, v) in views.iter().enumerate() {
            let Ok(user) = UserId::parse(&v.user) else {
                continue;
            };
            for node in &v.remote_nodes {
                keys.push((i, node.clone(), user.clone()));
            }
        }
        if keys.is_empty() {
            return;
        }
        let read = ReadPresenceEntries {
            keys: keys
                .iter()
                .map(|(_, n, u)| (n.clone(), u.clone()))
                .collect(),
        };
        match backplane.send(read).await {
            Ok(Ok(entries)) => {
                for ((i, node, _), entry) in keys.iter().zip(entries) {
                    if let (Some(v), Some(e)) = (views.get_mut(*i), entry) {
                        v.add_remote_sessions(node, &e);
                    }
                }
            }
            Ok(Err(e)) => log::warn!("admin: other nodes' sessions unreadable: {e}"),
            Err(e) => log::warn!("admin: other nodes' sessions unreadable: {e}"),
        }
    }

    /// Admin view of one online user with every session and its subscribed rooms.
    pub async fn admin_presence(&self, user: UserId) -> Result<Option<AdminPresence>, EngineError> {
        let Some(mut p) = self.presence.send(GetAdminPresence { user }).await? else {
            return Ok(None);
        };
        self.add_remote_sessions(std::slice::from_mut(&mut p)).await;
        // This node's sessions: their rooms from the supervisor (other nodes' sessions come
        // with the rooms their node reported).
        let ids = p.sessions.iter().filter_map(|s| s.id).collect();
        let mut rooms = self.rooms.send(GetSessionRooms { sessions: ids }).await?;
        for s in &mut p.sessions {
            if let Some(id) = s.id {
                s.subscribed_rooms = rooms.remove(&id).unwrap_or_default();
            }
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
            "users_by_status": presence.by_status,
            "active_rooms": rooms.active_rooms,
            "messages_in_per_s": crate::metrics::RATES.messages_in_per_s(),
            "frames_out_per_s": crate::metrics::RATES.frames_out_per_s(),
            "messages_in_total": m.messages_in.get(),
            "frames_out_total": m.frames_out.get(),
            "slow_consumers_total": m.slow_consumers.get(),
            "notifications_created_total": m.notifications_created.get(),
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
            "cluster": self.cluster_stats().await,
        }))
    }

    /// This node's figures that the cluster view adds up (published every heartbeat).
    /// `sampled_at_ms` (Unix ms) dates them, so a reader can turn successive counter readings
    /// into per-second rates; it is the one figure `total` does not add up.
    pub async fn node_stats(&self) -> Result<Value, EngineError> {
        let rooms = self.rooms.send(GetRoomStats).await?;
        let eio = self.eio.send(crate::actors::eio_registry::CountEio).await?;
        let commits = self
            .store
            .commits
            .send(crate::actors::commit_queue::GetCommitStats)
            .await?;
        let m = &crate::metrics::METRICS;
        Ok(json!({
            // Wall time, not the engine clock: rates need real seconds, also under a test clock.
            "sampled_at_ms": crate::domain::now_millis(),
            "slow_consumers_total": m.slow_consumers.get(),
            "notifications_created_total": m.notifications_created.get(),
            "commit_batches_total": commits.batches,
            "commit_ms_total": commits.total_batch_ms,
            "commit_queue_depth": commits.queue_depth,
            "connections": m.connections.get(),
            "sessions": rooms.sessions,
            "socketio_sessions": eio.sessions,
            "active_rooms": rooms.active_rooms,
            "messages_in_per_s": crate::metrics::RATES.messages_in_per_s(),
            "frames_out_per_s": crate::metrics::RATES.frames_out_per_s(),
            "messages_in_total": m.messages_in.get(),
            "frames_out_total": m.frames_out.get(),
            "resident_memory_bytes": crate::metrics::resident_bytes(),
        }))
    }

    /// Cluster mode: this node's id, every live node's last published figures, and their
    /// sums; `null` on a single node.
    async fn cluster_stats(&self) -> Value {
        let Some(backplane) = self.cluster.backplane() else {
            return Value::Null;
        };
        let nodes = backplane
            .send(crate::cluster::backplane::ClusterStats)
            .await
            .unwrap_or_default();
        let mut total = serde_json::Map::new();
        for stats in nodes.values() {
            for (k, v) in stats.as_object().into_iter().flatten() {
                if NOT_ADDED_UP.contains(&k.as_str()) {
                    continue;
                }
                let sum =
                    total.get(k).and_then(Value::as_f64).unwrap_or(0.0) + v.as_f64().unwrap_or(0.0);
                total.insert(k.clone(), json!(sum));
            }
        }
        json!({
            "node": self.cluster.node_id(),
            "nodes": nodes,
            "total": total,
        })
    }

    /// The rooms with connected members, the busiest first (admin dashboard).
    pub async fn rooms_online(
        &self,
        limit: usize,
        members_limit: usize,
    ) -> Result<RoomsOnline, EngineError> {
        Ok(self
            .presence
            .send(ListRoomsOnline {
                limit,
                members_limit,
            })
            .await?)
    }

    /// Who is in the room now: this node's subscribers, plus (cluster mode) the users the
    /// other nodes report in it, with their session counts there.
    pub async fn room_presence(&self, room: RoomId) -> Result<RoomOnline, EngineError> {
        let mut online = self
            .rooms
            .send(GetRoomPresence { room: room.clone() })
            .await??;
        if self.cluster.enabled() {
            let remote = self.presence.send(RemoteRoomSessions { room }).await?;
            for (user, n) in remote {
                match online.online.iter_mut().find(|(u, _)| *u == user) {
                    Some((_, count)) => *count += n,
                    None => online.online.push((user, n)),
                }
            }
            online.online.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(online)
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
}
