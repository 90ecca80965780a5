//! PROTOCOL.md §3, one test per row of the handshake table, plus the `__connected` envelope,
//! over real TCP on 127.0.0.1.
//!
//! Requests a well-behaved client would not send go out as raw HTTP, built by [`Upgrade`]: a
//! valid upgrade for `/ws` that each test bends in the one way it is about.

mod common;

use std::convert::Infallible;

use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tower::Layer;
use wshub::{Envelope, Hub, HubBuilder, Recipient};

use common::{raw_http, until, within, Client, RawResponse, TestServer};

/// `Sec-WebSocket-Accept` for the RFC 6455 sample key `dGhlIHNhbXBsZSBub25jZQ==`.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A raw HTTP request, by default a valid WebSocket upgrade for `/ws` on the server's host.
struct Upgrade {
    method: &'static str,
    target: String,
    version: &'static str,
    headers: Vec<(String, String)>,
}

impl Upgrade {
    fn to(server: &TestServer) -> Self {
        Self {
            method: "GET",
            target: "/ws".to_owned(),
            version: "HTTP/1.1",
            headers: [
                ("Host", server.addr.to_string()),
                ("Upgrade", "websocket".to_owned()),
                ("Connection", "Upgrade".to_owned()),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
                ("Sec-WebSocket-Version", "13".to_owned()),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect(),
        }
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn target(mut self, target: &str) -> Self {
        target.clone_into(&mut self.target);
        self
    }

    fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// Sets a header, replacing any line of the same name.
    fn set(self, name: &str, value: &str) -> Self {
        let mut this = self.without(name);
        this.headers.push((name.to_owned(), value.to_owned()));
        this
    }

    /// Adds a header line, keeping any others of the same name.
    fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    async fn send(&self, server: &TestServer) -> RawResponse {
        let mut request = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        raw_http(server.addr, request.as_bytes()).await
    }
}

/// Asserts a refusal: `status`, a short plain-text body that contains `says`, no handshake
/// answer, the app not reached, and no socket opened.
fn assert_refused(response: &RawResponse, status: u16, says: &str, case: &str) {
    assert_eq!(response.status, status, "{case}: {response:?}");
    assert!(
        response.header("sec-websocket-accept").is_none(),
        "{case}: a refusal must not complete the handshake: {response:?}"
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{case}: the refusal is plain text: {response:?}"
    );
    let body = response.body.trim();
    assert!(
        !body.is_empty() && body.len() < 200,
        "{case}: a short text saying what is wrong, got {body:?}"
    );
    assert!(
        body.contains(says),
        "{case}: the body should mention {says:?}, got {body:?}"
    );
    assert!(
        !body.starts_with("app"),
        "{case}: reached the app: {body:?}"
    );
}

fn assert_switched(response: &RawResponse, case: &str) {
    assert_eq!(response.status, 101, "{case}: {response:?}");
    assert_eq!(
        response.header("sec-websocket-accept").as_deref(),
        Some(SAMPLE_ACCEPT),
        "{case}: {response:?}"
    );
}

/// Connects a real client to `/ws<query>` sending `origin` (if any); the `__connected`
/// envelope is read, or the refusal's status returned.
async fn connect_with_origin(
    server: &TestServer,
    query: &str,
    origin: Option<&str>,
) -> Result<Client, u16> {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    server
        .try_connect(query, &headers)
        .await
        .map(|(client, _)| client)
        .map_err(|refused| refused.status)
}

/// An app that echoes what it was given, to prove a request passed through unchanged.
fn echo_app() -> Router {
    Router::new()
        .route("/wsx", get(|| async { "app at /wsx" }))
        .fallback(|request: Request| async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "app saw {} {} upgrade={} x-test={} body={}",
                parts.method,
                parts.uri,
                header("upgrade"),
                header("x-test"),
                String::from_utf8_lossy(&body)
            )
        })
}

