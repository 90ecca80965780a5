//! Who a connection is, and that nobody else can say so: the identity resolver of PROTOCOL.md §3
//! (refusing, and winning over the query string), a cookie-authenticated application whose own
//! middleware guards forwarded messages (§5), forged `wshub-*` headers and envelope fields (§4,
//! §5), the `__connect`/`__disconnect` connection events, and the `on_connect`/`on_disconnect`
//! callbacks for every way a socket can end. All over real TCP on 127.0.0.1.
//!
//! Absence is proven without sleeping: after the envelope under test, a `marker` envelope goes to
//! everyone; routing is in order, so a connection that reads the marker first did not get the other.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::{envelope, until, within, Client, Refused, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use wshub::{
    identity_from_cookie, refuse, CloseReason, ConnectionInfo, Envelope, Forwarded, Forwarding,
    Hub, HubBuilder, Identity, Recipient, Refusal,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Like [`try_connect`], for a socket that must open.
async fn connect(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> (Client, Value) {
    match server.try_connect(query, headers).await {
        Ok(connected) => connected,
        Err(refused) => panic!("the upgrade was refused: {refused:?}"),
    }
}

/// Like [`try_connect`], for a socket that must be refused.
async fn refused(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Refused {
    match server.try_connect(query, headers).await {
        Ok((_, connected)) => panic!("the upgrade was accepted: {connected}"),
        Err(refused) => refused,
    }
}

/// Routes a marker to everyone and expects it as `client`'s next envelope: nothing else was
/// routed to it before, and its socket is still open.
async fn expect_nothing_but_marker(server: &TestServer, client: &mut Client) {
    server.send_marker();
    client.recv_action("marker").await;
}

/// The `__connected` message: `{connectionId, userId, groupId}`.
fn about(connected: &Value) -> &Value {
    assert_eq!(connected["action"], "__connected", "{connected}");
    &connected["message"]
}

/// Closes a client's socket with a close frame and waits until it has ended.
async fn close_normally(client: &mut Client) {
    within("sending a close frame", client.ws.close(None))
        .await
        .expect("close");
    client.expect_end().await;
}

fn code(close: Option<CloseCode>) -> u16 {
    u16::from(close.expect("the close frame carries a code"))
}

/// The values of header `name`, in order.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("a text header").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PROTOCOL.md §3: the identity resolver

/// Resolves `x-token` (after a yield, as a store lookup would): ann in staff and room-1, bob in
/// room-2, an anonymous guest; anything else is refused with the resolver's own `401`.
fn token_resolver(
    parts: &Parts,
) -> impl Future<Output = Result<Identity, Refusal>> + Send + 'static {
    let token = parts
        .headers
        .get("x-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    async move {
        tokio::task::yield_now().await;
        match token.as_deref() {
            Some("ann-token") => Ok(Identity::user("ann").in_group("staff").in_group("room-1")),
            Some("bob-token") => Ok(Identity::user("bob").in_group("room-2")),
            Some("guest-token") => Ok(Identity::anonymous()),
            _ => {
                let mut refusal = refuse(StatusCode::UNAUTHORIZED, "a valid x-token is required");
                refusal.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Token realm=\"wshub-tests\""),
                );
                Err(refusal)
            }
        }
    }
}

/// An application whose `/ws` answers for itself, so a refusal can be told from a pass-through,
/// with the hub's publish endpoint at `/api/publish`.
fn plain_app(hub: &Hub) -> Router {
    Router::new()
        .route("/ws", get(|| async { "the application's /ws page" }))
        .route_service(
            "/api/publish",
            hub.publish_service().bearer_token(common::TOKEN),
        )
}

#[tokio::test]
async fn a_refusing_resolver_answers_with_its_own_response_and_opens_no_socket() {
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connects);
    let hub = Hub::builder()
        .identity(token_resolver)
        // One place: a refusal that kept its place would lock everyone out.
        .max_connections(1)
        .on_connect(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;

    // A raw upgrade with no token: the answer is the resolver's, headers and body.
    let response = server
        .raw(&server.upgrade_request("X-Token: wrong\r\n"))
        .await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(
        response.header("www-authenticate").as_deref(),
        Some("Token realm=\"wshub-tests\""),
        "{response:?}"
    );
    assert_eq!(response.body, "a valid x-token is required\n");
    assert_eq!(response.header("upgrade"), None, "{response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        None,
        "{response:?}"
    );

    // A real client, even one that names a user in the query string, gets the same refusal.
    for _ in 0..3 {
        let refusal = refused(&server, "?userId=ann&groupId=staff", &[]).await;
        assert_eq!(refusal.status, 401);
        assert_eq!(
            values(&refusal.headers, "www-authenticate"),
            ["Token realm=\"wshub-tests\""]
        );
        assert_eq!(refusal.body, "a valid x-token is required\n");
    }
    assert_eq!(server.hub.local_connection_count(), 0);
    assert_eq!(server.hub.local_user_count(), 0);
    assert_eq!(server.hub.local_group_count(), 0);
    assert_eq!(connects.load(Ordering::SeqCst), 0, "on_connect never ran");

    // The refusals held no place: the one place is free for an accepted socket.
    let (mut ann, _) = connect(&server, "", &[("x-token", "ann-token")]).await;
    assert_eq!(server.hub.local_connection_count(), 1);
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    expect_nothing_but_marker(&server, &mut ann).await;
}

#[tokio::test]
async fn the_resolvers_user_and_groups_win_over_the_query_string() {
    let hub = Hub::builder().identity(token_resolver).build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let query = "?userId=mallory&groupId=admins";

    let (ann, connected) = connect(&server, query, &[("x-token", "ann-token")]).await;
    assert_eq!(
        about(&connected),
        &json!({"connectionId": ann.id, "userId": "ann", "groupId": "staff"})
    );
    let (guest, connected) = connect(&server, query, &[("x-token", "guest-token")]).await;
    assert_eq!(
        about(&connected),
        &json!({"connectionId": guest.id, "userId": "", "groupId": ""}),
        "an anonymous answer is not filled in from the query string"
    );

    let hub = &server.hub;
    let ann_id = ann.id.parse().expect("a connection id");
    let mut groups = hub.local_groups_of(ann_id).expect("ann is connected");
    groups.sort();
    assert_eq!(groups, ["room-1", "staff"]);
    let guest_id = guest.id.parse().expect("a connection id");
    assert_eq!(hub.local_groups_of(guest_id), Some(vec![]));
    assert_eq!(hub.local_user_connections("ann"), [ann_id]);
    assert!(hub.local_user_connections("mallory").is_empty());
    assert!(hub.local_group_connections("admins").is_empty());
    assert_eq!(hub.local_user_count(), 1);
}

