//! What `Hub::send` costs per recipient, against the floor of the same work done by hand.
//!
//! ```text
//! cargo bench --bench fanout
//! ```
//!
//! Both sides route one envelope to N connections ROUNDS times, with a task per connection
//! waiting on its queue (so both pay for waking it):
//! - **floor**: one pre-serialised frame, `try_send` of a clone into each of N bounded tokio
//!   channels; no registry, no routing;
//! - **wshub**: `Hub::send` to a group of N real WebSocket connections on 127.0.0.1 (serialise
//!   once, read lock, walk the group index, `try_send` of a clone into each connection's queue).
//!
//! The ratio is what the hub adds on top of the bare queue pushes. Only the synchronous routing
//! call is timed; the sockets' writes happen on other tasks.

#[path = "../tests/common/accept.rs"]
mod accept;

use std::time::{Duration, Instant};

use accept::serve_upgrades;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tower::Layer;
use wshub::{Envelope, Hub, Recipient};

const CONNECTIONS: usize = 2_000;
const ROUNDS: u32 = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let envelope = Envelope::new("news")
        .with_message(&"a message of about one hundred bytes, as chat messages and tickers send")
        .to(Recipient::group("all-of-them"));

    let floor = floor(&envelope).await;
    let hub = hub(&envelope).await;
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(ROUNDS) / CONNECTIONS as f64;
    println!("fan-out of one envelope to {CONNECTIONS} connections, {ROUNDS} rounds");
    println!(
        "  floor (try_send of a shared frame):  {:7.1} ns per recipient",
        per(floor)
    );
    println!(
        "  wshub (Hub::send, real sockets):     {:7.1} ns per recipient",
        per(hub)
    );
    println!(
        "  ratio wshub / floor:                 {:7.2}",
        per(hub) / per(floor)
    );
}

async fn floor(envelope: &Envelope) -> Duration {
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(256);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        senders.push(tx);
    }
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let frame = Utf8Bytes::from(envelope.to_json());
        let delivered = senders
            .iter()
            .filter(|tx| tx.try_send(frame.clone()).is_ok())
            .count();
        total += started.elapsed();
        assert_eq!(delivered, CONNECTIONS);
        tokio::task::yield_now().await;
    }
    total
}

async fn hub(envelope: &Envelope) -> Duration {
    let hub = Hub::builder().build();
    let service = hub.layer("/ws").layer(tower::service_fn(|_| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Full::<bytes::Bytes>::default(),
        ))
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { serve_upgrades(listener, service).await });

    let mut readers = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let url = format!("ws://{addr}/ws?groupId=all-of-them");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        readers.push(tokio::spawn(async move {
            let (_, mut read) = ws.split();
            while let Some(Ok(_)) = read.next().await {}
        }));
    }
    while hub.local_connection_count() < CONNECTIONS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let delivered = hub.send(envelope);
        total += started.elapsed();
        assert_eq!(
            delivered, CONNECTIONS,
            "every connection had room in its queue"
        );
        tokio::task::yield_now().await;
    }
    hub.shutdown().await;
    server.abort();
    for reader in readers {
        reader.abort();
    }
    total
}
