//! The frames of one upgraded WebSocket between its session actor and the socket: the
//! outbound queue both share ([`WireSink`]), the session's writer ([`Wire`]), and the
//! inbound rewriting that inflates compressed messages ([`InboundFrames`]).
//!
//! Sessions write their data frames through [`Wire`] rather than through actix-web-actors'
//! codec: a frame shared by many recipients is written as the same bytes to every socket
//! (header and payload built once, see `EncodedFrame::wire`), so a delivery is a reference
//! count, not a copy, and with permessage-deflate the compressed form is made once per
//! parameter set and shared the same way. The transport (`ws_transport`) writes the queue
//! with vectored writes. Control frames (ping, pong, close) still go through the actor's
//! context: the transport appends what the context produced after what the session queued
//! during the same turn, so a close always follows the data written before it.
//!
//! Inbound, actix's parser refuses reserved bits; when permessage-deflate is on, compressed
//! messages are inflated here, before the parser, and handed on as plain (zero-masked)
//! frames. A message that inflates past the endpoint's message limit stops at the limit and
//! the connection is closed with 1009 (see [`Wire::verdict`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::OnceLock;

use actix::Actor;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest};
use actix_web_actors::ws;
use bytestring::ByteString;

use crate::protocol::{close_code, EncodedFrame};
use crate::socketio::Vocabulary;
use crate::ws_deflate::{compress_message, ContextDeflater, InflateError, Inflater, Negotiated};
use crate::wsframe::{FrameAssembler, Incoming};

const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const MASK: u8 = 0x80;

/// Longest server frame header (no mask).
pub const MAX_HEADER: usize = 10;

/// Writes the header of an unmasked final frame into the end of `buf` (which must hold
/// [`MAX_HEADER`] bytes) and returns where it starts: the payload can then follow it in the
/// same buffer.
pub fn header_before(
    buf: &mut [u8; MAX_HEADER],
    opcode: u8,
    compressed: bool,
    len: usize,
) -> usize {
    header_with(buf, FIN | if compressed { RSV1 } else { 0 } | opcode, len)
}

/// [`header_before`] with the first byte given whole (FIN, RSV1 and opcode). The length
/// byte is always at the returned start + 1, where a mask bit can be set.
fn header_with(buf: &mut [u8; MAX_HEADER], first: u8, len: usize) -> usize {
    let start = if len < 126 {
        buf[9] = len as u8;
        8
    } else if len <= u16::MAX as usize {
        buf[8..10].copy_from_slice(&(len as u16).to_be_bytes());
        buf[7] = 126;
        6
    } else {
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        buf[1] = 127;
        0
    };
    buf[start] = first;
    start
}

