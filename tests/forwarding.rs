//! PROTOCOL.md §5 (server-bound forwarding) and the forwarding half of §4, over real sockets.
//!
//! Every scenario of §5's response table runs against both targets: in process (an axum route of
//! the wrapped router itself) and external (a second real hyper/axum server on 127.0.0.1, reached
//! through `Forwarding::to_url`). Each scenario is written once as an `async fn(Via)`; the
//! `for_both_targets!` macro turns it into `in_process::<name>` and `external::<name>` tests.
//!
//! Absence is proven without sleeping: after the envelope under test, something routed later to
//! the same clients (a relayed envelope from the same sender, which waits behind its forwards, or a
//! `marker` from the hub) must arrive next. The only timed waits prove that something does NOT
//! happen (a send that stays blocked, a handler nobody else enters), so they cannot be flaky.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, MethodRouter};
use axum::{Json, Router};
use common::{envelope, until, within, Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Barrier, Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use wshub::{Envelope, Forwarded, Forwarding, Hub, HubBuilder, Recipient, RecipientKind};

/// The in-process forward route, in the wrapped router.
const FORWARD_PATH: &str = "/hub/messages";

/// Where a forward goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `Forwarding::in_process(FORWARD_PATH)`, handled by the router the hub wraps.
    InProcess,
    /// `Forwarding::to_url(..)`, handled by a second server on 127.0.0.1.
    External,
}

/// The hub's server, and for an external target the backend server it forwards to.
struct Setup {
    server: TestServer,
    backend: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(backend) = &self.backend {
            backend.abort();
        }
    }
}

impl std::ops::Deref for Setup {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// The application routes every setup has besides the forward route.
fn app_routes() -> Router {
    Router::new().route(
        "/echo-headers",
        any(|headers: HeaderMap| async move {
            headers
                .keys()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        }),
    )
}

/// Starts a hub whose forwards (configured by `configure`) reach `handler`, over `via`.
async fn start(
    via: Via,
    builder: HubBuilder,
    configure: impl FnOnce(Forwarding) -> Forwarding,
    handler: MethodRouter,
) -> Setup {
    match via {
        Via::InProcess => {
            let hub = builder
                .forwarding(configure(Forwarding::in_process(FORWARD_PATH)))
                .build();
            let app = app_routes().route(FORWARD_PATH, handler);
            Setup {
                server: TestServer::serve(hub, app).await,
                backend: None,
            }
        }
        Via::External => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the backend on 127.0.0.1:0");
            let addr = listener.local_addr().expect("backend address");
            let backend = Router::new().route("/backend", handler);
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, backend).await;
            });
            let url = format!("http://{addr}/backend");
            let forwarding = Forwarding::to_url(&url).expect("a valid forward URL");
            let hub = builder.forwarding(configure(forwarding)).build();
            Setup {
                server: TestServer::serve(hub, app_routes()).await,
                backend: Some(task),
            }
        }
    }
}

/// Generates `in_process::$name` and `external::$name` tests from `async fn $name(Via)`.
macro_rules! for_both_targets {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Via::InProcess).await;
                }
            )*
        }
        mod external {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Via::External).await;
                }
            )*
        }
    };
}

for_both_targets!(
    answer_with_one_envelope_is_routed,
    answer_with_an_array_of_envelopes_routes_each,
    empty_answer_routes_nothing,
    error_status_is_forward_failed_for_the_sender_only,
    forbidden_answer_is_forbidden_with_its_reason,
    invalid_json_answer_is_forward_failed,
    slow_answer_is_forward_timeout,
    forwarded_request_carries_envelope_identity_and_copied_headers,
    copied_header_list_is_configurable_but_never_wshub,
    only_listed_actions_are_forwarded,
    all_actions_but_the_excepted_are_forwarded,
    relay_only_through_forwarding_refuses_other_actions,
    relay_filter_refuses_with_its_reason_but_not_forwards,
    each_connection_is_handled_in_order_across_forwards_and_relays,
    forwards_of_different_connections_run_concurrently,
    max_concurrent_bounds_forwards_in_flight,
    blocked_forward_stops_reading_without_losing_messages,
    forward_from_an_anonymous_connection_carries_empty_ids,
    forward_body_keeps_the_recipients_that_receivers_do_not_see,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The JSON body of a forward.
fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "forward body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

/// A header of a forward, as text.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("visible ASCII header").to_owned())
}

/// Answers a forward with `re:<action>`, the same message, to the same recipients.
fn echo(body: &[u8]) -> Response {
    let env = body_json(body);
    let action = env["action"].as_str().expect("action is a string");
    Json(json!({
        "action": format!("re:{action}"),
        "message": env["message"],
        "recipients": env["recipients"],
    }))
    .into_response()
}

