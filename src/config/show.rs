//! How settings are shown: `herald config` (`render`) and the `[default: …]` in `--help`
//! (`with_default_help`), through one value-per-key table (`shown`).

use super::*;

/// How `herald config` (and `--help`) shows one setting's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shown {
    Int(i128),
    Bool(bool),
    Str(String),
    List(Vec<String>),
    /// An optional setting nobody set.
    Unset,
    /// A secret that is set: its value is never shown.
    Redacted,
}

impl Shown {
    fn millis(d: Duration) -> Shown {
        Shown::Int(d.as_millis() as i128)
    }

    fn path(p: &Option<PathBuf>) -> Shown {
        p.as_ref()
            .map_or(Shown::Unset, |p| Shown::Str(p.display().to_string()))
    }

    fn text(s: &Option<String>) -> Shown {
        s.as_ref().map_or(Shown::Unset, |s| Shown::Str(s.clone()))
    }

    /// The value as a TOML literal (`None`: no value to show).
    fn toml(&self) -> Option<String> {
        // A JSON string literal is a valid TOML basic string.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        match self {
            Shown::Int(i) => Some(i.to_string()),
            Shown::Bool(b) => Some(b.to_string()),
            Shown::Str(s) => Some(quote(s)),
            Shown::List(l) => Some(format!(
                "[{}]",
                l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            )),
            Shown::Unset => None,
            Shown::Redacted => Some(quote("<redacted>")),
        }
    }

    /// The value as `--help` prints it after `default:` (`None`: nothing to print).
    fn plain(&self) -> Option<String> {
        match self {
            Shown::Int(i) => Some(i.to_string()),
            Shown::Bool(b) => Some(b.to_string()),
            Shown::Str(s) => Some(s.clone()),
            Shown::List(_) | Shown::Unset | Shown::Redacted => None,
        }
    }
}

