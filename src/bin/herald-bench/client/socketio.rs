//! Socket.IO v5 over Engine.IO v4, WebSocket only: what a bench connection needs to be a
//! Socket.IO client of Herald (docs/socketio.md). The driver and the handle speak native
//! frames; this module turns one into the other at the edge:
//! - requests `{"type":kind,"ref":N,"data":D}` go out as `42N["kind",D]`;
//! - acknowledgements `43N[{"ok":true,...}]` come back as replies to ref N (`ok:false` is an
//!   error reply with its `code` and `error`);
//! - events `42["name",D]` reach the handler as `{"type":"name","data":D}`, so the receivers
//!   of the scenarios read both dialects alike (a copy per event, in the bench, not the
//!   server);
//! - Engine.IO pings (`2`) are answered with pongs (`3`).

use serde_json::Value;

use super::Reply;

/// The event that ends a Socket.IO connect, as the native `sync` frame does.
const SYNC_EVENT: &str = r#"42["sync""#;

/// Which protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Herald's JSON frames on `/v1/ws`.
    #[default]
    Native,
    /// Socket.IO on `/socket.io/?EIO=4&transport=websocket`.
    SocketIo,
}

impl Dialect {
    /// The upgrade request's path and query.
    pub(super) fn path(self, token: &str) -> String {
        match self {
            Dialect::Native => format!("/v1/ws?token={token}"),
            Dialect::SocketIo => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        }
    }

    /// A request frame in this dialect.
    pub fn request_frame(self, kind: &str, reference: u64, data: &Value) -> String {
        match self {
            Dialect::Native => {
                serde_json::json!({"type": kind, "ref": reference, "data": data}).to_string()
            }
            Dialect::SocketIo => {
                format!("42{reference}{}", serde_json::json!([kind, data]))
            }
        }
    }
}

/// What one Socket.IO text frame from the server means to the driver.
pub(super) enum Incoming {
    /// Engine.IO ping: answer with this pong.
    Ping,
    /// The acknowledgement of request `ref`.
    Reply(u64, Reply),
    /// An event, rewritten as a native frame for the handler.
    Event(String),
    /// `41` (disconnect) or `1` (Engine.IO close): the server ends the session.
    Disconnect,
    /// Anything else (`40` connect, noops): ignored.
    Other,
}

/// Reads one Socket.IO text frame; `rx_ns` stamps acknowledgements.
pub(super) fn incoming(text: &str, rx_ns: u64) -> Incoming {
    if text == "2" {
        return Incoming::Ping;
    }
    if text == "1" || text.starts_with("41") {
        return Incoming::Disconnect;
    }
    if let Some(rest) = text.strip_prefix("43") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(reference) = rest[..digits].parse::<u64>() else {
            return Incoming::Other;
        };
        let data = serde_json::from_str::<Value>(&rest[digits..])
            .ok()
            .and_then(|v| v.get(0).cloned())
            .unwrap_or(Value::Null);
        let reply = if data["ok"] == Value::Bool(false) {
            Reply::Error {
                code: data["code"].as_str().unwrap_or("?").to_owned(),
                message: data["error"].as_str().unwrap_or("").to_owned(),
            }
        } else {
            Reply::Ack(data, rx_ns)
        };
        return Incoming::Reply(reference, reply);
    }
    if let Some(array) = text.strip_prefix("42") {
        // `["name",payload]`: the name is a plain JSON string (Herald's names need no escapes).
        if let Some(rest) = array.strip_prefix("[\"") {
            if let Some((name, payload)) = rest.split_once("\",") {
                if let Some(payload) = payload.strip_suffix(']') {
                    return Incoming::Event(format!(r#"{{"type":"{name}","data":{payload}}}"#));
                }
            }
        }
        return Incoming::Other;
    }
    Incoming::Other
}

/// The `CONNECT` packet with the token as its auth payload.
pub(super) fn connect_packet(token: &str) -> String {
    format!("40{}", serde_json::json!({ "token": token }))
}

/// Whether a frame read during the handshake ends it (`sync`), refuses it (`44`), or neither.
pub(super) fn handshake_step(text: &str) -> Result<bool, String> {
    if let Some(refused) = text.strip_prefix("44") {
        return Err(refused.to_owned());
    }
    Ok(text.starts_with(SYNC_EVENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_translate_both_ways() {
        assert_eq!(
            Dialect::SocketIo.request_frame("join", 7, &serde_json::json!({"room": "public:a"})),
            r#"427["join",{"room":"public:a"}]"#
        );
        match incoming(r#"437[{"ok":true,"room":"public:a"}]"#, 5) {
            Incoming::Reply(7, Reply::Ack(v, 5)) => assert_eq!(v["room"], "public:a"),
            _ => panic!("not an ack"),
        }
        match incoming(r#"4312[{"ok":false,"code":"forbidden","error":"no"}]"#, 5) {
            Incoming::Reply(12, Reply::Error { code, .. }) => assert_eq!(code, "forbidden"),
            _ => panic!("not an error reply"),
        }
        match incoming(r#"42["message",{"seq":3,"body":{"text":"a,b]"}}]"#, 0) {
            Incoming::Event(t) => {
                assert_eq!(
                    t,
                    r#"{"type":"message","data":{"seq":3,"body":{"text":"a,b]"}}}"#
                )
            }
            _ => panic!("not an event"),
        }
        assert!(matches!(incoming("2", 0), Incoming::Ping));
        assert!(matches!(incoming("41", 0), Incoming::Disconnect));
        assert_eq!(handshake_step(r#"42["sync",{}]"#), Ok(true));
        assert_eq!(handshake_step(r#"40{"sid":"x"}"#), Ok(false));
        assert!(handshake_step(r#"44{"message":"bad"}"#).is_err());
    }
}
