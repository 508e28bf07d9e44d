//! The WebSocket handshake of a bench client: the HTTP/1.1 upgrade request written by hand and
//! the response head read back.

use super::{ConnectError, MAX_HEAD};
use actix_web::rt::net::TcpStream;
use actix_web::web::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes the HTTP/1.1 upgrade request and reads the response head; returns the bytes read
/// after the head (the first frames).
pub(super) async fn upgrade(
    stream: &mut TcpStream,
    authority: &str,
    path: &str,
) -> Result<BytesMut, ConnectError> {
    let key = base64(uuid::Uuid::new_v4().as_bytes());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: herald-bench\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ConnectError::Handshake("response head too long".into()));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ConnectError::Closed(
                "end of stream during the upgrade".into(),
            ));
        }
    };
    let head = buf.split_to(head_len);
    let head = String::from_utf8_lossy(&head);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ConnectError::Handshake(head.lines().next().unwrap_or("").to_owned()))?;
    if status != 101 {
        return Err(ConnectError::Status(status));
    }
    let expected = actix_http::ws::hash_key(key.as_bytes());
    let accepted = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim().as_bytes() == expected
        })
    });
    if !accepted {
        return Err(ConnectError::Handshake(
            "missing or wrong Sec-WebSocket-Accept".into(),
        ));
    }
    Ok(buf)
}

/// Standard base64 with padding.
pub(super) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
