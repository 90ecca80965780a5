//! A burst larger than the outbound queue reaches healthy clients whole: the queue bound is
//! for clients that do not read, not for producers that are faster than the scheduler. Both run
//! on `#[tokio::test]`'s single thread, where a producer that never yields would fill every queue
//! before any connection task ran.

mod common;

use common::{within, TestServer};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wshub::Hub;

/// Bytes that may wait for one connection: about 64 of the burst's envelopes.
const QUEUE: usize = 64 * 100;
/// Ten times what fits.
const BURST: usize = 640;

async fn expect_sequence(client: &mut common::Client, n: usize) {
    within("the whole burst", async {
        for i in 0..n {
            let got = client.recv().await;
            assert_eq!(
                got["message"].as_u64(),
                Some(i as u64),
                "in order, none lost: {got}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn published_array_larger_than_the_queue_reaches_a_reading_client_whole() {
    let server = TestServer::with(Hub::builder().max_pending_bytes(QUEUE)).await;
    let mut client = server.connect("").await;
    let batch: Vec<_> = (0..BURST)
        .map(|i| json!({"action": "n", "message": i, "recipients": [{"type": "all"}]}))
        .collect();
    let body = serde_json::Value::from(batch).to_string();
    let (delivered, ()) = tokio::join!(server.publish(&body), expect_sequence(&mut client, BURST));
    assert_eq!(delivered, BURST as u64);
}

#[tokio::test]
async fn relayed_burst_larger_than_the_queue_reaches_a_reading_client_whole() {
    let server = TestServer::with(Hub::builder().max_pending_bytes(QUEUE)).await;
    let mut sender = server.connect("?userId=sender").await;
    let mut receiver = server.connect("").await;
    // Fed without flushing, then written at once: the hub finds the whole burst buffered.
    for i in 0..BURST {
        let envelope = json!({"action": "n", "message": i, "recipients": [{"type": "allButUser", "value": "sender"}]});
        let feed = sender.ws.feed(Message::text(envelope.to_string()));
        within("feeding the burst", feed).await.expect("feed");
    }
    let flush = async {
        within("the burst to be written", sender.ws.flush())
            .await
            .expect("flush")
    };
    tokio::join!(flush, expect_sequence(&mut receiver, BURST));
}
