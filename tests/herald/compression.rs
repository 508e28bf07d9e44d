//! permessage-deflate (RFC 7692) end to end, with a raw client that compresses and inflates
//! itself: negotiation, compressed frames both ways on the native and notification sockets,
//! the threshold, context takeover when configured, and the failures (a decompression bomb
//! closes with 1009 before it is inflated past the limit, corrupt data with 1007, RSV1 where
//! it means nothing with 1002). The official clients' runs are in `socketio.rs`.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, TestApp};
use crate::raw_ws::{Frame, RawWs};
use herald::testkit::TestDatabase;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str =
    "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A client side of the extension: its own compressor and inflater, kept across messages
/// only when context takeover was agreed.
struct Deflate {
    z: Compress,
    d: Decompress,
    takeover: bool,
}

impl Deflate {
    fn new(takeover: bool) -> Self {
        Deflate {
            z: Compress::new(Compression::default(), false),
            d: Decompress::new(false),
            takeover,
        }
    }

    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.z.reset();
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        let start = self.z.total_in();
        while (self.z.total_in() - start) < data.len() as u64 || out.len() == out.capacity() {
            out.reserve(1024);
            let at = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&data[at..], &mut out, FlushCompress::Sync)
                .unwrap();
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn inflate(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.d.reset(false);
        }
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(64 * 1024);
        let start = self.d.total_in();
        while (self.d.total_in() - start) < input.len() as u64 {
            let at = (self.d.total_in() - start) as usize;
            out.reserve(64 * 1024);
            self.d
                .decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
                .unwrap();
        }
        out
    }
}

async fn connect(app: &TestApp, path: &str, extra: &str) -> RawWs {
    let (status, ws) = RawWs::connect(app.port, path, extra).await;
    assert_eq!(status, 101);
    ws.unwrap()
}

fn native(app: &TestApp, user: &str) -> String {
    format!("/v1/ws?token={}", app.token(user))
}

/// The next data frame as JSON (inflated when compressed), with its frame.
async fn next(c: &mut RawWs, z: &mut Deflate) -> (Frame, Value) {
    loop {
        let f = c.recv().await.expect("a frame");
        if f.opcode == 9 || f.opcode == 10 {
            continue;
        }
        assert_eq!(f.opcode, 1, "a text frame, got {f:?}");
        let text = if f.rsv1 {
            z.inflate(&f.payload)
        } else {
            f.payload.clone()
        };
        let v: Value = serde_json::from_slice(&text).expect("JSON");
        return (f, v);
    }
}

/// The next frame of `kind` (other frames skipped).
async fn next_of(c: &mut RawWs, z: &mut Deflate, kind: &str) -> (Frame, Value) {
    loop {
        let (f, v) = next(c, z).await;
        if v["type"] == kind {
            return (f, v);
        }
    }
}

/// Sends a frame compressed (FIN, RSV1, text).
async fn send_z(c: &mut RawWs, z: &mut Deflate, v: &Value) {
    let data = z.compress(v.to_string().as_bytes());
    c.send_raw(0xC1, &data, true).await;
}

async fn reply(c: &mut RawWs, z: &mut Deflate, r: &str) -> (Frame, Value) {
    loop {
        let (f, v) = next(c, z).await;
        if v["ref"] == r {
            return (f, v);
        }
    }
}