/// A resolver whose answer holds an id longer than `max_id_len` is an application bug: the
/// upgrade is refused with `500` (and logged) rather than opening a socket whose forwards and
/// answers would all fail. The query string, which the resolver replaces, is not checked.
#[tokio::test]
async fn a_resolver_answer_with_an_id_longer_than_max_id_len_is_500() {
    let hub = Hub::builder()
        .max_id_len(8)
        .max_connections(1)
        .identity(|parts: &Parts| {
            let who = parts
                .headers
                .get("x-who")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            async move {
                Ok(match who.as_str() {
                    "long-user" => Identity::user("a-long-user"),
                    "long-group" => Identity::user("ann")
                        .in_group("staff")
                        .in_group("long-group"),
                    _ => Identity::user("ann").in_group("staff"),
                })
            }
        })
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    for (who, says) in [("long-user", "userId"), ("long-group", "group")] {
        let refusal = refused(&server, "", &[("x-who", who)]).await;
        assert_eq!(refusal.status, 500, "{who}: {refusal:?}");
        assert!(
            refusal.body.contains(says) && refusal.body.contains("max_id_len"),
            "{who}: {refusal:?}"
        );
    }
    assert_eq!(server.hub.local_connection_count(), 0);

    // The refusals held no place; a query-string userId over the limit is ignored, as the
    // whole query string is when a resolver decides.
    let (mut ann, connected) = connect(&server, "?userId=far-too-long-for-eight", &[]).await;
    assert_eq!(about(&connected)["userId"], "ann");
    expect_nothing_but_marker(&server, &mut ann).await;
}

/// Publishes `recipients`, then a marker to all, and returns which clients got the envelope.
async fn who_receives(
    server: &TestServer,
    clients: &mut [Client],
    recipients: Value,
) -> Vec<usize> {
    let delivered = server
        .publish(&envelope("probe", json!("x"), recipients).to_string())
        .await;
    server.send_marker();
    let got = common::got_probe(clients).await;
    assert_eq!(
        delivered as usize,
        got.len(),
        "delivered count matches what arrived"
    );
    got
}

#[tokio::test]
async fn group_routing_reaches_every_group_the_resolver_gave() {
    let hub = Hub::builder().identity(token_resolver).build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let query = "?userId=mallory&groupId=admins";
    let (ann, _) = connect(&server, query, &[("x-token", "ann-token")]).await;
    let (bob, _) = connect(&server, query, &[("x-token", "bob-token")]).await;
    let (guest, _) = connect(&server, query, &[("x-token", "guest-token")]).await;
    let mut clients = [ann, bob, guest];

    let group = |g: &str| json!([{"type": "group", "value": g}]);
    assert_eq!(
        who_receives(&server, &mut clients, group("staff")).await,
        [0]
    );
    assert_eq!(
        who_receives(&server, &mut clients, group("room-1")).await,
        [0]
    );
    assert_eq!(
        who_receives(&server, &mut clients, group("room-2")).await,
        [1]
    );
    assert_eq!(
        who_receives(
            &server,
            &mut clients,
            json!([
                {"type": "group", "value": "room-1"},
                {"type": "group", "value": "room-2"}
            ])
        )
        .await,
        [0, 1]
    );
    assert_eq!(
        who_receives(
            &server,
            &mut clients,
            json!([{"type": "allButGroup", "value": "room-1"}])
        )
        .await,
        [1, 2]
    );
    // What the query string asked for selects nobody.
    assert_eq!(
        who_receives(&server, &mut clients, group("admins")).await,
        Vec::<usize>::new()
    );
    assert_eq!(
        who_receives(
            &server,
            &mut clients,
            json!([{"type": "user", "value": "mallory"}])
        )
        .await,
        Vec::<usize>::new()
    );
    // The default group is only the connection the resolver put in no group.
    assert_eq!(who_receives(&server, &mut clients, json!([])).await, [2]);
}

#[tokio::test]
async fn client_envelopes_are_stamped_with_the_resolvers_user() {
    let hub = Hub::builder().identity(token_resolver).build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let query = "?userId=mallory&groupId=admins";
    let (mut ann, _) = connect(&server, query, &[("x-token", "ann-token")]).await;
    let (mut bob, _) = connect(&server, query, &[("x-token", "bob-token")]).await;

    ann.send_json(&json!({
        "action": "chat",
        "message": "hi",
        "userId": "mallory",
        "groupId": "admins",
        "recipients": [{"type": "group", "value": "room-2"}],
    }))
    .await;
    let got = bob.recv_action("chat").await;
    assert_eq!(got["userId"], "ann", "{got}");
    assert_eq!(got["groupId"], "staff", "{got}");
    assert_eq!(got["message"], "hi");
    expect_nothing_but_marker(&server, &mut ann).await;
}

