//! `wshub::testing::TestClient` (feature `testing`) against a real hub on 127.0.0.1, served the
//! way an application serves it: every method, and every error a test is likely to meet.
//!
//! Every wait is bounded by the client's own timeout (5 s, or 200 ms where nothing is meant to
//! come), or by [`within`] for the hub's calls.
#![cfg(feature = "testing")]

use std::future::Future;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tower::Layer;
use wshub::testing::{TestClient, TestError};
use wshub::{
    identity_from_cookie, Envelope, Forwarded, Forwarding, Hub, Identity, Recipient, Reply,
};

const FORWARD_PATH: &str = "/hub/x";

/// Serves `app` behind `hub`'s layer on `/ws` at 127.0.0.1:0 with `wshub::serve`, as an
/// application does; returns the socket's URL. The server ends with the test's runtime.
async fn serve(hub: &Hub, app: Router) -> String {
    let app = hub.layer("/ws").layer(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("ws://{}/ws", listener.local_addr().expect("local address"));
    tokio::spawn(async move { wshub::serve(listener, app).await });
    url
}

/// Awaits one of the hub's own calls, failing the test with `what` after 10 s.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after 10 s waiting for {what}"))
}

/// Refuses "no", answers anything else with what it heard, after routing it as a `line` to the
/// sender's group.
async fn handler(Forwarded { envelope, sender }: Forwarded) -> Reply {
    let text: String = envelope.message_as().unwrap_or_default();
    if text == "no" {
        return Reply::refuse("not allowed");
    }
    let line = Envelope::new("line")
        .with_message(&text)
        .to(Recipient::group(sender.group_id()))
        .from_user(sender.user_id);
    Reply::with(&json!({ "heard": text })).and(line)
}

/// A hub that forwards `ask` in process to [`handler`] and relays everything else.
async fn forwarding_hub() -> (Hub, String) {
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process(FORWARD_PATH).actions(["ask"]))
        .build();
    let url = serve(&hub, Router::new().route(FORWARD_PATH, post(handler))).await;
    (hub, url)
}

#[tokio::test]
async fn a_cookie_on_the_upgrade_reaches_the_identity_resolver() {
    let hub = Hub::builder()
        .identity(identity_from_cookie(
            "session",
            |session: String| async move {
                (session == "s-ann").then(|| Identity::user("ann").in_group("room-1"))
            },
        ))
        .build();
    let url = serve(&hub, Router::new()).await;

    // The query string says otherwise: the resolver wins.
    let ann = TestClient::builder(&format!("{url}?userId=mallory"))
        .header("cookie", "theme=dark; session=s-ann")
        .connect()
        .await
        .expect("the session cookie is accepted");
    assert_eq!((ann.user_id(), ann.group_id()), ("ann", "room-1"));
    assert_eq!(
        hub.local_user_connections("ann"),
        [ann.connection_id()],
        "the id announced in `__connected` is the hub's"
    );
    ann.close().await.expect("a clean close");
}

#[tokio::test]
async fn a_refused_upgrade_is_an_error_with_its_status_and_body() {
    let hub = Hub::builder()
        .identity(identity_from_cookie(
            "session",
            |session: String| async move { (session == "s-ann").then(|| Identity::user("ann")) },
        ))
        .build();
    let url = serve(&hub, Router::new()).await;

    for builder in [
        TestClient::builder(&url),
        TestClient::builder(&url).header("cookie", "session=stolen"),
    ] {
        let error = builder.connect().await.expect_err("no valid session");
        let TestError::UpgradeRefused { status, body, .. } = &error else {
            panic!("not a refusal: {error}");
        };
        assert_eq!(*status, 401, "{error}");
        assert_eq!(body.trim(), "no valid session", "{error}");
        assert_eq!(
            error.to_string(),
            "the upgrade was refused with 401 Unauthorized: no valid session"
        );
    }

    let error = TestClient::connect("127.0.0.1/ws")
        .await
        .expect_err("not a URL");
    assert!(matches!(error, TestError::InvalidRequest(_)), "{error}");
    let error = TestClient::builder(&url)
        .header("bad header", "x")
        .connect()
        .await
        .expect_err("not a header name");
    assert!(matches!(error, TestError::InvalidRequest(_)), "{error}");
}

