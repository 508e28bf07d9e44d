// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        key_hash -> Text,
        roles -> Text,
        created_by -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        action -> Text,
        actor -> Text,
        subject -> Text,
        detail -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    blocks (blocker, blocked) {
        blocker -> Text,
        blocked -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    device_positions (user_id, device_id, room_id) {
        user_id -> Text,
        device_id -> Text,
        room_id -> Text,
        seq -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    invitations (room_id, invitee) {
        room_id -> Text,
        invitee -> Text,
        inviter -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    members (room_id, user_id) {
        room_id -> Text,
        user_id -> Text,
        role -> Text,
        joined_at -> BigInt,
        delivered_seq -> BigInt,
        read_seq -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        room_id -> Text,
        seq -> BigInt,
        sender -> Text,
        kind -> Text,
        body -> Text,
        priority -> Text,
        client_msg_id -> Nullable<Text>,
        created_at -> BigInt,
        edited_at -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    message_changes (room_id, change_seq) {
        room_id -> Text,
        change_seq -> BigInt,
        seq -> BigInt,
        kind -> Text,
        actor -> Text,
        body -> Nullable<Text>,
        emoji -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    reactions (room_id, seq, user_id, emoji) {
        room_id -> Text,
        seq -> BigInt,
        user_id -> Text,
        emoji -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    notification_outbox (message_id) {
        message_id -> Text,
        room_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    notification_prefs (user_id) {
        user_id -> Text,
        prefs -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    notifications (id) {
        id -> Text,
        user_id -> Text,
        notification_type -> Text,
        title -> Text,
        message -> Text,
        image_url -> Nullable<Text>,
        actions -> Text,
        data -> Text,
        priority -> Text,
        source_user -> Nullable<Text>,
        source_room -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    reports (id) {
        id -> Text,
        room_id -> Text,
        seq -> BigInt,
        message_id -> Text,
        sender -> Text,
        reporter -> Text,
        reason -> Text,
        created_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
        resolved_by -> Nullable<Text>,
        resolution -> Nullable<Text>,
    }
}

diesel::table! {
    rooms (id) {
        id -> Text,
        kind -> Text,
        name -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        last_seq -> BigInt,
        last_change -> BigInt,
        retained_from -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        status -> Text,
        custom_message -> Nullable<Text>,
        last_seen -> Nullable<BigInt>,
        updated_at -> BigInt,
        custom_expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> BigInt,
        state -> Text,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        last_attempt_at -> Nullable<BigInt>,
        retry_from -> BigInt,
        delivered_to -> Text,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(invitations -> rooms (room_id));
diesel::joinable!(members -> rooms (room_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::joinable!(message_changes -> rooms (room_id));
diesel::joinable!(reactions -> rooms (room_id));
diesel::joinable!(notification_outbox -> messages (message_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    audit_log,
    blocks,
    device_positions,
    invitations,
    members,
    message_changes,
    messages,
    notification_outbox,
    notification_prefs,
    notifications,
    reactions,
    reports,
    rooms,
    users,
    webhook_events,
);
