//! The WebSocket transport after the HTTP upgrade, on plain TCP: upgraded connections served
//! without actix-http's per-connection buffers.
//!
//! actix-http's HTTP/1 dispatcher keeps an 8 KiB read buffer and a write buffer for the life
//! of a connection, copies every outgoing frame into the latter and keeps its capacity (up to
//! 128 KiB) after a large frame such as a `join` ack listing a room's members. For a server
//! holding tens of thousands of mostly idle WebSockets that is most of the memory per
//! connection (measured in docs/benchmarks.md). So the plain-TCP server takes upgrade requests
//! over through actix-http's upgrade hook: the request still goes through the same actix-web
//! `App` (routes, middleware and the WebSocket handlers are unchanged), but its body reads
//! the socket directly, and the response — the 101, then the frames of the session's
//! WebSocket context — is written straight from each frame's own buffer. Between frames
//! nothing is buffered for the connection. TLS connections (rustls) are served the same way.
//!
//! The transport also owns permessage-deflate (RFC 7692, actix-web has none): it answers the
//! client's offer on the 101 (`crate::ws_deflate`), inflates compressed messages before
//! actix's parser sees them, and shares an outbound queue with the session
//! (`crate::ws_wire::WireSink`) into which the session writes whole frames, compressed or not,
//! which are written out with vectored writes.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite, Encoder, Framed, ReadBuf};
use actix_http::{h1, Payload, Request};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::rt::time::{sleep, timeout, Sleep};
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpMessage as _;
use futures_util::stream::Stream;

use crate::metrics::METRICS;
use crate::ws_deflate::{negotiate, DeflateSettings};
use crate::ws_wire::{InboundFrames, WireSink};

/// Bytes read from the socket per read call, into a buffer on the stack.
const READ_CHUNK: usize = 8 * 1024;

/// Bytes handed to the session per turn before it yields, so a flooding client cannot keep
/// a worker thread to itself (actix-http's payload pauses at the same size).
const READ_TURN: usize = 32 * 1024;

/// How long a closing connection waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Bounds of the upgraded-connection transport (settings `outbox_bytes`, `write_timeout`,
/// `handshake_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Bytes of encoded frames queued for the socket before the session pauses (its rooms'
    /// frames are then caught up from the database once the peer reads again).
    pub outbox_bytes: usize,
    /// How long queued bytes may wait without the peer taking any of them.
    pub write_timeout: Duration,
    /// Deadline for everything before the 101 (the handler and its answer), and for the
    /// whole exchange of a plain HTTP request that arrived with upgrade headers.
    pub handshake_timeout: Duration,
    /// permessage-deflate offered to clients.
    pub deflate: DeflateSettings,
}

/// Most queued frames handed to one vectored write.
const WRITE_BATCH: usize = 64;

/// Requests that may switch protocols: GETs of the WebSocket routes. Anything else that
/// arrives with `Upgrade` headers is served as the plain HTTP request it is.
fn is_upgrade_route(req: &Request) -> bool {
    if req.method() != actix_web::http::Method::GET {
        return false;
    }
    match req.path() {
        "/v1/ws" | "/v1/ws/echo" | "/ws/notifications/" | "/ws/notifications" => true,
        "/socket.io/" => req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "transport=websocket")),
        _ => false,
    }
}

/// Serves one request that came with `Upgrade` headers: runs it through `app` with the socket
/// as its body, writes the response head, then the response body as it comes (raw WebSocket
/// frames after a 101), and closes the connection politely. Requests on routes that do not
/// upgrade are served as plain HTTP: their body is their `Content-Length`, and the whole
/// exchange has the handshake deadline.
pub async fn serve_upgrade<S, B, T>(
    app: Rc<S>,
    req: Request,
    framed: Framed<T, h1::Codec>,
    limits: TransportLimits,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let parts = framed.into_parts();
    // Shared by the session's reader (the request body) and the writer below; each borrow
    // lasts one poll call, and the two are never polled inside each other.
    let io = Rc::new(RefCell::new(parts.io));
    // Whatever the client sent right after its request head (frames may follow at once).
    let early = parts.read_buf.freeze();
    drop(parts.write_buf);
    let served = if is_upgrade_route(&req) {
        respond(app, req, io.clone(), parts.codec, early, None, limits).await
    } else {
        match plain_body_length(&req) {
            Ok(len) => {
                let exchange = respond(app, req, io.clone(), parts.codec, early, Some(len), limits);
                timeout(limits.handshake_timeout, exchange)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            }
            Err(status) => refuse(&io, parts.codec, status, limits).await,
        }
    };
    close(&io).await;
    served
}

/// The body length of a plain request, or the status refusing it: a body with upgrade
/// headers must say its length (no chunked bodies on this path).
fn plain_body_length(req: &Request) -> Result<usize, StatusCode> {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Err(StatusCode::LENGTH_REQUIRED);
    }
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(StatusCode::BAD_REQUEST),
    }
}

