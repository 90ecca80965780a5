//! Every socket's work runs inside a `socket` span with its connection id and user, and a
//! forward, with the application's handler of it, inside a `forward` span within it: one
//! `RUST_LOG` filter follows a socket's life. Checked with a subscriber that records each event
//! with the spans around it, over a real server and a real client.

mod common;

use axum::routing::post;
use axum::Router;
use common::logs::Recorder;
use common::{until, TestServer};
use serde_json::json;
use wshub::{Forwarded, Forwarding, Hub, Reply};

#[tokio::test]
async fn a_sockets_life_and_its_handlers_run_in_its_span() {
    let recorder = Recorder::default();
    let _guard = recorder.install();

    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/messages").actions(["ask"]))
        .build();
    let app = Router::new().route(
        "/hub/messages",
        post(|Forwarded { envelope, .. }: Forwarded| async move {
            tracing::info!(action = %envelope.action, "the handler ran");
            Reply::done()
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;

    ann.send_json(&json!({"action": "ask", "message": "hi", "requestId": "r-1"}))
        .await;
    ann.recv_action("__reply").await;
    let handled = recorder
        .find("the handler ran")
        .expect("the handler's event");
    let names: Vec<&str> = handled.spans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["socket", "forward"], "{handled:?}");
    let socket = handled.span("socket").expect("the socket span");
    assert_eq!(socket.0.get("connection"), Some(&ann.id), "{handled:?}");
    assert_eq!(socket.0.get("user").map(String::as_str), Some("ann"));
    let forward = handled.span("forward").expect("the forward span");
    assert_eq!(forward.0.get("action").map(String::as_str), Some("ask"));
    assert_eq!(forward.0.get("request").map(String::as_str), Some("r-1"));

    let opened = recorder.find("socket open").expect("the open event");
    assert_eq!(
        opened.span("socket").and_then(|s| s.0.get("connection")),
        Some(&ann.id)
    );

    ann.ws.close(None).await.expect("close");
    until("the close event", || {
        recorder.find("socket closed").is_some()
    })
    .await;
    let closed = recorder.find("socket closed").expect("the close event");
    assert_eq!(
        closed.span("socket").and_then(|s| s.0.get("connection")),
        Some(&ann.id)
    );
}
