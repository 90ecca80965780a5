//! Shared test harness: a real hyper server on 127.0.0.1:0 with the hub in front of an axum
//! router, a real WebSocket client, and raw HTTP for the requests a well-behaved client would not
//! send. Every wait is bounded by [`WAIT`] and fails with a message saying what did not happen.
#![allow(dead_code, unreachable_pub)]

mod accept;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod logs;
pub mod raw_ws;
pub use accept::serve_upgrades;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::Layer;
use wshub::{Hub, HubBuilder};

/// The longest any single event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub const TOKEN: &str = "test-token-0123456789";

/// Polls `condition` until it holds (pausing briefly so the server's tasks run), failing the
/// test with `what` after [`WAIT`].
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Like [`until`], for a condition that has to ask over the network.
pub async fn until_async<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    within(what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

pub struct TestServer {
    remote: Remote,
    pub hub: Hub,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestServer {
    /// A hub with default options behind `/ws`, a publish endpoint at `/api/publish` with
    /// [`TOKEN`], and `/` answering "app" (what passes through).
    pub async fn start() -> Self {
        Self::with(Hub::builder()).await
    }

    pub async fn with(builder: HubBuilder) -> Self {
        let hub = builder.build();
        let app = Router::new()
            .route("/", get(|| async { "app" }))
            .route(
                "/ws",
                get(|| async { "app at /ws" }).post(|| async { "app post at /ws" }),
            )
            .route("/wsx", get(|| async { "app at /wsx" }))
            .route_service("/api/publish", hub.publish_service().bearer_token(TOKEN))
            .route_service("/api/open", hub.publish_service().allow_anonymous());
        Self::serve(hub, app).await
    }

    /// Serves `app` behind `hub.layer("/ws")` on a real hyper server with upgrades enabled.
    pub async fn serve(hub: Hub, app: Router) -> Self {
        let service = hub.layer("/ws").layer(app);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move { serve_upgrades(listener, service).await });
        Self {
            remote: Remote { addr },
            hub,
            server,
        }
    }

    /// Routes a `marker` envelope to everyone. Routing is in order per connection, so a client
    /// whose next envelope is the marker got nothing routed to it before this call.
    pub fn send_marker(&self) {
        self.hub
            .send(&wshub::Envelope::new("marker").to(wshub::Recipient::all()));
    }
}

impl std::ops::Deref for TestServer {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

/// What a test can do with any wshub server by its address: this process's [`TestServer`], or
/// another process (a cluster node).
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub addr: SocketAddr,
}

impl Remote {
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }

    /// Connects a client to `/ws<query>` and reads its `__connected` envelope.
    pub async fn connect(&self, query: &str) -> Client {
        match self.try_connect(query, &[]).await {
            Ok((client, _)) => client,
            Err(refused) => panic!("the handshake was refused: {refused:?}"),
        }
    }

    /// Connects to `/ws<query>` with extra upgrade-request headers. On a `101` it reads the
    /// `__connected` envelope (returned with the client); otherwise it returns the refusal.
    pub async fn try_connect(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Client, Value), Refused> {
        let mut request = self
            .ws_url(query)
            .into_client_request()
            .expect("a valid ws:// URL");
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        let result = within(
            "the WebSocket handshake",
            tokio_tungstenite::connect_async(request),
        )
        .await;
        match result {
            Ok((ws, response)) => {
                assert_eq!(response.status(), 101);
                let mut client = Client {
                    ws,
                    id: String::new(),
                };
                let connected = client.recv_action("__connected").await;
                client.id = connected["message"]["connectionId"]
                    .as_str()
                    .expect("connectionId is a string")
                    .to_owned();
                Ok((client, connected))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refused {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            }),
            Err(e) => panic!("handshake failed other than with an HTTP answer: {e}"),
        }
    }

    /// Connects `n` clients with the same query.
    pub async fn connect_many(&self, n: usize, query: &str) -> Vec<Client> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(self.connect(query).await);
        }
        clients
    }

    /// Sends raw bytes as an HTTP request and returns the response head and whatever body arrived
    /// until the server closed or paused.
    pub async fn raw(&self, request: &str) -> RawResponse {
        raw_http(self.addr, request.as_bytes()).await
    }

    /// POSTs `body` to `path` with optional bearer token; returns status, headers, body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> RawResponse {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.raw(&request).await
    }

    /// GETs `path` with an optional bearer token; returns status, headers, body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> RawResponse {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.addr
        );
        self.raw(&request).await
    }

    /// Publishes through the HTTP endpoint with the right token and returns `delivered`.
    pub async fn publish(&self, body: &str) -> u64 {
        let response = self.post("/api/publish", Some(TOKEN), body).await;
        assert_eq!(response.status, 200, "publish answered {response:?}");
        response.json()["delivered"]
            .as_u64()
            .expect("delivered is a number")
    }

    /// A valid upgrade request for `/ws` with `extra` header lines (each ending in \r\n).
    pub fn upgrade_request(&self, extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            self.addr
        )
    }
}

