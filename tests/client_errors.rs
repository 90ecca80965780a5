//! PROTOCOL.md §6, one test per row of the error table, over real sockets.
//!
//! Absence is proven without sleeping: after the event under test, a `marker` envelope goes to
//! everyone; routing is in order, so a connection that gets the marker first did not get the other.
//! Where elapsed time is itself the thing under test (heartbeats, idle timeouts, rate refill), the
//! test waits for it, with short intervals configured.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{envelope, until, within, Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;
use tower::Layer;
use wshub::{Envelope, Hub, Recipient};

fn code(close: Option<CloseCode>) -> u16 {
    u16::from(close.expect("the close frame carries a code"))
}

// ---------------------------------------------------------------------------------------------
// A WebSocket client written by hand, for what tungstenite refuses to do: send invalid UTF-8,
// and never answer pings.

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

struct RawSocket {
    stream: TcpStream,
    /// Bytes read but not yet parsed into frames.
    buf: Vec<u8>,
}

/// One frame from the server: opcode and payload (servers do not mask).
#[derive(Debug)]
struct RawFrame {
    opcode: u8,
    payload: Vec<u8>,
}

impl RawFrame {
    fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawSocket {
    /// Opens TCP, sends the upgrade request, and reads the `101` head; bytes after the head are
    /// kept as the start of the first frame.
    async fn connect(server: &TestServer) -> Self {
        let request = server.upgrade_request("");
        within("a raw WebSocket handshake", async {
            let mut stream = TcpStream::connect(server.addr).await.expect("connect");
            stream
                .write_all(request.as_bytes())
                .await
                .expect("write upgrade request");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let n = stream.read(&mut chunk).await.expect("read response head");
                assert!(n > 0, "connection closed before the response head");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            assert!(
                head.starts_with("HTTP/1.1 101"),
                "expected 101 Switching Protocols, got {head}"
            );
            buf.drain(..head_end);
            Self { stream, buf }
        })
        .await
    }

    /// Writes one final frame, masked as a client must.
    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126, "only short frames are written by hand");
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("write frame");
    }

    /// The next frame the server sends, or `None` at EOF or a reset. Not bounded: wrap in
    /// [`within`].
    async fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until a close frame (returning its code) or the end of the connection
    /// (`None`); text frames and pings are skipped.
    async fn read_until_close(&mut self) -> Option<u16> {
        while let Some(frame) = self.read_frame().await {
            match frame.opcode {
                OP_CLOSE => {
                    return Some(frame.close_code().expect("the close frame carries a code"))
                }
                OP_TEXT | OP_PING => continue,
                other => panic!("unexpected frame opcode {other:#x}: {frame:?}"),
            }
        }
        None
    }
}

/// Parses one unmasked, unfragmented server frame from the front of `buf`: `(frame, bytes used)`,
/// or `None` when more bytes are needed.
fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    assert_eq!(
        first & 0x80,
        0x80,
        "server frames here are final: {first:#x}"
    );
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    let (len, header) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (
                usize::try_from(u64::from_be_bytes(bytes)).expect("frame length fits"),
                10,
            )
        }
        short => (usize::from(short), 2),
    };
    let payload = buf.get(header..header + len)?.to_vec();
    Some((
        RawFrame {
            opcode: first & 0x0f,
            payload,
        },
        header + len,
    ))
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn text_frame_that_is_not_a_valid_envelope_gets_invalid_envelope_error() {
    let server = TestServer::start().await;
    let mut client = server.connect("?userId=ann&groupId=g1").await;
    let mut other = server.connect("?groupId=g1").await;

    for invalid in [
        "not json",
        "[]",
        "\"a string\"",
        r#"{"action": 5}"#,
        r#"{"action": "x", "userId": 7}"#,
        r#"{"action": "x", "recipients": {"type": "all"}}"#,
        r#"{"action": "x", "recipients": [{"type": "everyone", "value": ""}]}"#,
        r#"{"action": "x", "recipients": [{"type": "all"}]"#,
    ] {
        client.send(invalid).await;
        let error = client.recv().await;
        assert_eq!(
            error,
            json!({
                "action": "__error",
                "message": {"code": "invalid_envelope", "detail": error["message"]["detail"]},
                "groupId": "",
                "userId": "",
                "recipients": [],
            }),
            "answer to {invalid:?}"
        );
        assert!(
            error["message"]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "the detail says what is wrong with {invalid:?}: {error}"
        );
    }

    // Only the sender heard about it: the other connection's next envelope is the marker.
    server.send_marker();
    client.recv_action("marker").await;
    other.recv_action("marker").await;

    // The socket stays open and keeps working.
    client
        .send_json(&envelope(
            "after",
            json!("still here"),
            json!([{"type": "group", "value": "g1"}]),
        ))
        .await;
    assert_eq!(client.recv_action("after").await["message"], "still here");
    assert_eq!(other.recv_action("after").await["message"], "still here");
    assert_eq!(server.hub.local_connection_count(), 2);
}

