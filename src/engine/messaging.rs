//! What members do in rooms: join, leave, membership changes, send (and system messages),
//! typing, receipts and history.

use serde_json::{json, Value};

use super::Engine;
use crate::actors::presence_registry::GetPresence;
use crate::actors::room::{Caller, History, OnlinePage, Publish, Receipt, Typing};
use crate::actors::room_supervisor::{
    ChangeMember, CreateRoom, Join, Leave, RouteEvent, RoutePublish, RouteRead, RouteReceipt,
    RouteTyping,
};
use crate::db::models::{NewMessage, StoredMessage};
use crate::domain::{ReceiptStatus, RoomId, SessionId, UserId};
use crate::error::EngineError;
use crate::protocol::{self, PresenceView, SendAck, SendRequest, SendTarget, TypingState};

impl Engine {
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
                members_limit: self.settings.join_members_limit,
            })
            .await??;
        let members = self.visible_presence(user, joined.online.users).await?;
        Ok(json!({
            "room": room,
            "seq": joined.seq,
            "members": members,
            "members_next": joined.online.next,
            "missed": protocol::message_objects(&joined.missed),
            "has_more": joined.has_more,
        }))
    }

    /// `members`: a page of the users connected to a room (members only), for rooms whose
    /// join ack could not list everyone.
    pub async fn members(
        &self,
        user: &UserId,
        room: RoomId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Value, EngineError> {
        let page = self
            .rooms
            .send(RouteRead {
                room: room.clone(),
                read: OnlinePage {
                    user: user.clone(),
                    after,
                    limit,
                },
            })
            .await??;
        let members = self.visible_presence(user, page.users).await?;
        Ok(json!({ "room": room, "members": members, "next": page.next }))
    }

    /// The presence objects `viewer` may see of `users`: those who blocked the viewer
    /// (`consent.rs`), offline and invisible users are left out.
    async fn visible_presence(
        &self,
        viewer: &UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceView>, EngineError> {
        let users = self.without_blockers(viewer, false, users).await?.0;
        Ok(self
            .presence
            .send(GetPresence { users })
            .await??
            .into_iter()
            .filter(|p| p.status != crate::domain::VisibleStatus::Offline)
            .collect())
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
        // Blocks and HERALD_DM_POLICY (`consent.rs`); other rooms pass at once.
        self.check_direct_message(user, &room).await?;
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

    /// An edit, delete or reaction by `by`; answers the ack's data: the announced event's
    /// data, or `{room, seq, unchanged: true}` when it was already so.
    pub async fn change_message(
        &self,
        by: crate::actors::room::Caller,
        room: RoomId,
        seq: i64,
        change: crate::db::models::MessageChange,
    ) -> Result<serde_json::Value, EngineError> {
        let done = self
            .rooms
            .send(crate::actors::room_supervisor::RouteChange {
                room: room.clone(),
                change: crate::actors::room::ChangeMessage { by, seq, change },
            })
            .await??;
        Ok(match done {
            Some(c) => change_event(&c)?.1,
            None => serde_json::json!({"room": room, "seq": seq, "unchanged": true}),
        })
    }

    /// A page of the room's change log after `after`: `{changes: [{type, data}], has_more}`.
    pub async fn room_changes(
        &self,
        by: crate::actors::room::Caller,
        room: RoomId,
        after: i64,
        limit: i64,
    ) -> Result<serde_json::Value, EngineError> {
        let (changes, more) = self
            .rooms
            .send(crate::actors::room_supervisor::RouteChanges {
                room,
                query: crate::actors::room::RoomChanges { by, after, limit },
            })
            .await??;
        let mut list = Vec::with_capacity(changes.len());
        for c in &changes {
            let (kind, data) = change_event(c)?;
            list.push(serde_json::json!({"type": kind, "data": data}));
        }
        Ok(serde_json::json!({"changes": list, "has_more": more}))
    }

    /// A custom event to the room's other members: the room checks membership and relays
    /// it; nothing is stored.
    pub async fn custom_event(
        &self,
        user: &UserId,
        room: RoomId,
        name: crate::protocol::EventName,
        data: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.rooms
            .send(RouteEvent {
                room,
                event: crate::actors::room::RelayEvent {
                    user: user.clone(),
                    name,
                    data,
                },
            })
            .await?
    }

    /// The first seq of `room` whose body retention may still hold (`history` shows it).
    pub async fn retained_from(&self, room: &RoomId) -> Result<i64, EngineError> {
        super::persist(
            self.store
                .reader
                .send(crate::actors::database::FetchRetainedFrom { room: room.clone() })
                .await,
        )
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
        self.rooms.send(RouteRead { room, read: h }).await?
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
}

/// The frame type and data of a change-log entry, as the live event carries them.
fn change_event(
    c: &crate::db::models::StoredChange,
) -> Result<(&'static str, serde_json::Value), EngineError> {
    let frame = crate::protocol::ServerFrame::change(c);
    let data = serde_json::from_str(frame.data().unwrap_or("null"))
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok((frame.name(), data))
}