/// A handshake the server refused: its status, headers and body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Writes `request` to a fresh TCP connection and reads the response head and body. The body is
/// read to the end for responses with `Content-Length`, and not at all after a `101`.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    within("a raw HTTP response", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let (mut response, mut body) = read_head(&mut stream).await;
        if response.header("content-length").is_some() {
            read_body(&mut stream, &mut response, body).await;
        } else {
            if response.status != 101 {
                stream.read_to_end(&mut body).await.ok();
            }
            response.body = String::from_utf8_lossy(&body).into_owned();
        }
        response
    })
    .await
}

/// Reads one response with a `Content-Length` body from a connection that stays open (a
/// keep-alive connection, or one still sending).
pub async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> RawResponse {
    within("a response", async {
        let (mut response, body) = read_head(stream).await;
        read_body(stream, &mut response, body).await;
        response
    })
    .await
}

/// Reads a response head; returns it and what came after it.
async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (RawResponse, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.expect("read a response");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let response = RawResponse {
        status,
        head,
        body: String::new(),
    };
    (response, buf[head_end + 4..].to_vec())
}

/// Reads the rest of a `Content-Length` body (`body` holds what came with the head).
async fn read_body(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    response: &mut RawResponse,
    mut body: Vec<u8>,
) {
    let len: usize = response
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {:?}", response.head));
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
}

/// Waits until the server closes `stream`, and checks that it sent nothing more first.
pub async fn expect_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) {
    let mut buf = [0u8; 1024];
    match within(what, stream.read(&mut buf)).await {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "{what}: the server sent {:?} instead of closing",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The connection id the hub announced in `__connected`.
    pub id: String,
}

impl Client {
    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        within("sending a frame", self.ws.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// Sends an envelope given as JSON.
    pub async fn send_json(&mut self, value: &Value) {
        self.send(&value.to_string()).await;
    }

    /// The next text frame, skipping pings; fails on close or timeout.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let message = within("a text frame", self.ws.next())
                .await
                .expect("socket ended while waiting for a text frame")
                .expect("socket error while waiting for a text frame");
            match message {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next envelope, skipping pings; fails on close or timeout.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next envelope, which must have `action`. To prove that an envelope did NOT arrive,
    /// route a marker envelope after it and expect the marker next: routing is in order.
    pub async fn recv_action(&mut self, action: &str) -> Value {
        let envelope = self.recv().await;
        assert_eq!(envelope["action"], action, "unexpected envelope {envelope}");
        envelope
    }

    /// Waits for the close frame and returns its code; fails on anything else but pings,
    /// pongs and envelopes (which are skipped).
    pub async fn expect_close(&mut self) -> Option<CloseCode> {
        within("the server's close frame", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("socket error instead of a close frame: {e}"),
                    None => panic!("socket ended without a close frame"),
                }
            }
        })
        .await
    }

    /// Waits until the socket has ended, whether by close frame, error or EOF.
    pub async fn expect_end(&mut self) {
        within("the socket to end", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await
    }
}

/// Which of `clients` got a `probe` envelope before the `marker` sent to everyone after it:
/// routing is in order per connection, so one whose next envelope is the marker did not get the
/// probe, and one that got the probe twice would not find the marker next.
pub async fn got_probe(clients: &mut [Client]) -> Vec<usize> {
    let mut got = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let first = client.recv().await;
        if first["action"] == "probe" {
            got.push(i);
            client.recv_action("marker").await;
        } else {
            assert_eq!(first["action"], "marker", "client {i} got {first}");
        }
    }
    got
}

/// An envelope addressed to `recipients`.
pub fn envelope(action: &str, message: Value, recipients: Value) -> Value {
    serde_json::json!({ "action": action, "message": message, "recipients": recipients })
}

/// A JSON envelope to everyone whose serialised form is exactly `len` bytes.
pub fn envelope_of_len(action: &str, len: usize) -> String {
    let empty = envelope(action, json!(""), json!([{"type": "all"}])).to_string();
    assert!(len >= empty.len(), "{len} is too short for an envelope");
    let body = envelope(
        action,
        json!("x".repeat(len - empty.len())),
        json!([{"type": "all"}]),
    )
    .to_string();
    assert_eq!(body.len(), len);
    body
}