#[tokio::test]
async fn forwards_carry_the_resolvers_user_and_group_id() {
    let hub = Hub::builder()
        .identity(token_resolver)
        .forwarding(Forwarding::in_process("/hub/messages"))
        .build();
    let app = Router::new().route("/hub/messages", post(what_the_app_saw));
    let server = TestServer::serve(hub, app).await;
    let (mut ann, connected) = connect(
        &server,
        "?userId=mallory&groupId=admins",
        &[("x-token", "ann-token")],
    )
    .await;
    assert_eq!(about(&connected)["groupId"], "staff");
    ann.send_json(&json!({"action": "whoami", "message": "", "userId": "mallory"}))
        .await;
    let seen = ann.recv_action("seen").await;
    assert_eq!(seen["message"]["wshub-user-id"], json!(["ann"]), "{seen}");
    assert_eq!(seen["message"]["sender"]["userId"], "ann", "{seen}");
    assert_eq!(seen["message"]["envelope"]["userId"], "ann", "{seen}");
    assert_eq!(seen["message"]["envelope"]["groupId"], "staff", "{seen}");
    // The sender's groupId is the connection's: its first group, as `__connected` announced and
    // the envelope is stamped with; `ConnectionInfo::groups` lists it first.
    assert_eq!(
        seen["message"]["wshub-group-id"],
        json!(["staff"]),
        "{seen}"
    );
    assert_eq!(seen["message"]["sender"]["groupId"], "staff", "{seen}");
    let mut groups: Vec<String> =
        serde_json::from_value(seen["message"]["sender"]["groups"].clone())
            .expect("a list of groups");
    groups.sort();
    assert_eq!(groups, ["room-1", "staff"]);
}

// ---------------------------------------------------------------------------------------------
// A cookie-authenticated application: its sessions decide who a socket is, and its own
// middleware guards the forwarded messages (PROTOCOL.md §5: the upgrade's cookie is copied).

type Sessions = Arc<Mutex<HashMap<String, String>>>;

/// The value of the `session` cookie.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "session").then(|| value.to_owned())
        })
}

/// The user the application's auth middleware found.
#[derive(Debug, Clone)]
struct SessionUser(String);

/// The application's own authentication, as it guards any of its routes: a known session, or 401.
async fn require_session(sessions: Sessions, mut request: Request, next: Next) -> Response {
    let user = session_cookie(request.headers()).and_then(|session| {
        sessions
            .lock()
            .expect("sessions lock")
            .get(&session)
            .cloned()
    });
    match user {
        Some(user) => {
            request.extensions_mut().insert(SessionUser(user));
            next.run(request).await
        }
        None => (StatusCode::UNAUTHORIZED, "log in first").into_response(),
    }
}

/// `/login` (body: the user name) sets a `session` cookie; `/logout` forgets the session;
/// `/hub/messages`, behind the auth middleware, answers each socket message to its sender.
fn cookie_app(sessions: &Sessions) -> Router {
    static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
    let store = Arc::clone(sessions);
    let login = post(move |user: String| async move {
        let session = format!("s-{}", NEXT_SESSION.fetch_add(1, Ordering::Relaxed));
        store
            .lock()
            .expect("sessions lock")
            .insert(session.clone(), user);
        (
            StatusCode::NO_CONTENT,
            [(SET_COOKIE, format!("session={session}; Path=/; HttpOnly"))],
        )
    });
    let store = Arc::clone(sessions);
    let logout = post(move |headers: HeaderMap| async move {
        if let Some(session) = session_cookie(&headers) {
            store.lock().expect("sessions lock").remove(&session);
        }
        StatusCode::NO_CONTENT
    });
    let on_message = post(
        |Extension(SessionUser(user)): Extension<SessionUser>,
         Forwarded { envelope, sender }: Forwarded| async move {
            let said: Value = envelope.message_as().expect("a JSON message");
            Json(
                Envelope::new("said")
                    .with_message(&json!({
                        "sessionUser": user,
                        "sender": sender.user_id,
                        "said": said,
                    }))
                    .to(Recipient::connection(sender.connection_id)),
            )
        },
    );
    let store = Arc::clone(sessions);
    let guarded = Router::new()
        .route("/hub/messages", on_message)
        .route(
            "/me",
            get(|Extension(SessionUser(user)): Extension<SessionUser>| async move { user }),
        )
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            require_session(Arc::clone(&store), request, next)
        }));
    Router::new()
        .route("/login", post(login))
        .route("/logout", logout)
        .merge(guarded)
}

async fn cookie_server() -> (TestServer, Sessions) {
    let sessions: Sessions = Arc::default();
    let store = Arc::clone(&sessions);
    let hub = Hub::builder()
        .identity(identity_from_cookie("session", move |session: String| {
            let user = store.lock().expect("sessions lock").get(&session).cloned();
            async move { user.map(Identity::user) }
        }))
        .forwarding(Forwarding::in_process("/hub/messages"))
        .build();
    let server = TestServer::serve(hub, cookie_app(&sessions)).await;
    (server, sessions)
}

/// Logs `user` in over HTTP and returns the `Cookie` header value to send.
async fn log_in(server: &TestServer, user: &str) -> String {
    let response = server.post("/login", None, user).await;
    assert_eq!(response.status, 204, "{response:?}");
    let set_cookie = response.header("set-cookie").expect("a Set-Cookie header");
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("a cookie pair")
        .to_owned();
    assert!(cookie.starts_with("session=s-"), "{set_cookie}");
    cookie
}

/// An HTTP request with a `Cookie` header.
async fn with_cookie(server: &TestServer, method: &str, path: &str, cookie: &str) -> u16 {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    server.raw(&request).await.status
}

#[tokio::test]
async fn a_socket_needs_a_live_session_cookie_and_connects_as_its_user() {
    let (server, _sessions) = cookie_server().await;

    let refusal = refused(&server, "?userId=ann", &[]).await;
    assert_eq!(refusal.status, 401, "no cookie: {refusal:?}");
    assert_eq!(refusal.body, "no valid session\n");
    let refusal = refused(&server, "", &[("cookie", "session=s-forged")]).await;
    assert_eq!(refusal.status, 401, "an unknown session: {refusal:?}");
    let refusal = refused(&server, "", &[("cookie", "other=1")]).await;
    assert_eq!(refusal.status, 401, "another cookie: {refusal:?}");
    assert_eq!(server.hub.local_connection_count(), 0);

    let cookie = log_in(&server, "ann").await;
    let other_cookies = format!("theme=dark; {cookie}; lang=en");
    let (ann, connected) = connect(
        &server,
        "?userId=mallory&groupId=admins",
        &[("cookie", &other_cookies)],
    )
    .await;
    assert_eq!(
        about(&connected),
        &json!({"connectionId": ann.id, "userId": "ann", "groupId": ""})
    );
    assert_eq!(server.hub.local_connection_count(), 1);
    assert_eq!(server.hub.local_user_connections("ann").len(), 1);
}

