//! Writes: the `WriteOp`s the commit queue batches, and what writing them gives back.

use super::{
    AdminOutcome, AdminWrite, AppendedMessage, ChangeResult, ChangeRules, ConsentOutcome,
    ConsentWrite, MemberRole, MessageChange, NewMessage, OutboxPolicy, StoredNotification,
};
use crate::domain::{ChosenStatus, CustomMessage, DeviceId, Millis, ReceiptStatus, RoomId, UserId};
use crate::error::PersistError;

/// One write; a group of them commits or fails together (a savepoint inside the batch).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Creates the room unless it exists.
    EnsureRoom {
        room: RoomId,
        name: Option<String>,
        created_by: Option<UserId>,
        at: Millis,
    },
    /// Adds a member unless already one.
    AddMember {
        room: RoomId,
        user: UserId,
        role: MemberRole,
        at: Millis,
    },
    /// Admits one more membership of `user` unless they are already a member of `max`
    /// rooms (already being a member of `room` counts as admitted). Checked by the single
    /// writer in the same transaction as the membership it guards, so parallel joins cannot
    /// overshoot the cap. A refusal ends its group: the group's later ops are skipped and
    /// nothing of the group is written, so put it first.
    ClaimRoomSlot {
        room: RoomId,
        user: UserId,
        max: i64,
    },
    /// Ends a membership.
    RemoveMember { room: RoomId, user: UserId },
    /// Stores messages in order, assigning the next seqs; retries (same sender and
    /// `client_msg_id`) return the stored original instead. Each new message that may cause
    /// a notification under `outbox` also gets a `notification_outbox` row, in the same
    /// transaction.
    AppendMessages {
        room: RoomId,
        messages: Vec<NewMessage>,
        outbox: OutboxPolicy,
    },
    /// Deletes the outbox rows of these messages: their notifications are stored (then in
    /// the same group as `InsertNotifications`) or none was due.
    ClearOutbox { message_ids: Vec<String> },
    /// Moves a member's watermark forward (never back); `read` implies `delivered`.
    AdvanceWatermark {
        room: RoomId,
        user: UserId,
        status: ReceiptStatus,
        seq: i64,
    },
    /// Moves a device's position in a room forward (never back): the last seq the device
    /// reported delivered or read.
    /// A device new to the user beyond `max_devices` evicts the user's least recently moved
    /// device (all its rooms), so positions stay bounded per user.
    AdvanceDevicePosition {
        user: UserId,
        device: DeviceId,
        room: RoomId,
        seq: i64,
        at: Millis,
        max_devices: i64,
    },
    /// Deletes device positions not moved since `before` (answers the count).
    ExpireDevicePositions { before: Millis },
    /// Records when the user's last session ended.
    SaveLastSeen { user: UserId, at: Millis },
    /// Stores notifications; one with an `idempotency_key` its user already has is not
    /// stored again (the existing one is returned).
    InsertNotifications { rows: Vec<StoredNotification> },
    /// Marks one (`id`) or all of a user's notifications read: `Count` of rows changed, or
    /// `Changed(false)` when the user has no notification `id`.
    MarkNotificationsRead {
        user: UserId,
        id: Option<String>,
        at: Millis,
    },
    /// Deletes one of a user's notifications.
    DeleteNotification { user: UserId, id: String },
    /// Records that these notifications were pushed live.
    MarkDelivered { ids: Vec<String>, at: Millis },
    /// Deletes expired notifications; answers the users who had some.
    DeleteExpiredNotifications { now: Millis },
    /// Replaces a user's notification preferences (a JSON document).
    SavePreferences {
        user: UserId,
        prefs: String,
        at: Millis,
    },
    /// Retention: deletes the bodies (and reactions) of at most `limit` messages of rooms of
    /// `kind` created before `before`, oldest first, leaving tombstones, and moves each
    /// touched room's `retained_from` past them. Answers `Count`.
    ExpireMessages {
        kind: crate::domain::RoomKind,
        before: Millis,
        at: Millis,
        limit: i64,
    },
    /// Retention: deletes at most `limit` notifications read before `before`. `Count`.
    ExpireReadNotifications { before: Millis, limit: i64 },
    /// Edits, deletes or reacts to message `seq` of `room` under `rules`, and logs the
    /// change with the room's next change seq, in one transaction.
    ChangeMessage {
        room: RoomId,
        seq: i64,
        change: MessageChange,
        rules: ChangeRules,
        at: Millis,
    },
    /// Records the user's chosen status and custom message.
    SaveStatus {
        user: UserId,
        status: ChosenStatus,
        custom_message: Option<CustomMessage>,
        custom_expires_at: Option<Millis>,
        at: Millis,
    },
    /// Invitations, blocks and reports (issue 18; `models/consent.rs`).
    Consent(ConsentWrite),
    /// API keys, the audit log, erasures (`db/admin_queries.rs`).
    Admin(Box<AdminWrite>),
    /// The webhook outbox (`models/webhooks.rs`); answers `Count`.
    Webhooks(super::WebhookWrite),
}

/// The result of one `WriteOp`, in the same position.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Whether the op changed anything (room created, member added or removed, status saved).
    Changed(bool),
    /// One entry per appended message, in order.
    Appended(Vec<AppendedMessage>),
    /// How many rows the op changed.
    Count(i64),
    /// Per inserted notification: the stored row and whether it is new.
    Notifications(Vec<(StoredNotification, bool)>),
    /// Users touched by the op.
    Users(Vec<UserId>),
    /// Whether a [`WriteOp::ClaimRoomSlot`] admitted the user.
    RoomSlot { user: UserId, admitted: bool },
    /// What a [`WriteOp::ChangeMessage`] did.
    Change(ChangeResult),
    /// The member's watermarks after the op, and whether the reported one moved.
    Watermark {
        delivered_seq: i64,
        read_seq: i64,
        advanced: bool,
    },
    /// The outcome of a [`WriteOp::Admin`].
    Admin(AdminOutcome),
    /// The outcome of a [`WriteOp::Consent`] (boxed: it is the largest and the rarest).
    Consent(Box<ConsentOutcome>),
}

/// What writing one commit batch gave: each group's outcomes or error, and how it was written.
#[derive(Debug)]
pub struct BatchWrite {
    pub results: Vec<Result<Vec<WriteOutcome>, PersistError>>,
    /// The merged, set-wise attempt failed and the batch was rewritten group by group (one
    /// rollback plus a savepoint per group: the expensive path).
    pub per_group: bool,
}
