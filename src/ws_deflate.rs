//! permessage-deflate (RFC 7692): what a client's offer is answered with, how a message is
//! compressed, and how a compressed message is inflated without ever holding more than the
//! message size limit.
//!
//! Memory is the design constraint: a deflate context costs hundreds of KiB, and Herald holds
//! tens of thousands of mostly idle sockets. So by default both directions run without
//! context takeover (the answer carries `server_no_context_takeover` and
//! `client_no_context_takeover`, which RFC 7692 lets a server add to any offer): every message
//! is compressed and inflated on its own, with a compressor per worker thread, and a
//! connection holds no deflate state between messages. The same independence lets a broadcast
//! be compressed once and the result be shared by every recipient with the same parameters
//! (see `EncodedFrame::wire_for`). `HERALD_WS_DEFLATE_CONTEXT_TAKEOVER=true` lets clients
//! that do not ask for independence keep a context per connection in each direction (better
//! ratios on long chats, costs documented in docs/benchmarks.md).

use std::cell::RefCell;

use actix_web::web::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";

/// The empty stored block a sync flush ends with; removed from every compressed message and
/// appended again before inflating (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest window zlib can compress with (it turns 8 into 9), so offers that limit the
/// server to 8 bits are declined rather than broken.
const MIN_SERVER_WINDOW_BITS: u8 = 9;

/// How permessage-deflate is offered to clients (settings `ws_deflate*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateSettings {
    /// Accept clients' offers at all.
    pub enabled: bool,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// Keep a compression context per connection for clients that do not ask for none.
    pub context_takeover: bool,
    /// zlib level, 1 (fastest) to 9 (smallest).
    pub level: u32,
}

impl Default for DeflateSettings {
    fn default() -> Self {
        DeflateSettings {
            enabled: true,
            threshold: 256,
            context_takeover: false,
            level: 6,
        }
    }
}

/// What was agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server starts every message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window (9..=15).
    pub server_window_bits: u8,
    /// Whether the answer names `server_max_window_bits` (it must when the offer did).
    echo_server_bits: bool,
    /// zlib level.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` value of the answer.
    pub fn header_value(&self) -> String {
        let mut v = String::from(EXTENSION);
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if self.echo_server_bits {
            v.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        v
    }

    /// The parameter set a shared (once per broadcast) compression is keyed by, or `None`
    /// when this connection compresses with its own context.
    pub fn shared_window(&self) -> Option<u8> {
        self.server_no_context_takeover
            .then_some(self.server_window_bits)
    }
}

/// Answers the offers of one upgrade request (every `Sec-WebSocket-Extensions` value, in
/// order): the first acceptable `permessage-deflate` offer wins; `None` declines them all.
pub fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    settings: &DeflateSettings,
) -> Option<Negotiated> {
    if !settings.enabled {
        return None;
    }
    headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .find_map(|offer| accept(offer, settings))
}

/// One offer (`permessage-deflate; param[=value]; ...`), accepted or not.
fn accept(offer: &str, s: &DeflateSettings) -> Option<Negotiated> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let (mut server_nct, mut client_nct) = (false, false);
    let (mut server_bits, mut client_bits) = (None::<u8>, None::<Option<u8>>);
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        // A parameter given twice, an unknown one, or a bad value declines the offer.
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !server_nct => server_nct = true,
            ("client_no_context_takeover", None) if !client_nct => client_nct = true,
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", None) if client_bits.is_none() => client_bits = Some(None),
            ("client_max_window_bits", Some(v)) if client_bits.is_none() => {
                client_bits = Some(Some(window_bits(v)?))
            }
            _ => return None,
        }
    }
    let server_window_bits = server_bits.unwrap_or(15);
    if server_window_bits < MIN_SERVER_WINDOW_BITS {
        return None;
    }
    Some(Negotiated {
        // Without takeover by configuration, both sides go without whatever was offered.
        server_no_context_takeover: server_nct || !s.context_takeover,
        client_no_context_takeover: client_nct || !s.context_takeover,
        server_window_bits,
        echo_server_bits: server_bits.is_some(),
        level: s.level.clamp(1, 9),
        threshold: s.threshold,
    })
}

/// A window size parameter: 8 to 15, digits only.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    /// One compressor per window size and level on each worker thread, reset per message:
    /// messages without context takeover share them.
    static COMPRESSORS: RefCell<Vec<(u8, u32, Compress)>> = const { RefCell::new(Vec::new()) };
    /// One decompressor per worker thread for whole compressed messages in one frame.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses one message on its own (no context takeover), tail removed.
