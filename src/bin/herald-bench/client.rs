//! A small WebSocket client for Herald's native protocol.
//!
//! Sockets are plain tokio TCP streams with `TCP_NODELAY` set (as browsers do), bound to
//! loopback source addresses handed out round-robin (127.0.0.2, 127.0.0.3, ...) so tens of
//! thousands of sockets do not exhaust the ephemeral ports of one (source, destination)
//! pair. The HTTP/1.1 upgrade is written by hand and frames are parsed and written with
//! actix-http's WebSocket `Parser`. (awc cannot be used for the sockets: its connector offers
//! a local address but no way to set `TCP_NODELAY`, and Nagle's algorithm on the client
//! would hold pipelined frames back until the server's delayed ACK, up to 40 ms.) awc is
//! still used for the few REST calls.
//!
//! [`connect`] performs the upgrade, waits for `connection_ack` and `sync`, then spawns a
//! driver task that owns the socket: it answers pings, writes queued frames (batched, one
//! write per batch), routes `ack` and `error` frames to the request that carries the same
//! numeric `ref`, and hands every other text frame to the connection's [`Handler`].
//! [`Conn`] is the cheap, cloneable handle.
//!
//! Everything runs on one single-threaded actix system, so shared state is `Rc`/`Cell`.
//! Network-level counters (open sockets, close codes sent by the server, protocol errors) are
//! kept in a thread-local [`NetStats`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_http::ws::{OpCode, Parser};
use std::os::fd::AsRawFd;

use actix_web::rt::net::{TcpSocket, TcpStream};
use actix_web::web::BytesMut;
use serde_json::Value;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Largest frame the client accepts (join acks and presence diffs of big rooms are large).
pub const MAX_FRAME: usize = 64 << 20;

/// Frames written per batch before a write.
const WRITE_BATCH: usize = 256;

/// How long a client-initiated close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Largest HTTP response head accepted during the upgrade.
const MAX_HEAD: usize = 16 * 1024;

/// Network-level counters of this process (one thread).
#[derive(Default)]
pub struct NetStats {
    /// Sockets whose driver is running.
    pub live: Cell<usize>,
    /// Text frames received (all connections).
    pub frames_in: Cell<u64>,
    /// Bytes of text frames received.
    pub bytes_in: Cell<u64>,
    /// Close codes the server sent without being asked (e.g. 4008 slow consumer).
    pub server_closes: RefCell<BTreeMap<String, u64>>,
    /// Connections that ended on a protocol or I/O error, by kind.
    pub errors: RefCell<BTreeMap<String, u64>>,
}

thread_local! {
    static NET: NetStats = NetStats::default();
}

/// Runs `f` with this thread's network counters.
pub fn net<R>(f: impl FnOnce(&NetStats) -> R) -> R {
    NET.with(f)
}

fn bump(map: &RefCell<BTreeMap<String, u64>>, key: String) {
    *map.borrow_mut().entry(key).or_default() += 1;
}

/// Where and how sockets connect: the server address, the source addresses (round-robin)
/// and an awc client for REST calls.
pub struct ClientPool {
    pub server: SocketAddr,
    /// `host:port` for the `Host` header.
    pub authority: String,
    pub addrs: Vec<Option<IpAddr>>,
    next: Cell<usize>,
    http: awc::Client,
}

impl ClientPool {
    /// `addrs` empty: let the kernel choose the source address.
    pub fn new(
        server: SocketAddr,
        authority: String,
        addrs: Vec<IpAddr>,
        timeout: Duration,
    ) -> Self {
        let addrs: Vec<Option<IpAddr>> = if addrs.is_empty() {
            vec![None]
        } else {
            addrs.into_iter().map(Some).collect()
        };
        let http = awc::Client::builder()
            .connector(awc::Connector::new().limit(256).timeout(timeout))
            .timeout(timeout)
            .finish();
        ClientPool {
            server,
            authority,
            addrs,
            next: Cell::new(0),
            http,
        }
    }

    /// The next source address.
    fn next_addr(&self) -> Option<IpAddr> {
        let i = self.next.get();
        self.next.set((i + 1) % self.addrs.len());
        self.addrs[i]
    }

    /// The awc client for REST calls.
    pub fn http(&self) -> &awc::Client {
        &self.http
    }
}

