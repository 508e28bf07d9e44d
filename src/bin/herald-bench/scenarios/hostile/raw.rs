//! Raw TCP and HTTP for the attackers: connecting from a chosen source address, upgrade
//! requests, exchanges with bounded answers, and reading what the server sent until it closes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use actix_http::ws::OpCode;
use actix_web::rt::net::{TcpSocket, TcpStream};
use actix_web::web::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, ConnectError, Server};

use super::{Target, DRAIN_WAIT, HOLD_LIMIT, MAX_ANSWER};
/// An I/O error as an outcome name (`error_refused`, `error_reset`...).
pub(super) fn io_kind(e: &std::io::Error) -> String {
    format!("error_{}", ConnectError::Io(e.to_string()).kind())
}

/// A TCP connection to the next server (round-robin) from `from`, with a small receive buffer
/// when asked; the stream and the server's `host:port` (for the `Host` header).
pub(super) async fn open(
    t: &Target,
    from: Ipv4Addr,
    rcvbuf: Option<u32>,
) -> Result<(TcpStream, String), String> {
    open_to(t, t.pick(), from, rcvbuf).await
}

/// [`open`] to the server whose `host:port` is `authority` (the first if none is).
pub(super) async fn open_same(
    t: &Target,
    from: Ipv4Addr,
    authority: &str,
) -> Result<(TcpStream, String), String> {
    let server = t
        .servers
        .iter()
        .find(|s| s.authority == authority)
        .unwrap_or(&t.servers[0])
        .clone();
    open_to(t, server, from, None).await
}

async fn open_to(
    t: &Target,
    server: Server,
    from: Ipv4Addr,
    rcvbuf: Option<u32>,
) -> Result<(TcpStream, String), String> {
    let socket = TcpSocket::new_v4().map_err(|e| io_kind(&e))?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .map_err(|e| io_kind(&e))?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).map_err(|e| io_kind(&e))?;
    }
    match tokio::time::timeout(t.timeout, socket.connect(server.addr)).await {
        Ok(Ok(s)) => Ok((s, server.authority)),
        Ok(Err(e)) => Err(io_kind(&e)),
        Err(_) => Err("error_connect_timeout".into()),
    }
}

pub(super) fn upgrade_request(path: &str, authority: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: herald-bench-hostile\r\n\r\n"
    )
}

/// Writes `request` and reads the answer: up to the end of its head, or with `to_end` until
/// the server closes (or `wait` passes with the head in). The status and the bytes read.
pub(super) async fn exchange(
    s: &mut TcpStream,
    request: &[u8],
    wait: Duration,
    to_end: bool,
) -> Result<(u16, Vec<u8>), String> {
    s.write_all(request).await.map_err(|e| io_kind(&e))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_done = buf.windows(4).any(|w| w == b"\r\n\r\n");
        if (head_done && !to_end) || buf.len() > MAX_ANSWER {
            break;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if buf.is_empty() => return Err(io_kind(&e)),
            Ok(Err(_)) => break,
            Err(_) if head_done => break,
            Err(_) if buf.is_empty() => return Err("no_answer".into()),
            Err(_) => return Err("partial_answer".into()),
        }
    }
    if buf.is_empty() {
        return Err("closed_without_answer".into());
    }
    let status = String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad_answer".to_owned())?;
    Ok((status, buf))
}

/// Reads (and drops) what comes until the server closes the connection: how long that took
/// (`None` after [`HOLD_LIMIT`]) and the first bytes received.
pub(super) async fn until_closed(s: &mut TcpStream) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + HOLD_LIMIT;
    let mut first = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (None, first),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(started.elapsed()), first),
            Ok(Ok(n)) => {
                if first.len() < 256 {
                    first.extend_from_slice(&chunk[..n.min(256 - first.len())]);
                }
            }
        }
    }
}

pub(super) fn sid_in(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let (_, rest) = text.split_once("\"sid\":\"")?;
    rest.split('"').next().map(str::to_owned)
}

/// Reads everything the server sent a zombie: `dropped_close_<code>` when the stream holds a
/// close frame, `dropped_eof` or `dropped_error_*` when it ends without one, `not_dropped`
/// when it is still open after [`DRAIN_WAIT`]. `buf` holds what was read with the upgrade.
pub(super) async fn drain(s: &mut TcpStream, mut buf: BytesMut) -> String {
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    loop {
        loop {
            match client::parse(&mut buf) {
                Ok(Some((_, OpCode::Close, payload))) => {
                    return format!(
                        "dropped_close_{}",
                        client::close_code(payload.as_deref())
                            .map_or("without_code".into(), |c| c.to_string())
                    )
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return "protocol_error".into(),
            }
        }
        buf.reserve(64 * 1024);
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Err(_) => return "not_dropped".into(),
            Ok(Ok(0)) => return "dropped_eof".into(),
            Ok(Err(e)) => return format!("dropped_{}", io_kind(&e)),
            Ok(Ok(_)) => {}
        }
    }
}
