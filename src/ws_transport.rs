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
//! nothing is buffered for the connection. TLS connections keep actix-http's dispatcher.

use std::future::poll_fn;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_codec::{Encoder, Framed};
use actix_http::{h1, Payload, Request};
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use futures_util::stream::Stream;

/// Bytes read from the socket per read call, into a buffer on the stack.
const READ_CHUNK: usize = 8 * 1024;

/// Bytes handed to the session per turn before it yields, so a flooding client cannot keep
/// a worker thread to itself (actix-http's payload pauses at the same size).
const READ_TURN: usize = 32 * 1024;

/// How long a closing connection waits for the peer to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves one upgrade request: runs it through `app` with the socket as its body, writes the
/// response head, then the response body as it comes (raw WebSocket frames after a 101),
/// and closes the connection politely.
pub async fn serve_upgrade<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let parts = framed.into_parts();
    let io = Rc::new(parts.io);
    // Whatever the client sent right after its request head (frames may follow at once).
    let early = parts.read_buf.freeze();
    drop(parts.write_buf);
    let served = respond(app, req, io.clone(), parts.codec, early).await;
    close(&io).await;
    served
}

async fn respond<S, B>(
    app: Rc<S>,
    req: Request,
    io: Rc<TcpStream>,
    mut codec: h1::Codec,
    early: Bytes,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let reader = SocketReader {
        io: io.clone(),
        early: (!early.is_empty()).then_some(early),
        turn: 0,
        done: false,
    };
    let payload: actix_http::BoxedPayloadStream = Box::pin(reader);
    let (req, _) = req.replace_payload(Payload::Stream { payload });
    let res = match app.call(req).await {
        Ok(res) => res.map_into_boxed_body().into(),
        Err(e) => e.as_response_error().error_response().into(),
    };
    let res: actix_http::Response<actix_web::body::BoxBody> = res;
    let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (mut head, body) = res.into_parts();
    if !upgraded {
        // A refused upgrade ends the connection; say so, or a client would reuse it.
        head.head_mut()
            .set_connection_type(actix_http::ConnectionType::Close);
    }
    let mut out = BytesMut::new();
    codec.encode(actix_http::h1::Message::Item((head, body.size())), &mut out)?;
    write_all(&io, &out).await?;
    let mut body = pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
        if upgraded {
            write_all(&io, &chunk).await?;
        } else {
            out.clear();
            codec.encode(actix_http::h1::Message::Chunk(Some(chunk)), &mut out)?;
            write_all(&io, &out).await?;
        }
    }
    if !upgraded {
        out.clear();
        codec.encode(actix_http::h1::Message::Chunk(None), &mut out)?;
        write_all(&io, &out).await?;
    }
    Ok(())
}

/// Sends FIN, then reads and drops whatever the peer still sends until it closes too (at
/// most `LINGER`). Closing a socket with unread data makes the kernel send a reset, which
/// can destroy the close frame or error response still on its way to the peer.
async fn close(io: &TcpStream) {
    let _ = socket2::SockRef::from(io).shutdown(std::net::Shutdown::Write);
    let drain = async {
        loop {
            if io.readable().await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            match io.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    };
    let _ = actix_web::rt::time::timeout(LINGER, drain).await;
}

async fn write_all(io: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        io.writable().await?;
        match io.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The request body of an upgraded connection: reads the socket when polled, into a
/// buffer that lives only for the read.
struct SocketReader {
    io: Rc<TcpStream>,
    early: Option<Bytes>,
    /// Bytes handed out since the reader last yielded.
    turn: usize,
    done: bool,
}

impl Stream for SocketReader {
    type Item = Result<Bytes, actix_http::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(b) = this.early.take() {
            this.turn += b.len();
            return Poll::Ready(Some(Ok(b)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if this.turn >= READ_TURN {
            this.turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            match this.io.poll_read_ready(cx) {
                Poll::Pending => {
                    this.turn = 0;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Ok(())) => {}
            }
            let mut buf = [0u8; READ_CHUNK];
            match this.io.try_read(&mut buf) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    this.turn += n;
                    return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf[..n]))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}