// ---------------------------------------------------------------------------------------------
// valid upgrade, accepted → 101 Switching Protocols

#[tokio::test]
async fn valid_upgrade_accepted_is_101_switching_protocols() {
    let server = TestServer::start().await;
    let response = Upgrade::to(&server).send(&server).await;
    assert_switched(&response, "RFC 6455 sample key");
    assert!(
        response
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{response:?}"
    );
    assert!(
        response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{response:?}"
    );

    // Header names and the tokens in `Upgrade`/`Connection` are case-insensitive, and
    // `Connection` may list other tokens too.
    let response = Upgrade::to(&server)
        .set("upgrade", "WebSocket")
        .set("connection", "keep-alive, Upgrade")
        .send(&server)
        .await;
    assert_switched(&response, "mixed-case tokens, Connection list");

    // A real client completes the handshake and gets a working socket.
    let client = server.connect("").await;
    assert_eq!(client.id.len(), 32);
}

#[tokio::test]
async fn connected_envelope_is_first_with_percent_decoded_ids_from_the_query() {
    let server = TestServer::start().await;
    let (mut ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(server.ws_url("?groupId=room%201&userId=J%C3%BCrgen")),
    )
    .await
    .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);

    // The very first frame, not merely the first envelope after some other frame.
    let first = within("the first frame", ws.next())
        .await
        .expect("socket ended before the first frame")
        .expect("socket error before the first frame");
    let Message::Text(text) = first else {
        panic!("the first frame must be a text frame, got {first:?}");
    };
    let envelope: Value = serde_json::from_str(&text).expect("the first frame is JSON");
    let id = envelope["message"]["connectionId"]
        .as_str()
        .unwrap_or_else(|| panic!("connectionId is a string: {envelope}"))
        .to_owned();
    assert_eq!(
        envelope,
        json!({
            "action": "__connected",
            "message": {"connectionId": id, "userId": "Jürgen", "groupId": "room 1"},
            "groupId": "",
            "userId": "",
            "recipients": [],
        }),
        "exactly these fields, nothing more"
    );

    // The ids announced are the ones the hub routes by.
    let parsed: wshub::ConnectionId = id.parse().expect("connectionId parses as a ConnectionId");
    assert_eq!(server.hub.local_user_connections("Jürgen"), [parsed]);
    assert_eq!(server.hub.local_group_connections("room 1"), [parsed]);
}

#[tokio::test]
async fn connected_envelope_without_query_has_empty_ids() {
    let server = TestServer::start().await;
    let (ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(server.ws_url("")),
    )
    .await
    .expect("WebSocket handshake");
    let mut client = Client {
        ws,
        id: String::new(),
    };
    let envelope = client.recv_action("__connected").await;
    assert_eq!(envelope["message"]["userId"], "", "{envelope}");
    assert_eq!(envelope["message"]["groupId"], "", "{envelope}");
}