/// Answers `status` with an empty body and closes.
async fn refuse<T: AsyncWrite + Unpin>(
    io: &RefCell<T>,
    mut codec: h1::Codec,
    status: StatusCode,
    limits: TransportLimits,
) -> io::Result<()> {
    let mut res = actix_http::Response::with_body(status, BoxBody::new(()));
    res.head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    let (head, body) = res.into_parts();
    let mut out = BytesMut::new();
    codec.encode(actix_http::h1::Message::Item((head, body.size())), &mut out)?;
    write_within(io, &out, limits.write_timeout).await
}

async fn respond<S, B, T>(
    app: Rc<S>,
    req: Request,
    io: Rc<RefCell<T>>,
    mut codec: h1::Codec,
    early: Bytes,
    body_length: Option<usize>,
    limits: TransportLimits,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut early = early;
    if let Some(len) = body_length {
        // A plain request's body ends at its length; whatever follows is not read.
        early.truncate(len);
    }
    // permessage-deflate: answered on the 101 only if the handler attached a `Wire`.
    let negotiated = match body_length {
        None => negotiate(
            req.headers()
                .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                .filter_map(|v| v.to_str().ok()),
            &limits.deflate,
        ),
        Some(_) => None,
    };
    let sink = WireSink::new(negotiated);
    let reader = SocketReader {
        io: io.clone(),
        remaining: body_length.map(|len| len - early.len()),
        early: (!early.is_empty()).then_some(early),
        turn: 0,
        done: body_length == Some(0),
        inbound: negotiated.map(|_| Box::new(InboundFrames::new(sink.clone()))),
    };
    let payload: actix_http::BoxedPayloadStream = Box::pin(reader);
    let (req, _) = req.replace_payload(Payload::Stream { payload });
    if body_length.is_none() {
        req.extensions_mut().insert(sink.clone());
    }
    // Nothing is authenticated before the handler answers: it gets the handshake deadline.
    let res = match timeout(limits.handshake_timeout, app.call(req)).await {
        Ok(Ok(res)) => res.map_into_boxed_body().into(),
        Ok(Err(e)) => e.as_response_error().error_response().into(),
        Err(_) => {
            METRICS.handshake_timeouts.inc();
            return Err(io::ErrorKind::TimedOut.into());
        }
    };
    let res: actix_http::Response<BoxBody> = res;
    let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS && body_length.is_none();
    let (mut head, body) = res.into_parts();
    if upgraded {
        if let Some(value) = sink.agreed_extension() {
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                head.headers_mut()
                    .insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
    }
    if !upgraded {
        // A refused upgrade ends the connection; say so, or a client would reuse it.
        head.head_mut()
            .set_connection_type(actix_http::ConnectionType::Close);
    }
    let mut out = BytesMut::new();
    codec.encode(actix_http::h1::Message::Item((head, body.size())), &mut out)?;
    write_within(&io, &out, limits.write_timeout).await?;
    if upgraded {
        // The head's buffer would otherwise live as long as the connection (0.4 KiB each).
        drop(out);
        return pump(&io, body, &sink, limits).await;
    }
    let mut body = Box::pin(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
        out.clear();
        codec.encode(actix_http::h1::Message::Chunk(Some(chunk)), &mut out)?;
        write_within(&io, &out, limits.write_timeout).await?;
    }
    out.clear();
    codec.encode(actix_http::h1::Message::Chunk(None), &mut out)?;
    write_within(&io, &out, limits.write_timeout).await
}

/// Moves the frames of an upgraded connection's session to the socket. What the session
/// produces waits in a queue bounded by `outbox_bytes`; past the bound the session is no
/// longer polled (it pauses: its rooms' frames are dropped from its mailbox and caught up
/// from the database once the peer reads again, see `crate::stream`). Queued bytes that the
/// peer takes none of for `write_timeout` end the connection.
async fn pump<T: AsyncWrite + Unpin>(
    io: &RefCell<T>,
    body: BoxBody,
    sink: &WireSink,
    limits: TransportLimits,
) -> io::Result<()> {
    let mut body = Some(Box::pin(body));
    // Armed only while bytes wait for the peer: an idle connection holds no timer.
    let mut deadline: Option<Pin<Box<Sleep>>> = None;
    // Bytes handed to the stream since its last flush (TLS buffers records until flushed).
    let mut unflushed = false;
    let vectored = io.borrow().is_write_vectored();
    poll_fn(|cx| {
        let mut wrote = false;
        loop {
            let mut paused = false;
            loop {
                // One chunk alone may exceed the bound (a large reply); then the session waits.
                if sink.borrow_mut().bytes > limits.outbox_bytes {
                    paused = true;
                    break;
                }
                let Some(b) = body.as_mut() else { break };
                // The session runs inside this poll and queues its data frames on the sink;
                // what its context wrote (control frames) follows them.
                match b.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => sink.borrow_mut().push(chunk),
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(io::Error::other(e.to_string())))
                    }
                    Poll::Ready(None) => body = None,
                    Poll::Pending => break,
                }
            }
            let mut out = sink.borrow_mut();
            let before = out.bytes;
            while !out.frames.is_empty() {
                let written = if vectored && out.frames.len() > 1 {
                    let mut slices = [io::IoSlice::new(&[]); WRITE_BATCH];
                    let mut n = 0;
                    for (slot, b) in slices.iter_mut().zip(out.frames.iter()) {
                        *slot = io::IoSlice::new(b);
                        n += 1;
                    }
                    Pin::new(&mut *io.borrow_mut()).poll_write_vectored(cx, &slices[..n])
                } else {
                    let front = &out.frames[0];
                    Pin::new(&mut *io.borrow_mut()).poll_write(cx, front)
                };
                match written {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        wrote = true;
                        unflushed = true;
                        out.consume(n);
                    }
                }
            }
            let queued = out.bytes;
            drop(out);
            // The peer took enough for the paused session to go on: poll it again now (nothing
            // else would wake this task for it).
            if !(paused && queued < before && queued <= limits.outbox_bytes && body.is_some()) {
                break;
            }
        }
        let (empty, queued) = {
            let out = sink.borrow_mut();
            (out.frames.is_empty(), out.bytes)
        };
        if empty && unflushed {
            match Pin::new(&mut *io.borrow_mut()).poll_flush(cx) {
                Poll::Ready(Ok(())) => unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if empty && !unflushed {
            deadline = None;
            return if body.is_none() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let until = actix_web::rt::time::Instant::now() + limits.write_timeout;
        match deadline.as_mut() {
            Some(d) if wrote => d.as_mut().reset(until),
            Some(_) => {}
            None => deadline = Some(Box::pin(sleep(limits.write_timeout))),
        }
        if let Some(d) = deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                METRICS.write_timeouts.inc();
                log::info!(
                    "peer took nothing of {queued} queued bytes for {:?}; dropping it",
                    limits.write_timeout
                );
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
        }
        Poll::Pending
    })
    .await
}