#[tokio::test]
async fn forwards_pass_the_apps_own_auth_middleware_until_the_session_ends() {
    let (server, sessions) = cookie_server().await;
    let cookie = log_in(&server, "ann").await;
    assert_eq!(with_cookie(&server, "GET", "/me", &cookie).await, 200);
    assert_eq!(
        server
            .raw(&format!(
                "GET /me HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.addr
            ))
            .await
            .status,
        401,
        "the middleware guards ordinary requests"
    );
    let (mut ann, _) = connect(&server, "", &[("cookie", &cookie)]).await;

    // The forward carries the upgrade request's cookie, so the middleware lets it through.
    ann.send_json(&json!({"action": "say", "message": "hello"}))
        .await;
    let said = ann.recv_action("said").await;
    assert_eq!(
        said["message"],
        json!({"sessionUser": "ann", "sender": "ann", "said": "hello"})
    );

    // Logging out ends the session: the next forward is the middleware's 401.
    assert_eq!(with_cookie(&server, "POST", "/logout", &cookie).await, 204);
    assert!(sessions.lock().expect("sessions lock").is_empty());
    ann.send_json(&json!({"action": "say", "message": "still there?"}))
        .await;
    let error = ann.recv_action("__error").await;
    assert_eq!(error["message"]["code"], "forward_failed", "{error}");
    assert_eq!(error["message"]["detail"], "log in first", "{error}");

    // The socket stays open, and the old cookie opens no new one.
    assert_eq!(server.hub.local_connection_count(), 1);
    expect_nothing_but_marker(&server, &mut ann).await;
    let refusal = refused(&server, "", &[("cookie", &cookie)]).await;
    assert_eq!(refusal.status, 401);

    // A new session for the same user does not revive this socket: its cookie is still the old one.
    let _ = log_in(&server, "ann").await;
    ann.send_json(&json!({"action": "say", "message": "again"}))
        .await;
    assert_eq!(
        ann.recv_action("__error").await["message"]["code"],
        "forward_failed"
    );
}

// ---------------------------------------------------------------------------------------------
// Forged identity: headers in the upgrade request, fields in the envelope, headers on ordinary
// requests, and direct requests to the forward route.

/// The hub's identity headers, which only it may set.
const IDENTITY_HEADERS: [&str; 4] = [
    "wshub-user-id",
    "wshub-connection-id",
    "wshub-group-id",
    "wshub-connection-data",
];

/// What the application saw of a forwarded message: its identity headers (every value), a
/// copied header, the extractor's sender and the envelope's stamped fields.
async fn what_the_app_saw(headers: HeaderMap, forwarded: Forwarded) -> Json<Envelope> {
    let Forwarded { envelope, sender } = forwarded;
    let seen = json!({
        "wshub-user-id": values(&headers, "wshub-user-id"),
        "wshub-connection-id": values(&headers, "wshub-connection-id"),
        "wshub-group-id": values(&headers, "wshub-group-id"),
        "wshub-connection-data": values(&headers, "wshub-connection-data"),
        "x-trace": values(&headers, "x-trace"),
        "sender": {
            "connectionId": sender.connection_id.to_string(),
            "userId": sender.user_id,
            "groupId": sender.group_id(),
            "groups": sender.groups,
        },
        "envelope": {"userId": envelope.user_id, "groupId": envelope.group_id},
    });
    Json(
        Envelope::new("seen")
            .with_message(&seen)
            .to(Recipient::connection(sender.connection_id)),
    )
}

