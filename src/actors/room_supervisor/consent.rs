//! Direct rooms made by a backend (issue 18, `HERALD_DM_POLICY=nobody`): `EnsureDirectRoom`
//! creates a direct room and both memberships without a first message, and subscribes the
//! two users' live sessions, as the first `send` with `to` does.

use super::*;
use crate::actors::room::EnsureDirect;
use crate::db::models::MemberRole;

/// Sent by `POST /v1/rooms/direct` (admin or service): make sure the direct room exists.
/// Answers the users that became members (empty: it existed with both).
#[derive(Message)]
#[rtype(result = "Result<Vec<UserId>, EngineError>")]
pub struct EnsureDirectRoom {
    pub room: RoomId,
}

impl Handler<EnsureDirectRoom> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<Vec<UserId>, EngineError>>;
    fn handle(&mut self, msg: EnsureDirectRoom, _: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        let room = msg.room;
        Box::pin(
            async move { addr.send(EnsureDirect).await? }
                .into_actor(self)
                .map(move |res, act, _| {
                    let added = res?;
                    for u in &added {
                        act.subscribe_user(u, &room, true);
                        act.announce_member(u, &room, Some(MemberRole::Member));
                    }
                    if let Some(e) = act.rooms.get_mut(&room) {
                        e.direct_ready = true;
                    }
                    Ok(added)
                }),
        )
    }
}