/// Connects to the hub's socket with extra upgrade-request headers, and reads `__connected`.
async fn connect_with(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Client {
    match server.try_connect(query, headers).await {
        Ok((client, _)) => client,
        Err(refused) => panic!("the handshake was refused: {refused:?}"),
    }
}

/// Asserts that `got` is an `__error` envelope with `code`, as §6 shapes it, and returns its detail.
fn error_detail(got: &Value, code: &str) -> String {
    assert_eq!(got["action"], "__error", "expected an __error: {got}");
    assert_eq!(got["message"]["code"], code, "error code: {got}");
    assert_eq!(got["userId"], "", "{got}");
    assert_eq!(got["groupId"], "", "{got}");
    assert_eq!(got["recipients"], json!([]), "{got}");
    got["message"]["detail"]
        .as_str()
        .expect("detail is a string")
        .to_owned()
}

/// What the sender's `__error` detail must be.
enum Detail<'a> {
    Exactly(&'a str),
    Contains(&'a str),
    NotEmpty,
}

/// The failure half of §5's table: a client whose forwards (action `fwd`, to everyone) fail gets
/// `__error` with `code`, nobody else gets anything, and its socket stays open and keeps working
/// (a relayed envelope still goes through in order, and a second forward fails the same way).
async fn failure_reaches_only_the_sender(setup: &Setup, code: &str, detail: Detail<'_>) {
    let mut sender = setup.connect("?userId=ann").await;
    let mut other = setup.connect("?userId=bob").await;
    for round in 0..2 {
        sender
            .send_json(&envelope(
                "fwd",
                json!(format!("attempt {round}")),
                json!([{"type": "all"}]),
            ))
            .await;
        let got = sender.recv().await;
        let text = error_detail(&got, code);
        match detail {
            Detail::Exactly(expected) => assert_eq!(text, expected, "{got}"),
            Detail::Contains(part) => assert!(text.contains(part), "{got}"),
            Detail::NotEmpty => assert!(!text.is_empty(), "{got}"),
        }
        // Relayed envelopes wait behind the sender's forwards: this one arriving next at both
        // shows the socket still works and that the failed forward routed nothing to anyone.
        sender
            .send_json(&envelope("after", json!(round), json!([{"type": "all"}])))
            .await;
        for client in [&mut sender, &mut other] {
            let got = client.recv_action("after").await;
            assert_eq!(got["message"], round);
        }
    }
    setup.send_marker();
    sender.recv_action("marker").await;
    other.recv_action("marker").await;
    assert_eq!(
        setup.hub.local_connection_count(),
        2,
        "both sockets stay open"
    );
}

// ---------------------------------------------------------------------------------------------
// §5's response table: 2xx answers

/// 2xx with one envelope: routed to its recipients, the sender included when addressed.
async fn answer_with_one_envelope_is_routed(via: Via) {
    let handler = |body: Bytes| async move {
        let env = body_json(&body);
        let text = env["message"].as_str().expect("a string message");
        Json(json!({
            "action": "reply",
            "message": text.to_uppercase(),
            "userId": "app",
            "recipients": [{"type": "all"}],
        }))
    };
    let setup = start(via, Hub::builder(), |f| f, any(handler)).await;
    let mut sender = setup.connect("?userId=ann&groupId=talk").await;
    let mut others = setup.connect_many(2, "?groupId=room").await;

    sender
        .send_json(&envelope("shout", json!("hello"), json!([])))
        .await;
    for client in std::iter::once(&mut sender).chain(others.iter_mut()) {
        let got = client.recv_action("reply").await;
        assert_eq!(got["message"], "HELLO");
        assert_eq!(got["userId"], "app", "routed as the application wrote it");
    }
    // The forwarded envelope itself (to the default group, which nobody is in) went nowhere,
    // and the answer was routed once.
    setup.send_marker();
    sender.recv_action("marker").await;
    for client in &mut others {
        client.recv_action("marker").await;
    }
}

/// 2xx (here 201) with an array of envelopes: each is routed to its own recipients.
async fn answer_with_an_array_of_envelopes_routes_each(via: Via) {
    let handler = |headers: HeaderMap| async move {
        let me = header(&headers, "wshub-connection-id").expect("connection id header");
        (
            StatusCode::CREATED,
            Json(json!([
                {"action": "to-sender", "message": 1, "recipients": [{"type": "connection", "value": me}]},
                {"action": "to-watchers", "message": 2, "recipients": [{"type": "group", "value": "watchers"}]},
                {"action": "to-everyone-else", "message": 3, "recipients": [{"type": "allButConnection", "value": me}]},
            ])),
        )
    };
    let setup = start(via, Hub::builder(), |f| f, any(handler)).await;
    let mut sender = setup.connect("?groupId=talk").await;
    let mut watchers = setup.connect_many(2, "?groupId=watchers").await;
    let mut bystander = setup.connect("?groupId=elsewhere").await;

    sender
        .send_json(&envelope("fwd", json!("go"), json!([])))
        .await;
    assert_eq!(sender.recv_action("to-sender").await["message"], 1);
    for watcher in &mut watchers {
        assert_eq!(watcher.recv_action("to-watchers").await["message"], 2);
        assert_eq!(watcher.recv_action("to-everyone-else").await["message"], 3);
    }
    assert_eq!(
        bystander.recv_action("to-everyone-else").await["message"],
        3
    );
    // Each went to its recipients only.
    setup.send_marker();
    sender.recv_action("marker").await;
    bystander.recv_action("marker").await;
    for watcher in &mut watchers {
        watcher.recv_action("marker").await;
    }
}

/// 2xx with an empty body (204, or 200 with nothing): nothing more happens.
async fn empty_answer_routes_nothing(via: Via) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let handler = move |body: Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            match body_json(&body)["message"].as_str() {
                Some("204") => StatusCode::NO_CONTENT.into_response(),
                _ => (StatusCode::OK, "").into_response(),
            }
        }
    };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    let mut sender = setup.connect("").await;
    let mut other = setup.connect("").await;

    for (round, status) in ["204", "200"].into_iter().enumerate() {
        sender
            .send_json(&envelope("fwd", json!(status), json!([{"type": "all"}])))
            .await;
        // Relayed behind the forward: whatever the answer caused would arrive before it.
        sender
            .send_json(&envelope("after", json!(round), json!([{"type": "all"}])))
            .await;
        for client in [&mut sender, &mut other] {
            let got = client.recv().await;
            assert_eq!(got["action"], "after", "{status} routed something: {got}");
            assert_eq!(got["message"], round);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "both were forwarded");
    setup.send_marker();
    sender.recv_action("marker").await;
    other.recv_action("marker").await;
}

