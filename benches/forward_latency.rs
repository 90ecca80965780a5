//! What one in-process forward adds to a message's round trip, against a plain relay, in the
//! same run.
//!
//! ```text
//! cargo bench --bench forward_latency
//! ```
//!
//! One hub with `Forwarding::in_process("/hub/echo").actions(["forwarded"])` wraps an axum
//! router whose `/hub/echo` handler (the `Forwarded` extractor) answers with `axum::Json` of an
//! envelope addressed to the sender's connection. A real hyper server (`auto::Builder`, with
//! upgrades) serves it on 127.0.0.1 in a multi-thread tokio runtime; one tokio-tungstenite
//! client, on its own thread and current-thread runtime, times round trips from its send to the
//! answer's arrival:
//! - **relay**: action `relayed`, addressed to its own connection id, straight back;
//! - **forward**: action `forwarded`, through the application's handler and back.
//!
//! The two alternate, one of each in turn, so machine noise hits both alike; a warm-up comes
//! first. The whole run is repeated with 1,000 idle extra connections open, so the figure is not
//! for an empty hub. `forward - relay` is what the forward costs.

#[path = "../tests/common/accept.rs"]
mod accept;

use std::time::{Duration, Instant};

use accept::serve_upgrades;
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::Layer;
use wshub::{Envelope, Forwarded, Forwarding, Hub, Recipient};

/// Round trips of each kind per scenario, after the warm-up.
const ROUNDS: usize = 20_000;
/// Round trips of each kind before timing starts.
const WARM_UP: usize = 2_000;
/// Idle connections open during the second scenario.
const IDLE: usize = 1_000;
/// The whole bench is stopped after this long, whatever it is doing.
const DEADLINE: Duration = Duration::from_secs(60);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn main() {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("forward_latency: still running after {DEADLINE:?}; stopping");
        std::process::exit(1);
    });
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client.block_on(run(&server));
    server.shutdown_timeout(Duration::from_secs(5));
}

async fn run(server: &Runtime) {
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/echo").actions(["forwarded"]))
        .build();
    let app = Router::new().route(
        "/hub/echo",
        post(|Forwarded { envelope, sender }: Forwarded| async move {
            let mut reply =
                Envelope::new("forwarded").to(Recipient::connection(sender.connection_id));
            reply.message = envelope.message;
            Json(reply)
        }),
    );
    let service = hub.layer("/ws").layer(app);
    let listener = server
        .spawn(TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind task")
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let accept = server.spawn(async move { serve_upgrades(listener, service).await });
    let url = format!("ws://{addr}/ws");

    let (mut ws, id) = connect(&url).await;
    // The same message in both; only the action differs.
    let message = "a chat message of about sixty bytes, as chat clients send";
    let relay = Envelope::new("relayed")
        .with_message(message)
        .to(Recipient::connection(&id))
        .to_json();
    let forward = Envelope::new("forwarded")
        .with_message(message)
        .to(Recipient::connection(&id))
        .to_json();

    // Warm-up, checking each answer in full once.
    for _ in 0..WARM_UP {
        round_trip(&mut ws, &relay, "relayed").await;
        round_trip(&mut ws, &forward, "forwarded").await;
    }
    let reply = round_trip_text(&mut ws, &forward).await;
    let reply = Envelope::from_json(reply.as_bytes()).expect("the handler answers an envelope");
    assert_eq!(reply.action, "forwarded");
    assert_eq!(reply.message_as::<String>().expect("a string"), message);

    let empty = measure(&mut ws, &relay, &forward).await;

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let (socket, _) = connect(&url).await;
        // Read, so that pings are answered and the connections stay healthy.
        idle.push(tokio::spawn(async move {
            let (_, mut read) = socket.split();
            while let Some(Ok(_)) = read.next().await {}
        }));
    }
    let started = Instant::now();
    while hub.local_connection_count() < IDLE + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the idle connections did not all register"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..WARM_UP / 5 {
        round_trip(&mut ws, &relay, "relayed").await;
        round_trip(&mut ws, &forward, "forwarded").await;
    }
    let busy = measure(&mut ws, &relay, &forward).await;

    println!(
        "forward latency: round trips of one client on 127.0.0.1, {ROUNDS} of each, alternating \
         (after {WARM_UP} of each to warm up)"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 µs", "p90 µs", "p99 µs", "mean µs"
    );
    report("1 connection", &empty);
    report(&format!("{} connections", IDLE + 1), &busy);

    let _ = ws.close(None).await;
    for reader in idle {
        reader.abort();
    }
    let closing = hub.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        server.spawn(async move { closing.shutdown().await }),
    )
    .await;
    accept.abort();
}