/// What a connection hands to its handler.
pub enum Event<'a> {
    /// A server text frame that is not the reply to one of our requests, and when it reached
    /// the socket (kernel receive timestamp, Unix nanoseconds; `None` if unavailable).
    Text(&'a str, Option<u64>),
    /// The connection ended (the last event).
    Closed(&'a CloseInfo),
}

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct CloseInfo {
    /// True when we asked for the close.
    pub by_us: bool,
    /// The server's close code, if it sent one.
    pub code: Option<u16>,
    pub reason: String,
    /// A protocol or I/O error that ended the connection.
    pub error: Option<String>,
}

/// Called for each server event of one connection.
pub type Handler = Box<dyn FnMut(Event<'_>)>;

/// A handler that ignores everything.
pub fn ignore() -> Handler {
    Box::new(|_| {})
}

/// The reply to a request.
#[derive(Debug)]
pub enum Reply {
    /// `data`, and when the ack reached the socket (Unix nanoseconds).
    Ack(Value, u64),
    Error {
        code: String,
        message: String,
    },
}

/// Why a request got no reply.
#[derive(Debug)]
pub enum RequestError {
    Timeout,
    /// The connection closed before the reply.
    Closed,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Timeout => f.write_str("timeout"),
            RequestError::Closed => f.write_str("connection closed"),
        }
    }
}

/// Why a connection could not be established.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    /// The upgrade was answered with this HTTP status (401: bad token).
    Status(u16),
    Io(String),
    /// The server's answer to the upgrade was not understood.
    Handshake(String),
    Closed(String),
}

