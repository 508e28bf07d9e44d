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
//! [`connect_as`] performs the upgrade, waits for `connection_ack` and `sync`, then spawns a
//! driver task that owns the socket: it answers pings, writes queued frames (batched, one
//! write per batch), routes `ack` and `error` frames to the request that carries the same
//! numeric `ref`, and hands every other text frame to the connection's [`Handler`].
//! [`Conn`] is the cheap, cloneable handle.
//!
//! Everything runs on one single-threaded actix system, so shared state is `Rc`/`Cell`.
//! Network-level counters (open sockets, close codes sent by the server, protocol errors) are
//! kept in a thread-local [`NetStats`].
//!
//! Files: this one holds the connection handle and connecting; `pool.rs` the servers (one or
//! several nodes), the source addresses and the network counters; `handshake.rs` the
//! hand-written HTTP/1.1 upgrade; `socketio.rs` the Socket.IO dialect; `driver.rs` the task
//! that owns a socket (frames, pings, acks by `ref`, receive timestamps).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_http::ws::{OpCode, Parser};

use actix_web::rt::net::TcpSocket;
use actix_web::web::BytesMut;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

mod driver;
mod handshake;
mod pool;
mod socketio;
#[cfg(test)]
mod tests;

pub use driver::{close_code, parse};
use driver::{describe_close, drive, enable_rx_timestamps};
use handshake::upgrade;
use pool::bump;
pub use pool::{net, ClientPool, Server};
pub use socketio::Dialect;
/// Largest frame the client accepts (join acks and presence diffs of big rooms are large).
pub const MAX_FRAME: usize = 64 << 20;

/// Frames written per batch before a write.
const WRITE_BATCH: usize = 256;

/// How long a client-initiated close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Largest HTTP response head accepted during the upgrade.
const MAX_HEAD: usize = 16 * 1024;

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
    dialect: Dialect,
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

    /// `{"type":kind,"ref":N,"data":data}` (or its Socket.IO form) and its reply, within
    /// `timeout`.
    pub async fn request(
        &self,
        kind: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        let r = self.next_ref();
        let frame = self.shared.dialect.request_frame(kind, r, &data);
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

/// Connects `user` with `token` to server `server` (an index into `pool.servers`) in
/// `dialect`, waits for `connection_ack` and `sync`, and starts the driver. Frames that
/// arrive before `sync` go to the handler first. A Socket.IO connection waits for the `open`
/// packet, sends `CONNECT` with the token, and is ready at the `sync` event.
pub async fn connect_as(
    pool: &ClientPool,
    server: usize,
    user: &str,
    token: &str,
    timeout: Duration,
    handler: Handler,
    dialect: Dialect,
) -> Result<Conn, ConnectError> {
    connect_from(
        pool,
        server,
        pool.next_addr(),
        user,
        token,
        timeout,
        handler,
        dialect,
    )
    .await
}

/// [`connect_as`] from a given source address (`None`: the kernel picks).
#[allow(clippy::too_many_arguments)]
pub async fn connect_from(
    pool: &ClientPool,
    server: usize,
    local: Option<IpAddr>,
    user: &str,
    token: &str,
    timeout: Duration,
    mut handler: Handler,
    dialect: Dialect,
) -> Result<Conn, ConnectError> {
    let handshake = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(a) = local {
            socket.bind(SocketAddr::new(a, 0))?;
        }
        let target = pool.server(server);
        let mut stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        enable_rx_timestamps(&stream);
        let mut rbuf = upgrade(&mut stream, &target.authority, &dialect.path(token)).await?;
        let mut early: Vec<String> = Vec::new();
        loop {
            while let Some((fin, op, payload)) = parse(&mut rbuf)? {
                match op {
                    OpCode::Text if fin && dialect == Dialect::SocketIo => {
                        let text = String::from_utf8_lossy(payload.as_deref().unwrap_or(&[]));
                        let reply = if text.starts_with('0') {
                            Some(socketio::connect_packet(token))
                        } else if text == "2" {
                            Some("3".to_owned())
                        } else {
                            None
                        };
                        if let Some(reply) = reply {
                            let mut w = BytesMut::new();
                            Parser::write_message(&mut w, reply, OpCode::Text, true, true);
                            stream.write_all(&w).await?;
                        }
                        match socketio::handshake_step(&text) {
                            Ok(true) => return Ok((stream, rbuf, early)),
                            Ok(false) => {}
                            Err(refused) => return Err(ConnectError::Handshake(refused)),
                        }
                        if let socketio::Incoming::Event(native) = socketio::incoming(&text, 0) {
                            early.push(native);
                        }
                    }
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
        dialect,
    });
    net(|n| n.live.set(n.live.get() + 1));
    actix_web::rt::spawn(drive(stream, rbuf, rx, shared.clone(), handler));
    Ok(Conn {
        tx,
        shared,
        user: Rc::from(user),
    })
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
