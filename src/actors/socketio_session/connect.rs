//! The Socket.IO `CONNECT` handshake of a `SocketIoSession`: the token, admission, the resume
//! point (`auth.since`, `auth.device_id`) and the session's registration with the engine.

use actix::prelude::*;
use serde_json::Value;

use super::SocketIoSession;
use crate::actors::client_session::ClientSession;
use crate::actors::continuity::StreamSession;
use crate::actors::eio_registry::{EioAuthenticated, TakeRecovery};
use crate::engine::Resume;
use crate::metrics::METRICS;
use crate::recovery::RecoveryLog;
use crate::socketio as sio;

impl SocketIoSession {
    pub(super) fn on_connect(&mut self, data: Option<Value>, ctx: &mut Context<Self>) {
        if self.auth.is_some() || self.connecting {
            return;
        }
        let token = data
            .as_ref()
            .and_then(|d| d["token"].as_str())
            .unwrap_or("");
        let auth = match self.port.verify_token(token) {
            Ok(a) => a,
            Err(e) => {
                return self.emit(
                    sio::connect_error("/", &format!("Authentication failed: {e}")),
                    ctx,
                )
            }
        };
        let max_rooms = self.port.settings().limits.max_rooms_per_user;
        let mut resume = match resume_of(data.as_ref(), max_rooms) {
            Ok(r) => r,
            Err(e) => return self.emit(sio::connect_error("/", &e), ctx),
        };
        self.device = resume.device.clone();
        match data.as_ref().and_then(|d| d.get("events")) {
            None => {}
            Some(v) => match v.as_str().and_then(sio::Vocabulary::parse) {
                Some(vocabulary) => self.vocabulary = vocabulary,
                None => {
                    return self.emit(
                        sio::connect_error("/", "auth.events must be \"herald\" or \"seed\""),
                        ctx,
                    )
                }
            },
        }
        // Connection-state recovery: the official client presents the `pid` we gave it and
        // the offset of the last event it received.
        let field = |k: &str| data.as_ref().and_then(|d| d.get(k));
        let pid = field("pid")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty() && p.len() <= 64)
            .map(str::to_owned);
        let offset = field("offset")
            .and_then(Value::as_str)
            .and_then(|o| o.parse::<u64>().ok());
        let offsets = pid.is_some() || field("recovery") == Some(&Value::Bool(true));
        self.auth = Some(auth);
        self.connecting = true;
        METRICS.connections.inc();
        METRICS.connections_total.inc();
        let Some(handle) = self.handle_handle(ctx) else {
            return;
        };
        let port = self.port.clone();
        let ip = self.ip;
        let registry = self.registry.clone();
        // Like a native session, requests wait until the session is registered everywhere.
        let open = async move {
            let ticket = port.admit(&handle.user, ip).await?;
            let taken = match &pid {
                Some(p) => registry
                    .send(TakeRecovery {
                        pid: p.clone(),
                        user: handle.user.clone(),
                    })
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            // Exact positions from the log, unless the client also gave explicit ones.
            let recovered = taken.and_then(|log| {
                let positions = log.positions_at(offset)?;
                Some((pid.clone()?, log.last_offset(), positions))
            });
            if let Some((_, _, positions)) = &recovered {
                for (room, seq) in positions {
                    resume.since.entry(room.clone()).or_insert(*seq);
                }
            }
            port.open_session(handle, resume)
                .await
                .map(|s| (ticket, s, recovered))
        };
        ctx.wait(open.into_actor(self).map(move |res, act, ctx| {
            act.connecting = false;
            match res {
                Ok((ticket, start, recovered)) => {
                    act.ticket = Some(ticket);
                    act.registry.do_send(EioAuthenticated {
                        sid: act.sid.clone(),
                    });
                    // The same pid tells the client its state was recovered (`recovered`);
                    // a new one that it was not.
                    let (pid, after) = match recovered {
                        Some((pid, after, _)) => (pid, after),
                        None => (uuid::Uuid::new_v4().simple().to_string(), 0),
                    };
                    let mut log = RecoveryLog::new(after, Default::default(), offsets);
                    for r in &start.replay {
                        log.set_base(&r.room, r.position);
                    }
                    act.emit(sio::connect_ok(&act.id.to_string(), &pid), ctx);
                    act.recovery = Some((pid, log));
                    act.arm_expiry(ctx);
                    act.unread.seed(&start.rooms);
                    act.hidden = crate::protocol::HiddenUsers::new(start.blocked_by);
                    for f in start.frames {
                        act.emit(sio::event_packet(&f, act.vocabulary, None), ctx);
                    }
                    act.start_streams(start.replay, ctx);
                }
                Err(e) => {
                    act.emit(sio::connect_error("/", &e.to_string()), ctx);
                    act.shutdown(ctx);
                }
            }
        }));
    }
}

/// Where the client left off, from its CONNECT payload (`auth`): `since` as an object of
/// room → last seq held, naming at most `max_rooms` rooms.
fn resume_of(auth: Option<&Value>, max_rooms: usize) -> Result<Resume, String> {
    let mut resume = Resume::default();
    if let Some(d) = auth.and_then(|a| a.get("device_id")) {
        let d = d.as_str().ok_or("auth.device_id must be a string")?;
        resume.device = Some(crate::domain::DeviceId::parse(d).map_err(|e| e.to_string())?);
    }
    let Some(since) = auth.and_then(|a| a.get("since")) else {
        return Ok(resume);
    };
    let Some(map) = since.as_object() else {
        return Err("auth.since must be an object of room ids to seqs".into());
    };
    if map.len() > max_rooms {
        return Err(format!("auth.since names more than {max_rooms} rooms"));
    }
    for (room, seq) in map {
        let room = crate::domain::RoomId::parse(room).map_err(|e| e.to_string())?;
        let seq = seq
            .as_i64()
            .filter(|s| *s >= 0)
            .ok_or_else(|| format!("auth.since[{room}] must be a seq (a non-negative integer)"))?;
        resume.since.insert(room, seq);
    }
    Ok(resume)
}
