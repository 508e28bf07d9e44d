//! Notifications as stored: their rows, preference documents and listing filters.

use diesel::prelude::*;

use crate::db::schema::{notification_prefs, notifications};
use crate::domain::UserId;

/// A stored notification (all columns).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = notifications)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub image_url: Option<String>,
    /// JSON array.
    pub actions: String,
    /// JSON object.
    pub data: String,
    pub priority: String,
    pub source_user: Option<String>,
    pub source_room: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// When it was pushed live; NULL while held.
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = notification_prefs)]
pub struct PrefsRow<'a> {
    pub user_id: &'a str,
    pub prefs: &'a str,
    pub updated_at: i64,
}

/// Filters of a notification listing.
#[derive(Debug, Clone)]
pub struct NotificationQuery<'a> {
    pub user: &'a UserId,
    pub unread_only: bool,
    pub kind: Option<&'a str>,
    /// Cursor: strictly older than this (created_at, id).
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
    pub now: i64,
}