/// PROTOCOL.md §8: a recipient that repeats `type` or `value` is invalid, not read as its last
/// occurrence (a proxy that checks the first would see `user` `nobody`, the hub `all`).
#[tokio::test]
async fn recipient_with_a_duplicate_key_gets_invalid_envelope_and_reaches_nobody() {
    let server = TestServer::start().await;
    let mut client = server.connect("?userId=ann").await;
    let mut other = server.connect("?userId=bob").await;

    for (invalid, detail) in [
        (
            r#"{"action":"x","recipients":[{"type":"user","value":"nobody","type":"all"}]}"#,
            "recipients[0] has a duplicate field `type`",
        ),
        (
            r#"{"action":"x","recipients":[{"type":"all"},{"type":"user","value":"nobody","value":"bob"}]}"#,
            "recipients[1] has a duplicate field `value`",
        ),
    ] {
        client.send(invalid).await;
        let error = client.recv_action("__error").await;
        assert_eq!(error["message"]["code"], "invalid_envelope", "{error}");
        let said = error["message"]["detail"].as_str().unwrap_or_default();
        assert!(
            said.contains(detail),
            "{invalid}: {said:?} lacks {detail:?}"
        );
    }
    server.send_marker();
    client.recv_action("marker").await;
    other.recv_action("marker").await;
}