#[tokio::test]
async fn connection_ids_are_32_hex_digits_and_differ_between_connections() {
    let server = TestServer::start().await;
    let clients = server.connect_many(4, "?userId=same&groupId=same").await;
    let mut ids: Vec<&str> = clients.iter().map(|c| c.id.as_str()).collect();
    for id in &ids {
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every connection has its own id: {ids:?}");
    assert_eq!(server.hub.local_connection_count(), 4);
}

// ---------------------------------------------------------------------------------------------
// not an upgrade (no `Upgrade: websocket`) → passed to the wrapped service unchanged

#[tokio::test]
async fn not_an_upgrade_is_passed_to_the_wrapped_service() {
    let server = TestServer::start().await;
    let host = server.addr;

    let get_ws = server
        .raw(&format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(get_ws.status, 200, "{get_ws:?}");
    assert_eq!(get_ws.body, "app at /ws");

    let post_ws = server
        .raw(&format!(
            "POST /ws HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(post_ws.status, 200, "{post_ws:?}");
    assert_eq!(post_ws.body, "app post at /ws");

    let root = server
        .raw(&format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(root.status, 200, "{root:?}");
    assert_eq!(root.body, "app");

    // The WebSocket headers without `Upgrade: websocket` are not an upgrade either.
    let no_upgrade = Upgrade::to(&server).without("upgrade").send(&server).await;
    assert_eq!(no_upgrade.status, 200, "{no_upgrade:?}");
    assert_eq!(no_upgrade.body, "app at /ws");
    assert_eq!(server.hub.local_connection_count(), 0);
}

#[tokio::test]
async fn not_an_upgrade_reaches_the_app_unchanged() {
    let hub = Hub::builder().build();
    let server = TestServer::serve(hub, echo_app()).await;
    let host = server.addr;

    let response = server
        .raw(&format!(
            "POST /ws?groupId=g&x=1 HTTP/1.1\r\nHost: {host}\r\nX-Test: kept\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.body,
        "app saw POST /ws?groupId=g&x=1 upgrade=- x-test=kept body=hello"
    );

    // An upgrade to another protocol is not a WebSocket upgrade: the app gets it, headers intact.
    let response = Upgrade::to(&server)
        .set("Upgrade", "h2c")
        .set("X-Test", "kept")
        .send(&server)
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.body,
        "app saw GET /ws upgrade=h2c x-test=kept body="
    );
}

#[tokio::test]
async fn not_an_upgrade_on_the_socket_path_because_path_is_matched_exactly() {
    let server = TestServer::start().await;
    let wsx = Upgrade::to(&server).target("/wsx").send(&server).await;
    assert_eq!(wsx.status, 200, "/wsx: {wsx:?}");
    assert_eq!(wsx.body, "app at /wsx");

    let hub = Hub::builder().build();
    let server = TestServer::serve(hub, echo_app()).await;
    for target in ["/ws/", "/WS", "/ws/x", "/wsx?groupId=g"] {
        let response = Upgrade::to(&server).target(target).send(&server).await;
        assert_ne!(response.status, 101, "{target} was intercepted");
        assert!(
            response.header("sec-websocket-accept").is_none(),
            "{target}: {response:?}"
        );
        let expected = if target.starts_with("/wsx") {
            "app at /wsx".to_owned()
        } else {
            format!("app saw GET {target} upgrade=websocket x-test=- body=")
        };
        assert_eq!(response.body, expected, "{target}: {response:?}");
    }
    assert_eq!(server.hub.local_connection_count(), 0);

    // ...while the socket path itself, with a query string, is intercepted.
    let response = Upgrade::to(&server)
        .target("/ws?userId=u")
        .send(&server)
        .await;
    assert_switched(&response, "/ws?userId=u");
}

// ---------------------------------------------------------------------------------------------
// upgrade with bad key/method/headers → 400, short text body saying what is wrong

#[tokio::test]
async fn upgrade_with_bad_key_is_400() {
    let server = TestServer::start().await;
    let missing = Upgrade::to(&server)
        .without("sec-websocket-key")
        .send(&server)
        .await;
    assert_refused(&missing, 400, "Sec-WebSocket-Key", "missing key");

    for (case, key) in [
        ("empty", ""),
        ("too short", "dGhlIHNhbXBsZSBub25jZQ="),
        ("too long", "dGhlIHNhbXBsZSBub25jZQ==x"),
        ("not 16 bytes", "dGhlIHNhbXBsZSBub25jZR=="),
        ("not base64", "dGhlIHNhbXBsZSBub25j!Q=="),
        ("17 bytes", "dGhlIHNhbXBsZSBub25jZQ1="),
        ("plain text", "not-a-websocket-key"),
    ] {
        let response = Upgrade::to(&server)
            .set("Sec-WebSocket-Key", key)
            .send(&server)
            .await;
        assert_refused(&response, 400, "Sec-WebSocket-Key", case);
    }
    assert_eq!(server.hub.local_connection_count(), 0);
}

#[tokio::test]
async fn upgrade_with_method_other_than_get_is_400() {
    let server = TestServer::start().await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let response = Upgrade::to(&server)
            .method(method)
            .set("Content-Length", "0")
            .send(&server)
            .await;
        assert_refused(&response, 400, "GET", method);
    }
    assert_eq!(server.hub.local_connection_count(), 0);
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_is_400() {
    let server = TestServer::start().await;
    let missing = Upgrade::to(&server)
        .without("connection")
        .send(&server)
        .await;
    assert_refused(&missing, 400, "Connection", "no Connection header");

    let keep_alive = Upgrade::to(&server)
        .set("Connection", "keep-alive")
        .send(&server)
        .await;
    assert_refused(&keep_alive, 400, "Connection", "Connection: keep-alive");
    assert_eq!(server.hub.local_connection_count(), 0);
}

#[tokio::test]
async fn upgrade_over_http_1_0_is_400() {
    let server = TestServer::start().await;
    let response = Upgrade::to(&server).version("HTTP/1.0").send(&server).await;
    assert_refused(&response, 400, "HTTP/1.1", "HTTP/1.0");
    assert_eq!(server.hub.local_connection_count(), 0);
}

/// RFC 6455 §11.3.1 and §11.3.5: `Sec-WebSocket-Key` and `Sec-WebSocket-Version` must not
/// appear more than once, and such a handshake is invalid (§4.2.1); which of the lines a server
/// reads would be a guess that a proxy in front may guess differently.
#[tokio::test]
async fn upgrade_with_a_repeated_key_or_version_is_400() {
    let server = TestServer::start().await;
    let other_key = "AAAAAAAAAAAAAAAAAAAAAA==";
    for (case, request, says) in [
        (
            "two keys",
            Upgrade::to(&server).add("Sec-WebSocket-Key", other_key),
            "Sec-WebSocket-Key",
        ),
        (
            "the same key twice",
            Upgrade::to(&server).add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            "Sec-WebSocket-Key",
        ),
        (
            "two versions",
            Upgrade::to(&server).add("Sec-WebSocket-Version", "8"),
            "Sec-WebSocket-Version",
        ),
        (
            "version 13 twice",
            Upgrade::to(&server).add("Sec-WebSocket-Version", "13"),
            "Sec-WebSocket-Version",
        ),
    ] {
        let response = request.send(&server).await;
        assert_refused(&response, 400, says, case);
    }
    assert_eq!(server.hub.local_connection_count(), 0);
}

/// RFC 9112 §3.2: a request with more than one `Host` line is answered `400`. RFC 6454 §7.3: a
/// user agent sends at most one `Origin`, so an origin check over one of several would check
/// what no browser sent. `Upgrade` and `Connection` are token lists, which may be split over
/// several lines (RFC 9110 §5.3).
#[tokio::test]
async fn upgrade_with_a_repeated_host_or_origin_is_400_but_token_lists_may_repeat() {
    let server = TestServer::start().await;
    let own_origin = format!("http://{}", server.addr);
    for (case, request, says) in [
        (
            "two hosts",
            Upgrade::to(&server).add("Host", "evil.example"),
            "Host",
        ),
        (
            "two origins",
            Upgrade::to(&server)
                .add("Origin", &own_origin)
                .add("Origin", "https://evil.example"),
            "Origin",
        ),
        (
            "the same origin twice",
            Upgrade::to(&server)
                .add("Origin", &own_origin)
                .add("Origin", &own_origin),
            "Origin",
        ),
    ] {
        let response = request.send(&server).await;
        assert_refused(&response, 400, says, case);
    }
    assert_eq!(server.hub.local_connection_count(), 0);

    let response = Upgrade::to(&server)
        .add("Upgrade", "websocket")
        .set("Connection", "keep-alive")
        .add("Connection", "Upgrade")
        .add("Origin", &own_origin)
        .send(&server)
        .await;
    assert_switched(
        &response,
        "Upgrade twice, Connection over two lines, one Origin",
    );
}

/// PROTOCOL.md §3: a query-string `userId` or `groupId` longer than `max_id_len` (measured after
/// percent-decoding) refuses the upgrade, rather than opening a socket whose every forward fails.
#[tokio::test]
async fn upgrade_with_a_query_id_longer_than_max_id_len_is_400() {
    let server = TestServer::start().await;
    for (case, query, says) in [
        (
            "an 8,000-byte userId",
            format!("userId={}", "u".repeat(8000)),
            "userId",
        ),
        (
            "a 257-byte userId",
            format!("userId={}", "u".repeat(257)),
            "userId",
        ),
        (
            "a 257-byte groupId",
            format!("userId=ann&groupId={}", "g".repeat(257)),
            "groupId",
        ),
        (
            "a groupId of 258 bytes, decoded",
            format!("groupId={}", "%C3%BC".repeat(129)),
            "groupId",
        ),
    ] {
        let response = Upgrade::to(&server)
            .target(&format!("/ws?{query}"))
            .send(&server)
            .await;
        assert_refused(&response, 400, says, case);
        assert!(
            response.body.contains("256"),
            "{case}: says the limit: {response:?}"
        );
    }
    assert_eq!(server.hub.local_connection_count(), 0);

    // At the limit, decoded: accepted.
    let user = "u".repeat(256);
    let group = "%C3%BC".repeat(128);
    let (_client, connected) = server
        .try_connect(&format!("?userId={user}&groupId={group}"), &[])
        .await
        .expect("ids of exactly max_id_len bytes are accepted");
    assert_eq!(connected["message"]["userId"], user);
    assert_eq!(connected["message"]["groupId"], "ü".repeat(128));

    // The limit is the hub's.
    let server = TestServer::with(Hub::builder().max_id_len(8000)).await;
    let response = Upgrade::to(&server)
        .target(&format!("/ws?userId={}", "u".repeat(8000)))
        .send(&server)
        .await;
    assert_switched(&response, "an 8,000-byte userId under max_id_len(8000)");
}

// ---------------------------------------------------------------------------------------------
// upgrade with `Sec-WebSocket-Version` other than 13 → 426 with `Sec-WebSocket-Version: 13`

#[tokio::test]
async fn upgrade_with_version_other_than_13_is_426() {
    let server = TestServer::start().await;
    let requests = [
        (
            "version 8",
            Upgrade::to(&server).set("Sec-WebSocket-Version", "8"),
        ),
        (
            "version 14",
            Upgrade::to(&server).set("Sec-WebSocket-Version", "14"),
        ),
        (
            "no version",
            Upgrade::to(&server).without("sec-websocket-version"),
        ),
    ];
    for (case, request) in requests {
        let response = request.send(&server).await;
        assert_refused(&response, 426, "13", case);
        assert_eq!(
            response.header("sec-websocket-version").as_deref(),
            Some("13"),
            "{case}: {response:?}"
        );
    }
    assert_eq!(server.hub.local_connection_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// `Origin` not allowed (default: same host as the request, or no Origin header) → 403

#[tokio::test]
async fn origin_not_allowed_is_403_by_default() {
    let server = TestServer::start().await;
    let other_port = format!("http://127.0.0.1:{}", server.addr.port().wrapping_add(1));
    for origin in [
        "https://evil.example",
        "http://localhost",
        other_port.as_str(),
        "null",
    ] {
        let response = Upgrade::to(&server)
            .set("Origin", origin)
            .send(&server)
            .await;
        assert_refused(&response, 403, "origin", origin);
        assert_eq!(
            connect_with_origin(&server, "", Some(origin)).await.err(),
            Some(403),
            "a real client from {origin}"
        );
    }
    assert_eq!(server.hub.local_connection_count(), 0);
}

#[tokio::test]
async fn origin_of_the_same_host_is_allowed_by_default() {
    let server = TestServer::start().await;
    let same = format!("http://{}", server.addr);
    let response = Upgrade::to(&server)
        .set("Origin", &same)
        .send(&server)
        .await;
    assert_switched(&response, &same);

    let client = connect_with_origin(&server, "?userId=u", Some(&same))
        .await
        .unwrap_or_else(|status| panic!("same-host origin refused with {status}"));
    assert_eq!(client.id.len(), 32);
}

#[tokio::test]
async fn no_origin_header_is_allowed_by_default() {
    let server = TestServer::start().await;
    let response = Upgrade::to(&server).without("origin").send(&server).await;
    assert_switched(&response, "no Origin");
    let client = connect_with_origin(&server, "", None)
        .await
        .unwrap_or_else(|status| panic!("no Origin refused with {status}"));
    assert_eq!(client.id.len(), 32);
}

#[tokio::test]
async fn origin_allowed_by_allow_origin_and_same_host_no_longer_is() {
    let server = TestServer::with(Hub::builder().allow_origin("https://app.example")).await;
    for origin in [
        "https://app.example",
        "https://APP.example",
        "https://app.example/",
    ] {
        let response = Upgrade::to(&server)
            .set("Origin", origin)
            .send(&server)
            .await;
        assert_switched(&response, origin);
    }
    assert!(
        connect_with_origin(&server, "", Some("https://app.example"))
            .await
            .is_ok(),
        "a real client from the listed origin"
    );

    let same = format!("http://{}", server.addr);
    for origin in [
        same.as_str(),
        "http://app.example",
        "https://app.example:8443",
        "https://evil.example",
    ] {
        let response = Upgrade::to(&server)
            .set("Origin", origin)
            .send(&server)
            .await;
        assert_refused(&response, 403, "origin", origin);
    }
    // A client that sends no Origin is not a browser page: still accepted.
    let response = Upgrade::to(&server).send(&server).await;
    assert_switched(&response, "no Origin with a list");
}

#[tokio::test]
async fn origin_any_is_allowed_by_allow_any_origin() {
    let server = TestServer::with(Hub::builder().allow_any_origin()).await;
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        let response = Upgrade::to(&server)
            .set("Origin", origin)
            .send(&server)
            .await;
        assert_switched(&response, origin);
    }
    assert!(
        connect_with_origin(&server, "", Some("https://anyone.example"))
            .await
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// identity resolver refuses → the resolver's response
//
// Not testable yet: the crate has no identity-resolver API (src/identity.rs reads the query
// string only). The query-string identity is covered by
// `connected_envelope_is_first_with_percent_decoded_ids_from_the_query`.

// ---------------------------------------------------------------------------------------------
// connection limit reached → 503 with `Retry-After`

#[tokio::test]
async fn connection_limit_reached_is_503_with_retry_after_until_a_place_frees() {
    let server = TestServer::with(Hub::builder().max_connections(2)).await;
    let mut clients = server.connect_many(2, "").await;
    assert_eq!(server.hub.local_connection_count(), 2);

    let response = Upgrade::to(&server).send(&server).await;
    assert_refused(&response, 503, "limit", "third socket");
    let retry_after = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {response:?}"));
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "Retry-After is a number of seconds: {retry_after:?}"
    );
    assert_eq!(
        connect_with_origin(&server, "", None).await.err(),
        Some(503)
    );
    assert_eq!(server.hub.local_connection_count(), 2);

    // One client leaves; once the hub has seen it go, its place is free again.
    let mut leaving = clients.pop().expect("two clients");
    within("closing a client", leaving.ws.close(None))
        .await
        .expect("close");
    leaving.expect_end().await;
    until("the hub to drop the closed connection", || {
        server.hub.local_connection_count() == 1
    })
    .await;
    let again = server.connect("").await;
    assert_eq!(again.id.len(), 32);
    assert_eq!(server.hub.local_connection_count(), 2);

    // And the limit holds again.
    let response = Upgrade::to(&server).send(&server).await;
    assert_refused(&response, 503, "limit", "third socket again");
}

#[tokio::test]
async fn connection_limit_is_not_taken_by_refused_upgrades() {
    let server = TestServer::with(Hub::builder().max_connections(1)).await;
    for _ in 0..3 {
        let response = Upgrade::to(&server)
            .set("Sec-WebSocket-Version", "8")
            .send(&server)
            .await;
        assert_eq!(response.status, 426, "{response:?}");
        let response = Upgrade::to(&server)
            .set("Origin", "https://evil.example")
            .send(&server)
            .await;
        assert_eq!(response.status, 403, "{response:?}");
    }
    let client = server.connect("").await;
    assert_eq!(client.id.len(), 32);
}

#[tokio::test]
async fn shutdown_begun_is_503_with_retry_after() {
    let server = TestServer::start().await;
    let mut client = server.connect("").await;

    let hub = server.hub.clone();
    let shutdown = tokio::spawn(async move { hub.shutdown().await });
    until("shutdown to begin", || server.hub.is_shutting_down()).await;

    // Shutdown has begun and the client has not yet answered its close: new sockets are refused.
    let response = Upgrade::to(&server).send(&server).await;
    assert_refused(&response, 503, "shutting down", "during shutdown");
    assert!(
        response.header("retry-after").is_some(),
        "503 without Retry-After: {response:?}"
    );

    assert_eq!(client.expect_close().await, Some(CloseCode::Away));
    // Reading on sends the client's answering close frame, which lets the shutdown finish.
    client.expect_end().await;
    within("the shutdown to finish", shutdown)
        .await
        .expect("shutdown task");

    // ...and after it has finished, too.
    let response = Upgrade::to(&server).send(&server).await;
    assert_refused(&response, 503, "shutting down", "after shutdown");
    assert!(response.header("retry-after").is_some(), "{response:?}");
    assert_eq!(server.hub.local_connection_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Plain hyper, no axum: the layer over a `tower::service_fn`.

/// Aborts the server task when the test ends.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn plain_hyper_server_upgrades_and_passes_other_requests_to_a_service_fn() {
    let hub = HubBuilder::default().build();
    let inner = tower::service_fn(
        |request: hyper::Request<wshub::RequestBody<hyper::body::Incoming>>| async move {
            let text = format!(
                "plain hyper saw {} {}",
                request.method(),
                request.uri().path()
            );
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
        },
    );
    let service = hub.layer("/ws").layer(inner);

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let _server = Abort(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    }));

    // A WebSocket connects, is announced, and receives what the hub sends.
    let (ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?userId=plain&groupId=p")),
    )
    .await
    .expect("WebSocket handshake over plain hyper");
    assert_eq!(response.status(), 101);
    let mut client = Client {
        ws,
        id: String::new(),
    };
    let connected = client.recv_action("__connected").await;
    assert_eq!(connected["message"]["userId"], "plain", "{connected}");
    assert_eq!(connected["message"]["groupId"], "p", "{connected}");
    assert_eq!(hub.local_connection_count(), 1);
    let delivered = hub.send(
        &Envelope::new("news")
            .with_message("over plain hyper")
            .to(Recipient::all()),
    );
    assert_eq!(delivered, 1);
    let news = client.recv_action("news").await;
    assert_eq!(news["message"], "over plain hyper");

    // Requests that are not upgrades reach the service_fn.
    for (request, expected) in [
        ("GET /other", "plain hyper saw GET /other"),
        ("GET /ws", "plain hyper saw GET /ws"),
        ("POST /ws", "plain hyper saw POST /ws"),
    ] {
        let response = raw_http(
            addr,
            format!(
                "{request} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 200, "{request}: {response:?}");
        assert_eq!(response.body, expected);
    }

    // And the hub's refusals are answered there too.
    let response = raw_http(
        addr,
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 426, "{response:?}");
}