#[actix_rt::test]
async fn the_native_socket_compresses_both_ways_and_shares_a_broadcasts_bytes() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let mut c = connect(&app, &native(&app, user), OFFER).await;
        assert!(c.head.to_ascii_lowercase().contains(AGREED), "{}", c.head);
        let mut z = Deflate::new(false);
        next_of(&mut c, &mut z, "connection_ack").await;
        // Requests come compressed; the server inflates them.
        send_z(
            &mut c,
            &mut z,
            &json!({"type": "join", "ref": "j", "data": {"room": "public:zip"}}),
        )
        .await;
        let (_, ack) = reply(&mut c, &mut z, "j").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        clients.push((c, z));
    }
    // Under the threshold (256 bytes): sent as is.
    let (c, z) = &mut clients[0];
    send_z(c, z, &json!({"type": "ping", "ref": "p"})).await;
    let (pong, _) = reply(c, z, "p").await;
    assert!(!pong.rsv1, "a small frame is not compressed");

    let long = "the quick brown fox jumps over the lazy dog; ".repeat(40);
    send_z(c, z, &json!({"type": "send", "ref": "s", "data": {"room": "public:zip", "kind": "text", "body": {"text": long}}})).await;
    let (_, ack) = reply(c, z, "s").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut payloads = Vec::new();
    for (c, z) in clients.iter_mut().skip(1) {
        let (f, m) = next_of(c, z, "message").await;
        assert!(f.rsv1, "a long message is compressed");
        assert_eq!(m["data"]["body"]["text"], long.as_str());
        assert!(
            f.payload.len() * 4 < m.to_string().len(),
            "compressed well: {}",
            f.payload.len()
        );
        payloads.push(f.payload);
    }
    // Compressed once for the broadcast: every recipient gets the same bytes.
    assert_eq!(payloads[0], payloads[1]);
}

#[actix_rt::test]
async fn a_decompression_bomb_closes_with_1009_and_bad_data_with_1007() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.max_frame_bytes = 4096;
        s.diagnostics = true;
    })
    .await;
    // 10 MiB of spaces inside a JSON string compress to about 10 KiB; spread over frames.
    let mut bomb_json = b"{\"type\":\"ping\",\"ref\":\"".to_vec();
    bomb_json.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    let bomb = Deflate::new(false).compress(&bomb_json);
    assert!(bomb.len() < 16 * 1024);
    for path in [native(&app, "alice"), "/v1/ws/echo".to_owned()] {
        let mut c = connect(&app, &path, OFFER).await;
        c.send_raw(0xC1, &bomb, true).await;
        assert_eq!(c.close_code().await, Some(1009), "{path}");
        // The same in small fragments.
        let mut c = connect(&app, &path, OFFER).await;
        let parts: Vec<&[u8]> = bomb.chunks(1000).collect();
        c.send_raw(0x41, parts[0], true).await;
        for p in &parts[1..parts.len() - 1] {
            c.send_raw(0x00, p, true).await;
        }
        c.send_raw(0x80, parts[parts.len() - 1], true).await;
        assert_eq!(c.close_code().await, Some(1009), "{path} fragmented");
    }
    let mut c = connect(&app, "/v1/ws/echo", OFFER).await;
    c.send_raw(0xC1, &[0xff, 0xfe, 0xfd, 0x00, 0x13], true)
        .await;
    assert_eq!(c.close_code().await, Some(1007), "corrupt data");
    // RSV1 where RFC 7692 gives it no meaning.
    for (first, what) in [(0xC9, "ping"), (0x80 | 0x40, "continuation")] {
        let mut c = connect(&app, "/v1/ws/echo", OFFER).await;
        if first == 0xC0 {
            c.send_raw(0x01, b"x", true).await;
        }
        c.send_raw(first, b"", true).await;
        assert_eq!(c.close_code().await, Some(1002), "RSV1 on a {what}");
    }
    // The server still serves: a compressed echo comes back compressed.
    let mut c = connect(&app, "/v1/ws/echo", OFFER).await;
    let mut z = Deflate::new(false);
    let text = "echo ".repeat(100);
    c.send_raw(0xC1, &z.compress(text.as_bytes()), true).await;
    let f = c.recv().await.unwrap();
    assert!(f.rsv1);
    assert_eq!(z.inflate(&f.payload), text.as_bytes());
}