#[tokio::test]
async fn binary_frame_closes_1003() {
    let server = TestServer::start().await;
    let mut client = server.connect("").await;
    let mut other = server.connect("").await;

    within(
        "sending a binary frame",
        client
            .ws
            .send(Message::binary(br#"{"action":"x"}"#.to_vec())),
    )
    .await
    .expect("send binary");
    assert_eq!(code(client.expect_close().await), 1003);
    client.expect_end().await;

    until("the hub to drop the closed connection", || {
        server.hub.local_connection_count() == 1
    })
    .await;
    server.send_marker();
    other.recv_action("marker").await;
}

#[tokio::test]
async fn message_larger_than_the_limit_closes_1009_and_others_are_undisturbed() {
    let server = TestServer::with(Hub::builder().max_message_size(1024)).await;
    let mut big = server.connect("").await;
    let mut fragmented = server.connect("").await;
    let mut other = server.connect("").await;

    // A message just under the limit is accepted.
    let padding = "x".repeat(900);
    let fits = envelope("fits", json!(padding), json!([{"type": "all"}])).to_string();
    assert!(fits.len() <= 1024);
    big.send(&fits).await;
    for client in [&mut big, &mut fragmented, &mut other] {
        client.recv_action("fits").await;
    }

    // One frame over the limit.
    let padding = "x".repeat(2000);
    big.send(&envelope("big", json!(padding), json!([{"type": "all"}])).to_string())
        .await;
    assert_eq!(code(big.expect_close().await), 1009);

    // A message over the limit in frames that are each under it.
    let text = envelope("big", json!("y".repeat(1500)), json!([{"type": "all"}])).to_string();
    let parts: Vec<&[u8]> = text.as_bytes().chunks(600).collect();
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), opcode, i == parts.len() - 1);
        within(
            "sending a fragment",
            fragmented.ws.send(Message::Frame(frame)),
        )
        .await
        .expect("send fragment");
    }
    assert_eq!(code(fragmented.expect_close().await), 1009);

    // The other connection was not disturbed: it got nothing of the big ones, and still works.
    until("the hub to drop the closed connections", || {
        server.hub.local_connection_count() == 1
    })
    .await;
    server.send_marker();
    other.recv_action("marker").await;
    other
        .send_json(&envelope("small", json!("ok"), json!([{"type": "all"}])))
        .await;
    assert_eq!(other.recv_action("small").await["message"], "ok");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_1007() {
    let server = TestServer::start().await;
    let mut raw = RawSocket::connect(&server).await;

    // The first frame after the 101 is `__connected`.
    let connected = within("the __connected frame", raw.read_frame())
        .await
        .expect("a frame before the end");
    assert_eq!(connected.opcode, OP_TEXT, "{connected:?}");
    let connected: Value = serde_json::from_slice(&connected.payload).expect("JSON");
    assert_eq!(connected["action"], "__connected");

    raw.write_frame(OP_TEXT, &[b'{', 0xff, 0xfe, b'}']).await;
    let code = within("the server's close frame", raw.read_until_close()).await;
    assert_eq!(code, Some(1007), "invalid UTF-8 closes with 1007");
    until("the hub to drop the closed connection", || {
        server.hub.local_connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn too_many_messages_per_second_are_rate_limited_then_sustained_abuse_closes_1008() {
    let server = TestServer::with(Hub::builder().rate_limit(5, 5)).await;
    let mut client = server.connect("").await;
    let mut other = server.connect("").await;
    let to_self = json!([{"type": "connection", "value": client.id}]);

    // A burst of 10: the first 5 (the burst allowance) are relayed, the rest refused.
    for i in 0..10 {
        client
            .send_json(&envelope("n", json!(i), to_self.clone()))
            .await;
    }
    let mut relayed = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let got = client.recv().await;
        match got["action"].as_str() {
            Some("n") => relayed.push(got["message"].as_u64().expect("a number")),
            Some("__error") => {
                assert_eq!(got["message"]["code"], "rate_limited", "{got}");
                refused += 1;
            }
            _ => panic!("unexpected envelope {got}"),
        }
    }
    assert_eq!(
        relayed.get(..5),
        Some(&[0, 1, 2, 3, 4][..]),
        "the burst allowance passes: {relayed:?}"
    );
    assert!(refused >= 1, "a burst beyond the limit is refused");
    // Errors go only to the sender.
    server.send_marker();
    other.recv_action("marker").await;
    client.recv_action("marker").await;

    // The socket stays open; once a token has been earned back (5 per second), it is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .send_json(&envelope("again", json!("ok"), to_self.clone()))
        .await;
    assert_eq!(client.recv_action("again").await["message"], "ok");

    // Sustained flooding (bounded): the hub closes the socket with 1008.
    let flood = envelope("flood", json!(""), to_self).to_string();
    for _ in 0..200 {
        if within(
            "sending a frame",
            client.ws.send(Message::text(flood.as_str())),
        )
        .await
        .is_err()
        {
            break;
        }
    }
    assert_eq!(code(client.expect_close().await), 1008);
    until("the hub to drop the closed connection", || {
        server.hub.local_connection_count() == 1
    })
    .await;
}

/// The `n` of a `{"action":"n","message":{"n":N,"padding":"xx…"}}` frame, found without parsing
/// the padding; `None` for any other frame.
fn sequence_number(text: &str) -> Option<u64> {
    if !text.contains(r#""action":"n""#) {
        return None;
    }
    let at = text.find(r#""n":"#)? + 4;
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// Connects a client that will never read, with a small socket receive buffer so that the kernel
/// buffers between it and the hub fill quickly.
async fn connect_non_reader(server: &TestServer) -> Client {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = within("connecting", socket.connect(server.addr))
        .await
        .expect("connect");
    let (ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(server.ws_url(""), MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    Client {
        ws,
        id: String::new(),
    }
}

#[tokio::test]
async fn client_that_does_not_read_is_closed_and_does_not_slow_the_others() {
    const READERS: usize = 99;
    const MAX_MESSAGES: u64 = 3_000;
    /// Messages routed between checks; under the outbound queue so that readers keep up.
    const BATCH: u64 = 4;
    /// Messages still routed after the slow client was closed.
    const AFTER: u64 = 20;
    let server = TestServer::with(Hub::builder().max_pending_bytes(8 * 4200)).await;
    let started = Instant::now();

    let readers = server.connect_many(READERS, "").await;
    let mut slow = connect_non_reader(&server).await;
    until("the slow client to be registered", || {
        server.hub.local_connection_count() == READERS + 1
    })
    .await;

    // Each reader checks the order itself and adds a permit per message received.
    let received = Arc::new(Semaphore::new(0));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut client| {
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                let mut next = 0u64;
                loop {
                    let text = client.recv_text().await;
                    if text.contains(r#""action":"end""#) {
                        return next;
                    }
                    let n = sequence_number(&text);
                    assert_eq!(n, Some(next), "messages arrive in order, none skipped");
                    next += 1;
                    received.add_permits(1);
                }
            })
        })
        .collect();

    let padding = "x".repeat(4 * 1024);
    let mut sent = 0u64;
    let mut closed_at = None;
    let mut slowest_batch = Duration::ZERO;
    while sent < closed_at.map_or(MAX_MESSAGES, |at| at + AFTER) {
        let batch_started = Instant::now();
        for _ in 0..BATCH {
            let message = Envelope::new("n")
                .with_message(&json!({"n": sent, "padding": padding}))
                .to(Recipient::all());
            let delivered = server.hub.send(&message);
            assert!(delivered >= READERS, "every reader gets message {sent}");
            sent += 1;
        }
        let permits = u32::try_from(READERS as u64 * BATCH).expect("fits");
        within(
            "every reader to receive the batch while one client does not read",
            received.acquire_many(permits),
        )
        .await
        .expect("semaphore open")
        .forget();
        slowest_batch = slowest_batch.max(batch_started.elapsed());
        if closed_at.is_none() && server.hub.local_connection_count() == READERS {
            closed_at = Some(sent);
        }
    }
    let closed_at = closed_at.unwrap_or_else(|| {
        panic!("the client that does not read was not closed after {sent} messages")
    });
    server.hub.send(&Envelope::new("end").to(Recipient::all()));
    for task in tasks {
        let got = within("a reader to finish", task)
            .await
            .expect("reader task");
        assert_eq!(got, sent, "every reader received every message");
    }
    // No timing assertion (speed is for benchmarks): had the hub waited on the client that does
    // not read, a batch would never have reached the readers and `within` would have failed.

    // The slow client got an in-order prefix, then a close (1008 or 1013) or a dropped connection.
    let end = within("the slow client's socket to end", async {
        let mut next = 0u64;
        loop {
            match slow.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Some(n) = sequence_number(&text) {
                        assert_eq!(n, next, "in order");
                        next += 1;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return (Some(code(frame.map(|f| f.code))), next)
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (None, next),
            }
        }
    })
    .await;
    let (end, slow_got) = end;
    assert!(
        slow_got < sent,
        "the slow client got {slow_got} of {sent} messages"
    );
    assert!(
        matches!(end, None | Some(1008 | 1013)),
        "the slow client is closed with 1008 or 1013, or dropped; got {end:?}"
    );
    eprintln!(
        "slow client closed after {closed_at} messages, had read {slow_got}, end {end:?}; \
         {sent} sent; slowest batch {slowest_batch:?}; {:?} in all",
        started.elapsed()
    );
}

#[tokio::test]
async fn heartbeat_pings_every_socket() {
    let server = TestServer::with(Hub::builder().ping_interval(Duration::from_millis(100))).await;
    let mut client = server.connect("").await;
    let pings = within("two pings from the hub", async {
        let mut pings = 0;
        while pings < 2 {
            match client.ws.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        pings
    })
    .await;
    assert_eq!(pings, 2);
}

#[tokio::test]
async fn silent_client_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = TestServer::with(
        Hub::builder()
            .ping_interval(Duration::from_millis(100))
            .idle_timeout(idle),
    )
    .await;
    let mut raw = RawSocket::connect(&server).await;
    let opened = Instant::now();
    until("the hub to register the raw client", || {
        server.hub.local_connection_count() == 1
    })
    .await;

    // The client reads but never writes: no pong, no frame.
    let mut pings = 0;
    let end = within("the silent client to be closed", async {
        while let Some(frame) = raw.read_frame().await {
            match frame.opcode {
                OP_CLOSE => return frame.close_code(),
                OP_PING => pings += 1,
                OP_TEXT => {}
                other => panic!("unexpected frame opcode {other:#x}"),
            }
        }
        None
    })
    .await;
    let lasted = opened.elapsed();
    assert!(
        matches!(end, None | Some(1001)),
        "closed with 1001 or dropped, got {end:?}"
    );
    assert!(pings >= 1, "the hub pinged before giving up");
    assert!(
        lasted >= idle - Duration::from_millis(50),
        "closed after {lasted:?}, before the idle timeout of {idle:?}"
    );
    until("the hub to drop the silent connection", || {
        server.hub.local_connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn client_that_answers_pings_outlives_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = TestServer::with(
        Hub::builder()
            .ping_interval(Duration::from_millis(100))
            .idle_timeout(idle),
    )
    .await;
    let mut client = server.connect("").await;

    // Reading is all a tungstenite client does: it answers each ping with a pong by itself.
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            match client.ws.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(text))) => {
                    let got: Value = serde_json::from_str(&text).expect("JSON");
                    assert_eq!(got["action"], "after", "{got}");
                    return pings;
                }
                other => panic!("the socket should stay open, got {other:?}"),
            }
        }
    });

    // Elapsed time is what is under test: three idle timeouts.
    tokio::time::sleep(idle * 3).await;
    assert_eq!(server.hub.local_connection_count(), 1, "still connected");
    assert_eq!(
        server
            .hub
            .send(&Envelope::new("after").to(Recipient::all())),
        1
    );
    let pings = within("the publish to reach the client", reader)
        .await
        .expect("reader task");
    assert!(pings >= 3, "pinged and answered {pings} times");
}