/// The value of setting `key` in `s`, in the unit of its flag (milliseconds for `*_ms`,
/// days for `device_ttl_days`...); `None` for an unknown key. This is the inverse of
/// [`Settings::from_args`]: `--help` shows `Settings::default()` through it, so defaults
/// are written once, in the `Default` impls.
pub(super) fn shown(s: &Settings, key: &str) -> Option<Shown> {
    let int = |v: u64| Shown::Int(v.into());
    // Retention in days; 0 is "for ever".
    let days = |d: Option<Duration>| int(d.map_or(0, |d| d.as_secs() / 86_400));
    let l = &s.limits;
    Some(match key {
        // The URL names the database; only its password is secret (as in the server's log).
        "database_url" => Shown::Str(redact_url(s.database_url.expose())),
        "jwt_secret" => s
            .jwt_secret
            .as_ref()
            .map_or(Shown::Unset, |_| Shown::Redacted),
        "jwt_secret_file" => Shown::path(&s.jwt_secret_file),
        "jwt_algorithm" => Shown::Str(s.auth.algorithm.clone()),
        "jwt_public_key_file" => Shown::path(&s.auth.public_key_file),
        "jwt_issuer" => Shown::text(&s.auth.issuer),
        "jwt_audience" => Shown::text(&s.auth.audience),
        "jwt_leeway_secs" => int(s.auth.leeway.as_secs()),
        "token_grace_ms" => Shown::millis(s.auth.refresh_grace),
        "allowed_origins" => Shown::List(s.allowed_origins.clone()),
        "trusted_proxies" => Shown::List(s.trusted_proxies.iter().map(|c| c.to_string()).collect()),
        "tls_cert" => Shown::path(&s.tls_cert),
        "tls_key" => Shown::path(&s.tls_key),
        "diagnostics" => Shown::Bool(s.diagnostics),
        "dev_login" => Shown::Bool(s.dev_login),
        "max_json_depth" => int(l.max_json_depth as u64),
        "send_rate" => int(l.send_rate.into()),
        "send_burst" => int(l.send_burst.into()),
        "presence_rate" => int(l.presence_rate.into()),
        "presence_burst" => int(l.presence_burst.into()),
        "abuse_threshold" => int(l.abuse_threshold.into()),
        "max_rooms_per_user" => int(l.max_rooms_per_user as u64),
        "max_room_members" => int(l.max_room_members as u64),
        "max_watch" => int(l.max_watch as u64),
        "max_sessions_per_user" => int(l.max_sessions_per_user as u64),
        "max_connections_per_ip" => int(l.max_connections_per_ip as u64),
        "max_devices_per_user" => int(l.max_devices_per_user as u64),
        "rest_rate" => int(l.rest_rate.into()),
        "rest_burst" => int(l.rest_burst.into()),
        "membership_rate" => int(l.membership_rate.into()),
        "membership_burst" => int(l.membership_burst.into()),
        "history_rate" => int(l.history_rate.into()),
        "history_burst" => int(l.history_burst.into()),
        "watch_rate" => int(l.watch_rate.into()),
        "watch_burst" => int(l.watch_burst.into()),
        "auth_rate" => int(l.auth_rate.into()),
        "auth_burst" => int(l.auth_burst.into()),
        "frame_rate" => int(l.frame_rate.into()),
        "frame_burst" => int(l.frame_burst.into()),
        "event_rate" => int(l.event_rate.into()),
        "event_burst" => int(l.event_burst.into()),
        "max_event_bytes" => int(l.max_event_bytes as u64),
        "max_api_keys" => int(l.max_api_keys as u64),
        "edit_window_secs" => int(l.edit_window.as_secs()),
        "max_reactions_per_message" => int(l.max_reactions_per_message as u64),
        "max_emoji_bytes" => int(l.max_emoji_bytes as u64),
        "max_inflight" => int(l.max_inflight as u64),
        "connect_rate_per_ip" => int(l.connect_rate_per_ip.into()),
        "connect_burst_per_ip" => int(l.connect_burst_per_ip.into()),
        "connect_rate_per_user" => int(l.connect_rate_per_user.into()),
        "connect_burst_per_user" => int(l.connect_burst_per_user.into()),
        "max_unauthenticated" => int(l.max_unauthenticated as u64),
        "max_unauthenticated_per_ip" => int(l.max_unauthenticated_per_ip as u64),
        "bind" => Shown::Str(s.bind.clone()),
        "db_pool_size" => int(s.db_pool_size.into()),
        "db_timeout_ms" => Shown::millis(s.db_timeout),
        "db_write_timeout_ms" => Shown::millis(s.db_write_timeout),
        "heartbeat_ms" => Shown::millis(s.heartbeat_interval),
        "presence_grace_ms" => Shown::millis(s.presence_grace),
        "auto_away_ms" => Shown::millis(s.auto_away.unwrap_or_default()),
        "open_watch" => Shown::Bool(s.open_watch),
        "presence_coalesce_ms" => Shown::millis(s.presence_coalesce),
        "typing_rate" => int(s.typing_rate.into()),
        "notify_mentions" => Shown::Bool(s.notify_mentions),
        "notify_offline_direct" => Shown::Bool(s.notify_offline_direct),
        "notification_sweep_ms" => Shown::millis(s.notification_sweep),
        "outbox_sweep_ms" => Shown::millis(s.outbox_sweep),
        "sio_ping_interval_ms" => Shown::millis(s.sio_ping_interval),
        "sio_events" => Shown::Str(s.sio_events.as_str().to_owned()),
        "retention_days" => int(0),
        "retention_public_days" => days(s.retention.public),
        "retention_private_days" => days(s.retention.private),
        "retention_direct_days" => days(s.retention.direct),
        "notification_retention_days" => days(s.retention.read_notifications),
        "retention_sweep_ms" => Shown::millis(s.retention.sweep),
        "retention_batch" => int(s.retention.batch as u64),
        "sio_ping_timeout_ms" => Shown::millis(s.sio_ping_timeout),
        "sio_max_payload" => int(s.sio_max_payload as u64),
        "typing_timeout_ms" => Shown::millis(s.typing_timeout),
        "outbox_frames" => int(s.outbox_frames as u64),
        "outbox_bytes" => int(s.outbox_bytes as u64),
        "worker_inbox_bytes" => int(s.worker_inbox_bytes as u64),
        "write_timeout_ms" => Shown::millis(s.write_timeout),
        "handshake_timeout_ms" => Shown::millis(s.handshake_timeout),
        "max_frame_bytes" => int(s.max_frame_bytes as u64),
        "ws_deflate" => Shown::Bool(s.ws_deflate.enabled),
        "ws_deflate_threshold" => int(s.ws_deflate.threshold as u64),
        "ws_deflate_context_takeover" => Shown::Bool(s.ws_deflate.context_takeover),
        "ws_deflate_level" => int(s.ws_deflate.level.into()),
        "ws_write_gather_ms" => int(s.ws_write_gather.as_millis() as u64),
        "max_text_bytes" => int(s.max_text_bytes as u64),
        "join_missed_limit" => Shown::Int(s.join_missed_limit.into()),
        "join_members_limit" => int(s.join_members_limit as u64),
        "replay_max" => Shown::Int(s.replay_max.into()),
        "device_ttl_days" => int(s.device_ttl.as_secs() / DAY_SECS),
        "sio_recovery_ms" => Shown::millis(s.sio_recovery_window),
        "history_max_bytes" => int(s.history_max_bytes as u64),
        "commit_max_batch" => int(s.commit_max_batch as u64),
        "commit_interval_ms" => Shown::millis(s.commit_interval),
        "room_idle_ms" => Shown::millis(s.room_idle),
        "room_load_retry_ms" => Shown::millis(s.room_load_retry),
        "workers" => int(s.workers as u64),
        "max_mentions" => int(s.costs.max_mentions as u64),
        "commit_queue_max" => int(s.costs.commit_queue_max as u64),
        "redis_url" => s
            .redis_url
            .as_ref()
            .map_or(Shown::Unset, |u| Shown::Str(redact_url(u.expose()))),
        "node_id" => {
            if s.cluster.node_id.is_empty() {
                Shown::Unset
            } else {
                Shown::Str(s.cluster.node_id.clone())
            }
        }
        "cluster_prefix" => Shown::Str(s.cluster.prefix.clone()),
        "node_timeout_ms" => Shown::millis(s.cluster.node_timeout),
        "cluster_heartbeat_ms" => Shown::millis(s.cluster.heartbeat),
        "cluster_gap_ms" => Shown::millis(s.cluster.gap_timeout),
        "reuse_port" => Shown::Bool(s.reuse_port),
        _ => {
            return super::consent::shown(&s.consent, key)
                .or_else(|| super::webhooks::shown(&s.webhooks, key))
        }
    })
}