/// docs/protocol.md §3: `identity_from_cookie` refuses a browser (a request with `Origin`) by
/// accepting and closing at once, so its page can read why; the client reports the close.
#[tokio::test]
async fn a_browser_refused_by_closing_is_closed_with_its_code() {
    let hub = Hub::builder()
        .identity(identity_from_cookie(
            "session",
            |session: String| async move { (session == "s-ann").then(|| Identity::user("ann")) },
        ))
        .build();
    let url = serve(&hub, Router::new()).await;
    let origin = url.replace("ws://", "http://").replace("/ws", "");

    let error = TestClient::builder(&url)
        .header("origin", origin)
        .connect()
        .await
        .expect_err("no valid session");
    let TestError::Closed { code, reason, .. } = &error else {
        panic!("not a close: {error}");
    };
    assert_eq!(
        (*code, reason.as_str()),
        (4401, "no valid session"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "the socket was closed with 4401 (\"no valid session\") while waiting for `__connected`"
    );
}

#[tokio::test]
async fn what_one_client_sends_the_other_expects() {
    let hub = Hub::builder().build();
    let url = serve(&hub, Router::new()).await;
    let mut ann = TestClient::connect(&format!("{url}?userId=ann&groupId=room"))
        .await
        .expect("ann connects");
    let mut bob = TestClient::connect(&format!("{url}?userId=bob&groupId=room"))
        .await
        .expect("bob connects");
    assert_ne!(ann.connection_id(), bob.connection_id());

    let to_bob = Envelope::new("chat")
        .with_message(&json!({ "text": "hi" }))
        .to(Recipient::user("bob"));
    ann.send(&to_bob).await.expect("send an envelope");
    let got = bob.expect("chat").await.expect("bob gets the envelope");
    assert_eq!(got.user_id, "ann", "the hub stamps the sender");
    assert_eq!(got.message_as::<Value>().unwrap(), json!({ "text": "hi" }));

    ann.send_json(&json!({
        "action": "wave",
        "recipients": [{ "type": "group", "value": "room" }],
    }))
    .await
    .expect("send JSON");
    ann.send_text(r#"{"action":"bye","recipients":[{"type":"user","value":"bob"}]}"#)
        .await
        .expect("send text");
    // In order, and strictly: the next envelope is `wave`, so expecting `bye` fails and says so.
    let error = bob.expect("bye").await.expect_err("`wave` comes first");
    let TestError::Unexpected { got, .. } = &error else {
        panic!("not an unexpected envelope: {error}");
    };
    assert_eq!(got.action, "wave");
    assert!(
        error
            .to_string()
            .starts_with(r#"waiting for an envelope with action `bye`, got {"action":"wave""#),
        "{error}"
    );
    assert_eq!(bob.expect_any().await.expect("then `bye`").action, "bye");
    assert_eq!(
        ann.expect("wave")
            .await
            .expect("ann is in the room")
            .user_id,
        "ann"
    );
}

#[tokio::test]
async fn a_request_gets_the_handlers_reply_and_keeps_what_came_before() {
    let (_hub, url) = forwarding_hub().await;
    let mut ann = TestClient::connect(&format!("{url}?userId=ann&groupId=room"))
        .await
        .expect("ann connects");
    let mut bob = TestClient::connect(&format!("{url}?userId=bob&groupId=room"))
        .await
        .expect("bob connects");

    let reply = ann.request("ask", &"hello").await.expect("a reply");
    assert_eq!(reply, json!({ "heard": "hello" }));
    // The handler's line reached ann before the reply: the request kept it for `expect`.
    let line = ann.expect("line").await.expect("the line, kept");
    assert_eq!(line.message_as::<String>().unwrap(), "hello");
    assert_eq!(line.request_id, None, "recipients never see a requestId");
    bob.expect("line").await.expect("bob gets the line");

    let error = ann.request("ask", &"no").await.expect_err("refused");
    let TestError::RequestFailed {
        action,
        code,
        detail,
    } = &error
    else {
        panic!("not a failed request: {error}");
    };
    assert_eq!(
        (action.as_str(), code.as_str(), detail.as_str()),
        ("ask", "forbidden", "not allowed")
    );
    assert_eq!(
        error.to_string(),
        "the request `ask` was answered with __error `forbidden`: not allowed"
    );

    // A relayed request replies null once routed; the sender, a recipient, keeps its copy.
    let relayed = Envelope::new("chat")
        .with_message(&"hi all")
        .to(Recipient::group("room"));
    assert_eq!(
        ann.request_envelope(relayed).await.expect("relayed"),
        Value::Null
    );
    assert_eq!(
        ann.request("__ping", &()).await.expect("a pong"),
        Value::Null
    );
    ann.expect("chat").await.expect("ann's own copy, kept");
    bob.expect("chat").await.expect("bob's copy");
}

#[tokio::test]
async fn bad_json_is_an_invalid_envelope_error() {
    let hub = Hub::builder().build();
    let url = serve(&hub, Router::new()).await;
    let mut ann = TestClient::connect(&url).await.expect("connect");

    ann.send_text("{not json").await.expect("send");
    let detail = ann
        .expect_error("invalid_envelope")
        .await
        .expect("an invalid_envelope error");
    assert!(!detail.is_empty());

    ann.send_json(&json!({ "action": "__connected" }))
        .await
        .expect("send");
    let error = ann
        .expect_error("invalid_envelope")
        .await
        .expect_err("a reserved action is forbidden, not invalid");
    let TestError::Unexpected { got, .. } = &error else {
        panic!("not an unexpected envelope: {error}");
    };
    assert_eq!(got.action, "__error", "{error}");
    assert!(
        error.to_string().contains(r#""code":"forbidden""#),
        "{error}"
    );
}

#[tokio::test]
async fn a_disconnect_is_a_close_with_its_code() {
    let hub = Hub::builder().build();
    let url = serve(&hub, Router::new()).await;
    let mut ann = TestClient::connect(&format!("{url}?userId=ann"))
        .await
        .expect("connect");

    let closed = within("Hub::disconnect", hub.disconnect(ann.connection_id(), 4401))
        .await
        .expect("4401 is an application's code");
    assert!(closed, "the connection was there");
    let (code, reason) = ann.expect_close().await.expect("a close frame");
    assert_eq!(code, 4401);

    // Closed stays closed, and says how.
    let error = ann.expect("chat").await.expect_err("closed");
    assert!(
        matches!(error, TestError::Closed { code: 4401, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("the socket was closed with 4401"),
        "{error}"
    );
    let error = ann.send_text("{}").await.expect_err("closed");
    assert!(
        matches!(error, TestError::Closed { code: 4401, .. }),
        "{error}"
    );
    assert_eq!(
        ann.expect_close().await.expect("still the same close"),
        (4401, reason)
    );
    ann.close().await.expect("closing a closed client is fine");
}

#[tokio::test]
async fn nothing_coming_is_a_timeout_that_says_what_was_awaited() {
    let hub = Hub::builder().build();
    let url = serve(&hub, Router::new()).await;
    let mut ann = TestClient::connect(&format!("{url}?userId=ann"))
        .await
        .expect("connect");

    ann.set_timeout(Duration::from_millis(200));
    let error = ann.expect("chat").await.expect_err("nothing was sent");
    assert!(
        matches!(error, TestError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "timed out after 200ms waiting for an envelope with action `chat`"
    );
    let error = ann.expect_close().await.expect_err("nobody closes it");
    assert!(matches!(error, TestError::Timeout { .. }), "{error}");

    // A timeout loses nothing: the client still works.
    ann.set_timeout(Duration::from_secs(5));
    hub.send(&Envelope::new("chat").to(Recipient::user("ann")));
    ann.expect("chat")
        .await
        .expect("what comes after a timeout");
    ann.close().await.expect("a clean close");
}