/// Connects to the hub and reads the `__connected` envelope; returns the socket and its id.
async fn connect(url: &str) -> (Socket, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake");
    let connected = next_text(&mut ws).await;
    let connected: serde_json::Value =
        serde_json::from_str(&connected).expect("__connected is JSON");
    assert_eq!(connected["action"], "__connected", "{connected}");
    let id = connected["message"]["connectionId"]
        .as_str()
        .expect("a connection id")
        .to_owned();
    (ws, id)
}

/// The next text frame.
async fn next_text(ws: &mut Socket) -> String {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Sends `frame` and returns the text of the next text frame.
async fn round_trip_text(ws: &mut Socket, frame: &str) -> String {
    ws.send(Message::text(frame)).await.expect("send");
    next_text(ws).await
}

/// Sends `frame`, waits for the answer, checks its action, and returns the time in between.
async fn round_trip(ws: &mut Socket, frame: &str, action: &str) -> Duration {
    let started = Instant::now();
    ws.send(Message::text(frame)).await.expect("send");
    let answer = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    let expected = format!(r#"{{"action":"{action}""#);
    assert!(
        answer.as_str().starts_with(&expected),
        "expected {action}, got {}",
        answer.as_str()
    );
    elapsed
}

/// Round trips of each kind, alternating, in nanoseconds: sorted, and the median of the
/// differences of each forward and the relay next to it.
struct Samples {
    relay: Vec<u64>,
    forward: Vec<u64>,
    paired: f64,
}

async fn measure(ws: &mut Socket, relay: &str, forward: &str) -> Samples {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let mut samples = Samples {
        relay: Vec::with_capacity(ROUNDS),
        forward: Vec::with_capacity(ROUNDS),
        paired: 0.0,
    };
    for i in 0..ROUNDS {
        // Which goes first alternates too, so neither always follows the other.
        if i % 2 == 0 {
            samples
                .relay
                .push(nanos(round_trip(ws, relay, "relayed").await));
            samples
                .forward
                .push(nanos(round_trip(ws, forward, "forwarded").await));
        } else {
            samples
                .forward
                .push(nanos(round_trip(ws, forward, "forwarded").await));
            samples
                .relay
                .push(nanos(round_trip(ws, relay, "relayed").await));
        }
    }
    // The machine drifts between speeds for seconds at a time (see docs/benchmarks.md); the
    // difference of neighbours is the cost of the forward whatever the speed of the moment.
    let mut differences: Vec<i64> = samples
        .forward
        .iter()
        .zip(&samples.relay)
        .map(|(&f, &r)| i64::try_from(f).unwrap_or(i64::MAX) - i64::try_from(r).unwrap_or(0))
        .collect();
    differences.sort_unstable();
    samples.paired = differences[differences.len() / 2] as f64 / 1_000.0;
    samples.relay.sort_unstable();
    samples.forward.sort_unstable();
    samples
}

/// p50, p90, p99 and mean of sorted samples, in microseconds.
fn stats(sorted: &[u64]) -> [f64; 4] {
    let at = |p: usize| {
        let rank = (sorted.len() * p).div_ceil(100).max(1);
        sorted[rank - 1] as f64 / 1_000.0
    };
    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1_000.0;
    [at(50), at(90), at(99), mean]
}

fn report(scenario: &str, samples: &Samples) {
    let relay = stats(&samples.relay);
    let forward = stats(&samples.forward);
    let row = |label: &str, v: [f64; 4]| {
        println!(
            "{label:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            v[0], v[1], v[2], v[3]
        );
    };
    row(&format!("{scenario}: relay"), relay);
    row(&format!("{scenario}: forward"), forward);
    row(
        "  forward - relay",
        [0, 1, 2, 3].map(|i| forward[i] - relay[i]),
    );
    println!(
        "{:<28} {:>9.2} {:>9} {:>9.2}",
        "  forward / relay",
        forward[0] / relay[0],
        "",
        forward[2] / relay[2]
    );
    println!(
        "{:<28} {:>9.1}",
        "  paired median difference", samples.paired
    );
}