pub fn compress_message(payload: &[u8], window_bits: u8, level: u32) -> Bytes {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        let i = match c
            .iter()
            .position(|(b, l, _)| *b == window_bits && *l == level)
        {
            Some(i) => i,
            None => {
                c.push((
                    window_bits,
                    level,
                    Compress::new_with_window_bits(Compression::new(level), false, window_bits),
                ));
                c.len() - 1
            }
        };
        let z = &mut c[i].2;
        z.reset();
        crate::metrics::METRICS.ws_compressions.inc();
        Bytes::from(deflate_sync(z, payload))
    })
}

/// A compression context kept across the messages of one connection (context takeover).
pub struct ContextDeflater(Compress);

impl ContextDeflater {
    pub fn new(n: &Negotiated) -> Self {
        ContextDeflater(Compress::new_with_window_bits(
            Compression::new(n.level),
            false,
            n.server_window_bits,
        ))
    }

    /// Compresses the next message of the connection, tail removed.
    pub fn compress(&mut self, payload: &[u8]) -> Bytes {
        crate::metrics::METRICS.ws_compressions.inc();
        Bytes::from(deflate_sync(&mut self.0, payload))
    }
}

impl std::fmt::Debug for ContextDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextDeflater")
    }
}

/// Deflates `payload` with a sync flush and strips the trailing empty block.
fn deflate_sync(z: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let start_in = z.total_in();
    loop {
        let consumed = (z.total_in() - start_in) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        // Errors only on misuse (a stream already finished); sync flushes never finish it.
        if z.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        let done = (z.total_in() - start_in) as usize == payload.len();
        // Output stopped short of the buffer's end: the flush is complete.
        if done && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates past the message size limit (a decompression bomb, or just too big).
    #[error("message too big")]
    TooBig,
    /// Not valid deflate data.
    #[error("invalid compressed data")]
    Corrupt,
}

/// Inflates the messages of one connection. Without client context takeover a message in a
/// single frame uses the thread's decompressor; a fragmented one holds its own until it ends.
/// With takeover the connection keeps one for its life.
pub struct Inflater {
    takeover: bool,
    own: Option<Box<Decompress>>,
    /// Bytes inflated so far of the message in progress.
    produced: usize,
    limit: usize,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("takeover", &self.takeover)
            .field("produced", &self.produced)
            .finish()
    }
}

impl Inflater {
    /// `limit`: the most bytes one message may inflate to.
    pub fn new(n: &Negotiated, limit: usize) -> Self {
        Inflater {
            takeover: !n.client_no_context_takeover,
            own: None,
            produced: 0,
            limit,
        }
    }

    /// Inflates one frame's payload (`last`: the frame ends the message) into `out`.
    /// Never holds more than the limit: inflating stops as soon as it is passed.
    pub fn frame(
        &mut self,
        data: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let single = last && self.produced == 0 && self.own.is_none();
        let limit = self.limit.saturating_sub(self.produced);
        let result = if single && !self.takeover {
            INFLATER.with(|d| {
                let mut d = d.borrow_mut();
                let d = d.get_or_insert_with(|| Decompress::new(false));
                d.reset(false);
                inflate_frame(d, data, last, out, limit)
            })
        } else {
            let d = self
                .own
                .get_or_insert_with(|| Box::new(Decompress::new(false)));
            inflate_frame(d, data, last, out, limit)
        };
        self.produced += out.len();
        if last && result.is_ok() {
            crate::metrics::METRICS.ws_inflated_messages.inc();
        }
        if last || result.is_err() {
            self.produced = 0;
            if !self.takeover || result.is_err() {
                self.own = None;
            }
        }
        result
    }
}

/// Feeds `data` (and, for the last frame, the tail) to `d`, writing at most `limit` bytes.
fn inflate_frame(
    d: &mut Decompress,
    data: &[u8],
    last: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), InflateError> {
    inflate_into(d, data, out, limit)?;
    if last {
        inflate_into(d, &TAIL, out, limit)?;
    }
    Ok(())
}

