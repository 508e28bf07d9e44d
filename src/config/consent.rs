//! Consent settings (issue 18): the direct-message policy, invitation expiry and caps, the
//! block list's size and the report reason's size; their flags ([`ConsentArgs`], flattened
//! into `ServeArgs`) and how `herald config` shows them.

use super::*;

/// Who may start or continue a direct conversation (`HERALD_DM_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmPolicy {
    /// Any user may message any user.
    Anyone,
    /// Only users who share a room (a public or private room, not the direct room itself).
    SharedRoom,
    /// Only in direct rooms an admin or a service created (`POST /v1/rooms/direct`).
    Nobody,
}

impl DmPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmPolicy::Anyone => "anyone",
            DmPolicy::SharedRoom => "shared_room",
            DmPolicy::Nobody => "nobody",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "anyone" => Ok(DmPolicy::Anyone),
            "shared_room" => Ok(DmPolicy::SharedRoom),
            "nobody" => Ok(DmPolicy::Nobody),
            other => Err(format!(
                "{other:?} is not a DM policy: use anyone, shared_room or nobody"
            )),
        }
    }
}

/// Invitations, blocks and reports.
#[derive(Debug, Clone)]
pub struct ConsentSettings {
    pub dm_policy: DmPolicy,
    /// A pending invitation expires this long after it was made.
    pub invitation_ttl: Duration,
    /// Pending invitations one user may have received / made at once.
    pub max_invitations_per_invitee: usize,
    pub max_invitations_per_inviter: usize,
    /// Users one user may block.
    pub max_blocks: usize,
    /// Longest report reason, in bytes.
    pub max_report_reason_bytes: usize,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            dm_policy: DmPolicy::Anyone,
            invitation_ttl: Duration::from_secs(7 * DAY_SECS),
            max_invitations_per_invitee: 100,
            max_invitations_per_inviter: 100,
            max_blocks: 1000,
            max_report_reason_bytes: 1000,
        }
    }
}

/// The consent flags of `herald serve`.
#[derive(Debug, Clone, Args)]
pub struct ConsentArgs {
    /// Who may send direct messages: anyone, shared_room (users who share a room) or nobody (only in direct rooms an admin or service created).
    #[arg(long, global = true, env = "HERALD_DM_POLICY", value_parser = DmPolicy::parse)]
    pub dm_policy: Option<DmPolicy>,
    /// Seconds after which a pending invitation expires.
    #[arg(long, global = true, env = "HERALD_INVITATION_TTL_SECS")]
    pub invitation_ttl_secs: Option<u64>,
    /// Pending invitations one user may have received at once.
    #[arg(long, global = true, env = "HERALD_MAX_INVITATIONS_PER_INVITEE")]
    pub max_invitations_per_invitee: Option<usize>,
    /// Pending invitations one user may have made at once.
    #[arg(long, global = true, env = "HERALD_MAX_INVITATIONS_PER_INVITER")]
    pub max_invitations_per_inviter: Option<usize>,
    /// Users one user may block.
    #[arg(long, global = true, env = "HERALD_MAX_BLOCKS")]
    pub max_blocks: Option<usize>,
    /// Longest report reason, in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_REPORT_REASON_BYTES")]
    pub max_report_reason_bytes: Option<usize>,
}

impl ConsentArgs {
    /// Applies the flags that are set, raising out-of-range values to the nearest sane one.
    pub(super) fn apply(&self, c: &mut ConsentSettings) {
        c.dm_policy = self.dm_policy.unwrap_or(c.dm_policy);
        c.invitation_ttl = self
            .invitation_ttl_secs
            .map_or(c.invitation_ttl, |v| Duration::from_secs(v.max(1)));
        c.max_invitations_per_invitee = self
            .max_invitations_per_invitee
            .map_or(c.max_invitations_per_invitee, |v| v.max(1));
        c.max_invitations_per_inviter = self
            .max_invitations_per_inviter
            .map_or(c.max_invitations_per_inviter, |v| v.max(1));
        c.max_blocks = self.max_blocks.map_or(c.max_blocks, |v| v.max(1));
        c.max_report_reason_bytes = self
            .max_report_reason_bytes
            .map_or(c.max_report_reason_bytes, |v| v.max(1));
    }
}

/// `herald config`'s value of a consent setting; `None` for another key.
pub(super) fn shown(c: &ConsentSettings, key: &str) -> Option<show::Shown> {
    use show::Shown;
    let int = |v: usize| Shown::Int(v as i128);
    Some(match key {
        "dm_policy" => Shown::Str(c.dm_policy.as_str().to_owned()),
        "invitation_ttl_secs" => Shown::Int(c.invitation_ttl.as_secs().into()),
        "max_invitations_per_invitee" => int(c.max_invitations_per_invitee),
        "max_invitations_per_inviter" => int(c.max_invitations_per_inviter),
        "max_blocks" => int(c.max_blocks),
        "max_report_reason_bytes" => int(c.max_report_reason_bytes),
        _ => return None,
    })
}