/// Headers that claim to be someone else, sent with an upgrade request.
const FORGED: [(&str, &str); 5] = [
    ("wshub-user-id", "admin"),
    ("wshub-connection-data", r#"{"admin":true}"#),
    ("wshub-connection-id", "00000000000000000000000000000001"),
    ("wshub-group-id", "admins"),
    ("x-trace", "t-1"),
];

#[tokio::test]
async fn forged_identity_in_the_upgrade_request_or_the_envelope_never_reaches_the_app() {
    let copied = ["cookie", "x-trace"]
        .into_iter()
        .chain(IDENTITY_HEADERS)
        .map(HeaderName::from_static);
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/messages").copy_headers(copied))
        .build();
    let app = Router::new().route("/hub/messages", post(what_the_app_saw));
    let server = TestServer::serve(hub, app).await;
    let forged_envelope = json!({
        "action": "whoami",
        "message": "",
        "userId": "admin",
        "groupId": "admins",
    });

    let (mut bob, _) = connect(&server, "?userId=bob&groupId=room-1", &FORGED).await;
    bob.send_json(&forged_envelope).await;
    let seen = bob.recv_action("seen").await;
    assert_eq!(
        seen["message"],
        json!({
            "wshub-user-id": ["bob"],
            "wshub-connection-id": [bob.id],
            "wshub-group-id": ["room-1"],
            "wshub-connection-data": [],
            "x-trace": ["t-1"],
            "sender": {
                "connectionId": bob.id,
                "userId": "bob",
                "groupId": "room-1",
                "groups": ["room-1"],
            },
            "envelope": {"userId": "bob", "groupId": "room-1"},
        }),
        "copy_headers copies x-trace but never a wshub-* header"
    );

    // An anonymous connection's ids are empty, and so is what it claims in its envelope
    // (PROTOCOL.md §4): the app sees anonymous, not "admin", in headers, sender and envelope.
    let (mut anonymous, _) = connect(&server, "", &FORGED).await;
    anonymous.send_json(&forged_envelope).await;
    let seen = anonymous.recv_action("seen").await;
    assert_eq!(seen["message"]["wshub-user-id"], json!([""]), "{seen}");
    assert_eq!(
        seen["message"]["wshub-connection-id"],
        json!([anonymous.id]),
        "{seen}"
    );
    assert_eq!(seen["message"]["wshub-group-id"], json!([""]), "{seen}");
    assert_eq!(
        seen["message"]["sender"],
        json!({"connectionId": anonymous.id, "userId": "", "groupId": "", "groups": []})
    );
    assert_eq!(
        seen["message"]["envelope"],
        json!({"userId": "", "groupId": ""})
    );
}

#[tokio::test]
async fn ordinary_requests_reach_the_app_without_forged_wshub_headers() {
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/messages"))
        .build();
    let echo = |headers: HeaderMap| async move {
        let mut seen = serde_json::Map::new();
        for name in IDENTITY_HEADERS.into_iter().chain(["x-check"]) {
            seen.insert(name.to_owned(), json!(values(&headers, name)));
        }
        Json(Value::Object(seen))
    };
    let app = Router::new()
        .route("/echo", get(echo).post(echo))
        .route("/hub/messages", post(what_the_app_saw));
    let server = TestServer::serve(hub, app).await;
    let forged = "wshub-user-id: admin\r\nWSHUB-USER-ID: root\r\nWshub-Connection-Id: 00000000000000000000000000000001\r\nwshub-group-id: admins\r\nwshub-connection-data: {\"admin\":true}\r\nx-check: kept\r\n";

    for method in ["GET", "POST"] {
        let response = server
            .raw(&format!(
                "{method} /echo HTTP/1.1\r\nHost: {}\r\n{forged}Content-Length: 0\r\nConnection: close\r\n\r\n",
                server.addr
            ))
            .await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            response.json(),
            json!({
                "wshub-user-id": [],
                "wshub-connection-id": [],
                "wshub-group-id": [],
                "wshub-connection-data": [],
                "x-check": ["kept"],
            }),
            "{method} /echo"
        );
    }

    // A direct request to the forward route did not come from the hub: the extractor refuses it,
    // forged headers or not.
    let body = json!({"action": "whoami", "message": ""}).to_string();
    let response = server
        .raw(&format!(
            "POST /hub/messages HTTP/1.1\r\nHost: {}\r\n{forged}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        ))
        .await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.body,
        "only the hub sends forwarded socket messages"
    );
    let response = server.post("/hub/messages", None, &body).await;
    assert_eq!(response.status, 403, "{response:?}");
}

// ---------------------------------------------------------------------------------------------
// Connection events and callbacks

/// One forwarded envelope as the application's handler saw it.
#[derive(Debug, Clone)]
struct Seen {
    action: String,
    message: Value,
    user_id: String,
    sender: ConnectionInfo,
}

/// What a recording application saw: every forward in the order its handler was entered, and a
/// `"<action> answered"` entry when a gated forward is about to answer.
struct Recorder {
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Opens the gate that `slow` forwards wait at.
    gate: Arc<Notify>,
}

impl Recorder {
    async fn next(&mut self) -> Seen {
        within("a forward to reach the application", self.seen.recv())
            .await
            .expect("the application is still running")
    }

    async fn next_action(&mut self, action: &str) -> Seen {
        let seen = self.next().await;
        assert_eq!(seen.action, action, "unexpected forward {seen:?}");
        seen
    }

    fn is_empty(&mut self) -> bool {
        matches!(self.seen.try_recv(), Err(mpsc::error::TryRecvError::Empty))
    }
}

/// An application at `/hub/messages` that records every forward. It answers `__connect` with an
/// `initialmessages` envelope to the new connection, holds `slow` forwards until the gate opens,
/// and answers everything else with 204.
fn recording_app() -> (Router, Recorder) {
    let (tx, seen) = mpsc::unbounded_channel();
    let gate = Arc::new(Notify::new());
    let waiting = Arc::clone(&gate);
    let handler = move |Forwarded { envelope, sender }: Forwarded| {
        let tx = tx.clone();
        let gate = Arc::clone(&waiting);
        async move {
            let message: Value = envelope.message_as().expect("a JSON message");
            let record = |action: String| {
                let _ = tx.send(Seen {
                    action,
                    message: message.clone(),
                    user_id: envelope.user_id.clone(),
                    sender: sender.clone(),
                });
            };
            record(envelope.action.clone());
            match envelope.action.as_str() {
                "__connect" => Json(
                    Envelope::new("initialmessages")
                        .with_message(&json!({"welcome": sender.user_id}))
                        .to(Recipient::connection(sender.connection_id)),
                )
                .into_response(),
                "slow" => {
                    gate.notified().await;
                    record("slow answered".to_owned());
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => StatusCode::NO_CONTENT.into_response(),
            }
        }
    };
    let app = Router::new().route("/hub/messages", post(handler));
    (app, Recorder { seen, gate })
}

fn with_events(builder: HubBuilder) -> HubBuilder {
    builder.forwarding(Forwarding::in_process("/hub/messages").connection_events(true))
}

#[tokio::test]
async fn connect_event_comes_first_and_its_answer_follows_connected() {
    let (app, mut recorder) = recording_app();
    let server = TestServer::serve(with_events(Hub::builder()).build(), app).await;
    let mut bystander = server.connect("?userId=bea").await;
    bystander.recv_action("initialmessages").await;
    recorder.next_action("__connect").await;

    let mut ann = server.connect("?userId=ann&groupId=room-1").await;
    // Right after `__connected`, before anything else: the application's answer to `__connect`.
    let initial = ann.recv_action("initialmessages").await;
    assert_eq!(initial["message"], json!({"welcome": "ann"}));
    let connect = recorder.next_action("__connect").await;
    assert_eq!(
        connect.message,
        json!({"connectionId": ann.id, "userId": "ann", "groupId": "room-1"})
    );
    assert_eq!(connect.user_id, "ann");
    assert_eq!(connect.sender.connection_id.to_string(), ann.id);
    assert_eq!(connect.sender.user_id, "ann");
    assert_eq!(connect.sender.groups, ["room-1"]);

    // The answer went to the new connection only, and its first message comes after `__connect`.
    expect_nothing_but_marker(&server, &mut bystander).await;
    expect_nothing_but_marker(&server, &mut ann).await;
    ann.send_json(&json!({"action": "hello", "message": "first"}))
        .await;
    let hello = recorder.next_action("hello").await;
    assert_eq!(hello.message, "first");
    assert!(recorder.is_empty());
}

#[tokio::test]
async fn disconnect_event_comes_after_the_socket_ended_and_after_its_earlier_forwards() {
    let (app, mut recorder) = recording_app();
    let server = TestServer::serve(with_events(Hub::builder()).build(), app).await;
    let mut ann = server.connect("?userId=ann&groupId=room-1").await;
    ann.recv_action("initialmessages").await;
    recorder.next_action("__connect").await;

    ann.send_json(&json!({"action": "one", "message": 1})).await;
    ann.send_json(&json!({"action": "slow", "message": 2}))
        .await;
    recorder.next_action("one").await;
    recorder.next_action("slow").await;
    // The closing handshake: the client's close frame, and the hub's answer.
    within("sending a close frame", ann.ws.close(None))
        .await
        .expect("close");
    within("the hub's close frame", async {
        loop {
            match ann.ws.next().await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
                other => panic!("expected the hub's close frame, got {other:?}"),
            }
        }
    })
    .await;
    until("the hub to drop the closed socket", || {
        server.hub.local_connection_count() == 0
    })
    .await;
    // The socket has ended but its `slow` forward is unanswered: `__disconnect` waits for it.
    assert!(
        recorder.is_empty(),
        "__disconnect overtook a pending forward"
    );

    recorder.gate.notify_one();
    recorder.next_action("slow answered").await;
    let disconnect = recorder.next_action("__disconnect").await;
    assert_eq!(
        disconnect.message,
        json!({"connectionId": ann.id, "userId": "ann", "groupId": "room-1"})
    );
    assert_eq!(disconnect.sender.connection_id.to_string(), ann.id);
    assert_eq!(disconnect.sender.user_id, "ann");
    assert!(recorder.is_empty());
}

/// A hub with `on_connect`/`on_disconnect` callbacks that record into lists, `__connect` and
/// `__disconnect` forwarded to a recording application, and a 1 KiB message limit.
struct Watched {
    server: TestServer,
    connects: Arc<Mutex<Vec<ConnectionInfo>>>,
    disconnects: Arc<Mutex<Vec<(ConnectionInfo, CloseReason)>>>,
    recorder: Recorder,
}

impl Watched {
    async fn start() -> Self {
        let connects: Arc<Mutex<Vec<ConnectionInfo>>> = Arc::default();
        let disconnects: Arc<Mutex<Vec<(ConnectionInfo, CloseReason)>>> = Arc::default();
        let (on_connect, on_disconnect) = (Arc::clone(&connects), Arc::clone(&disconnects));
        let builder = Hub::builder()
            .max_message_size(1024)
            .on_connect(move |_, info| {
                on_connect.lock().expect("lock").push(info);
                async {}
            })
            .on_disconnect(move |_, info, reason| {
                on_disconnect.lock().expect("lock").push((info, reason));
                async {}
            });
        let (app, recorder) = recording_app();
        let server = TestServer::serve(with_events(builder).build(), app).await;
        Self {
            server,
            connects,
            disconnects,
            recorder,
        }
    }

    fn disconnected(&self) -> usize {
        self.disconnects.lock().expect("lock").len()
    }

    /// Checks that `id` (user `user`, group `group`) was announced once to each callback and
    /// once as each connection event, and nothing else.
    async fn expect_once_each(&mut self, id: &str, user: &str, group: &str, why: CloseReason) {
        until("on_disconnect to run", || self.disconnected() >= 1).await;
        // Every socket task has run to its end once shutdown returns (on this single-threaded
        // runtime, callbacks included): no late second call can follow.
        within("the hub's shutdown", self.server.hub.shutdown()).await;
        let expected = (id.to_owned(), user.to_owned(), vec![group.to_owned()]);
        let of = |info: &ConnectionInfo| {
            (
                info.connection_id.to_string(),
                info.user_id.clone(),
                info.groups.clone(),
            )
        };
        let connects: Vec<_> = self.connects.lock().expect("lock").iter().map(of).collect();
        assert_eq!(connects, std::slice::from_ref(&expected), "on_connect");
        let disconnects: Vec<_> = self
            .disconnects
            .lock()
            .expect("lock")
            .iter()
            .map(|(info, reason)| (of(info), *reason))
            .collect();
        assert_eq!(disconnects, [(expected, why)], "on_disconnect");
        let about = json!({"connectionId": id, "userId": user, "groupId": group});
        assert_eq!(self.recorder.next_action("__connect").await.message, about);
        assert_eq!(
            self.recorder.next_action("__disconnect").await.message,
            about
        );
        assert!(self.recorder.is_empty(), "one event each");
    }
}

#[tokio::test]
async fn callbacks_and_events_fire_once_when_the_client_closes() {
    let mut watched = Watched::start().await;
    let mut client = watched.server.connect("?userId=ann&groupId=g").await;
    until("on_connect to run", || {
        watched.connects.lock().expect("lock").len() == 1
    })
    .await;
    assert_eq!(watched.disconnected(), 0, "still connected");
    close_normally(&mut client).await;
    let why = CloseReason::ClientClosed(None);
    watched.expect_once_each(&client.id, "ann", "g", why).await;
}

#[tokio::test]
async fn callbacks_and_events_fire_once_when_the_server_closes_a_too_big_message() {
    let mut watched = Watched::start().await;
    let mut client = watched.server.connect("?userId=ann&groupId=g").await;
    client
        .send_json(&envelope("big", json!("x".repeat(2000)), json!([])))
        .await;
    assert_eq!(code(client.expect_close().await), 1009);
    client.expect_end().await;
    watched
        .expect_once_each(&client.id, "ann", "g", CloseReason::TooBig)
        .await;
}

#[tokio::test]
async fn callbacks_and_events_fire_once_when_the_hub_shuts_down() {
    let mut watched = Watched::start().await;
    let mut client = watched.server.connect("?userId=ann&groupId=g").await;
    let hub = watched.server.hub.clone();
    let closed = async {
        let close = client.expect_close().await;
        client.expect_end().await;
        close
    };
    let ((), close) = within("shutdown and the client's close", async {
        tokio::join!(hub.shutdown(), closed)
    })
    .await;
    assert_eq!(code(close), 1001);
    // `shutdown` waits for the sockets: by now the callback has run.
    assert_eq!(watched.disconnected(), 1);
    watched
        .expect_once_each(&client.id, "ann", "g", CloseReason::Shutdown)
        .await;
}

#[tokio::test]
async fn callbacks_and_events_fire_once_when_the_tcp_connection_drops() {
    let mut watched = Watched::start().await;
    let server = &watched.server;
    let stream = within("a TCP connection", TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let (mut ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(server.ws_url("?userId=ann&groupId=g"), stream),
    )
    .await
    .expect("handshake");
    assert_eq!(response.status(), 101);
    let connected = within("__connected", ws.next())
        .await
        .expect("a frame")
        .expect("no error");
    let Message::Text(connected) = connected else {
        panic!("expected __connected, got {connected:?}");
    };
    let connected: Value = serde_json::from_str(&connected).expect("JSON");
    let id = about(&connected)["connectionId"]
        .as_str()
        .expect("a connection id")
        .to_owned();
    until("the socket to be registered", || {
        server.hub.local_connection_count() == 1
    })
    .await;

    // No close frame: the TCP connection just ends.
    let mut tcp = ws.into_inner();
    within("shutting the TCP connection down", tcp.shutdown())
        .await
        .expect("shutdown");
    drop(tcp);
    watched
        .expect_once_each(&id, "ann", "g", CloseReason::ConnectionLost)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_only_after_on_disconnect_has_run() {
    // The on_disconnect docs promise a call for sockets ended by shutdown, and shutdown promises
    // to wait for its sockets: an application that exits when it returns must not lose callbacks.
    // `shutdown` runs on a thread and runtime of its own, so it returns the moment the hub lets
    // it. The callback then watches for that return for a bounded 500 ms: an observation window,
    // not synchronisation; a correct hub cannot return while the callback runs, so it times out.
    let (returned_tx, returned_rx) = std::sync::mpsc::channel::<()>();
    let returned_rx = Mutex::new(returned_rx);
    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .on_disconnect(move |_, _, _| {
            let early = returned_rx
                .lock()
                .expect("lock")
                .recv_timeout(Duration::from_millis(500))
                .is_ok();
            let _ = entered_tx.send(early);
            async {}
        })
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let mut client = server.connect("").await;

    let hub = server.hub.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let shutdown = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(hub.shutdown());
        let _ = returned_tx.send(());
        let _ = done_tx.send(());
    });
    assert_eq!(code(client.expect_close().await), 1001);
    client.expect_end().await;
    let early = within("on_disconnect to run", entered_rx.recv())
        .await
        .expect("on_disconnect ran");
    assert!(
        !early,
        "Hub::shutdown returned while an on_disconnect callback was still running"
    );
    within("the shutdown to return", done_rx)
        .await
        .expect("the shutdown thread ran to its end");
    shutdown.join().expect("the shutdown thread");
}

/// The hooks get the hub and may await it: `on_connect` joins the connection to a group and
/// greets it before the hub reads the client, and `on_disconnect` tells the group who left.
#[tokio::test]
async fn hooks_reach_the_hub_and_may_do_async_work() {
    let hub = Hub::builder()
        .on_connect(|hub: Hub, info: ConnectionInfo| async move {
            // An await the hook really needs: the join, and time passing, as a lookup would take.
            tokio::task::yield_now().await;
            let joined = hub.join(info.connection_id, "staff").await;
            assert_eq!(joined, Ok(true), "the new connection joins from its hook");
            hub.send(
                &wshub::Envelope::new("welcome")
                    .with_message(&info.user_id)
                    .to(wshub::Recipient::connection(info.connection_id)),
            );
        })
        .on_disconnect(|hub: Hub, info: ConnectionInfo, _| async move {
            tokio::task::yield_now().await;
            hub.send(
                &wshub::Envelope::new("left")
                    .with_message(&info.user_id)
                    .to(wshub::Recipient::group("staff")),
            );
        })
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;

    let mut ann = server.connect("?userId=ann").await;
    assert_eq!(ann.recv_action("welcome").await["message"], "ann");
    let mut bob = server.connect("?userId=bob").await;
    assert_eq!(bob.recv_action("welcome").await["message"], "bob");
    // Both are in the group the hooks put them in.
    let delivered = server
        .publish(
            &envelope(
                "news",
                json!(1),
                json!([{"type": "group", "value": "staff"}]),
            )
            .to_string(),
        )
        .await;
    assert_eq!(delivered, 2);
    ann.recv_action("news").await;
    bob.recv_action("news").await;

    bob.ws.close(None).await.expect("close bob");
    assert_eq!(ann.recv_action("left").await["message"], "bob");
}

/// What the resolver of the data tests knows about each user: looked up once per socket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Staff {
    team: String,
    admin: bool,
}

