//! docs/protocol.md §4.1: requests and replies, over real sockets. Every client message with a
//! `requestId` gets exactly one answer carrying it, `__reply` or `__error`; recipients never see
//! the id; `__ping` is answered at once.
//!
//! "Exactly one" is proven without sleeping: after the answer, a `marker` routed to everyone
//! must come next.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{envelope, Client, TestServer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use wshub::{Envelope, Forwarded, Forwarding, Hub, HubBuilder, Recipient, Reply};

const FORWARD_PATH: &str = "/hub/messages";

/// A hub that forwards `ask` (and only it) in process to `handler`; everything else is relayed.
async fn start(builder: HubBuilder, handler: axum::routing::MethodRouter) -> TestServer {
    let hub = builder
        .forwarding(Forwarding::in_process(FORWARD_PATH).actions(["ask"]))
        .build();
    TestServer::serve(hub, Router::new().route(FORWARD_PATH, handler)).await
}

/// The handler the chat-like tests use: refuses "no", answers a question with a reply and a
/// line to the sender's group, and says nothing to "quiet".
async fn answer(Forwarded { envelope, sender }: Forwarded) -> Reply {
    let text: String = envelope.message_as().unwrap_or_default();
    match text.as_str() {
        "no" => Reply::refuse("not allowed"),
        "quiet" => Reply::done(),
        "twice" => Reply::with(&1).and(Envelope::new("__reply").with_message(&2)),
        _ => Reply::with(&json!({ "heard": text })).and(
            Envelope::new("line")
                .with_message(&text)
                .to(Recipient::group(sender.group_id()))
                .from_user(sender.user_id),
        ),
    }
}

fn ask(text: &str, request_id: &str) -> Value {
    json!({ "action": "ask", "message": text, "requestId": request_id })
}

/// Asserts that the client's next envelope is the marker: nothing else was sent to it.
async fn nothing_more(server: &TestServer, clients: &mut [&mut Client]) {
    server.send_marker();
    for client in clients {
        client.recv_action("marker").await;
    }
}

#[tokio::test]
async fn a_forwarded_request_is_answered_after_what_it_routes() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;
    let mut bob = server.connect("?userId=bob&groupId=room").await;

    ann.send_json(&ask("hello", "r-1")).await;
    // The sender sees its own line first, then the reply: it was routed before it was answered.
    let line = ann.recv_action("line").await;
    assert_eq!(line["message"], "hello");
    assert!(line.get("requestId").is_none(), "{line}");
    let reply = ann.recv_action("__reply").await;
    assert_eq!(reply["requestId"], "r-1");
    assert_eq!(reply["message"], json!({ "heard": "hello" }));
    assert_eq!(reply["recipients"], json!([]));
    let line = bob.recv_action("line").await;
    assert!(
        line.get("requestId").is_none(),
        "recipients never see it: {line}"
    );
    nothing_more(&server, &mut [&mut ann, &mut bob]).await;
}

#[tokio::test]
async fn a_refused_request_is_an_error_that_names_it() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;
    let mut bob = server.connect("?userId=bob&groupId=room").await;

    ann.send_json(&ask("no", "r-2")).await;
    let error = ann.recv_action("__error").await;
    assert_eq!(error["requestId"], "r-2");
    assert_eq!(error["message"]["code"], "forbidden");
    assert_eq!(error["message"]["detail"], "not allowed");
    nothing_more(&server, &mut [&mut ann, &mut bob]).await;
}

#[tokio::test]
async fn a_forward_answered_with_nothing_replies_null() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann").await;

    ann.send_json(&ask("quiet", "r-3")).await;
    let reply = ann.recv_action("__reply").await;
    assert_eq!(
        (&reply["requestId"], &reply["message"]),
        (&json!("r-3"), &Value::Null)
    );
    nothing_more(&server, &mut [&mut ann]).await;
}