// ---------------------------------------------------------------------------------------------
// §5's response table: failures

/// A non-2xx answer (500): `forward_failed` for the sender only.
async fn error_status_is_forward_failed_for_the_sender_only(via: Via) {
    let handler = || async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"action": "leak", "recipients": [{"type": "all"}]})),
        )
    };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    failure_reaches_only_the_sender(&setup, "forward_failed", Detail::NotEmpty).await;
}

/// `403` with a reason: `forbidden`, with the reason as the detail.
async fn forbidden_answer_is_forbidden_with_its_reason(via: Via) {
    let handler = || async { (StatusCode::FORBIDDEN, "you may not shout in this room") };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    failure_reaches_only_the_sender(
        &setup,
        "forbidden",
        Detail::Exactly("you may not shout in this room"),
    )
    .await;
}

/// A 200 whose body is not JSON, or JSON that is not an envelope: `forward_failed`.
async fn invalid_json_answer_is_forward_failed(via: Via) {
    let handler = |body: Bytes| async move {
        // First round: not JSON at all; second round: JSON, but not an envelope.
        let answer = if body_json(&body)["message"] == "attempt 0" {
            "<html>not json</html>"
        } else {
            r#"{"action": 5, "recipients": [{"type": "all"}]}"#
        };
        ([("content-type", "application/json")], answer)
    };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    failure_reaches_only_the_sender(&setup, "forward_failed", Detail::NotEmpty).await;
}

/// An application that never answers: `forward_timeout` after the configured timeout.
async fn slow_answer_is_forward_timeout(via: Via) {
    let handler = || async { std::future::pending::<Response>().await };
    let configure = |f: Forwarding| f.actions(["fwd"]).timeout(Duration::from_millis(200));
    let setup = start(via, Hub::builder(), configure, any(handler)).await;
    failure_reaches_only_the_sender(&setup, "forward_timeout", Detail::Contains("200ms")).await;
}

/// An external URL nobody listens on: `forward_failed`.
#[tokio::test]
async fn external_unreachable_url_is_forward_failed() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("http://127.0.0.1:{port}/backend");
    let hub = Hub::builder()
        .forwarding(
            Forwarding::to_url(&url)
                .expect("a valid URL")
                .actions(["fwd"]),
        )
        .build();
    let setup = Setup {
        server: TestServer::serve(hub, app_routes()).await,
        backend: None,
    };
    failure_reaches_only_the_sender(&setup, "forward_failed", Detail::NotEmpty).await;
}

#[tokio::test]
async fn in_process_404_says_the_layer_probably_wraps_each_route() {
    // The forward path has no route: what `router.layer(hub.layer(..))` looks like from inside.
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process(FORWARD_PATH).actions(["fwd"]))
        .build();
    let server = TestServer::serve(hub, Router::new()).await;
    let mut client = server.connect("").await;
    client.send_json(&json!({"action": "fwd"})).await;
    let error = client.recv_action("__error").await;
    assert_eq!(error["message"]["code"], "forward_failed");
    let detail = error["message"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("404")
            && detail.contains(FORWARD_PATH)
            && detail.contains("hub.layer(..).layer(router)"),
        "{detail}"
    );
}

// ---------------------------------------------------------------------------------------------
// The forwarded request

/// What a handler saw of one forward.
#[derive(Debug)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Value,
}

/// A handler that reports every forward it gets on a channel and answers 204.
fn recording() -> (MethodRouter, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |method: Method, headers: HeaderMap, body: Bytes| {
        let tx = tx.clone();
        async move {
            let body = body_json(&body);
            let _ = tx.send(Seen {
                method,
                headers,
                body,
            });
            StatusCode::NO_CONTENT
        }
    };
    (any(handler), rx)
}