/// A resolver that attaches `Staff` (from `x-team`) as the connection's data; `x-big` attaches
/// more than the hub keeps.
async fn staff_resolver(request: &Parts) -> Result<Identity, Refusal> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| String::from_utf8(v.as_bytes().to_vec()).ok())
    };
    let user = header("x-user").unwrap_or_default();
    if header("x-big").is_some() {
        return Ok(Identity::user(user).with_data(&"x".repeat(5000)));
    }
    let Some(team) = header("x-team") else {
        return Ok(Identity::user(user));
    };
    let staff = Staff {
        team: team.clone(),
        admin: user == "ann",
    };
    Ok(Identity::user(user).in_group(team).with_data(&staff))
}

/// The resolver's data reaches a forwarded handler (typed), the hooks, and `Hub::connection`;
/// a connection without data reads as `None`; data over the limit refuses the upgrade with 500.
#[tokio::test]
async fn resolver_data_reaches_handlers_hooks_and_lookups() {
    let (hooked_tx, mut hooked) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .identity(|request: &Parts| {
            let request = request.clone();
            async move { staff_resolver(&request).await }
        })
        .forwarding(Forwarding::in_process("/hub/messages").actions(["whoami"]))
        .on_connect(move |_, info: ConnectionInfo| {
            let _ = hooked_tx.send(info.data::<Option<Staff>>().expect("data or none"));
            async {}
        })
        .build();
    let app = Router::new().route(
        "/hub/messages",
        post(|Forwarded { sender, .. }: Forwarded| async move {
            match sender.data::<Option<Staff>>() {
                Ok(staff) => wshub::Reply::with(&staff),
                Err(e) => wshub::Reply::refuse(e.to_string()),
            }
        }),
    );
    let server = TestServer::serve(hub.clone(), app).await;

    let (mut ann, _) = connect(&server, "", &[("x-user", "ann"), ("x-team", "support")]).await;
    let ann_staff = Staff {
        team: "support".into(),
        admin: true,
    };
    let hooked_staff = within("on_connect", hooked.recv()).await;
    assert_eq!(hooked_staff, Some(Some(ann_staff.clone())));
    ann.send_json(&json!({"action": "whoami", "requestId": "1"}))
        .await;
    let reply = ann.recv_action("__reply").await;
    assert_eq!(reply["message"], json!({"team": "support", "admin": true}));

    let id = ann.id.parse().expect("a connection id");
    let info = hub
        .connection(id)
        .await
        .expect("a lookup")
        .expect("ann is here");
    assert_eq!(info.user_id, "ann");
    assert_eq!(info.groups, ["support"]);
    assert_eq!(info.data::<Staff>().expect("staff"), ann_staff);

    let (mut bob, _) = connect(&server, "", &[("x-user", "bob")]).await;
    assert_eq!(within("on_connect", hooked.recv()).await, Some(None));
    bob.send_json(&json!({"action": "whoami", "requestId": "2"}))
        .await;
    assert_eq!(bob.recv_action("__reply").await["message"], Value::Null);
    let bob_id = bob.id.parse().expect("a connection id");
    let info = hub
        .connection(bob_id)
        .await
        .expect("a lookup")
        .expect("bob is here");
    assert_eq!(info.data_json(), None);

    let refusal = refused(&server, "", &[("x-user", "cy"), ("x-big", "1")]).await;
    assert_eq!(refusal.status, 500, "{refusal:?}");
    assert_eq!(
        hub.local_connection_count(),
        2,
        "no socket for the refused one"
    );
}

