//! A raw RFC 6455 client for conformance and hostile-client tests: it writes frames byte by
//! byte (fragments, reserved bits, bad opcodes, invalid UTF-8, unmasked frames) that a
//! well-behaved client library would never send.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The handshake response's status line and headers.
    pub head: String,
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: compressed (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    /// Performs the opening handshake on `path`; answers the HTTP status line's code.
    pub async fn connect(port: u16, path: &str, extra_headers: &str) -> (u16, Option<RawWs>) {
        Self::connect_pipelined(port, path, extra_headers, &[]).await
    }

    /// As `connect`, with `early` bytes (frames) written in the same write as the request,
    /// before any answer: the server must not lose what arrives with the handshake.
    pub async fn connect_pipelined(
        port: u16,
        path: &str,
        extra_headers: &str,
        early: &[u8],
    ) -> (u16, Option<RawWs>) {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp connect");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
        );
        let mut out = req.into_bytes();
        out.extend_from_slice(early);
        stream.write_all(&out).await.expect("write handshake");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("handshake response in time")
                .expect("read");
            assert!(n > 0, "connection closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return (status, None);
        }
        (
            status,
            Some(RawWs {
                stream,
                buf: buf[end..].to_vec(),
                head,
            }),
        )
    }

    /// Writes one frame: `first` is the byte with FIN, RSV and opcode; masked unless told not.
    pub async fn send_raw(&mut self, first: u8, payload: &[u8], masked: bool) {
        let f = encode_frame(first, payload, masked);
        // The server may close mid-write on a violation; that is what some tests want.
        let _ = self.stream.write_all(&f).await;
    }

    /// The next frame, or `None` when the connection ends or nothing comes within 5 s.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            // On the heap: a 64 KiB array would sit in every awaiting future's state.
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The close code the server ends with, skipping data frames.
    pub async fn close_code(&mut self) -> Option<u16> {
        while let Some(f) = self.recv().await {
            if f.opcode == 8 {
                return f.close_code();
            }
        }
        None
    }
}

/// One client frame: `first` is the byte with FIN, RSV and opcode.
pub fn encode_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12u8, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn parse(b: &[u8]) -> Option<(Frame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if b[1] & 0x80 != 0 {
        at += 4; // servers do not mask, but tolerate it
    }
    if b.len() < at + len {
        return None;
    }
    Some((
        Frame {
            fin,
            rsv1: b[0] & 0x40 != 0,
            opcode,
            payload: b[at..at + len].to_vec(),
        },
        at + len,
    ))
}