/// POST, JSON, the envelope with the sender's identity stamped, the `wshub-*` identity headers,
/// and the upgrade request's `cookie` and `authorization` (only those) copied.
async fn forwarded_request_carries_envelope_identity_and_copied_headers(via: Via) {
    let (handler, mut seen) = recording();
    let configure = |f: Forwarding| {
        f.header(
            HeaderName::from_static("x-hub-secret"),
            HeaderValue::from_static("s3cret"),
        )
    };
    let setup = start(via, Hub::builder(), configure, handler).await;
    let mut ann = connect_with(
        &setup,
        "?userId=ann&groupId=room",
        &[
            ("cookie", "session=abc; theme=dark"),
            ("authorization", "Bearer secret-token"),
            ("x-not-copied", "1"),
            ("wshub-user-id", "admin"),
        ],
    )
    .await;
    ann.send_json(&json!({
        "action": "fwd",
        "message": {"n": 1, "text": "hi"},
        "userId": "mallory",
        "groupId": "evil",
        "recipients": [{"type": "allExceptUser", "value": "bob"}],
        "extra": true,
    }))
    .await;
    let got = within("the forward", seen.recv()).await.expect("a forward");

    assert_eq!(got.method, Method::POST);
    let h = &got.headers;
    assert_eq!(
        header(h, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(h, "wshub-connection-id").as_deref(),
        Some(ann.id.as_str())
    );
    assert_eq!(h.get_all("wshub-user-id").iter().count(), 1, "{h:?}");
    assert_eq!(header(h, "wshub-user-id").as_deref(), Some("ann"));
    assert_eq!(header(h, "wshub-group-id").as_deref(), Some("room"));
    assert_eq!(
        header(h, "cookie").as_deref(),
        Some("session=abc; theme=dark")
    );
    assert_eq!(
        header(h, "authorization").as_deref(),
        Some("Bearer secret-token")
    );
    assert_eq!(header(h, "x-not-copied"), None, "not in the copied list");
    assert_eq!(header(h, "x-hub-secret").as_deref(), Some("s3cret"));

    // The envelope, stamped with the sender's identity, canonical, unknown fields dropped.
    assert_eq!(
        got.body,
        json!({
            "action": "fwd",
            "message": {"n": 1, "text": "hi"},
            "groupId": "room",
            "userId": "ann",
            "recipients": [{"type": "allButUser", "value": "bob"}],
        })
    );

    // Another connection: its own identity (percent-encoded in headers beyond visible ASCII),
    // and no cookie or authorization since its upgrade request had none.
    let mut jurgen = setup
        .connect("?userId=J%C3%BCrgen%20100%25&groupId=r%C3%A4um")
        .await;
    jurgen
        .send_json(&envelope("fwd", json!("x"), json!([])))
        .await;
    let got = within("the forward", seen.recv()).await.expect("a forward");
    let h = &got.headers;
    assert_eq!(
        header(h, "wshub-connection-id").as_deref(),
        Some(jurgen.id.as_str())
    );
    assert_eq!(
        header(h, "wshub-user-id").as_deref(),
        Some("J%C3%BCrgen 100%25")
    );
    assert_eq!(header(h, "wshub-group-id").as_deref(), Some("r%C3%A4um"));
    assert_eq!(header(h, "cookie"), None);
    assert_eq!(header(h, "authorization"), None);
    assert_eq!(got.body["userId"], "Jürgen 100%");
    assert_eq!(got.body["groupId"], "räum");
}

/// `copy_headers` replaces the copied list; the hub's own `wshub-*` headers are never copied.
async fn copied_header_list_is_configurable_but_never_wshub(via: Via) {
    let (handler, mut seen) = recording();
    let configure = |f: Forwarding| {
        f.copy_headers([
            HeaderName::from_static("x-tenant"),
            HeaderName::from_static("wshub-user-id"),
        ])
    };
    let setup = start(via, Hub::builder(), configure, handler).await;
    let mut ann = connect_with(
        &setup,
        "?userId=ann",
        &[
            ("x-tenant", "acme"),
            ("cookie", "session=abc"),
            ("wshub-user-id", "admin"),
        ],
    )
    .await;
    ann.send_json(&envelope("fwd", json!("x"), json!([]))).await;
    let got = within("the forward", seen.recv()).await.expect("a forward");
    let h = &got.headers;
    assert_eq!(header(h, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(header(h, "cookie"), None, "no longer in the list");
    let users: Vec<_> = h.get_all("wshub-user-id").iter().collect();
    assert_eq!(users, ["ann"], "the forged upgrade header is not copied");
}

/// PROTOCOL.md §4: an anonymous connection's envelopes are stamped with its empty ids before
/// they are forwarded, so the application never reads a claimed identity, in the headers or in
/// the body.
async fn forward_from_an_anonymous_connection_carries_empty_ids(via: Via) {
    let (handler, mut seen) = recording();
    let setup = start(via, Hub::builder(), |f| f, handler).await;
    let mut anonymous = setup.connect("").await;
    anonymous
        .send_json(&json!({
            "action": "fwd",
            "message": "it is me, alice",
            "userId": "alice",
            "groupId": "team",
        }))
        .await;
    let got = within("the forward", seen.recv()).await.expect("a forward");
    let h = &got.headers;
    assert_eq!(header(h, "wshub-user-id").as_deref(), Some(""), "{h:?}");
    assert_eq!(header(h, "wshub-group-id").as_deref(), Some(""), "{h:?}");
    assert_eq!(
        (&got.body["userId"], &got.body["groupId"]),
        (&json!(""), &json!("")),
        "the forwarded envelope carries the claimed ids: {}",
        got.body
    );
}

/// The application needs the recipients of a forwarded envelope, so its body keeps them; what
/// the application answers is delivered with `recipients: []` (PROTOCOL.md §1), like any frame.
async fn forward_body_keeps_the_recipients_that_receivers_do_not_see(via: Via) {
    let (tx, mut bodies) = mpsc::unbounded_channel::<Value>();
    let handler = move |body: Bytes| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(body_json(&body));
            echo(&body)
        }
    };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    let mut sender = setup.connect("?userId=ann&groupId=room").await;
    let mut other = setup.connect("?userId=bob&groupId=room").await;
    let recipients = json!([
        {"type": "group", "value": "room"},
        {"type": "allButConnection", "value": sender.id},
    ]);
    sender
        .send_json(&envelope("fwd", json!("hi"), recipients.clone()))
        .await;
    let body = within("the forward", bodies.recv())
        .await
        .expect("a forward");
    assert_eq!(body["recipients"], recipients, "{body}");
    let got = other.recv_action("re:fwd").await;
    assert_eq!(got["message"], "hi");
    assert_eq!(got["recipients"], json!([]), "{got}");
    setup.send_marker();
    sender.recv_action("marker").await;
    other.recv_action("marker").await;
}

// ---------------------------------------------------------------------------------------------
// Which actions are forwarded, and the relay policy

/// Sends `fwd`, `rel` and `misc` to everyone from one client; the handler echoes (`re:<action>`).
/// Returns what the sender and an observer then receive, and which actions the handler saw.
async fn filtered(via: Via, configure: impl FnOnce(Forwarding) -> Forwarding) -> Vec<String> {
    let (tx, mut actions) = mpsc::unbounded_channel::<String>();
    let handler = move |body: Bytes| {
        let tx = tx.clone();
        async move {
            let env = body_json(&body);
            let _ = tx.send(env["action"].as_str().unwrap_or_default().to_owned());
            echo(&body)
        }
    };
    let setup = start(via, Hub::builder(), configure, any(handler)).await;
    let mut sender = setup.connect("").await;
    let mut observer = setup.connect("").await;
    for action in ["fwd", "rel", "misc"] {
        sender
            .send_json(&envelope(action, json!(action), json!([{"type": "all"}])))
            .await;
    }
    let mut received = Vec::new();
    for client in [&mut sender, &mut observer] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                client.recv().await["action"]
                    .as_str()
                    .expect("action")
                    .to_owned(),
            );
        }
        received.push(got);
    }
    assert_eq!(received[0], received[1], "sender and observer agree");
    let mut forwarded = Vec::new();
    while let Ok(action) = actions.try_recv() {
        forwarded.push(action);
    }
    // Every answer was routed, so the handler has reported every forward by now.
    assert_eq!(
        forwarded,
        received[0]
            .iter()
            .filter_map(|a| a.strip_prefix("re:"))
            .collect::<Vec<_>>(),
        "the handler saw exactly the forwarded actions"
    );
    received.swap_remove(0)
}

