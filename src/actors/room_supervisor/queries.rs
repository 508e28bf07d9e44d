//! Read-only questions the admin routes ask the room supervisor: room presence, room stats
//! and the rooms of sessions.

use super::routing::within;
use super::*;
use crate::actors::room::{GetRoomOnline, RoomOnline};

/// Sent by the admin room presence route.
#[derive(Message)]
#[rtype(result = "Result<RoomOnline, EngineError>")]
pub struct GetRoomPresence {
    pub room: RoomId,
}

impl Handler<GetRoomPresence> for RoomSupervisor {
    type Result = ResponseFuture<Result<RoomOnline, EngineError>>;
    fn handle(&mut self, msg: GetRoomPresence, _: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            Ok(addr.send(GetRoomOnline).await?)
        }))
    }
}

/// Counts for `/v1/admin/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomStats {
    pub active_rooms: usize,
    pub connected_users: usize,
    pub sessions: usize,
}

#[derive(Message)]
#[rtype(result = "RoomStats")]
pub struct GetRoomStats;

impl Handler<GetRoomStats> for RoomSupervisor {
    type Result = MessageResult<GetRoomStats>;
    fn handle(&mut self, _: GetRoomStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RoomStats {
            active_rooms: self.rooms.len(),
            connected_users: self.sessions.len(),
            sessions: self.session_rooms.len(),
        })
    }
}

/// Sent by the admin presence route: the rooms each of these sessions is subscribed to.
#[derive(Message)]
#[rtype(result = "HashMap<SessionId, Vec<RoomId>>")]
pub struct GetSessionRooms {
    pub sessions: Vec<SessionId>,
}

impl Handler<GetSessionRooms> for RoomSupervisor {
    type Result = MessageResult<GetSessionRooms>;
    fn handle(&mut self, msg: GetSessionRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.sessions
                .into_iter()
                .map(|s| {
                    let mut rooms: Vec<RoomId> = self
                        .session_rooms
                        .get(&s)
                        .map(|r| r.iter().cloned().collect())
                        .unwrap_or_default();
                    rooms.sort();
                    (s, rooms)
                })
                .collect(),
        )
    }
}
