//! Consent operations (issue 18): invitations to private rooms (invite, accept, decline,
//! revoke, list), the direct-message policy, blocking (block, unblock, list, and the filters
//! it puts on DMs, invitations, watches and presence) and reports of messages (report, list,
//! resolve). docs/protocol.md "Invitations, blocks and reports" is the contract.
//!
//! Invitations, blocks and reports are stored (`invitations`, `blocks`, `reports`); their
//! writes go through the commit queue as `WriteOp::Consent`, whose checks run in the single
//! writer's transaction, and their reads through the database readers (`ReadConsent`).

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{persist, Engine};
use crate::actors::commit_queue::Commit;
use crate::actors::database::ReadConsent;
use crate::actors::presence_registry::{BlockChanged, DeliverToUser};
use crate::actors::room::Caller;
use crate::actors::room_supervisor::EnsureDirectRoom;
use crate::actors::session::handle::SessionHandle;
use crate::config::DmPolicy;
use crate::db::models::{
    BlockEntry, ConsentAnswer, ConsentOutcome, ConsentRead, ConsentWrite, Invitation,
    InviteRefusal, StoredReport, WriteOp, WriteOutcome,
};
use crate::domain::{Millis, RoomId, UserId};
use crate::error::EngineError;
use crate::notification::{NotificationSource, NotificationSpec};
use crate::protocol::{ConsentRequest, PresenceView};

/// Most invitations `GET /v1/invitations` lists (the per-invitee cap bounds them anyway).
pub const MAX_LISTED_INVITATIONS: i64 = 1000;

/// The notification type of an invitation.
pub const INVITATION_NOTIFICATION: &str = "invitation";

impl Engine {
    /// Carries out a consent frame for `handle`'s user; `privileged` is the admin or service
    /// role (an `invite` from them is a direct add, as over REST).
    pub async fn execute_consent(
        &self,
        handle: &SessionHandle,
        privileged: bool,
        request: ConsentRequest,
    ) -> Result<Value, EngineError> {
        let user = &handle.user;
        match request {
            ConsentRequest::Invite {
                room,
                user: invitee,
            } => self.invite(user, privileged, room, invitee).await,
            ConsentRequest::Accept { room } => self.accept_invitation(user, room).await,
            ConsentRequest::Decline { room } => self.decline_invitation(user, room).await,
            ConsentRequest::Block { user: other } => self.block(user, other).await,
            ConsentRequest::Unblock { user: other } => self.unblock(user, other).await,
            ConsentRequest::Report { room, seq, reason } => self
                .report(user, room, seq, reason)
                .await
                .map(|(r, created)| report_ack(&r, created)),
        }
    }

    fn now(&self) -> Millis {
        self.settings.clock.now()
    }