/// `.actions([..])` forwards only those actions; the rest are relayed.
async fn only_listed_actions_are_forwarded(via: Via) {
    let got = filtered(via, |f| f.actions(["fwd"])).await;
    assert_eq!(got, ["re:fwd", "rel", "misc"]);
}

/// `.all_actions_except([..])` relays only those actions; the rest are forwarded.
async fn all_actions_but_the_excepted_are_forwarded(via: Via) {
    let got = filtered(via, |f| f.all_actions_except(["rel"])).await;
    assert_eq!(got, ["re:fwd", "rel", "re:misc"]);
}

/// `relay_only_through_forwarding`: a non-forwarded action is refused with `forbidden`.
async fn relay_only_through_forwarding_refuses_other_actions(via: Via) {
    let handler = |body: Bytes| async move { echo(&body) };
    let builder = Hub::builder().relay_only_through_forwarding();
    let setup = start(via, builder, |f| f.actions(["fwd"]), any(handler)).await;
    let mut sender = setup.connect("").await;
    let mut other = setup.connect("").await;

    sender
        .send_json(&envelope("rel", json!("direct"), json!([{"type": "all"}])))
        .await;
    let got = sender.recv().await;
    error_detail(&got, "forbidden");
    sender
        .send_json(&envelope("fwd", json!("checked"), json!([{"type": "all"}])))
        .await;
    for client in [&mut sender, &mut other] {
        let got = client.recv().await;
        assert_eq!(got["action"], "re:fwd", "the relay went nowhere: {got}");
        assert_eq!(got["message"], "checked");
    }
    setup.send_marker();
    sender.recv_action("marker").await;
    other.recv_action("marker").await;
}