/// An unmasked final frame: header and payload in one buffer.
pub fn frame(opcode: u8, compressed: bool, payload: &[u8]) -> Bytes {
    let mut head = [0u8; MAX_HEADER];
    let start = header_before(&mut head, opcode, compressed, payload.len());
    let mut out = BytesMut::with_capacity(MAX_HEADER - start + payload.len());
    out.extend_from_slice(&head[start..]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A text message as written to sockets, shared by every recipient of a broadcast: the
/// plain frame, and its compressed frames (no context takeover), made on first use for a
/// full window and for clients that asked for a smaller one (compressed with the smallest
/// window, valid for them all): a broadcast is compressed at most once per window class.
#[derive(Debug, Default)]
pub struct SharedText {
    /// Header, then the text.
    frame: Bytes,
    /// Where the text starts in `frame`.
    at: usize,
    deflated: [OnceLock<Bytes>; 2],
}

impl SharedText {
    /// From a whole frame whose header is `at` bytes long.
    pub fn framed(frame: Bytes, at: usize) -> Self {
        SharedText {
            frame,
            at,
            deflated: Default::default(),
        }
    }

    pub fn new(text: &[u8]) -> Self {
        let frame = frame(OP_TEXT, false, text);
        let at = frame.len() - text.len();
        Self::framed(frame, at)
    }

    /// The text.
    pub fn text(&self) -> &[u8] {
        &self.frame[self.at..]
    }

    /// The frame for a connection with `deflate` (and no context of its own).
    fn for_connection(&self, deflate: Option<Negotiated>) -> Bytes {
        match deflate {
            Some(n) if self.text().len() >= n.threshold => {
                let (slot, bits) = if n.server_window_bits >= 15 {
                    (0, 15)
                } else {
                    (1, 9)
                };
                self.deflated[slot]
                    .get_or_init(|| {
                        frame(OP_TEXT, true, &compress_message(self.text(), bits, n.level))
                    })
                    .clone()
            }
            _ => self.frame.clone(),
        }
    }
}

/// Why the inbound side failed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

/// What the transport and the session of one connection share.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Encoded frames waiting for the socket, in order.
    pub frames: VecDeque<Bytes>,
    /// Their bytes (what the outbox bound counts).
    pub bytes: usize,
    /// permessage-deflate, when negotiated.
    deflate: Option<Negotiated>,
    /// The connection's own compression context (context takeover only).
    context: Option<Box<ContextDeflater>>,
    /// The endpoint's message size limit, set by its handler (what inflating stops at).
    max_message: usize,
    /// Set when the inbound side failed the connection.
    verdict: Option<Violation>,
}

impl Outbound {
    /// Appends an encoded frame (one of the session's, or what its context wrote).
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// The socket took `n` bytes from the front of the queue.
    pub fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.frames.front_mut() else {
                return;
            };
            if n < front.len() {
                let _ = front.split_to(n);
                return;
            }
            n -= front.len();
            self.frames.pop_front();
        }
        // A burst (a join's replies, a replay page) grows the queue; an idle connection
        // should not keep that capacity for the rest of its life.
        if self.frames.capacity() > 4 && self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }
}

/// The outbound queue of one upgraded connection, shared by its transport and its session
/// (same thread, same task: the session runs inside the transport's poll).
#[derive(Debug, Clone)]
pub struct WireSink(Rc<RefCell<Outbound>>);

impl WireSink {
    pub fn new(deflate: Option<Negotiated>) -> Self {
        let context = deflate
            .filter(|n| !n.server_no_context_takeover)
            .map(|n| Box::new(ContextDeflater::new(&n)));
        WireSink(Rc::new(RefCell::new(Outbound {
            deflate,
            context,
            ..Default::default()
        })))
    }

    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, Outbound> {
        self.0.borrow_mut()
    }

    /// The `Sec-WebSocket-Extensions` answer, if deflate was negotiated and the handler
    /// attached a [`Wire`] (otherwise it is called off: nothing would compress).
    pub fn agreed_extension(&self) -> Option<String> {
        let mut out = self.0.borrow_mut();
        if out.max_message == 0 {
            out.deflate = None;
            out.context = None;
        }
        let agreed = out.deflate.map(|n| n.header_value());
        if agreed.is_some() {
            crate::metrics::METRICS.ws_deflate_connections.inc();
        }
        agreed
    }

    fn deflate(&self) -> Option<Negotiated> {
        self.0.borrow().deflate
    }

    fn max_message(&self) -> usize {
        self.0.borrow().max_message
    }

    fn fail(&self, v: Violation) {
        self.0.borrow_mut().verdict = Some(v);
    }
}

/// How a session writes its data frames: through the connection's [`WireSink`] when the
/// transport gave one (every upgraded connection of the server), else through the actor's
/// context (actor tests, or a server assembled without `ws_transport`).
#[derive(Debug, Default)]
pub struct Wire {
    sink: Option<WireSink>,
}

impl Wire {
    /// The wire of the connection `req` upgrades; `max_message` is the endpoint's message
    /// size limit (the same as its codec's frame size).
    pub fn attach(req: &HttpRequest, max_message: usize) -> Wire {
        let sink = req.extensions().get::<WireSink>().cloned();
        if let Some(s) = &sink {
            s.0.borrow_mut().max_message = max_message;
        }
        Wire { sink }
    }

    /// Makes room in the outbound queue for `n` more frames in one allocation, rather than
    /// growing it frame by frame (an idle connection's queue keeps no capacity).
    pub fn reserve(&self, n: usize) {
        if let Some(sink) = &self.sink {
            sink.0.borrow_mut().frames.reserve(n);
        }
    }

