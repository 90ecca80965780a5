//! The documented defaults, observed from outside: a hub built with no options accepts a
//! 64 KiB message and closes on one byte more, reads a 1 MiB publish body and refuses one byte
//! more, and has no rate limit. (The time and count defaults are checked in `config.rs`'s unit
//! tests: waiting 60 s or opening 100,000 sockets has no place in a test suite.)

mod common;

use common::TestServer;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn default_max_message_is_64_kib() {
    let server = TestServer::start().await;
    let mut sender = server.connect("").await;
    sender
        .send(&common::envelope_of_len("big", 64 * 1024))
        .await;
    let echoed = sender.recv_action("big").await;
    assert_eq!(
        echoed["message"].as_str().map(str::len),
        Some(64 * 1024 - 59)
    );

    sender
        .send(&common::envelope_of_len("big", 64 * 1024 + 1))
        .await;
    assert_eq!(sender.expect_close().await, Some(CloseCode::Size));
}

#[tokio::test]
async fn default_publish_body_limit_is_1_mib() {
    let server = TestServer::start().await;
    let mut client = server.connect("").await;
    assert_eq!(
        server
            .publish(&common::envelope_of_len("big", 1024 * 1024))
            .await,
        1
    );
    client.recv_action("big").await;

    let response = server
        .post(
            "/api/publish",
            Some(common::TOKEN),
            &common::envelope_of_len("big", 1024 * 1024 + 1),
        )
        .await;
    assert_eq!(response.status, 413, "{response:?}");
}

#[tokio::test]
async fn rate_limit_is_off_by_default() {
    let server = TestServer::start().await;
    let mut sender = server.connect("?userId=flood").await;
    let mut receiver = server.connect("").await;
    for n in 0..300 {
        let envelope = json!({"action": "n", "message": n, "recipients": [{"type": "allButUser", "value": "flood"}]});
        sender.send_json(&envelope).await;
    }
    for n in 0..300 {
        let got = receiver.recv().await;
        assert_eq!(
            (got["action"].as_str(), got["message"].as_i64()),
            (Some("n"), Some(n))
        );
    }
}

/// `Hub::strict`: identity from the resolver alone (the query string is ignored), no client
/// relays (only forwarded actions).
#[tokio::test]
async fn the_strict_preset_trusts_no_client() {
    use axum::routing::post;
    use wshub::{Forwarded, Forwarding, Hub, Identity, Reply};

    let hub = Hub::strict(|request: &http::request::Parts| {
        let token = request.headers.get("x-token").cloned();
        async move {
            match token.as_ref().map(|t| t.as_bytes()) {
                Some(b"ann-token") => Ok(Identity::user("ann").in_group("team")),
                _ => Err(wshub::refuse(
                    http::StatusCode::UNAUTHORIZED,
                    "who are you?",
                )),
            }
        }
    })
    .forwarding(Forwarding::in_process("/hub/messages").actions(["chat"]))
    .build();
    let app = axum::Router::new().route(
        "/hub/messages",
        post(|_: Forwarded| async { Reply::done() }),
    );
    let server = TestServer::serve(hub, app).await;

    let Err(refused) = server.try_connect("?userId=ann", &[]).await else {
        panic!("no token, no socket, whatever the query says");
    };
    assert_eq!(refused.status, 401);
    let (mut ann, connected) = server
        .try_connect(
            "?userId=mallory&groupId=admins",
            &[("x-token", "ann-token")],
        )
        .await
        .expect("ann's token opens a socket");
    assert_eq!(connected["message"]["userId"], "ann");
    assert_eq!(connected["message"]["groupId"], "team");

    // A relay to everyone is refused; the forwarded action is answered. (The rate limit it sets
    // is checked in config.rs: counting refusals here would race the bucket's refill.)
    ann.send_json(&json!({"action": "shout", "recipients": [{"type": "all"}], "requestId": "r"}))
        .await;
    let refused = ann.recv_action("__error").await;
    assert_eq!(
        (&refused["message"]["code"], &refused["requestId"]),
        (&json!("forbidden"), &json!("r"))
    );
    ann.send_json(&json!({"action": "chat", "message": "hi", "requestId": "c"}))
        .await;
    assert_eq!(ann.recv_action("__reply").await["requestId"], "c");
}