fn inflate_into(
    d: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), InflateError> {
    loop {
        // Room for one byte past the limit: producing it proves the message too big.
        let room = (limit + 1).saturating_sub(out.len());
        if room == 0 {
            return Err(InflateError::TooBig);
        }
        out.reserve_exact(room.min(16 * 1024).max(input.len().min(room)));
        let (in_before, out_before) = (d.total_in(), out.len());
        let status = d
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let consumed = (d.total_in() - in_before) as usize;
        input = &input[consumed..];
        let produced = out.len() - out_before;
        let full = out.len() == out.capacity();
        match status {
            // A final block ends the stream: whatever follows is not part of it.
            Status::StreamEnd => return Ok(()),
            _ if input.is_empty() && !full => return Ok(()),
            Status::BufError if consumed == 0 && produced == 0 && !full => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeflateSettings {
        DeflateSettings::default()
    }

    #[test]
    fn a_plain_offer_is_answered_without_context_takeover_by_default() {
        let n = negotiate(["permessage-deflate; client_max_window_bits"], &settings()).unwrap();
        assert_eq!(
            n.header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(n.shared_window(), Some(15));
    }

    #[test]
    fn with_takeover_allowed_only_what_the_client_asks_is_given_up() {
        let s = DeflateSettings {
            context_takeover: true,
            ..settings()
        };
        let n = negotiate(["permessage-deflate"], &s).unwrap();
        assert_eq!(n.header_value(), "permessage-deflate");
        assert_eq!(n.shared_window(), None);
        let n = negotiate(["permessage-deflate;server_no_context_takeover"], &s).unwrap();
        assert_eq!(
            n.header_value(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn the_first_acceptable_offer_wins_and_bad_ones_are_skipped() {
        let offers = [
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=\"10\"; unknown_param, permessage-deflate; server_max_window_bits=12",
        ];
        let n = negotiate(offers, &settings()).unwrap();
        assert_eq!(n.server_window_bits, 12);
        assert!(n.header_value().ends_with("server_max_window_bits=12"));
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=7",
        ] {
            assert_eq!(negotiate([bad], &settings()), None, "{bad}");
        }
        let off = DeflateSettings {
            enabled: false,
            ..settings()
        };
        assert_eq!(negotiate(["permessage-deflate"], &off), None);
    }

    #[test]
    fn a_compressed_message_inflates_back() {
        let text = br#"{"type":"message","data":{"room":"general","seq":42,"from":"alice","body":"hello hello hello hello"}}"#;
        let n = negotiate(["permessage-deflate"], &settings()).unwrap();
        let z = compress_message(text, 15, 6);
        assert!(z.len() < text.len());
        assert!(!z.ends_with(&TAIL));
        let mut inf = Inflater::new(&n, 1024);
        let mut out = Vec::new();
        inf.frame(&z, true, &mut out).unwrap();
        assert_eq!(out, text);
        // Split over fragments, the same.
        let mut out = Vec::new();
        let (a, b) = z.split_at(z.len() / 2);
        inf.frame(a, false, &mut out).unwrap();
        inf.frame(b, true, &mut out).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn context_takeover_carries_the_window_across_messages() {
        let s = DeflateSettings {
            context_takeover: true,
            ..settings()
        };
        let n = negotiate(["permessage-deflate"], &s).unwrap();
        let mut z = ContextDeflater::new(&n);
        let msg = b"the same sentence, again and again, in every message";
        let first = z.compress(msg);
        let second = z.compress(msg);
        assert!(second.len() < first.len());
        let mut inf = Inflater::new(&n, 1024);
        for m in [first, second] {
            let mut out = Vec::new();
            inf.frame(&m, true, &mut out).unwrap();
            assert_eq!(out, msg);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let z = compress_message(&zeros, 15, 9);
        assert!(z.len() < 20 * 1024);
        let n = negotiate(["permessage-deflate"], &settings()).unwrap();
        let mut inf = Inflater::new(&n, 64 * 1024);
        let mut out = Vec::new();
        assert_eq!(inf.frame(&z, true, &mut out), Err(InflateError::TooBig));
        assert!(out.capacity() <= 64 * 1024 + 16 * 1024 + 1);
        // Exactly at the limit is fine.
        let exact = compress_message(&zeros[..64 * 1024], 15, 9);
        let mut out = Vec::new();
        inf.frame(&exact, true, &mut out).unwrap();
        assert_eq!(out.len(), 64 * 1024);
    }

    #[test]
    fn garbage_is_refused() {
        let n = negotiate(["permessage-deflate"], &settings()).unwrap();
        let mut inf = Inflater::new(&n, 1024);
        let mut out = Vec::new();
        assert_eq!(
            inf.frame(&[0xff, 0xff, 0xff, 0xff, 0x00], true, &mut out),
            Err(InflateError::Corrupt)
        );
    }
}