    /// Whether messages are compressed on this connection.
    pub fn compressed(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.deflate().is_some())
    }

    /// Writes an encoded frame (shared with its other recipients, compressed at most once
    /// per window class).
    pub fn frame<A>(&self, ctx: &mut ws::WebsocketContext<A>, f: &EncodedFrame)
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        match &self.sink {
            None => ctx.text(f.native().clone()),
            Some(sink) => sink.0.borrow_mut().shared(f.wire()),
        }
    }

    /// Writes a Socket.IO event encoded once for all its recipients.
    pub fn sio_event<A>(&self, ctx: &mut ws::WebsocketContext<A>, f: &EncodedFrame, v: Vocabulary)
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        match &self.sink {
            None => ctx.text(crate::socketio::event_packet(f, v, None)),
            Some(sink) => sink.0.borrow_mut().shared(f.sio_wire(v)),
        }
    }

    /// Writes a text frame of this connection alone.
    pub fn text<A>(&self, ctx: &mut ws::WebsocketContext<A>, text: impl Into<ByteString>)
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        let text = text.into();
        match &self.sink {
            None => ctx.text(text),
            Some(sink) => sink.0.borrow_mut().message(OP_TEXT, text.as_bytes()),
        }
    }

    /// Writes a binary frame of this connection alone.
    pub fn binary<A>(&self, ctx: &mut ws::WebsocketContext<A>, data: Bytes)
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        match &self.sink {
            None => ctx.binary(data),
            Some(sink) => sink.0.borrow_mut().message(OP_BINARY, &data),
        }
    }

    /// Answers a ping, in order with the data frames written before it.
    pub fn pong<A>(&self, ctx: &mut ws::WebsocketContext<A>, payload: &[u8])
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        match &self.sink {
            None => ctx.pong(payload),
            Some(sink) => sink.0.borrow_mut().push(frame(OP_PONG, false, payload)),
        }
    }

    /// Writes the close frame, after every data frame written before it (the caller stops
    /// the actor).
    pub fn close<A>(&self, ctx: &mut ws::WebsocketContext<A>, reason: Option<ws::CloseReason>)
    where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        let Some(sink) = &self.sink else {
            return ctx.close(reason);
        };
        let mut payload = Vec::new();
        if let Some(r) = reason {
            payload.extend_from_slice(&u16::from(r.code).to_be_bytes());
            if let Some(d) = r.description {
                // A control frame's payload is at most 125 bytes; cut at a character boundary.
                let mut end = d.len().min(123);
                while !d.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&d.as_bytes()[..end]);
            }
        }
        sink.0.borrow_mut().push(frame(OP_CLOSE, false, &payload));
    }

    /// Why the inbound side failed the connection, if it did: what a protocol error from the
    /// parser really was.
    pub fn verdict(&self) -> Option<Violation> {
        self.sink.as_ref().and_then(|s| s.0.borrow().verdict)
    }

    /// What the client sent, assembled; a parser error caused by the inflater (a message
    /// inflating past the limit: 1009) is reported as what it was.
    pub fn read(
        &self,
        frames: &mut FrameAssembler,
        msg: Result<ws::Message, ws::ProtocolError>,
    ) -> Incoming {
        if msg.is_err() {
            if let Some(v) = self.verdict() {
                return Incoming::Violation {
                    code: v.code,
                    reason: v.reason,
                };
            }
        }
        frames.push(msg)
    }
}

impl Outbound {
    /// A message shared with other connections: its shared bytes, unless this connection
    /// compresses with a context of its own.
    fn shared(&mut self, t: &SharedText) {
        let bytes = match (self.deflate, self.context.as_mut()) {
            (Some(n), Some(c)) if t.text().len() >= n.threshold => {
                frame(OP_TEXT, true, &c.compress(t.text()))
            }
            (deflate, _) => t.for_connection(deflate),
        };
        self.push(bytes);
    }

    /// One message of this connection, compressed when negotiated and long enough.
    fn message(&mut self, opcode: u8, payload: &[u8]) {
        let bytes = match self.deflate {
            Some(n) if payload.len() >= n.threshold => {
                let z = match self.context.as_mut() {
                    Some(c) => c.compress(payload),
                    None => compress_message(payload, n.server_window_bits, n.level),
                };
                frame(opcode, true, &z)
            }
            _ => frame(opcode, false, payload),
        };
        self.push(bytes);
    }
}