/// An external backend reads the data from the `wshub-connection-data` header, JSON in ASCII.
#[tokio::test]
async fn an_external_backend_reads_the_data_from_its_header() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the backend on 127.0.0.1:0");
    let addr = listener.local_addr().expect("backend address");
    let backend = Router::new().route(
        "/backend",
        post(|headers: HeaderMap| async move {
            let data = headers
                .get("wshub-connection-data")
                .map(|v| v.to_str().expect("ASCII").to_owned());
            let data: Value = serde_json::from_str(data.as_deref().unwrap_or("null"))
                .expect("the header is JSON");
            Json(json!({"action": "__reply", "message": data}))
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, backend).await;
    });
    let forwarding =
        Forwarding::to_url(&format!("http://{addr}/backend")).expect("a valid forward URL");
    let hub = Hub::builder()
        .identity(|request: &Parts| {
            let request = request.clone();
            async move { staff_resolver(&request).await }
        })
        .forwarding(forwarding)
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;

    let (mut ann, _) = connect(&server, "", &[("x-user", "ann"), ("x-team", "Zürich")]).await;
    ann.send_json(&json!({"action": "whoami", "requestId": "1"}))
        .await;
    let reply = ann.recv_action("__reply").await;
    assert_eq!(reply["message"], json!({"team": "Zürich", "admin": true}));
    task.abort();
}