/// `relay_filter`: a relay it refuses gets `forbidden` with its reason; allowed relays and
/// forwarded actions (which it does not judge) go through.
async fn relay_filter_refuses_with_its_reason_but_not_forwards(via: Via) {
    const REASON: &str = "clients may not send to everyone";
    let handler = |body: Bytes| async move { echo(&body) };
    let builder = Hub::builder().relay_filter(|e: &Envelope| {
        if e.recipients.iter().any(|r| r.kind == RecipientKind::All) {
            Err(REASON.to_owned())
        } else {
            Ok(())
        }
    });
    let setup = start(via, builder, |f| f.actions(["fwd"]), any(handler)).await;
    let mut sender = setup.connect("").await;
    let mut other = setup.connect("?groupId=g").await;

    sender
        .send_json(&envelope("rel", json!(1), json!([{"type": "all"}])))
        .await;
    let got = sender.recv().await;
    assert_eq!(error_detail(&got, "forbidden"), REASON);
    sender
        .send_json(&envelope(
            "rel",
            json!(2),
            json!([{"type": "group", "value": "g"}]),
        ))
        .await;
    sender
        .send_json(&envelope("fwd", json!(3), json!([{"type": "all"}])))
        .await;
    let got = other.recv_action("rel").await;
    assert_eq!(got["message"], 2, "the refused relay went nowhere: {got}");
    assert_eq!(other.recv_action("re:fwd").await["message"], 3);
    assert_eq!(sender.recv_action("re:fwd").await["message"], 3);
    setup.send_marker();
    sender.recv_action("marker").await;
    other.recv_action("marker").await;
}

// ---------------------------------------------------------------------------------------------
// Ordering and concurrency

/// 20 connections each send 50 numbered envelopes, alternately forwarded (echoed by the handler
/// to the watcher) and relayed (to the watcher); the watcher sees each connection's numbers in
/// order.
async fn each_connection_is_handled_in_order_across_forwards_and_relays(via: Via) {
    const SENDERS: usize = 20;
    const EACH: u64 = 50;
    // The handler does not answer at once, so that the connection reads on while a forward is
    // under way (an in-process answer that is ready at the first poll would hide a relay that
    // jumps the line).
    let handler = |body: Bytes| async move {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        echo(&body)
    };
    let setup = start(via, Hub::builder(), |f| f.actions(["fwd"]), any(handler)).await;
    let mut watcher = setup.connect("?groupId=watch").await;
    let senders = setup.connect_many(SENDERS, "?groupId=send").await;

    let to = json!([{"type": "connection", "value": watcher.id}]);
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            let to = to.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let action = if n % 2 == 0 { "fwd" } else { "rel" };
                    client
                        .send_json(&envelope(action, json!({"s": s, "n": n}), to.clone()))
                        .await;
                }
                client
            })
        })
        .collect();

    let mut next = [0u64; SENDERS];
    for _ in 0..SENDERS as u64 * EACH {
        let got = watcher.recv().await;
        let s = usize::try_from(got["message"]["s"].as_u64().expect("s")).expect("index");
        let n = got["message"]["n"].as_u64().expect("n");
        assert_eq!(n, next[s], "connection {s} out of order: {got}");
        let expected = if n % 2 == 0 { "re:fwd" } else { "rel" };
        assert_eq!(got["action"], expected, "{got}");
        next[s] += 1;
    }
    assert!(next.iter().all(|&n| n == EACH), "{next:?}");
    let mut senders = Vec::new();
    for task in tasks {
        senders.push(
            within("a sender to finish", task)
                .await
                .expect("sender task"),
        );
    }
    setup.send_marker();
    watcher.recv_action("marker").await;
    drop(senders);
}

/// N connections' forwards are all in the handler at once: a barrier of N only opens if they are.
async fn forwards_of_different_connections_run_concurrently(via: Via) {
    const N: usize = 8;
    let barrier = Arc::new(Barrier::new(N));
    let handler = move |body: Bytes| {
        let barrier = Arc::clone(&barrier);
        async move {
            barrier.wait().await;
            echo(&body)
        }
    };
    let setup = start(via, Hub::builder(), |f| f, any(handler)).await;
    let mut clients = setup.connect_many(N, "").await;
    for client in &mut clients {
        let me = json!([{"type": "connection", "value": client.id}]);
        client.send_json(&envelope("fwd", json!("in"), me)).await;
    }
    for client in &mut clients {
        let got = client.recv_action("re:fwd").await;
        assert_eq!(got["message"], "in");
    }
}