#[tokio::test]
async fn two_replies_in_one_answer_fail_the_forward() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann").await;

    ann.send_json(&ask("twice", "r-4")).await;
    let error = ann.recv_action("__error").await;
    assert_eq!(error["requestId"], "r-4");
    assert_eq!(error["message"]["code"], "forward_failed");
    assert!(
        error["message"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2 `__reply`")),
        "{error}"
    );
    nothing_more(&server, &mut [&mut ann]).await;
}

#[tokio::test]
async fn a_reply_to_a_message_that_asked_nothing_goes_nowhere() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;

    ann.send_json(&json!({ "action": "ask", "message": "hello" }))
        .await;
    ann.recv_action("line").await;
    nothing_more(&server, &mut [&mut ann]).await;
}

#[tokio::test]
async fn a_relayed_request_replies_null_once_routed() {
    let server = start(Hub::builder(), post(answer)).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;
    let mut bob = server.connect("?userId=bob&groupId=room").await;

    let mut relayed = envelope(
        "chat",
        json!("hi"),
        json!([{ "type": "group", "value": "room" }]),
    );
    relayed["requestId"] = json!("r-5");
    ann.send_json(&relayed).await;
    let got = bob.recv_action("chat").await;
    assert!(got.get("requestId").is_none(), "{got}");
    let got = ann.recv_action("chat").await;
    assert!(got.get("requestId").is_none(), "{got}");
    let reply = ann.recv_action("__reply").await;
    assert_eq!(
        (&reply["requestId"], &reply["message"]),
        (&json!("r-5"), &Value::Null)
    );
    nothing_more(&server, &mut [&mut ann, &mut bob]).await;
}