/// `cmd` with `[default: …]` appended to the help of every setting that has a default,
/// taken from `Settings::default()` (the flags themselves carry no default, so that an
/// unset flag can fall back to the config file).
pub fn with_default_help(mut cmd: clap::Command) -> clap::Command {
    let defaults = Settings::default();
    for key in setting_keys() {
        let Some(text) = shown(&defaults, &key).and_then(|v| v.plain()) else {
            continue;
        };
        cmd = cmd.mut_arg(&key, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            arg.help(format!("{help} [default: {text}]"))
        });
    }
    cmd
}

/// The effective configuration as TOML, for `herald config`: every setting with its value
/// and, as a trailing comment, where it came from. Secrets read `"<redacted>"` (the
/// database URL keeps all but its password); unset optional settings are commented out.
pub fn render(settings: &Settings, origins: &[(String, Origin)]) -> String {
    let lines: Vec<(String, Origin)> = origins
        .iter()
        .map(|(key, origin)| {
            let value = shown(settings, key).and_then(|v| v.toml());
            let line = match value {
                Some(v) => format!("{key} = {v}"),
                None => format!("# {key} (not set)"),
            };
            (line, *origin)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::from(
        "# Effective configuration (flag > env > file > default). Secrets are redacted.\n",
    );
    for (line, origin) in lines {
        out.push_str(&format!("{line:width$}  # {}\n", origin.as_str()));
    }
    out
}