/// The close frame's code; then reads on, which sends the client's answer to the close (as a
/// browser does), until the hub ends the connection.
async fn close_code_then_end(client: &mut Client) -> Option<CloseCode> {
    let close = client.expect_close().await;
    client.expect_end().await;
    close
}

#[tokio::test]
async fn graceful_shutdown_closes_every_socket_with_1001() {
    let server = TestServer::start().await;
    let mut clients = server.connect_many(3, "?groupId=g1").await;
    assert_eq!(server.hub.local_connection_count(), 3);

    let closes = futures_util::future::join_all(clients.iter_mut().map(close_code_then_end));
    let ((), codes) = within("shutdown and the close frames", async {
        tokio::join!(server.hub.shutdown(), closes)
    })
    .await;
    for close in codes {
        assert_eq!(code(close), 1001);
    }
    assert_eq!(server.hub.local_connection_count(), 0);
    assert!(server.hub.is_shutting_down());
}

#[tokio::test]
async fn shutdown_on_signal_closes_sockets_and_lets_axum_serve_finish() {
    let hub = Hub::builder().build();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "app" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = axum::serve(listener, hub.layer("/ws").layer(app)).with_graceful_shutdown(
        hub.shutdown_on(async {
            stopped.await.ok();
        }),
    );
    let serve = tokio::spawn(async move { serve.await });

    let (ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?userId=ann")),
    )
    .await
    .expect("handshake");
    let mut client = Client {
        ws,
        id: String::new(),
    };
    client.recv_action("__connected").await;
    assert_eq!(hub.local_connection_count(), 1);

    stop.send(()).expect("the server is waiting for the signal");
    let (close, served) = within("the close frame and axum::serve to finish", async {
        tokio::join!(close_code_then_end(&mut client), serve)
    })
    .await;
    assert_eq!(code(close), 1001);
    served.expect("serve task").expect("serve");
    assert_eq!(hub.local_connection_count(), 0);
}
