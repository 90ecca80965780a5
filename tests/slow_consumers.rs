//! PROTOCOL.md §6: a client that stops making progress, or whose pending bytes pass their bound,
//! is closed with 1008 and its close frame reaches it; a client that keeps reading is never
//! closed because a publisher was briefly faster, and nobody else is slowed down.

mod common;

use std::time::Duration;

use common::raw_ws::{End, RawWs};
use common::{until, within, Client, TestServer};
use serde_json::json;
use wshub::{Envelope, Hub, Recipient};

/// The `n` of `{"action":"n","message":{"n":N,…}}` without parsing the padding.
fn sequence_number(text: &str) -> Option<u64> {
    let at = text.find(r#""n":"#)? + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Reads `client`'s envelopes until `end`, checking they come in order, none skipped; returns
/// how many came, and the client, still connected. It reads steadily but slowly: a pause every
/// 20 envelopes holds it to about 2,000 a second, slower than the publisher.
async fn read_in_order(mut client: Client) -> (u64, Client) {
    let mut next = 0;
    loop {
        if next % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = client.recv_text().await;
        if text.contains(r#""action":"end""#) {
            return (next, client);
        }
        assert_eq!(sequence_number(&text), Some(next), "in order, none skipped");
        next += 1;
    }
}

/// A client that read nothing since `__connected` was closed: everything it reads now is whole
/// frames, in order, then a close frame with `code`.
async fn expect_in_order_then_closed(client: &mut RawWs, code: u16) -> u64 {
    let mut next = 0;
    let end = client
        .read_to_end(|text| {
            if let Some(n) = sequence_number(text) {
                assert_eq!(n, next, "in order");
                next += 1;
            }
        })
        .await;
    assert_eq!(end, End::Close(Some(code)), "after {next} whole frames");
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_slower_than_a_burst_get_all_of_it_while_a_client_that_stopped_is_closed() {
    const READERS: usize = 4;
    const POSTS: u64 = 40;
    const PER_POST: u64 = 200;
    // The defaults: the bound is what an application gets.
    let server = TestServer::start().await;
    let readers = server.connect_many(READERS, "?groupId=g").await;
    let mut stopped = RawWs::connect(server.addr, "?groupId=g", Some(4096)).await;
    until("every client registered", || {
        server.hub.local_group_connections("g").len() == READERS + 1
    })
    .await;
    let readers: Vec<_> = readers
        .into_iter()
        .map(|client| tokio::spawn(read_in_order(client)))
        .collect();
    // Once the hub has given up on it, the client that stopped reads again: whatever was under
    // way is whole, and its close frame follows. (One that read nothing for the closing grace,
    // two seconds, would have its connection dropped.)
    let hub = server.hub.clone();
    let stopped = tokio::spawn(async move {
        until("the client that stopped to be closed", || {
            hub.local_group_connections("g").len() == READERS
        })
        .await;
        expect_in_order_then_closed(&mut stopped, 1008).await
    });

    // 8,000 envelopes of 4 KiB in arrays of 200, each POST sent when the last is answered.
    let padding = "x".repeat(4096);
    for post in 0..POSTS {
        let batch: Vec<_> = (post * PER_POST..(post + 1) * PER_POST)
            .map(|n| {
                json!({
                    "action": "n",
                    "message": {"n": n, "padding": padding},
                    "recipients": [{"type": "group", "value": "g"}],
                })
            })
            .collect();
        server
            .publish(&serde_json::Value::from(batch).to_string())
            .await;
    }
    server
        .hub
        .send(&Envelope::new("end").to(Recipient::group("g")));
    let mut still_open = Vec::new();
    for reader in readers {
        let (got, client) = reader.await.expect("reader task");
        assert_eq!(got, POSTS * PER_POST, "every reader got every envelope");
        still_open.push(client);
    }
    assert_eq!(
        server.hub.local_group_connections("g").len(),
        READERS,
        "the readers are connected, the client that stopped is not"
    );
    let got = within("the stopped client's end", stopped)
        .await
        .expect("stopped client task");
    assert!(
        got < POSTS * PER_POST,
        "it was closed before the burst ended"
    );
}

/// Sends envelopes numbered `numbers`, of about 4 KiB, to `group`, yielding now and then as a
/// producer should, so that readers keep up.
async fn send_to(server: &TestServer, group: &str, numbers: std::ops::Range<u64>) {
    let padding = "x".repeat(4096);
    for n in numbers {
        let envelope = Envelope::new("n")
            .with_message(&json!({"n": n, "padding": padding}))
            .to(Recipient::group(group));
        server.hub.send(&envelope);
        if n % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_socket_takes_nothing_is_closed_after_the_stall_timeout() {
    let server = TestServer::with(
        Hub::builder()
            .stall_timeout(Duration::from_millis(300))
            .max_pending_bytes(64 << 20),
    )
    .await;
    let mut stopped = RawWs::connect(server.addr, "?groupId=stopped", Some(4096)).await;
    let mut reader = server.connect("?groupId=reader").await;
    until("both registered", || {
        server.hub.local_connection_count() == 2
    })
    .await;

    // Until the kernel's buffers are full (they grow to a few MB) and frames wait, far less
    // than the bound; the client is closed once its socket has taken nothing for 300 ms.
    let mut rounds = 0;
    while !server.hub.local_group_connections("stopped").is_empty() {
        rounds += 1;
        assert!(rounds <= 200, "not closed after 200 rounds of 100 frames");
        send_to(&server, "stopped", (rounds - 1) * 100..rounds * 100).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody else was held up meanwhile.
    send_to(&server, "reader", 0..3).await;
    for n in 0..3 {
        let text = reader.recv_text().await;
        assert_eq!(sequence_number(&text), Some(n));
    }
    let got = expect_in_order_then_closed(&mut stopped, 1008).await;
    assert!(
        got < rounds * 100,
        "closed before everything was written ({got} frames)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slowly_but_steadily_is_not_stalled() {
    const FRAMES: u64 = 150;
    let server = TestServer::with(Hub::builder().stall_timeout(Duration::from_millis(300))).await;
    let mut slow = RawWs::connect(server.addr, "?groupId=slow", Some(4096)).await;
    let connected = slow.text().await;
    assert!(connected.contains("__connected"));
    until("registered", || server.hub.local_connection_count() == 1).await;

    // About 600 KB, read a frame every 10 ms: its socket takes bytes at least every 300 ms,
    // though the whole takes over a second.
    send_to(&server, "slow", 0..FRAMES).await;
    server.send_marker();
    for n in 0..FRAMES {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let text = slow.text().await;
        assert_eq!(sequence_number(&text), Some(n), "in order");
    }
    assert!(slow.text().await.contains("marker"));
    assert_eq!(server.hub.local_connection_count(), 1, "still connected");
}
