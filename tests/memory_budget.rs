//! What all connections together may hold (`max_buffered_bytes`): frames not yet written to
//! every recipient and client messages not yet whole. Past it, the connections furthest behind are
//! closed with 1013 (try again later), and a client whose partial message would pass it is closed
//! with 1013; clients that keep up are not disturbed. A message must also be whole within the idle
//! timeout, however the client keeps its socket alive.

mod common;

use std::time::Duration;

use common::raw_ws::{masked_frame, End, RawWs, OP_PING, OP_TEXT};
use common::{until, within, TestServer};
use serde_json::json;
use wshub::{Envelope, Hub, Recipient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_the_connections_furthest_behind_are_closed_with_1013() {
    const STOPPED: usize = 4;
    let server = TestServer::with(
        Hub::builder()
            .max_buffered_bytes(2 << 20)
            // Neither the per-connection bound nor the stall timeout comes first.
            .max_pending_bytes(256 << 20)
            .stall_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut reader = server.connect("?groupId=reader").await;
    let mut stopped = Vec::new();
    for i in 0..STOPPED {
        stopped.push(RawWs::connect(server.addr, &format!("?groupId=s{i}"), Some(4096)).await);
    }
    until("every client registered", || {
        server.hub.local_connection_count() == STOPPED + 1
    })
    .await;

    // Frames of 64 KB, different for each client that stopped, until the kernel's buffers are
    // full and what waits passes the budget.
    let padding = "x".repeat(64 * 1024);
    let mut rounds = 0;
    while (0..STOPPED).any(|i| {
        !server
            .hub
            .local_group_connections(&format!("s{i}"))
            .is_empty()
    }) {
        rounds += 1;
        assert!(rounds <= 1000, "not all shed after {rounds} rounds");
        for i in 0..STOPPED {
            let envelope = Envelope::new("n")
                .with_message(&json!({ "round": rounds, "padding": padding }))
                .to(Recipient::group(format!("s{i}")));
            server.hub.send(&envelope);
        }
        // The reader is served all along.
        server
            .hub
            .send(&Envelope::new("tick").to(Recipient::group("reader")));
        reader.recv_action("tick").await;
        tokio::task::yield_now().await;
    }
    for client in &mut stopped {
        assert_eq!(client.read_to_end(|_| {}).await, End::Close(Some(1013)));
    }
    server.send_marker();
    reader.recv_action("marker").await;
    assert_eq!(
        server.hub.local_connection_count(),
        1,
        "the reader is still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_messages_past_the_budget_are_refused_with_1013_and_whole_ones_still_pass() {
    const SENDERS: usize = 6;
    let server = TestServer::with(
        Hub::builder()
            .max_buffered_bytes(1 << 20)
            .max_message_size(512 * 1024),
    )
    .await;
    let mut partial = Vec::new();
    for _ in 0..SENDERS {
        let mut client = RawWs::connect(server.addr, "", None).await;
        assert!(client.text().await.contains("__connected"));
        // 300 KB of a 400 KB message, and no more.
        let frame = masked_frame(true, OP_TEXT, &vec![b' '; 400 * 1024]);
        client.send_bytes(&frame[..300 * 1024]).await;
        partial.push(client);
    }
    let mut refused = 0;
    for client in &mut partial {
        // Those kept are closed by the idle timeout (60 s) much later: wait only briefly.
        let end = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(|_| {})).await;
        match end {
            Ok(End::Close(Some(1013))) => refused += 1,
            Ok(other) => panic!("unexpected end: {other:?}"),
            Err(_) => {}
        }
    }
    assert!(
        refused >= SENDERS - 2,
        "at most two 512 KiB buffers fit in a 1 MiB budget; {refused} of {SENDERS} refused"
    );

    // Whole messages need no budget kept: they still go through.
    let mut sender = server.connect("?userId=a").await;
    let mut receiver = server.connect("?userId=b").await;
    let relay = json!({"action": "hi", "message": "x".repeat(1000), "recipients": [{"type": "user", "value": "b"}]});
    sender.send_json(&relay).await;
    assert_eq!(
        receiver.recv_action("hi").await["message"],
        "x".repeat(1000)
    );
}

#[tokio::test]
async fn a_message_sent_between_pings_must_be_whole_within_the_idle_timeout() {
    let server = TestServer::with(Hub::builder().idle_timeout(Duration::from_millis(500))).await;
    let mut client = RawWs::connect(server.addr, "", None).await;
    assert!(client.text().await.contains("__connected"));
    // The first part of a message, then only pings: the socket is alive, the message never ends.
    client.send_frame(false, OP_TEXT, b"{\"action\":").await;
    let end = within("the server to give up on the message", async {
        loop {
            client.send_frame(true, OP_PING, b"").await;
            match tokio::time::timeout(Duration::from_millis(100), client.read_frame()).await {
                Ok(Ok(frame)) if frame.opcode == common::raw_ws::OP_CLOSE => {
                    return frame.close_code()
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(end)) => panic!("ended without a close frame: {end:?}"),
            }
        }
    })
    .await;
    assert_eq!(end, Some(1008));
}