    async fn consent_write(&self, w: ConsentWrite) -> Result<WriteOutcome, EngineError> {
        let outcomes = persist(
            self.store
                .commits
                .send(Commit {
                    ops: vec![WriteOp::Consent(w)],
                })
                .await,
        )?;
        outcomes
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("a consent write answered nothing".into()))
    }

    /// [`consent_write`](Self::consent_write) of a write that answers a [`ConsentOutcome`].
    async fn consent_outcome(&self, w: ConsentWrite) -> Result<ConsentOutcome, EngineError> {
        match self.consent_write(w).await? {
            WriteOutcome::Consent(o) => Ok(*o),
            other => Err(unexpected(&other)),
        }
    }

    async fn consent_read(&self, query: ConsentRead) -> Result<ConsentAnswer, EngineError> {
        persist(self.store.reader.send(ReadConsent { query }).await)
    }

    // ---------------------------------------------------------------------------------
    // Invitations

    /// `invite` and `POST /v1/rooms/{room}/members/{user}`: an admin or a service adds the
    /// user at once; anyone else (the room's owner) invites them, and they become a member
    /// only by accepting.
    pub async fn invite(
        &self,
        by: &UserId,
        privileged: bool,
        room: RoomId,
        invitee: UserId,
    ) -> Result<Value, EngineError> {
        if privileged {
            let by = Caller {
                user: by.clone(),
                admin: true,
            };
            let added = self
                .change_member(room.clone(), invitee.clone(), by, true)
                .await?;
            return Ok(json!({"room": room, "user": invitee, "added": added, "invited": false}));
        }
        if &invitee == by {
            return Err(EngineError::Invalid("you cannot invite yourself".into()));
        }
        let c = &self.settings.consent;
        let now = self.now();
        let ttl = i64::try_from(c.invitation_ttl.as_millis()).unwrap_or(i64::MAX);
        let outcome = self
            .consent_outcome(ConsentWrite::CreateInvitation {
                room: room.clone(),
                invitee: invitee.clone(),
                inviter: by.clone(),
                at: now,
                expires_at: now.saturating_add(ttl),
                max_per_invitee: c.max_invitations_per_invitee as i64,
                max_per_inviter: c.max_invitations_per_inviter as i64,
            })
            .await?;
        let (invitation, new) = match outcome {
            ConsentOutcome::Invitation(Ok(x)) => x,
            ConsentOutcome::Invitation(Err(e)) => {
                return match self.invite_refusal(e, &room, &invitee) {
                    // Already a member: nothing to invite to, as adding a member twice answers.
                    None => {
                        Ok(json!({"room": room, "user": invitee, "added": false, "invited": false}))
                    }
                    Some(e) => Err(e),
                };
            }
            other => return Err(unexpected(&other)),
        };
        if new {
            self.announce_invitation(&invitation).await;
        }
        Ok(json!({
            "room": room,
            "user": invitee,
            "added": false,
            "invited": true,
            "invitation": invitation.view(),
        }))
    }

    /// The error of a refused invitation; `None` for "already a member" (not an error).
    fn invite_refusal(
        &self,
        e: InviteRefusal,
        room: &RoomId,
        invitee: &UserId,
    ) -> Option<EngineError> {
        let c = &self.settings.consent;
        Some(match e {
            InviteRefusal::AlreadyMember => return None,
            InviteRefusal::NoRoom => EngineError::NotFound(format!("room {room} does not exist")),
            InviteRefusal::NotPrivate => EngineError::Forbidden(format!(
                "{room} takes no invitations: public rooms are joined with `join`, and a \
                 direct room always has exactly its two users"
            )),
            InviteRefusal::NotOwner => EngineError::Forbidden(format!(
                "only the room owner or an admin may invite members to {room}"
            )),
            InviteRefusal::Blocked => {
                EngineError::Forbidden(format!("{invitee} does not accept invitations from you"))
            }
            InviteRefusal::InviteeFull => EngineError::LimitExceeded(format!(
                "{invitee} has {} pending invitations, the most allowed \
                 (HERALD_MAX_INVITATIONS_PER_INVITEE)",
                c.max_invitations_per_invitee
            )),
            InviteRefusal::InviterFull => EngineError::LimitExceeded(format!(
                "you have {} pending invitations, the most allowed \
                 (HERALD_MAX_INVITATIONS_PER_INVITER); revoke some or wait for answers",
                c.max_invitations_per_inviter
            )),
        })
    }

    /// Tells the invitee: an `invitation` frame to each live session, and a stored
    /// notification (type `invitation`, for devices that are offline or on the notification
    /// socket). Neither failing undoes the invitation, which is stored and listed.
    async fn announce_invitation(&self, i: &Invitation) {
        let frame = crate::protocol::ServerFrame::invitation(i);
        if let Err(e) = self
            .presence
            .send(DeliverToUser {
                user: i.invitee.clone(),
                frame,
            })
            .await
        {
            log::warn!("invitation frame not delivered: {e}");
        }
        let room_label = i.room_name.as_deref().unwrap_or(i.room.as_str());
        let spec = NotificationSpec {
            notification_type: INVITATION_NOTIFICATION.into(),
            title: format!("{} invited you", i.inviter),
            message: format!("{} invited you to {room_label}", i.inviter),
            image_url: None,
            actions: Vec::new(),
            data: json!({"room": i.room, "from": i.inviter}),
            priority: crate::domain::Priority::Normal,
            expires_at: Some(i.expires_at),
        };
        // One notification per invitation: a repeat after an expiry is a new invitation.
        let key = format!("invitation:{}:{}", i.room, i.created_at);
        let source = NotificationSource {
            user: Some(i.inviter.clone()),
            room: Some(i.room.clone()),
        };
        if let Err(e) = self
            .notify(vec![i.invitee.clone()], spec, Some(key), source)
            .await
        {
            log::warn!("invitation notification not stored: {e}");
        }
    }

    /// The caller's pending (unexpired) invitations, oldest first.
    pub async fn pending_invitations(&self, user: &UserId) -> Result<Vec<Invitation>, EngineError> {
        match self
            .consent_read(ConsentRead::PendingInvitations {
                invitee: user.clone(),
                now: self.now(),
                limit: MAX_LISTED_INVITATIONS,
            })
            .await?
        {
            ConsentAnswer::Invitations(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn invitation(&self, room: &RoomId, invitee: &UserId) -> Result<Invitation, EngineError> {
        match self
            .consent_read(ConsentRead::Invitation {
                room: room.clone(),
                invitee: invitee.clone(),
                now: self.now(),
            })
            .await?
        {
            ConsentAnswer::Invitation(Some(i)) => Ok(i),
            ConsentAnswer::Invitation(None) => Err(EngineError::NotFound(format!(
                "you have no pending invitation to {room}"
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// `accept`: the invitee becomes a member (subscribed on every device, announced to the
    /// room), then the invitation is deleted. Membership caps apply as to any add; a refused
    /// add leaves the invitation pending.
    pub async fn accept_invitation(
        &self,
        user: &UserId,
        room: RoomId,
    ) -> Result<Value, EngineError> {
        let invitation = self.invitation(&room, user).await?;
        // The invitation carries the owner's authorization, checked when it was made; the
        // add itself is the room's, as an admin's would be.
        let by = Caller {
            user: invitation.inviter.clone(),
            admin: true,
        };
        let added = self
            .change_member(room.clone(), user.clone(), by, true)
            .await?;
        self.consent_write(ConsentWrite::DeleteInvitation {
            room: room.clone(),
            invitee: user.clone(),
            inviter: None,
        })
        .await?;
        Ok(json!({"room": room, "accepted": true, "added": added}))
    }

    /// `decline`: the invitation is deleted; the inviter is not told.
    pub async fn decline_invitation(
        &self,
        user: &UserId,
        room: RoomId,
    ) -> Result<Value, EngineError> {
        let deleted = self
            .consent_write(ConsentWrite::DeleteInvitation {
                room: room.clone(),
                invitee: user.clone(),
                inviter: None,
            })
            .await?;
        match deleted {
            WriteOutcome::Changed(true) => Ok(json!({"room": room, "declined": true})),
            WriteOutcome::Changed(false) => Err(EngineError::NotFound(format!(
                "you have no pending invitation to {room}"
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// `DELETE /v1/rooms/{room}/invitations/{user}`: the inviter (or an admin) withdraws an
    /// invitation. Answers whether one was pending.
    pub async fn revoke_invitation(
        &self,
        by: &UserId,
        admin: bool,
        room: RoomId,
        invitee: UserId,
    ) -> Result<bool, EngineError> {
        let deleted = self
            .consent_write(ConsentWrite::DeleteInvitation {
                room,
                invitee,
                inviter: (!admin).then(|| by.clone()),
            })
            .await?;
        match deleted {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(&other)),
        }
    }

    // ---------------------------------------------------------------------------------
    // Direct messages

    /// The direct-message rules for `sender` sending into the direct `room`: the recipient
    /// has not blocked the sender, and `HERALD_DM_POLICY` allows it. Other rooms pass.
    pub async fn check_direct_message(
        &self,
        sender: &UserId,
        room: &RoomId,
    ) -> Result<(), EngineError> {
        let Some((a, b)) = room.direct_users() else {
            return Ok(());
        };
        let other = if &a == sender {
            b
        } else if &b == sender {
            a
        } else {
            // Not one of its users: the room refuses it as from a non-member.
            return Ok(());
        };
        if !self
            .blockers_of(sender, std::slice::from_ref(&other))
            .await?
            .is_empty()
        {
            return Err(EngineError::Forbidden(format!(
                "{other} does not accept direct messages from you"
            )));
        }
        match self.settings.consent.dm_policy {
            DmPolicy::Anyone => Ok(()),
            DmPolicy::SharedRoom => {
                let q = ConsentRead::SharesGroupRoom {
                    user: sender.clone(),
                    other: other.clone(),
                };
                match self.consent_read(q).await? {
                    ConsentAnswer::Flag(true) => Ok(()),
                    ConsentAnswer::Flag(false) => Err(EngineError::Forbidden(format!(
                        "direct messages are allowed only between users who share a room \
                         (HERALD_DM_POLICY=shared_room), and you share none with {other}"
                    ))),
                    other => Err(unexpected(&other)),
                }
            }
            DmPolicy::Nobody => {
                let q = ConsentRead::IsMember {
                    room: room.clone(),
                    user: sender.clone(),
                };
                match self.consent_read(q).await? {
                    ConsentAnswer::Flag(true) => Ok(()),
                    ConsentAnswer::Flag(false) => Err(EngineError::Forbidden(
                        "users may not start direct conversations here \
                         (HERALD_DM_POLICY=nobody): only a direct room an admin or service \
                         created can be used"
                            .into(),
                    )),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// `POST /v1/rooms/direct` (admin or service): the direct room of two users, created with
    /// both memberships if needed. Answers the room and whether it was created.
    pub async fn create_direct_room(
        &self,
        a: &UserId,
        b: &UserId,
    ) -> Result<(RoomId, bool), EngineError> {
        if a == b {
            return Err(EngineError::Invalid(
                "a direct room needs two different users".into(),
            ));
        }
        let room = RoomId::direct(a, b);
        let added = self
            .rooms
            .send(EnsureDirectRoom { room: room.clone() })
            .await??;
        Ok((room, !added.is_empty()))
    }

    // ---------------------------------------------------------------------------------
    // Blocks

    /// Which of `among` have blocked `user`.
    pub async fn blockers_of(
        &self,
        user: &UserId,
        among: &[UserId],
    ) -> Result<HashSet<UserId>, EngineError> {
        if among.is_empty() {
            return Ok(HashSet::new());
        }
        let q = ConsentRead::BlockersOf {
            user: user.clone(),
            among: among.to_vec(),
        };
        match self.consent_read(q).await? {
            ConsentAnswer::Users(v) => Ok(v.into_iter().collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// `block`: `other` may no longer message, invite or watch the caller, nor see their
    /// presence; a pending invitation from `other` to the caller is dropped, and `other`'s
    /// watches of the caller end.
    pub async fn block(&self, user: &UserId, other: UserId) -> Result<Value, EngineError> {
        if &other == user {
            return Err(EngineError::Invalid("you cannot block yourself".into()));
        }
        let max = self.settings.consent.max_blocks;
        let outcome = self
            .consent_outcome(ConsentWrite::Block {
                blocker: user.clone(),
                blocked: other.clone(),
                at: self.now(),
                max: max as i64,
            })
            .await?;
        let added = match outcome {
            ConsentOutcome::Block(Ok(added)) => added,
            ConsentOutcome::Block(Err(())) => {
                return Err(EngineError::LimitExceeded(format!(
                    "you may block at most {max} users (HERALD_MAX_BLOCKS)"
                )))
            }
            other => return Err(unexpected(&other)),
        };
        if added {
            self.presence.do_send(BlockChanged {
                blocker: user.clone(),
                blocked: other.clone(),
                on: true,
            });
        }
        Ok(json!({"user": other, "blocked": true, "added": added}))
    }

    /// `unblock`.
    pub async fn unblock(&self, user: &UserId, other: UserId) -> Result<Value, EngineError> {
        let removed = match self
            .consent_write(ConsentWrite::Unblock {
                blocker: user.clone(),
                blocked: other.clone(),
            })
            .await?
        {
            WriteOutcome::Changed(c) => c,
            other => return Err(unexpected(&other)),
        };
        if removed {
            self.presence.do_send(BlockChanged {
                blocker: user.clone(),
                blocked: other.clone(),
                on: false,
            });
        }
        Ok(json!({"user": other, "blocked": false, "removed": removed}))
    }

    /// The caller's block list, oldest first.
    pub async fn blocks(&self, user: &UserId) -> Result<Vec<BlockEntry>, EngineError> {
        match self
            .consent_read(ConsentRead::Blocks {
                blocker: user.clone(),
            })
            .await?
        {
            ConsentAnswer::Blocks(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Splits `users` into those `viewer` may see and those who blocked the viewer (admins
    /// and services see everyone).
    pub(super) async fn without_blockers(
        &self,
        viewer: &UserId,
        privileged: bool,
        users: Vec<UserId>,
    ) -> Result<(Vec<UserId>, HashSet<UserId>), EngineError> {
        if privileged {
            return Ok((users, HashSet::new()));
        }
        let hidden = self.blockers_of(viewer, &users).await?;
        if hidden.is_empty() {
            return Ok((users, hidden));
        }
        let visible = users.into_iter().filter(|u| !hidden.contains(u)).collect();
        Ok((visible, hidden))
    }

    /// The presence `viewer` sees of `users`, in their order: a user who blocked the viewer
    /// shows as "no information" (offline, `last_seen` null), as if never seen.
    pub async fn presence_seen_by(
        &self,
        viewer: &UserId,
        privileged: bool,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceView>, EngineError> {
        let order = users.clone();
        let (visible, hidden) = self.without_blockers(viewer, privileged, users).await?;
        let views = if visible.is_empty() {
            Vec::new()
        } else {
            self.presence_of(visible).await?
        };
        Ok(mask_hidden(order, views, &hidden))
    }

    // ---------------------------------------------------------------------------------
    // Reports

    /// `report`: stores a report of the message `seq` of `room` by a member. Reporting the
    /// same message again answers the first report (`created: false`).
    pub async fn report(
        &self,
        reporter: &UserId,
        room: RoomId,
        seq: i64,
        reason: String,
    ) -> Result<(StoredReport, bool), EngineError> {
        let max = self.settings.consent.max_report_reason_bytes;
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(EngineError::Invalid("reason must not be empty".into()));
        }
        if reason.len() > max {
            return Err(EngineError::TooLarge(format!(
                "reason is {} bytes; the limit is {max} (HERALD_MAX_REPORT_REASON_BYTES)",
                reason.len()
            )));
        }
        if seq < 1 {
            return Err(EngineError::Invalid("seq must be >= 1".into()));
        }
        let member = self
            .consent_read(ConsentRead::IsMember {
                room: room.clone(),
                user: reporter.clone(),
            })
            .await?;
        if member != ConsentAnswer::Flag(true) {
            return Err(EngineError::Forbidden(format!(
                "only members of {room} may report its messages"
            )));
        }
        let (message_id, sender) = match self
            .consent_read(ConsentRead::Message {
                room: room.clone(),
                seq,
            })
            .await?
        {
            ConsentAnswer::Message(Some(m)) => m,
            ConsentAnswer::Message(None) => {
                return Err(EngineError::NotFound(format!(
                    "{room} has no message {seq}"
                )))
            }
            other => return Err(unexpected(&other)),
        };
        let report = StoredReport {
            id: uuid::Uuid::new_v4().simple().to_string(),
            room,
            seq,
            message_id,
            sender,
            reporter: reporter.clone(),
            reason,
            created_at: self.now(),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
        };
        match self
            .consent_outcome(ConsentWrite::InsertReport { report })
            .await?
        {
            ConsentOutcome::Report(Some(r), created) => Ok((r, created)),
            other => Err(unexpected(&other)),
        }
    }

    /// `GET /v1/admin/reports`: newest first, optionally only open or only resolved ones.
    pub async fn list_reports(
        &self,
        open: Option<bool>,
        before: Option<(Millis, String)>,
        limit: i64,
    ) -> Result<Vec<StoredReport>, EngineError> {
        match self
            .consent_read(ConsentRead::Reports {
                open,
                before,
                limit,
            })
            .await?
        {
            ConsentAnswer::Reports(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/admin/reports/{id}/resolve`: idempotent (a resolved report is answered as
    /// it is, `changed: false`).
    pub async fn resolve_report(
        &self,
        by: &UserId,
        id: String,
        resolution: Option<String>,
    ) -> Result<(StoredReport, bool), EngineError> {
        match self
            .consent_outcome(ConsentWrite::ResolveReport {
                id: id.clone(),
                by: by.clone(),
                resolution,
                at: self.now(),
            })
            .await?
        {
            ConsentOutcome::Report(Some(r), changed) => Ok((r, changed)),
            ConsentOutcome::Report(None, _) => {
                Err(EngineError::NotFound(format!("no report {id}")))
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// The ack of `report` (and the REST answer).
pub fn report_ack(r: &StoredReport, created: bool) -> Value {
    json!({"report_id": r.id, "room": r.room, "seq": r.seq, "created": created})
}

/// `views` of the visible users put back in `order`, with "no information" for `hidden`.
pub(super) fn mask_hidden(
    order: Vec<UserId>,
    views: Vec<PresenceView>,
    hidden: &HashSet<UserId>,
) -> Vec<PresenceView> {
    let mut views = views.into_iter();
    order
        .into_iter()
        .filter_map(|u| {
            if hidden.contains(&u) {
                Some(PresenceView::offline(u.as_str(), None))
            } else {
                views.next()
            }
        })
        .collect()
}

/// A persistence answer of the wrong shape: a bug, never a client's fault.
fn unexpected(what: &impl std::fmt::Debug) -> EngineError {
    EngineError::Internal(format!("unexpected consent answer: {what:?}"))
}
