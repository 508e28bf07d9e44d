//! The driver task that owns one client socket: it answers pings, writes queued frames in
//! batches, routes `ack` and `error` frames to the request with the same `ref`, hands other
//! text frames to the handler, and reads with kernel receive timestamps where available.

use std::rc::Rc;

use actix_http::ws::{OpCode, Parser};
use std::os::fd::AsRawFd;

use actix_web::rt::net::TcpStream;
use actix_web::web::BytesMut;
use serde_json::Value;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::socketio::{self, Incoming};
use super::{
    bump, net, CloseInfo, Cmd, ConnectError, Dialect, Event, Handler, Reply, Shared, CLOSE_WAIT,
    MAX_FRAME, STAMP_DIGITS, WRITE_BATCH,
};
/// One server frame from the read buffer, if complete: (fin, opcode, payload).
type RawFrame = (bool, OpCode, Option<BytesMut>);

pub fn parse(buf: &mut BytesMut) -> Result<Option<RawFrame>, ConnectError> {
    Parser::parse(buf, false, MAX_FRAME).map_err(|e| ConnectError::Io(format!("protocol: {e}")))
}

pub(super) fn describe_close(payload: Option<&[u8]>) -> String {
    match close_code(payload) {
        Some(code) => {
            let reason = payload.and_then(|p| p.get(2..)).unwrap_or(&[]);
            format!("{code} {}", String::from_utf8_lossy(reason))
        }
        None => "no close code".into(),
    }
}

pub fn close_code(payload: Option<&[u8]>) -> Option<u16> {
    let p = payload?;
    (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
}

/// Owns one socket until it closes.
pub(super) async fn drive(
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    shared: Rc<Shared>,
    mut handler: Handler,
) {
    let mut info = CloseInfo {
        by_us: false,
        code: None,
        reason: String::new(),
        error: None,
    };
    let mut wbuf = BytesMut::new();
    let mut fragments: Option<Vec<u8>> = None;
    // Kernel receive time of the bytes read last.
    let mut rx_ns: Option<u64> = None;
    'run: loop {
        // Frames already buffered (the handshake may have read some).
        loop {
            let frame = match parse(&mut rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    info.error = Some(e.to_string());
                    break 'run;
                }
            };
            let (fin, op, payload) = frame;
            let data = payload.as_deref().unwrap_or(&[]);
            match op {
                OpCode::Text if fin && fragments.is_none() => {
                    on_text(data, rx_ns, &shared, &mut handler, &mut wbuf)
                }
                OpCode::Text | OpCode::Binary => fragments = Some(data.to_vec()),
                OpCode::Continue => {
                    if let Some(f) = fragments.as_mut() {
                        f.extend_from_slice(data);
                    }
                    if fin {
                        if let Some(f) = fragments.take() {
                            on_text(&f, rx_ns, &shared, &mut handler, &mut wbuf);
                        }
                    }
                }
                OpCode::Ping => Parser::write_message(&mut wbuf, data, OpCode::Pong, true, true),
                OpCode::Close => {
                    info.code = close_code(Some(data));
                    info.reason = describe_close(Some(data));
                    Parser::write_message(
                        &mut wbuf,
                        data.get(..2).unwrap_or(&[]),
                        OpCode::Close,
                        true,
                        true,
                    );
                    let _ = stream.write_all(&wbuf).await;
                    break 'run;
                }
                _ => {}
            }
        }
        if !wbuf.is_empty() {
            if let Err(e) = stream.write_all(&wbuf).await {
                info.error = Some(format!("write: {e}"));
                break 'run;
            }
            wbuf.clear();
        }
        tokio::select! {
            cmd = rx.recv() => {
                let mut cmd = cmd;
                let mut batch = 0;
                loop {
                    match cmd {
                        Some(Cmd::Text(t, stamp)) => {
                            let mut bytes = t.into_bytes();
                            if let Some(s) = stamp {
                                let now = crate::stats::unix_nanos();
                                let digits = format!("{now:0w$}", w = STAMP_DIGITS);
                                if let Some(slot) = bytes.get_mut(s.offset..s.offset + STAMP_DIGITS) {
                                    slot.copy_from_slice(&digits.as_bytes()[..STAMP_DIGITS]);
                                }
                                s.at.set(now);
                            }
                            Parser::write_message(&mut wbuf, &bytes, OpCode::Text, true, true);
                            batch += 1;
                        }
                        Some(Cmd::Close) | None => {
                            info.by_us = true;
                            Parser::write_message(&mut wbuf, 1000u16.to_be_bytes(), OpCode::Close, true, true);
                            if stream.write_all(&wbuf).await.is_ok() {
                                // Read (and drop) until the server's close frame, briefly.
                                let wait = async {
                                    loop {
                                        while let Ok(Some((_, op, p))) = parse(&mut rbuf) {
                                            if op == OpCode::Close {
                                                return close_code(p.as_deref());
                                            }
                                        }
                                        match stream.read_buf(&mut rbuf).await {
                                            Ok(0) | Err(_) => return None,
                                            Ok(_) => {}
                                        }
                                    }
                                };
                                info.code = tokio::time::timeout(CLOSE_WAIT, wait).await.ok().flatten();
                            }
                            break 'run;
                        }
                    }
                    if batch >= WRITE_BATCH {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(c) => cmd = Some(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => cmd = None,
                    }
                }
            }
            ready = stream.readable() => {
                if let Err(e) = ready {
                    info.error = Some(format!("read: {e}"));
                    break 'run;
                }
                match stream.try_io(Interest::READABLE, || recv(&stream, &mut rbuf)) {
                    Ok((0, _)) => {
                        info.error = Some("end of stream without close frame".into());
                        break 'run;
                    }
                    Ok((_, ts)) => rx_ns = ts.or_else(|| Some(crate::stats::unix_nanos())),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        info.error = Some(format!("read: {e}"));
                        break 'run;
                    }
                }
            }
        }
    }
    let _ = stream.shutdown().await;
    shared.open.set(false);
    // Dropping the senders wakes every waiting request with "closed".
    shared.pending.borrow_mut().clear();
    net(|n| {
        n.live.set(n.live.get().saturating_sub(1));
        if !info.by_us {
            if let Some(code) = info.code {
                bump(&n.server_closes, code.to_string());
            } else if let Some(e) = &info.error {
                bump(&n.errors, error_kind(e));
            }
        }
    });
    handler(Event::Closed(&info));
}