#[actix_rt::test]
async fn without_an_offer_or_when_disabled_nothing_is_compressed() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.diagnostics = true).await;
    let mut c = connect(&app, "/v1/ws/echo", "").await;
    echoes_uncompressed(&mut c).await;
    // An RSV1 frame without the extension is a protocol error.
    c.send_raw(0xC1, b"x", true).await;
    assert_eq!(c.close_code().await, Some(1002));

    let db2 = TestDatabase::new();
    let off = spawn_app_on(&db2.url, |s| {
        s.diagnostics = true;
        s.ws_deflate.enabled = false;
    })
    .await;
    let mut c = connect(&off, "/v1/ws/echo", OFFER).await;
    echoes_uncompressed(&mut c).await;
}

/// No extension agreed, and a long message echoed without RSV1.
async fn echoes_uncompressed(c: &mut RawWs) {
    let head = c.head.to_ascii_lowercase();
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    c.send_raw(0x81, "plain ".repeat(100).as_bytes(), true)
        .await;
    assert!(!c.recv().await.unwrap().rsv1);
}

#[actix_rt::test]
async fn context_takeover_when_configured_carries_the_window_across_messages() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.diagnostics = true;
        s.ws_deflate.context_takeover = true;
    })
    .await;
    let mut c = connect(
        &app,
        "/v1/ws/echo",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    let head = c.head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate\r\n"),
        "{head}"
    );
    let mut z = Deflate::new(true);
    let text = "a sentence that repeats from one message to the next ".repeat(6);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let data = z.compress(text.as_bytes());
        sizes.push(data.len());
        c.send_raw(0xC1, &data, true).await;
        let f = c.recv().await.unwrap();
        assert!(f.rsv1);
        assert_eq!(z.inflate(&f.payload), text.as_bytes());
        sizes.push(f.payload.len());
    }
    // Both sides reuse their window: the second message costs a few bytes each way.
    assert!(
        sizes[2] * 4 < sizes[0] && sizes[3] * 4 < sizes[1],
        "{sizes:?}"
    );
    // A client that asks for no takeover still gets none.
    let mut c = connect(&app, "/v1/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n").await;
    assert!(c.head.to_ascii_lowercase().contains(AGREED));
    let mut z = Deflate::new(false);
    for _ in 0..2 {
        c.send_raw(0xC1, &z.compress(text.as_bytes()), true).await;
        let f = c.recv().await.unwrap();
        assert_eq!(z.inflate(&f.payload), text.as_bytes());
    }
}

#[actix_rt::test]
async fn the_notification_socket_compresses_too() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.ws_deflate.threshold = 0).await;
    let path = format!("/ws/notifications/?token={}", app.token("alice"));
    let mut c = connect(&app, &path, OFFER).await;
    assert!(c.head.to_ascii_lowercase().contains(AGREED));
    let mut z = Deflate::new(false);
    let (f, ack) = next(&mut c, &mut z).await;
    assert!(f.rsv1, "threshold 0: every frame compressed");
    assert_eq!(ack["type"], "connection_ack");
    send_z(&mut c, &mut z, &json!({"type": "ping"})).await;
    let (f, pong) = next_of(&mut c, &mut z, "pong").await;
    assert!(f.rsv1);
    assert_eq!(pong, json!({"type": "pong"}));
}

#[actix_rt::test]
#[ignore = "needs the Python websockets client (tests/socketio/.venv): run by .ci/run"]
async fn the_python_websockets_client_compresses_with_herald() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "run `python3 -m venv tests/socketio/.venv && tests/socketio/.venv/bin/pip install -r tests/socketio/requirements.txt`"
    );
    let url = format!("ws://127.0.0.1:{}{}", app.port, native(&app, "alice"));
    let text = "compressible chat text, ".repeat(50);
    let script = dir.join("native_ws.py");
    let args = [url, "public:py".to_owned(), text.clone()];
    let out = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .expect("joined")
    .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["extensions"], json!(["permessage-deflate"]));
    assert_eq!(v["joined"], "ack");
    assert_eq!(v["sent"]["type"], "ack", "{v}");
    let history = &v["history"]["data"]["messages"];
    assert_eq!(history[0]["body"]["text"], text.as_str(), "{v}");
}