impl ConnectError {
    /// A short label for counting failures by kind.
    pub fn kind(&self) -> String {
        match self {
            ConnectError::Timeout => "timeout".into(),
            ConnectError::Status(s) => format!("http_{s}"),
            ConnectError::Io(e) => {
                let e = e.to_ascii_lowercase();
                if e.contains("refused") {
                    "refused".into()
                } else if e.contains("reset") {
                    "reset".into()
                } else if e.contains("address") {
                    "address".into()
                } else if e.contains("too many open files") {
                    "emfile".into()
                } else {
                    "io_error".into()
                }
            }
            ConnectError::Handshake(_) => "bad_handshake".into(),
            ConnectError::Closed(_) => "closed_during_handshake".into(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("timed out"),
            ConnectError::Status(s) => write!(f, "HTTP status {s}"),
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Handshake(e) => write!(f, "bad upgrade response: {e}"),
            ConnectError::Closed(e) => write!(f, "closed during handshake: {e}"),
        }
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(e: std::io::Error) -> Self {
        ConnectError::Io(e.to_string())
    }
}

enum Cmd {
    Text(String, Option<Stamp>),
    Close,
}

/// Asks the driver to write the send time into a frame just before it goes to the socket:
/// the 20 ASCII digits at `offset` are replaced by the Unix time in nanoseconds, which is
/// also stored in `at`.
pub struct Stamp {
    pub offset: usize,
    pub at: Rc<Cell<u64>>,
}

/// Width of the send-time placeholder a [`Stamp`] fills in.
pub const STAMP_DIGITS: usize = 20;

/// State shared by a connection's handle and its driver.
struct Shared {
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_ref: Cell<u64>,
    open: Cell<bool>,
}

/// A handle to an open connection.
#[derive(Clone)]
pub struct Conn {
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Rc<Shared>,
    pub user: Rc<str>,
}

impl Conn {
    pub fn is_open(&self) -> bool {
        self.shared.open.get()
    }

    /// A fresh request reference.
    pub fn next_ref(&self) -> u64 {
        let r = self.shared.next_ref.get() + 1;
        self.shared.next_ref.set(r);
        r
    }

    /// Queues a frame whose `ref` is `reference`; the receiver gets the reply. With a
    /// `stamp`, the send time is written into the frame as it goes out.
    pub fn request_raw(
        &self,
        reference: u64,
        frame: String,
        stamp: Option<Stamp>,
    ) -> Result<oneshot::Receiver<Reply>, RequestError> {
        if !self.is_open() {
            return Err(RequestError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.borrow_mut().insert(reference, tx);
        if self.tx.send(Cmd::Text(frame, stamp)).is_err() {
            self.shared.pending.borrow_mut().remove(&reference);
            return Err(RequestError::Closed);
        }
        Ok(rx)
    }

    /// Queues a frame without waiting for a reply: its `ack` or `error`, if any, goes to the
    /// handler. Returns false when the connection is closed.
    pub fn send_raw(&self, frame: String) -> bool {
        self.is_open() && self.tx.send(Cmd::Text(frame, None)).is_ok()
    }

    /// Drops the bookkeeping of a request whose reply we stopped waiting for.
    pub fn forget(&self, reference: u64) {
        self.shared.pending.borrow_mut().remove(&reference);
    }

    /// Requests in flight on this connection.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.borrow().len()
    }

    /// `{"type":kind,"ref":N,"data":data}` and its reply, within `timeout`.
    pub async fn request(
        &self,
        kind: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        let r = self.next_ref();
        let frame = serde_json::json!({"type": kind, "ref": r, "data": data}).to_string();
        let rx = self.request_raw(r, frame, None)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RequestError::Closed),
            Err(_) => {
                self.forget(r);
                Err(RequestError::Timeout)
            }
        }
    }

    /// Asks the driver to close the connection (close frame, then socket).
    pub fn close(&self) {
        let _ = self.tx.send(Cmd::Close);
    }
}

/// Connects `user` with `token`, waits for `connection_ack` and `sync`, and starts the driver.
/// Frames that arrive before `sync` go to the handler first.
pub async fn connect(
    pool: &ClientPool,
    user: &str,
    token: &str,
    timeout: Duration,
    handler: Handler,
) -> Result<Conn, ConnectError> {
    connect_from(pool, pool.next_addr(), user, token, timeout, handler).await
}

/// [`connect`] from a given source address (`None`: the kernel picks).
pub async fn connect_from(
    pool: &ClientPool,
    local: Option<IpAddr>,
    user: &str,
    token: &str,
    timeout: Duration,
    mut handler: Handler,
) -> Result<Conn, ConnectError> {
    let handshake = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(a) = local {
            socket.bind(SocketAddr::new(a, 0))?;
        }
        let mut stream = socket.connect(pool.server).await?;
        stream.set_nodelay(true)?;
        enable_rx_timestamps(&stream);
        let mut rbuf = upgrade(&mut stream, &pool.authority, token).await?;
        let mut early: Vec<String> = Vec::new();
        loop {
            while let Some((fin, op, payload)) = parse(&mut rbuf)? {
                match op {
                    OpCode::Text if fin => {
                        let text =
                            String::from_utf8_lossy(payload.as_deref().unwrap_or(&[])).into_owned();
                        if text.starts_with(r#"{"type":"sync""#) {
                            return Ok((stream, rbuf, early));
                        }
                        if !text.starts_with(r#"{"type":"connection_ack""#) {
                            early.push(text);
                        }
                    }
                    OpCode::Ping => {
                        let mut w = BytesMut::new();
                        Parser::write_message(
                            &mut w,
                            payload.as_deref().unwrap_or(&[]),
                            OpCode::Pong,
                            true,
                            true,
                        );
                        stream.write_all(&w).await?;
                    }
                    OpCode::Close => {
                        return Err(ConnectError::Closed(describe_close(payload.as_deref())));
                    }
                    _ => {}
                }
            }
            if stream.read_buf(&mut rbuf).await? == 0 {
                return Err(ConnectError::Closed("end of stream".into()));
            }
        }
    };
    let (stream, rbuf, early) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    for text in &early {
        handler(Event::Text(text, None));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Rc::new(Shared {
        pending: RefCell::new(HashMap::new()),
        next_ref: Cell::new(0),
        open: Cell::new(true),
    });
    net(|n| n.live.set(n.live.get() + 1));
    actix_web::rt::spawn(drive(stream, rbuf, rx, shared.clone(), handler));
    Ok(Conn {
        tx,
        shared,
        user: Rc::from(user),
    })
}

/// Writes the HTTP/1.1 upgrade request and reads the response head; returns the bytes read
/// after the head (the first frames).
async fn upgrade(
    stream: &mut TcpStream,
    authority: &str,
    token: &str,
) -> Result<BytesMut, ConnectError> {
    let key = base64(uuid::Uuid::new_v4().as_bytes());
    let request = format!(
        "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
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
fn base64(bytes: &[u8]) -> String {
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

/// One server frame from the read buffer, if complete: (fin, opcode, payload).
type RawFrame = (bool, OpCode, Option<BytesMut>);

pub fn parse(buf: &mut BytesMut) -> Result<Option<RawFrame>, ConnectError> {
    Parser::parse(buf, false, MAX_FRAME).map_err(|e| ConnectError::Io(format!("protocol: {e}")))
}

fn describe_close(payload: Option<&[u8]>) -> String {
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
async fn drive(
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
                    on_text(data, rx_ns, &shared, &mut handler)
                }
                OpCode::Text | OpCode::Binary => fragments = Some(data.to_vec()),
                OpCode::Continue => {
                    if let Some(f) = fragments.as_mut() {
                        f.extend_from_slice(data);
                    }
                    if fin {
                        if let Some(f) = fragments.take() {
                            on_text(&f, rx_ns, &shared, &mut handler);
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
fn enable_rx_timestamps(stream: &TcpStream) {
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

/// Routes replies to waiting requests; everything else goes to the handler.
fn on_text(bytes: &[u8], rx_ns: Option<u64>, shared: &Shared, handler: &mut Handler) {
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

/// Waits until every driver has ended, or `limit` passes; returns the sockets still open.
pub async fn wait_all_closed(limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let live = net(|n| n.live.get());
        if live == 0 || Instant::now() >= deadline {
            return live;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // The RFC 6455 example nonce.
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn close_codes() {
        assert_eq!(close_code(Some(&[0x0f, 0xa8, b'x'])), Some(4008));
        assert_eq!(close_code(Some(&[3])), None);
        assert_eq!(describe_close(None), "no close code");
    }
}