/// A frame header read from the client.
#[derive(Debug, Clone, Copy)]
struct Head {
    first: u8,
    len: usize,
    /// Bytes of header (with the mask key).
    size: usize,
    mask: Option<[u8; 4]>,
}

/// Reads a header from the front of `b`, if it is all there. A length that does not fit is
/// reported as `usize::MAX` (refused downstream).
fn parse_head(b: &[u8]) -> Option<Head> {
    if b.len() < 2 {
        return None;
    }
    let (first, second) = (b[0], b[1]);
    let masked = second & MASK != 0;
    let (len, mut size) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?))
                .unwrap_or(usize::MAX),
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = b.get(size..size + 4)?.try_into().ok()?;
        size += 4;
        Some(m)
    } else {
        None
    };
    Some(Head {
        first,
        len,
        size,
        mask,
    })
}

#[derive(Debug)]
enum InState {
    /// Between frames.
    Head,
    /// Passing this many more payload bytes on unchanged.
    Passing(usize),
    /// The connection failed: everything after is dropped.
    Failed,
}

/// Rewrites what a client with permessage-deflate sends into what actix's parser reads:
/// compressed messages become plain ones, everything else passes unchanged (so actix still
/// judges every frame, including reserved bits where RFC 7692 does not allow them).
#[derive(Debug)]
pub struct InboundFrames {
    sink: WireSink,
    inflater: Option<Inflater>,
    pending: BytesMut,
    state: InState,
    /// Inside a fragmented data message: whether it is compressed.
    message: Option<bool>,
    /// The opcode of the compressed message whose first frame is still to be handed on.
    first_opcode: Option<u8>,
}

impl InboundFrames {
    pub fn new(sink: WireSink) -> Self {
        InboundFrames {
            sink,
            inflater: None,
            pending: BytesMut::new(),
            state: InState::Head,
            message: None,
            first_opcode: None,
        }
    }

