//! What nodes tell each other over the Redis backplane: the channel names and the events on
//! them, as JSON (one serialization at the sender, one parse per receiving node, never per
//! recipient; readable with `redis-cli monitor`).
//!
//! Channels (all under the configured prefix, default `herald`):
//! - `<prefix>:room:<room id>`: a room's events ([`RoomEvent`]); a node subscribes while it
//!   runs that room's actor.
//! - `<prefix>:cluster`: everything addressed to all nodes ([`ClusterEvent`]): presence
//!   deltas, events for a user's sessions, admin commands.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::db::models::MemberRole;
use crate::domain::{ReceiptStatus, RoomId, UserId};
use crate::protocol::EncodedFrame;

/// The channel of `room`'s events.
pub fn room_channel(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}")
}

/// The channel every node listens to.
pub fn cluster_channel(prefix: &str) -> String {
    format!("{prefix}:cluster")
}

/// A server frame as it crosses the backplane: its type and its `data`, from which the
/// receiving node rebuilds the [`EncodedFrame`] once for all its recipients.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireFrame {
    pub name: String,
    pub data: Box<RawValue>,
}

impl WireFrame {
    /// `None` for frames without data (pong), which never cross nodes.
    pub fn from_encoded(frame: &EncodedFrame) -> Option<Self> {
        let data = RawValue::from_string(frame.data()?.to_owned()).ok()?;
        Some(WireFrame {
            name: frame.name().to_owned(),
            data,
        })
    }

    /// The frame, encoded as the origin encoded it; `None` for a type this node does not
    /// know (a newer node during a rolling upgrade): such a frame is dropped.
    pub fn to_encoded(&self) -> Option<EncodedFrame> {
        EncodedFrame::from_data(&self.name, self.data.get())
    }
}

/// One event on a room's channel. Every one names the node that sent it, so a node skips
/// its own.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoomEnvelope {
    pub node: String,
    pub room: RoomId,
    pub event: RoomEvent,
}

/// Externally tagged (`{"message":{...}}`): an internally tagged enum buffers its content,
/// which a raw frame inside cannot be read from.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEvent {
    /// A committed message: receivers fan it out in seq order (a hole is filled from the
    /// database). `frame` is the `message` frame as the origin encoded it.
    Message {
        seq: i64,
        from: UserId,
        frame: WireFrame,
    },
    /// A frame for the room's subscribers (typing, receipts); `except` is a user whose
    /// sessions skip it (the typist); `receipt` is the receipt's (user, seq, status), which
    /// sessions use to keep unread counts.
    Frame {
        frame: WireFrame,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receipt: Option<(UserId, i64, ReceiptStatus)>,
    },
}

/// A member role on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WireRole {
    Owner,
    Member,
}

impl From<MemberRole> for WireRole {
    fn from(r: MemberRole) -> Self {
        match r {
            MemberRole::Owner => WireRole::Owner,
            MemberRole::Member => WireRole::Member,
        }
    }
}

impl From<WireRole> for MemberRole {
    fn from(r: WireRole) -> Self {
        match r {
            WireRole::Owner => MemberRole::Owner,
            WireRole::Member => MemberRole::Member,
        }
    }
}

/// One event on the cluster channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterEnvelope {
    pub node: String,
    pub event: ClusterEvent,
}

/// Externally tagged, like [`RoomEvent`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A node's view of one of its users changed; `entry` None: no session of the user is
    /// left on that node (after its grace period).
    Presence {
        user: UserId,
        /// The node's version counter at the change (orders a removal too).
        v: u64,
        entry: Option<super::presence::NodeEntry>,
    },
    /// The user's chosen status, custom message or metadata changed on the sending node.
    Status {
        user: UserId,
        status: super::presence::SharedStatus,
    },
    /// A frame for every session of `user` (notifications, unread counts).
    UserFrame { user: UserId, frame: WireFrame },
    /// A frame for every client session of `user` (native and Socket.IO, not the seed's
    /// notification socket): an `invitation`. Delivered by each node's presence registry.
    ClientFrame { user: UserId, frame: WireFrame },
    /// `blocker` blocked (`on`) or unblocked `blocked`: each node updates its sessions of
    /// `blocked` (watches, hidden presence).
    Block {
        blocker: UserId,
        blocked: UserId,
        on: bool,
    },
    /// `user` became a member of `room` (`role`) or stopped being one (`None`) on another
    /// node: a room actor here updates its members, the user's sessions here subscribe or
    /// unsubscribe.
    UserRoom {
        user: UserId,
        room: RoomId,
        role: Option<WireRole>,
    },
    /// Close every session of `user` (admin disconnect); `code`/`reason` of the close frame.
    Disconnect {
        user: UserId,
        code: u16,
        reason: String,
    },
    /// A node (re)connected and rewrote its presence hash: these are all its users now;
    /// receivers drop that node's entries for anyone else (left while it was away, or a
    /// previous run of the node).
    Hello { users: Vec<UserId> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ServerFrame, TypingState};

    #[test]
    fn a_frame_crosses_the_backplane_unchanged() {
        let room = RoomId::parse("public:lobby").unwrap();
        let user = UserId::parse("bob").unwrap();
        let frame = ServerFrame::typing(&room, &user, TypingState::Start);
        let wire = WireFrame::from_encoded(&frame).unwrap();
        let event = RoomEnvelope {
            node: "n1".into(),
            room: room.clone(),
            event: RoomEvent::Frame {
                frame: wire,
                except: Some(user.clone()),
                receipt: None,
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        let back: RoomEnvelope = serde_json::from_str(&text).unwrap();
        let RoomEvent::Frame {
            frame: w, except, ..
        } = back.event
        else {
            panic!("wrong event {text}");
        };
        assert_eq!(except, Some(user));
        assert_eq!(w.to_encoded().unwrap(), frame);
    }

    #[test]
    fn an_unknown_frame_type_is_dropped_not_misread() {
        let w = WireFrame {
            name: "from_the_future".into(),
            data: RawValue::from_string("{}".into()).unwrap(),
        };
        assert!(w.to_encoded().is_none());
    }
}