/// Asks the kernel to timestamp received data (`SO_TIMESTAMPNS`), so delivery latency can be
/// measured to the moment bytes reached the socket, without the bench's own scheduling delay.
pub(super) fn enable_rx_timestamps(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// One `recvmsg` into the spare capacity of `buf`: (bytes read, kernel receive timestamp of
/// the last segment read, Unix nanoseconds).
fn recv(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<(usize, Option<u64>)> {
    buf.reserve(64 * 1024);
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: iov points into `buf`'s spare capacity and `control` outlives the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    let mut ts = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled in, bounded by
    // msg_controllen; the timestamp is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts = Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, ts))
}

fn error_kind(e: &str) -> String {
    let l = e.to_ascii_lowercase();
    if l.contains("reset") {
        "connection_reset".into()
    } else if l.contains("end of stream") {
        "eof_without_close".into()
    } else if l.contains("overflow") || l.contains("too big") {
        "frame_too_big".into()
    } else {
        "io_or_protocol".into()
    }
}

/// Routes replies to waiting requests; everything else goes to the handler. Socket.IO
/// frames are translated first (and Engine.IO pings answered into `wbuf`).
fn on_text(
    bytes: &[u8],
    rx_ns: Option<u64>,
    shared: &Shared,
    handler: &mut Handler,
    wbuf: &mut BytesMut,
) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            net(|n| bump(&n.errors, "invalid_utf8".into()));
            return;
        }
    };
    net(|n| {
        n.frames_in.set(n.frames_in.get() + 1);
        n.bytes_in.set(n.bytes_in.get() + bytes.len() as u64);
    });
    if shared.dialect == Dialect::SocketIo {
        let at = rx_ns.unwrap_or_else(crate::stats::unix_nanos);
        match socketio::incoming(text, at) {
            Incoming::Ping => Parser::write_message(wbuf, "3", OpCode::Text, true, true),
            Incoming::Reply(r, reply) => {
                let waiter = shared.pending.borrow_mut().remove(&r);
                if let Some(tx) = waiter {
                    let _ = tx.send(reply);
                }
            }
            Incoming::Event(native) => handler(Event::Text(&native, rx_ns)),
            // The server closes the WebSocket right after; the close frame ends the driver.
            Incoming::Disconnect | Incoming::Other => {}
        }
        return;
    }
    if text.starts_with(r#"{"type":"ack""#) || text.starts_with(r#"{"type":"error""#) {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            if let Some(r) = v.get("ref").and_then(Value::as_u64) {
                let waiter = shared.pending.borrow_mut().remove(&r);
                if let Some(tx) = waiter {
                    let reply = if v["type"] == "ack" {
                        let at = rx_ns.unwrap_or_else(crate::stats::unix_nanos);
                        Reply::Ack(v.get("data").cloned().unwrap_or(Value::Null), at)
                    } else {
                        Reply::Error {
                            code: v["code"].as_str().unwrap_or("?").to_owned(),
                            message: v["error"].as_str().unwrap_or("").to_owned(),
                        }
                    };
                    let _ = tx.send(reply);
                    return;
                }
            }
        }
    }
    handler(Event::Text(text, rx_ns));
}
