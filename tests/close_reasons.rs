//! Why a socket closed, as `on_disconnect` is told it (`CloseReason`): each ending a client can
//! cause, or the hub or the application can choose, over a real server and a real client. The
//! endings tests/identity.rs watches (the client's close, a message too big, shutdown, a dropped
//! TCP connection) are checked there.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wshub::{CloseReason, ConnectionInfo, Envelope, Hub, HubBuilder, Recipient};

/// A server whose `on_disconnect` reports each connection's reason.
async fn start(
    builder: HubBuilder,
) -> (TestServer, mpsc::UnboundedReceiver<(String, CloseReason)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hub = builder
        .on_disconnect(move |_: Hub, info: ConnectionInfo, reason: CloseReason| {
            let _ = tx.send((info.connection_id.to_string(), reason));
            async {}
        })
        .build();
    (TestServer::serve(hub, axum::Router::new()).await, rx)
}

/// The reason `on_disconnect` gives for `client`.
async fn reason(
    closed: &mut mpsc::UnboundedReceiver<(String, CloseReason)>,
    client: &Client,
) -> CloseReason {
    let (id, reason) = common::within("on_disconnect", closed.recv())
        .await
        .expect("the hub is running");
    assert_eq!(id, client.id, "the one connection");
    reason
}

#[tokio::test]
async fn a_logout_is_the_applications_close_with_its_code() {
    let (server, mut closed) = start(Hub::builder()).await;
    let mut ann = server.connect("?userId=ann").await;
    let done = server.hub.disconnect_user("ann", wshub::LOGGED_OUT).await;
    assert_eq!(done, Ok(1));
    ann.expect_close().await;
    assert_eq!(
        reason(&mut closed, &ann).await,
        CloseReason::Application(4401)
    );
}

#[tokio::test]
async fn a_client_that_keeps_sending_while_limited_is_a_rate_abuser() {
    let (server, mut closed) = start(Hub::builder().rate_limit(1, 1)).await;
    let mut spammer = server.connect("").await;
    // One passes, then 20 refusals in a row close it; the bucket earns one token a second, so
    // 60 sent at once leave it no way to reset the count.
    for n in 0..60 {
        let text = format!(r#"{{"action":"spam","message":{n},"recipients":[]}}"#);
        if spammer.ws.feed(Message::text(text)).await.is_err() {
            break;
        }
    }
    let _ = spammer.ws.flush().await;
    assert_eq!(reason(&mut closed, &spammer).await, CloseReason::RateAbuse);
    assert_eq!(CloseReason::RateAbuse.code(), Some(1008));
}

#[tokio::test]
async fn a_binary_frame_is_a_protocol_error_with_its_code() {
    let (server, mut closed) = start(Hub::builder()).await;
    let mut client = server.connect("").await;
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("send a binary frame");
    assert_eq!(
        reason(&mut closed, &client).await,
        CloseReason::ProtocolError(1003)
    );
}

#[tokio::test]
async fn a_silent_client_is_idle() {
    let builder = Hub::builder()
        .idle_timeout(Duration::from_millis(300))
        .ping_interval(Duration::from_millis(100));
    let (server, mut closed) = start(builder).await;
    // Never read from: it answers no ping.
    let client = server.connect("").await;
    assert_eq!(reason(&mut closed, &client).await, CloseReason::Idle);
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_a_slow_consumer() {
    let builder = Hub::builder().max_pending_bytes(64 * 1024);
    let (server, mut closed) = start(builder).await;
    let client = server.connect("?userId=sloth").await;
    // 16 KiB envelopes until the hub stops queuing them: the kernel's buffers take a few MB, then
    // what waits passes its 64 KiB bound. Bounded: 64 MB at most.
    let big = Envelope::new("big")
        .with_message(&"x".repeat(16 * 1024))
        .to(Recipient::user("sloth"));
    let mut sent = 0;
    while server.hub.send(&big) == 1 {
        sent += 1;
        assert!(sent < 4096, "64 MB queued to a client that reads nothing");
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        reason(&mut closed, &client).await,
        CloseReason::SlowConsumer
    );
}