/// Opens a socket whose upgrade the hub accepts, and returns what the hub sends first: the close
/// frame's code and reason, or the action of an envelope.
async fn first_word(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut request = server
        .ws_url("")
        .into_client_request()
        .expect("a ws:// URL");
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let (mut ws, response) = within("the handshake", tokio_tungstenite::connect_async(request))
        .await
        .expect("an accepted upgrade");
    assert_eq!(response.status(), 101);
    match within("the hub's first frame", ws.next()).await {
        Some(Ok(Message::Close(Some(frame)))) => Ok((frame.code.into(), frame.reason.to_string())),
        Some(Ok(Message::Text(text))) => {
            let envelope: Value = serde_json::from_str(&text).expect("JSON");
            Err(envelope["action"].as_str().unwrap_or_default().to_owned())
        }
        other => panic!("neither a close nor an envelope: {other:?}"),
    }
}

/// A page cannot read a refused upgrade's status: a refusal by closing accepts the socket and
/// closes it at once with the resolver's 4xxx code and reason, before any envelope, and the
/// socket never joins the hub. `identity_from_cookie` refuses browsers (they send `Origin`) so,
/// and other clients with `401`.
#[tokio::test]
async fn a_refusal_by_closing_reaches_the_page_as_a_close_code() {
    let hub = Hub::builder()
        .identity(identity_from_cookie(
            "session",
            |session: String| async move { (session == "s-1").then(|| Identity::user("ann")) },
        ))
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let origin = format!("http://{}", server.addr);

    let closed = first_word(&server, &[("origin", &origin)]).await;
    assert_eq!(
        closed,
        Ok((wshub::LOGGED_OUT, "no valid session".to_owned()))
    );
    let closed = first_word(&server, &[("origin", &origin), ("cookie", "session=s-0")]).await;
    assert_eq!(closed, Ok((4401, "no valid session".to_owned())));
    assert_eq!(hub.local_connection_count(), 0);

    let refusal = refused(&server, "", &[("cookie", "session=s-0")]).await;
    assert_eq!(refusal.status, 401, "{refusal:?}");
    let welcomed = first_word(&server, &[("origin", &origin), ("cookie", "session=s-1")]).await;
    assert_eq!(welcomed, Err("__connected".to_owned()));
}

#[tokio::test]
async fn a_resolvers_own_refusal_by_closing_keeps_its_code_and_reason() {
    let hub = Hub::builder()
        .identity(|_: &Parts| async {
            Err(wshub::refuse_by_closing(4403, "this account is suspended"))
        })
        .build();
    let server = TestServer::serve(hub.clone(), plain_app(&hub)).await;
    let closed = first_word(&server, &[]).await;
    assert_eq!(closed, Ok((4403, "this account is suspended".to_owned())));
}
