//! What an operator reads: refusals and closes for cause are events at `info` (a forward that
//! failed at `warn`), inside the socket's span, and a flood of one kind is cut to a few a second,
//! the first of the next second saying how many were left out. Over a real server and client,
//! with a subscriber that records what it is given.

mod common;

use common::logs::Recorder;
use common::TestServer;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tracing::Level;

/// Events of one kind that pass in a second (src/notice.rs).
const PER_SECOND: usize = 10;

#[tokio::test]
async fn a_flood_of_refusals_is_cut_and_what_was_left_out_is_counted() {
    let recorder = Recorder::default();
    let _guard = recorder.install();
    let server = TestServer::start().await;
    let mut client = server.connect("?userId=mallory").await;

    let refusals = || {
        let all = recorder.all("refused");
        all.into_iter()
            .filter(|seen| {
                seen.fields.0.get("code").map(String::as_str) == Some("invalid_envelope")
            })
            .collect::<Vec<_>>()
    };
    for _ in 0..50 {
        client.send("not an envelope").await;
        client.recv_action("__error").await;
    }
    let logged = refusals();
    // Fifty in well under a second: ten pass; twenty if a second began in the middle.
    assert!(
        (1..=2 * PER_SECOND).contains(&logged.len()),
        "{} logged of 50",
        logged.len()
    );
    let first = &logged[0];
    assert_eq!(first.level, Level::INFO);
    assert!(first.fields.0.contains_key("detail"), "{first:?}");
    let socket = first.span("socket").expect("in the socket's span");
    assert_eq!(socket.0.get("connection"), Some(&client.id));

    // The first refusal of a later second says how many were left out before it.
    common::within("a refusal that counts what was left out", async {
        loop {
            client.send("still not an envelope").await;
            client.recv_action("__error").await;
            let counted = refusals()
                .iter()
                .any(|seen| seen.fields.0.get("left_out").is_some_and(|n| n != "0"));
            if counted {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_upgrade_and_a_close_for_cause_are_logged() {
    let recorder = Recorder::default();
    let _guard = recorder.install();
    let server = TestServer::start().await;

    let refusal = server
        .try_connect("", &[("origin", "https://elsewhere.example")])
        .await
        .err()
        .expect("a foreign origin is refused");
    assert_eq!(refusal.status, 403);
    let refused = recorder
        .find("upgrade refused")
        .expect("the refusal's event");
    assert_eq!(refused.level, Level::INFO);
    assert_eq!(
        refused.fields.0.get("status").map(String::as_str),
        Some("403")
    );

    let mut client = server.connect("").await;
    client
        .ws
        .send(Message::binary(vec![0]))
        .await
        .expect("a binary frame");
    client.expect_end().await;
    common::until("the close's event", || {
        recorder.find("socket closed").is_some()
    })
    .await;
    let closed = recorder.find("socket closed").expect("the close's event");
    assert_eq!(closed.level, Level::INFO, "a close for cause is kept on");
    assert_eq!(
        closed.fields.0.get("reason").map(String::as_str),
        Some("protocol_error (1003)")
    );
    let socket = closed.span("socket").expect("in the socket's span");
    assert_eq!(
        socket.0.get("closed").map(String::as_str),
        Some("protocol_error")
    );
}