/// Shuts our side down (TLS close_notify, then FIN), then reads and drops whatever the peer
/// still sends until it closes too (at most `LINGER`). Closing a socket with unread data
/// makes the kernel send a reset, which can destroy the close frame or error response still
/// on its way to the peer.
async fn close<T: AsyncRead + AsyncWrite + Unpin>(io: &RefCell<T>) {
    let shutdown = poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_shutdown(cx));
    if !matches!(timeout(LINGER, shutdown).await, Ok(Ok(()))) {
        return;
    }
    let drain = poll_fn(|cx| loop {
        let mut buf = [0u8; 1024];
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *io.borrow_mut()).poll_read(cx, &mut rb) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(()),
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
        }
    });
    let _ = timeout(LINGER, drain).await;
}

/// Writes and flushes all of `data`, or fails once the peer has taken none of it for
/// `limit`.
async fn write_within<T: AsyncWrite + Unpin>(
    io: &RefCell<T>,
    data: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let mut data = data;
    let write_all = poll_fn(|cx| {
        while !data.is_empty() {
            match Pin::new(&mut *io.borrow_mut()).poll_write(cx, data) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => data = &data[n..],
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Pin::new(&mut *io.borrow_mut()).poll_flush(cx)
    });
    timeout(limit, write_all).await.unwrap_or_else(|_| {
        METRICS.write_timeouts.inc();
        Err(io::ErrorKind::TimedOut.into())
    })
}

/// The request body of an upgraded connection: reads the socket when polled, into a
/// buffer that lives only for the read.
struct SocketReader<T> {
    io: Rc<RefCell<T>>,
    early: Option<Bytes>,
    /// Bytes left of a plain request's body (`None`: an upgraded connection, to its end).
    remaining: Option<usize>,
    /// Bytes handed out since the reader last yielded.
    turn: usize,
    done: bool,
    /// Inflates compressed messages (permessage-deflate negotiated).
    inbound: Option<Box<InboundFrames>>,
}

impl<T: AsyncRead + Unpin> Stream for SocketReader<T> {
    type Item = Result<Bytes, actix_http::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(b) = this.early.take() {
            this.turn += b.len();
            let b = match this.inbound.as_mut() {
                Some(i) => i.rewrite(b),
                None => b,
            };
            return Poll::Ready(Some(Ok(b)));
        }
        if this.done || this.remaining == Some(0) {
            return Poll::Ready(None);
        }
        if this.turn >= READ_TURN {
            this.turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Not zeroed: the session polls its stream at every wake-up (each delivered frame),
        // and clearing 8 KiB each time showed in profiles.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let want = this.remaining.map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let mut rb = ReadBuf::uninit(&mut buf[..want]);
        match Pin::new(&mut *this.io.borrow_mut()).poll_read(cx, &mut rb) {
            Poll::Pending => {
                this.turn = 0;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    this.done = true;
                    return Poll::Ready(None);
                }
                this.turn += n;
                if let Some(r) = this.remaining.as_mut() {
                    *r -= n;
                }
                let read = Bytes::copy_from_slice(rb.filled());
                Poll::Ready(Some(Ok(match this.inbound.as_mut() {
                    Some(i) => i.rewrite(read),
                    None => read,
                })))
            }
        }
    }
}