/// `max_concurrent(2)`: never more than 2 forwards in the handler at once, across connections.
async fn max_concurrent_bounds_forwards_in_flight(via: Via) {
    const K: usize = 2;
    const N: usize = 6;
    struct Gate {
        inside: AtomicUsize,
        most: AtomicUsize,
        entered: AtomicUsize,
        open: Semaphore,
    }
    let gate = Arc::new(Gate {
        inside: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        entered: AtomicUsize::new(0),
        open: Semaphore::new(0),
    });
    let shared = Arc::clone(&gate);
    let handler = move |body: Bytes| {
        let gate = Arc::clone(&shared);
        async move {
            let inside = gate.inside.fetch_add(1, Ordering::SeqCst) + 1;
            gate.most.fetch_max(inside, Ordering::SeqCst);
            gate.entered.fetch_add(1, Ordering::SeqCst);
            gate.open.acquire().await.expect("gate open").forget();
            gate.inside.fetch_sub(1, Ordering::SeqCst);
            echo(&body)
        }
    };
    let setup = start(via, Hub::builder(), |f| f.max_concurrent(K), any(handler)).await;
    let mut clients = setup.connect_many(N, "").await;
    for client in &mut clients {
        let me = json!([{"type": "connection", "value": client.id}]);
        client.send_json(&envelope("fwd", json!("in"), me)).await;
    }
    until("two forwards in the handler", || {
        gate.entered.load(Ordering::SeqCst) >= K
    })
    .await;
    // Proving an absence: while those two are held, no third forward enters.
    let third = tokio::time::timeout(Duration::from_millis(300), async {
        while gate.entered.load(Ordering::SeqCst) <= K {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        third.is_err(),
        "a third forward entered past max_concurrent"
    );

    gate.open.add_permits(N);
    for client in &mut clients {
        client.recv_action("re:fwd").await;
    }
    assert_eq!(gate.entered.load(Ordering::SeqCst), N);
    assert_eq!(
        gate.most.load(Ordering::SeqCst),
        K,
        "at most (and, with 6 waiting, exactly) max_concurrent at once"
    );
}

// ---------------------------------------------------------------------------------------------
// Backpressure

/// With `max_pending(4)` and a forward that does not finish, the hub stops reading the sender:
/// its 2,000 large relays cannot all be sent, its socket stays open, and once the forward is
/// answered every relay arrives, in order, after the forward's answer.
async fn blocked_forward_stops_reading_without_losing_messages(via: Via) {
    const COUNT: u64 = 2_000;
    const PAD: usize = 16 * 1024;
    let release = Arc::new(Notify::new());
    let entered = Arc::new(AtomicBool::new(false));
    let (gate, flag) = (Arc::clone(&release), Arc::clone(&entered));
    let handler = move |body: Bytes| {
        let (gate, flag) = (Arc::clone(&gate), Arc::clone(&flag));
        async move {
            flag.store(true, Ordering::SeqCst);
            gate.notified().await;
            echo(&body)
        }
    };
    let configure = |f: Forwarding| f.actions(["fwd"]).max_pending(4);
    let setup = start(via, Hub::builder(), configure, any(handler)).await;
    let mut receiver = setup.connect("").await;
    let mut sender = setup.connect("").await;
    let to = json!([{"type": "connection", "value": receiver.id}]);

    sender
        .send_json(&envelope("fwd", json!("first"), to.clone()))
        .await;
    until("the forward to reach the handler", || {
        entered.load(Ordering::SeqCst)
    })
    .await;

    let (mut sink, stream) = sender.ws.split();
    let mut sending = tokio::spawn(async move {
        let pad = "x".repeat(PAD);
        for n in 0..COUNT {
            let text = envelope("rel", json!({"n": n, "pad": pad}), to.clone()).to_string();
            sink.send(Message::text(text)).await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(sink)
    });
    // Proving an absence: while the forward is blocked, the sender cannot get everything out.
    // (The window is generous: without backpressure a debug build sends all 32 MiB in well under
    // a second, while with it the sender stalls after the socket buffers fill, ~4 MiB.)
    let early = tokio::time::timeout(Duration::from_secs(2), &mut sending).await;
    if let Ok(finished) = early {
        let what = match finished {
            Ok(Ok(_)) => "sent every relay".to_owned(),
            Ok(Err(e)) => format!("failed to send ({e})"),
            Err(e) => format!("panicked ({e})"),
        };
        panic!("the sender {what} while the forward was blocked");
    }
    assert_eq!(
        setup.hub.local_connection_count(),
        2,
        "the hub closed a socket"
    );

    release.notify_one();
    let got = receiver.recv_action("re:fwd").await;
    assert_eq!(got["message"], "first");
    for n in 0..COUNT {
        let got = receiver.recv().await;
        assert_eq!(got["action"], "rel", "{}", got["action"]);
        assert_eq!(got["message"]["n"], n, "relay {n} lost or out of order");
    }
    let sink = within("the sender to finish", sending)
        .await
        .expect("sender task")
        .expect("every relay sent");
    setup.send_marker();
    receiver.recv_action("marker").await;
    drop((sink, stream));
}

// ---------------------------------------------------------------------------------------------
// The extractor and the trusted headers (in process only)

/// The `Forwarded` extractor hands the handler the stamped envelope and the trusted sender; its
/// answer is routed, in order with the sender's relays.
#[tokio::test]
async fn in_process_extractor_sees_the_trusted_sender() {
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process(FORWARD_PATH).actions(["shout"]))
        .build();
    let app = app_routes().route(
        FORWARD_PATH,
        post(|Forwarded { envelope, sender }: Forwarded| async move {
            let text: String = envelope.message_as().expect("a string message");
            Json(
                Envelope::new("shouted")
                    .with_message(&json!({
                        "text": text.to_uppercase(),
                        "connectionId": sender.connection_id.to_string(),
                        "groups": sender.groups,
                        "envelopeUserId": envelope.user_id,
                        "envelopeGroupId": envelope.group_id,
                    }))
                    .to(Recipient::all())
                    .from_user(sender.user_id),
            )
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let mut a = server.connect("?userId=ann&groupId=room").await;
    let mut b = server.connect("").await;
    a.send_json(&json!({"action": "shout", "message": "hi", "userId": "mallory"}))
        .await;
    a.send_json(&envelope(
        "plain",
        json!("relayed"),
        json!([{"type": "all"}]),
    ))
    .await;
    let id = a.id.clone();
    for c in [&mut a, &mut b] {
        let got = c.recv_action("shouted").await;
        assert_eq!(got["userId"], "ann");
        assert_eq!(
            got["message"],
            json!({
                "text": "HI",
                "connectionId": id,
                "groups": ["room"],
                "envelopeUserId": "ann",
                "envelopeGroupId": "room",
            })
        );
        c.recv_action("plain").await;
    }
}

/// The extractor parses with the hub's field limits: a hub configured for longer ids than the
/// default takes its own forwards.
#[tokio::test]
async fn extractor_takes_ids_as_long_as_the_hub_allows() {
    let hub = Hub::builder()
        .max_id_len(1000)
        .forwarding(Forwarding::in_process(FORWARD_PATH))
        .build();
    let app = app_routes().route(
        FORWARD_PATH,
        post(|Forwarded { envelope, sender }: Forwarded| async move {
            Json(
                Envelope::new("took")
                    .with_message(&envelope.user_id.len())
                    .to(Recipient::connection(sender.connection_id)),
            )
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let user = "u".repeat(600);
    let mut client = server.connect(&format!("?userId={user}")).await;
    client
        .send_json(&envelope("fwd", json!("x"), json!([])))
        .await;
    let got = client.recv().await;
    assert_eq!(got["action"], "took", "the forward failed: {got}");
    assert_eq!(got["message"], 600, "{got}");
}

/// A plain HTTP request to the forward route, even with forged `wshub-*` headers, is refused by
/// the extractor; and `wshub-*` headers never reach the application on ordinary requests.
#[tokio::test]
async fn extractor_refuses_requests_that_did_not_come_from_the_hub() {
    let reached = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&reached);
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process(FORWARD_PATH))
        .build();
    let app = app_routes().route(
        FORWARD_PATH,
        post(move |Forwarded { .. }: Forwarded| {
            let flag = Arc::clone(&flag);
            async move {
                flag.store(true, Ordering::SeqCst);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let server = TestServer::serve(hub, app).await;

    let body = r#"{"action":"fwd","message":"forged","recipients":[{"type":"all"}]}"#;
    let forged = format!(
        "POST {FORWARD_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         wshub-connection-id: 0123456789abcdef0123456789abcdef\r\nwshub-user-id: admin\r\n\
         wshub-group-id: admins\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let response = server.raw(&forged).await;
    assert_eq!(response.status, 403, "{response:?}");
    assert!(!reached.load(Ordering::SeqCst), "the handler ran");

    let echo = format!(
        "GET /echo-headers HTTP/1.1\r\nHost: {}\r\nX-Probe: yes\r\n\
         wshub-connection-id: 0123456789abcdef0123456789abcdef\r\nwshub-user-id: admin\r\n\
         wshub-group-id: admins\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let response = server.raw(&echo).await;
    assert_eq!(response.status, 200, "{response:?}");
    let names: Vec<&str> = response.body.lines().collect();
    assert!(names.contains(&"x-probe"), "the echo works: {names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("wshub-")),
        "wshub-* headers reached the application: {names:?}"
    );
}

/// A client whose messages the hub holds back (its line is full behind a slow forward) is not
/// closed as idle: the silence is the hub's. Waiting past the idle timeout is what is tested.
#[tokio::test]
async fn held_back_client_is_not_closed_as_idle() {
    let idle = Duration::from_millis(300);
    let gate = Arc::new(Notify::new());
    let hub = Hub::builder()
        .ping_interval(Duration::from_millis(100))
        .idle_timeout(idle)
        .forwarding(
            Forwarding::in_process("/hub/messages")
                .actions(["slow"])
                .max_pending(1),
        )
        .build();
    let app = Router::new().route(
        "/hub/messages",
        post({
            let gate = Arc::clone(&gate);
            move || async move {
                gate.notified().await;
                StatusCode::NO_CONTENT
            }
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let mut client = server.connect("?userId=ann").await;
    client.send_json(&json!({"action": "slow"})).await;
    // One waits in line (the line is full), the next stays unread in the socket.
    for n in 0..2 {
        let relay = json!({"action": "after", "message": n, "recipients": [{"type": "user", "value": "ann"}]});
        client.send_json(&relay).await;
    }
    // Read (and so answer pings) for three idle timeouts; only pings may arrive meanwhile.
    let deadline = tokio::time::Instant::now() + idle * 3;
    while let Ok(frame) = tokio::time::timeout_at(deadline, client.ws.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("only pings while the forward is held, got {other:?}"),
        }
    }
    gate.notify_one();
    for n in 0..2 {
        let got = client.recv_action("after").await;
        assert_eq!(got["message"], n);
    }
}