#[tokio::test]
async fn errors_name_the_request_even_of_a_broken_envelope() {
    let server = start(
        Hub::builder().relay_filter(|e: &Envelope| {
            if e.action == "shout" {
                Err("no shouting".to_owned())
            } else {
                Ok(())
            }
        }),
        post(answer),
    )
    .await;
    let mut ann = server.connect("?userId=ann").await;

    for (sent, code) in [
        (
            json!({ "action": "x", "recipients": 5, "requestId": "bad" }),
            "invalid_envelope",
        ),
        (
            json!({ "action": "__connected", "requestId": "reserved" }),
            "forbidden",
        ),
        (
            json!({ "action": "shout", "requestId": "filtered" }),
            "forbidden",
        ),
    ] {
        ann.send_json(&sent).await;
        let error = ann.recv_action("__error").await;
        assert_eq!(error["message"]["code"], code, "{sent}: {error}");
        assert_eq!(error["requestId"], sent["requestId"], "{sent}: {error}");
    }
    // One that cannot be read has no id to name; nor has one whose id is not a string, or is
    // over the id limit (both make the envelope invalid, docs/protocol.md §4.1, §8).
    let long = "r".repeat(257);
    for (text, why) in [
        (r#"{"requestId":"cut"#.to_owned(), "requestId"),
        (
            r#"{"action":"x","requestId":7}"#.to_owned(),
            "`requestId` must be a string",
        ),
        (
            format!(r#"{{"action":"x","requestId":"{long}"}}"#),
            "requestId is 257 bytes",
        ),
    ] {
        ann.send(&text).await;
        let error = ann.recv_action("__error").await;
        assert!(error.get("requestId").is_none(), "{error}");
        assert_eq!(error["message"]["code"], "invalid_envelope", "{error}");
        let detail = error["message"]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{detail} lacks {why}");
    }
    nothing_more(&server, &mut [&mut ann]).await;
}

#[tokio::test]
async fn a_rate_limited_request_is_refused_by_name() {
    let server = start(Hub::builder().rate_limit(1, 1), post(answer)).await;
    let mut ann = server.connect("?userId=ann").await;

    let mut first = envelope(
        "chat",
        json!(1),
        json!([{ "type": "user", "value": "nobody" }]),
    );
    first["requestId"] = json!("ok");
    ann.send_json(&first).await;
    first["requestId"] = json!("limited");
    ann.send_json(&first).await;
    let reply = ann.recv_action("__reply").await;
    assert_eq!(reply["requestId"], "ok");
    let error = ann.recv_action("__error").await;
    assert_eq!(
        (&error["message"]["code"], &error["requestId"]),
        (&json!("rate_limited"), &json!("limited"))
    );
}

#[tokio::test]
async fn a_request_that_times_out_is_an_error_that_names_it() {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let hub = Hub::builder()
        .forwarding(
            Forwarding::in_process(FORWARD_PATH)
                .actions(["ask"])
                .timeout(Duration::from_millis(200)),
        )
        .build();
    let handler = post(move || {
        let held = Arc::clone(&held);
        async move {
            held.notified().await;
            StatusCode::NO_CONTENT
        }
    });
    let server = TestServer::serve(hub, Router::new().route(FORWARD_PATH, handler)).await;
    let mut ann = server.connect("?userId=ann").await;

    ann.send_json(&ask("hello", "slow")).await;
    let error = ann.recv_action("__error").await;
    assert_eq!(
        (&error["message"]["code"], &error["requestId"]),
        (&json!("forward_timeout"), &json!("slow"))
    );
    release.notify_waiters();
}

/// `__ping` asks whether the socket reaches the hub: it is answered ahead of messages that
/// wait behind a forward the application has not answered yet.
#[tokio::test]
async fn a_ping_is_answered_at_once_even_behind_a_forward() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (inside, held) = (Arc::clone(&entered), Arc::clone(&release));
    let handler = post(move || {
        let (inside, held) = (Arc::clone(&inside), Arc::clone(&held));
        async move {
            inside.notify_one();
            held.notified().await;
            Reply::with(&"late")
        }
    });
    let server = start(Hub::builder(), handler).await;
    let mut ann = server.connect("?userId=ann").await;

    ann.send_json(&ask("hold on", "held")).await;
    common::within("the forward to reach the handler", entered.notified()).await;
    let mut behind = envelope(
        "chat",
        json!(1),
        json!([{ "type": "user", "value": "ann" }]),
    );
    behind["requestId"] = json!("behind");
    ann.send_json(&behind).await;
    ann.send_json(&json!({ "action": "__ping", "requestId": "p-1" }))
        .await;
    let pong = ann.recv_action("__reply").await;
    assert_eq!(
        (&pong["requestId"], &pong["message"]),
        (&json!("p-1"), &Value::Null)
    );

    release.notify_one();
    let reply = ann.recv_action("__reply").await;
    assert_eq!(
        (&reply["requestId"], &reply["message"]),
        (&json!("held"), &json!("late"))
    );
    ann.recv_action("chat").await;
    assert_eq!(ann.recv_action("__reply").await["requestId"], "behind");
    // A ping is never relayed or forwarded.
    nothing_more(&server, &mut [&mut ann]).await;
}

/// An external backend, in any language, answers with `__reply` in its JSON; it sees the
/// `requestId` in the forward's body.
#[tokio::test]
async fn an_external_backend_replies_with_a_reply_envelope() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the backend on 127.0.0.1:0");
    let addr = listener.local_addr().expect("backend address");
    let backend = Router::new().route(
        "/backend",
        post(|body: axum::body::Bytes| async move {
            let forwarded: Value = serde_json::from_slice(&body).expect("a JSON forward");
            axum::Json(json!([
                { "action": "__reply", "message": { "saw": forwarded["requestId"] } },
            ]))
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, backend).await;
    });
    let forwarding =
        Forwarding::to_url(&format!("http://{addr}/backend")).expect("a valid forward URL");
    let server =
        TestServer::serve(Hub::builder().forwarding(forwarding).build(), Router::new()).await;
    let mut ann = server.connect("?userId=ann").await;

    ann.send_json(&ask("hello", "ext-1")).await;
    let reply = ann.recv_action("__reply").await;
    assert_eq!(reply["requestId"], "ext-1");
    assert_eq!(reply["message"], json!({ "saw": "ext-1" }));
    nothing_more(&server, &mut [&mut ann]).await;
    task.abort();
}