    /// What the parser should read of `input` (possibly nothing yet).
    pub fn rewrite(&mut self, input: Bytes) -> Bytes {
        if matches!(self.state, InState::Failed) {
            return Bytes::new();
        }
        if self.sink.deflate().is_none() {
            return input; // not agreed after all
        }
        if self.pending.is_empty() {
            if let InState::Passing(n) = self.state {
                if input.len() <= n {
                    self.state = InState::Passing(n - input.len());
                    return input;
                }
            }
        }
        self.pending.extend_from_slice(&input);
        let mut out = BytesMut::new();
        loop {
            match self.state {
                InState::Failed => break,
                InState::Passing(n) => {
                    let take = n.min(self.pending.len());
                    out.extend_from_slice(&self.pending.split_to(take));
                    self.state = if take == n {
                        InState::Head
                    } else {
                        InState::Passing(n - take)
                    };
                    if take < n {
                        break;
                    }
                }
                InState::Head => {
                    let Some(head) = parse_head(&self.pending) else {
                        break;
                    };
                    if !self.compressed_frame(&head) {
                        out.extend_from_slice(&self.pending.split_to(head.size));
                        self.track(&head);
                        self.state = InState::Passing(head.len);
                        continue;
                    }
                    // A compressed frame is inflated whole; its compressed size is bounded
                    // by the message limit too.
                    if head.len > self.sink.max_message() {
                        self.fail(&mut out, InflateError::TooBig);
                        break;
                    }
                    if self.pending.len() < head.size + head.len {
                        self.pending
                            .reserve(head.size + head.len - self.pending.len());
                        break;
                    }
                    let _ = self.pending.split_to(head.size);
                    let mut payload = self.pending.split_to(head.len);
                    if let Some(m) = head.mask {
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= m[i % 4];
                        }
                    }
                    self.track(&head);
                    let last = head.first & FIN != 0;
                    if let Err(e) = self.inflate(&payload, last, &mut out) {
                        self.fail(&mut out, e);
                        break;
                    }
                }
            }
        }
        if self.pending.is_empty() {
            // No buffer kept while idle.
            self.pending = BytesMut::new();
        }
        out.freeze()
    }

    /// Whether `head` is a frame of a compressed message.
    fn compressed_frame(&mut self, head: &Head) -> bool {
        let opcode = head.first & 0x0f;
        match (opcode, self.message) {
            (OP_TEXT | OP_BINARY, None) if head.first & 0x70 == RSV1 => {
                self.first_opcode = Some(opcode);
                true
            }
            // A continuation of a compressed message carries no RSV1 of its own.
            (OP_CONTINUATION, Some(true)) if head.first & 0x70 == 0 => true,
            _ => false,
        }
    }

    /// Follows the data messages' fragmentation (control frames do not take part).
    fn track(&mut self, head: &Head) {
        let opcode = head.first & 0x0f;
        let fin = head.first & FIN != 0;
        match opcode {
            OP_TEXT | OP_BINARY if self.message.is_none() => {
                self.message = (!fin).then_some(head.first & RSV1 != 0)
            }
            OP_CONTINUATION if self.message.is_some() && fin => self.message = None,
            _ => {}
        }
    }

    fn inflate(
        &mut self,
        payload: &[u8],
        last: bool,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        let max = self.sink.max_message();
        let inflater = match self.inflater.as_mut() {
            Some(i) => i,
            None => {
                let Some(n) = self.sink.deflate() else {
                    return Err(InflateError::Corrupt);
                };
                self.inflater.insert(Inflater::new(&n, max))
            }
        };
        let mut plain = Vec::new();
        inflater.frame(payload, last, &mut plain)?;
        let opcode = self.first_opcode.take().unwrap_or(OP_CONTINUATION);
        // Masked with a zero key: actix's server parser requires the mask bit.
        let mut head = [0u8; MAX_HEADER];
        let start = header_with(&mut head, if last { FIN } else { 0 } | opcode, plain.len());
        head[start + 1] |= MASK;
        out.extend_from_slice(&head[start..]);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&plain);
        Ok(())
    }

    /// Fails the connection: the verdict says why, and a frame the parser refuses (reserved
    /// bits) makes the session read it.
    fn fail(&mut self, out: &mut BytesMut, e: InflateError) {
        let v = match e {
            InflateError::TooBig => Violation {
                code: close_code::TOO_BIG,
                reason: "message too big",
            },
            InflateError::Corrupt => Violation {
                code: close_code::INVALID_PAYLOAD,
                reason: "invalid compressed data",
            },
        };
        self.sink.fail(v);
        out.extend_from_slice(&[FIN | 0x30 | OP_TEXT, MASK, 0, 0, 0, 0]);
        self.state = InState::Failed;
        self.pending = BytesMut::new();
        self.inflater = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws_deflate::{negotiate, DeflateSettings};

    fn masked(first: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut v = vec![first];
        assert!(payload.len() < 126);
        v.push(MASK | payload.len() as u8);
        v.extend_from_slice(&key);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        v
    }

    fn sink(limit: usize) -> WireSink {
        let n = negotiate(["permessage-deflate"], &DeflateSettings::default());
        let s = WireSink::new(n);
        s.0.borrow_mut().max_message = limit;
        s
    }

    #[test]
    fn a_shared_text_is_compressed_once_per_window_class() {
        let t = SharedText::new("a broadcast to a thousand members ".repeat(20).as_bytes());
        let n = |bits| {
            let mut n = negotiate(["permessage-deflate"], &DeflateSettings::default()).unwrap();
            n.server_window_bits = bits;
            Some(n)
        };
        let a = t.for_connection(n(15));
        let b = t.for_connection(n(15));
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second recipient shares the first's bytes"
        );
        assert_eq!(a[0], FIN | RSV1 | OP_TEXT);
        let small = t.for_connection(n(10));
        assert_eq!(small.as_ptr(), t.for_connection(n(12)).as_ptr());
        assert_ne!(small.as_ptr(), a.as_ptr());
        // Without the extension: the plain frame, itself shared.
        assert_eq!(
            t.for_connection(None).as_ptr(),
            t.for_connection(None).as_ptr()
        );
    }

    #[test]
    fn headers_fit_every_length() {
        for (len, size) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let f = frame(OP_TEXT, false, &vec![b'a'; len]);
            assert_eq!(f.len(), len + size, "{len}");
            let h = parse_head(&f).unwrap();
            assert_eq!((h.len, h.size, h.first), (len, size, FIN | OP_TEXT));
        }
        assert_eq!(frame(OP_TEXT, true, b"x")[0], FIN | RSV1 | OP_TEXT);
    }

    #[test]
    fn compressed_messages_are_handed_on_plain_and_the_rest_unchanged() {
        let mut r = InboundFrames::new(sink(1024));
        let z = compress_message(b"hello there, hello there", 15, 6);
        let mut input = masked(FIN | OP_TEXT, b"plain", [1, 2, 3, 4]);
        input.extend(masked(FIN | RSV1 | OP_TEXT, &z, [9, 8, 7, 6]));
        input.extend(masked(FIN | 0x9, b"ping", [1, 1, 1, 1]));
        // Fed a byte at a time: frames cut anywhere come out whole.
        let mut out = Vec::new();
        for b in &input {
            out.extend_from_slice(&r.rewrite(Bytes::copy_from_slice(&[*b])));
        }
        let plain = masked(FIN | OP_TEXT, b"plain", [1, 2, 3, 4]);
        assert_eq!(&out[..plain.len()], &plain[..]);
        let rest = &out[plain.len()..];
        let h = parse_head(rest).unwrap();
        assert_eq!(h.first, FIN | OP_TEXT);
        assert_eq!(h.mask, Some([0; 4]));
        assert_eq!(&rest[h.size..h.size + h.len], b"hello there, hello there");
        assert_eq!(
            &rest[h.size + h.len..],
            &masked(FIN | 0x9, b"ping", [1, 1, 1, 1])[..]
        );
    }

    #[test]
    fn a_fragmented_compressed_message_keeps_its_fragments() {
        let mut r = InboundFrames::new(sink(1024));
        let z = compress_message(b"abcdefabcdefabcdefabcdef", 15, 6);
        let (a, b) = z.split_at(3);
        let mut input = masked(RSV1 | OP_TEXT, a, [1, 2, 3, 4]);
        input.extend(masked(FIN | 0x9, b"", [0; 4]));
        input.extend(masked(FIN | OP_CONTINUATION, b, [5, 6, 7, 8]));
        let out = r.rewrite(Bytes::from(input));
        let h1 = parse_head(&out).unwrap();
        assert_eq!(h1.first, OP_TEXT);
        let rest = &out[h1.size + h1.len..];
        let ping = parse_head(rest).unwrap();
        assert_eq!(ping.first, FIN | 0x9);
        let rest = &rest[ping.size..];
        let h2 = parse_head(rest).unwrap();
        assert_eq!(h2.first, FIN | OP_CONTINUATION);
        let mut text = out[h1.size..h1.size + h1.len].to_vec();
        text.extend_from_slice(&rest[h2.size..h2.size + h2.len]);
        assert_eq!(text, b"abcdefabcdefabcdefabcdef");
    }

    #[test]
    fn a_bomb_fails_the_connection_with_1009() {
        let s = sink(1000);
        let mut r = InboundFrames::new(s.clone());
        let z = compress_message(&[b'a'; 100_000], 15, 9);
        assert!(z.len() < 126);
        let out = r.rewrite(Bytes::from(masked(FIN | RSV1 | OP_TEXT, &z, [1, 2, 3, 4])));
        assert_eq!(out[0] & 0x30, 0x30);
        assert_eq!(
            s.0.borrow().verdict.map(|v| v.code),
            Some(close_code::TOO_BIG)
        );
        assert!(r.rewrite(Bytes::from_static(b"more")).is_empty());
    }

    #[test]
    fn rsv1_where_it_means_nothing_is_left_to_the_parser() {
        let mut r = InboundFrames::new(sink(1000));
        let ping = masked(FIN | RSV1 | 0x9, b"", [0; 4]);
        assert_eq!(&r.rewrite(Bytes::from(ping.clone()))[..], &ping[..]);
    }
}
