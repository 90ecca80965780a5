//! Criterion micro-benchmarks: envelope parsing and serialising, and `Hub::send` to a group.
//!
//! ```text
//! cargo bench --bench micro                 # everything, about 65 s
//! cargo bench --bench micro -- from_json    # one group (criterion's filter)
//! ```
//!
//! - **`from_json/*`, `to_json/*`**: `Envelope::from_json` and `Envelope::to_json` of four
//!   envelopes: a small chat message to one group, a 1 KiB string to five recipients, an object
//!   message with nested JSON, and an array-valued message. Throughput is in bytes of JSON.
//! - **`hub_send/group/N`**: `Hub::send` of a small envelope to a group of N real WebSocket
//!   connections on 127.0.0.1 (an in-process hyper server, as in `benches/fanout.rs`, with a
//!   tokio-tungstenite client per connection reading everything). Each iteration is one send,
//!   timed alone in a task, as the hub's own producers call it; then, untimed, the bench waits
//!   until every client has read the frame, so each send finds the queues empty and the
//!   connection tasks asleep, and pays for waking them. N = 0 (a group nobody is in) is the
//!   fixed cost: serialising once, the read lock, the index look-up. Throughput is in recipients.
//!
//!   Server, connections and clients share one current-thread runtime. On a multi-thread
//!   runtime the first wake of a send unparks the idle second worker, which then competes with
//!   the sender for the CPU in the middle of the timed call: on the shared 2-core machine N = 100
//!   measured 30 µs (interval 10 to 58 µs) and, in a busier minute, 277 µs, against 7 to 9 µs
//!   with one thread. That is the machine's scheduler, not routing; the load test is the place
//!   for it.
//!
//! Traffic stays on 127.0.0.1 and the whole run is stopped after [`DEADLINE`] whatever it is
//! doing.

#[path = "../tests/common/accept.rs"]
mod accept;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accept::serve_upgrades;
use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tower::Layer;
use wshub::{Envelope, Hub, Recipient};

/// The whole bench binary is stopped after this long, whatever it is doing.
const DEADLINE: Duration = Duration::from_secs(300);
/// Group sizes of `hub_send/group/N`; 0 needs no socket.
const GROUP_SIZES: [usize; 3] = [0, 1, 100];
/// The longest a send may take to reach every client before the bench gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The envelopes of the parsing benches, by name.
fn envelopes() -> Vec<(&'static str, Envelope)> {
    let small = Envelope::new("chat")
        .with_message("hi all")
        .from_user("ann")
        .to(Recipient::group("lobby"));

    // 1 KiB of text, with the odd quote and line break to unescape.
    let sentence = "The deploy finished; \"all green\" on the dashboard.\n";
    let text: String = sentence.chars().cycle().take(1024).collect();
    let medium = Envelope::new("broadcastchatmessage")
        .with_message(&text)
        .from_user("ann")
        .from_group("room-1")
        .to(Recipient::group("room-1"))
        .to(Recipient::group("room-2"))
        .to(Recipient::user("bob"))
        .to(Recipient::connection("000102030405060708090a0b0c0d0e0f"))
        .to(Recipient::all_but_user("ann"));

    let nested = Envelope::new("chat")
        .with_message(&serde_json::json!({
            "user": "ann",
            "text": "did you see the release notes?",
            "time": "2026-11-25T12:00:00Z",
            "reply": {
                "to": "bob",
                "id": 184_467,
                "quoted": { "user": "bob", "text": "release is out", "edited": false },
            },
            "reactions": [
                { "emoji": "+1", "users": ["bob", "carol"] },
                { "emoji": "tada", "users": ["dave"] },
            ],
            "attachments": [],
            "meta": { "client": "web", "version": [1, 4, 2], "latency": 0.0125, "seq": 42 },
        }))
        .from_user("ann")
        .from_group("room-1")
        .to(Recipient::group("room-1"));

    let quotes: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            serde_json::json!({
                "symbol": format!("SYM{i:02}"),
                "price": 100.0 + f64::from(i) * 1.25,
                "change": -0.5 + f64::from(i) * 0.0625,
                "volume": 1_000_000 + i * 7_919,
            })
        })
        .collect();
    let array = Envelope::new("ticker")
        .with_message(&quotes)
        .to(Recipient::group("tickers"));

    vec![
        ("small", small),
        ("medium", medium),
        ("nested_object", nested),
        ("array", array),
    ]
}

fn envelope_benches(c: &mut Criterion) {
    let cases: Vec<(&str, Envelope, String)> = envelopes()
        .into_iter()
        .map(|(name, envelope)| {
            let json = envelope.to_json();
            let back = Envelope::from_json(json.as_bytes()).expect("the bench envelope parses");
            assert_eq!(back, envelope, "{name} survives a round trip");
            (name, envelope, json)
        })
        .collect();

    let mut group = c.benchmark_group("from_json");
    for (name, _, json) in &cases {
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new(*name, json.len()), json, |b, json| {
            b.iter(|| Envelope::from_json(black_box(json.as_bytes())))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("to_json");
    for (name, envelope, json) in &cases {
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(*name, json.len()),
            envelope,
            |b, envelope| b.iter(|| black_box(envelope).to_json()),
        );
    }
    group.finish();
}

/// How many bench frames the clients have read, and a wake-up for the one waiting for them.
#[derive(Default)]
struct Drain {
    received: AtomicU64,
    /// The count the waiter waits for; the client that reaches it wakes it.
    target: AtomicU64,
    reached: Notify,
}

impl Drain {
    fn read_one(&self) {
        let now = self.received.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Waits until `target` frames have been read in all; a stale wake-up only costs a re-check.
    async fn until(&self, target: u64) {
        let wait = async {
            while self.received.load(Ordering::Acquire) < target {
                self.reached.notified().await;
            }
        };
        tokio::time::timeout(DRAIN_TIMEOUT, wait)
            .await
            .expect("every client reads the frame in time");
    }
}

/// A hub with `size` connections in group `bench`, each read by a client that counts frames.
struct Fixture {
    hub: Hub,
    drain: Arc<Drain>,
    server: JoinHandle<()>,
    readers: Vec<JoinHandle<()>>,
}

impl Fixture {
    async fn start(size: usize) -> Self {
        let hub = Hub::builder().build();
        let service = hub.layer("/ws").layer(tower::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<
                bytes::Bytes,
            >::default()))
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { serve_upgrades(listener, service).await });

        let drain = Arc::new(Drain::default());
        let mut readers = Vec::with_capacity(size);
        for _ in 0..size {
            let url = format!("ws://{addr}/ws?groupId=bench");
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            let drain = Arc::clone(&drain);
            readers.push(tokio::spawn(async move {
                let (_, mut read) = ws.split();
                while let Some(Ok(message)) = read.next().await {
                    if let Message::Text(text) = message {
                        // Not the `__connected` greeting.
                        if text.as_str().starts_with(r#"{"action":"bench""#) {
                            drain.read_one();
                        }
                    }
                }
            }));
        }
        let started = Instant::now();
        while hub.local_connection_count() < size {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the connections did not all register"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            hub,
            drain,
            server,
            readers,
        }
    }

    /// `iters` sends, each timed alone and then waited for until every client has read it.
    async fn timed_sends(&self, envelope: &Envelope, size: usize, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let target = self.drain.received.load(Ordering::Acquire) + size as u64;
            self.drain.target.store(target, Ordering::Release);
            let started = Instant::now();
            let delivered = self.hub.send(black_box(envelope));
            total += started.elapsed();
            assert_eq!(delivered, size, "every connection had room in its queue");
            self.drain.until(target).await;
        }
        total
    }

    async fn stop(self) {
        self.hub.shutdown().await;
        self.server.abort();
        for reader in self.readers {
            reader.abort();
        }
    }
}

fn routing_benches(c: &mut Criterion) {
    // One thread: see the module docs for why not a multi-thread runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let envelope = Arc::new(
        Envelope::new("bench")
            .with_message(
                &"a message of about one hundred bytes, as chat messages and tickers send",
            )
            .to(Recipient::group("bench")),
    );

    let mut group = c.benchmark_group("hub_send/group");
    for size in GROUP_SIZES {
        let fixture = Arc::new(runtime.block_on(Fixture::start(size)));
        if size > 0 {
            group.throughput(Throughput::Elements(size as u64));
        }
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_custom(|iters| in_task(&runtime, &fixture, &envelope, size, iters))
        });
        let fixture = Arc::into_inner(fixture).expect("the bench let go of the fixture");
        runtime.block_on(fixture.stop());
    }
    group.finish();
}

/// Runs the timed sends in a task of the runtime, as the hub's own producers call `Hub::send`.
fn in_task(
    runtime: &Runtime,
    fixture: &Arc<Fixture>,
    envelope: &Arc<Envelope>,
    size: usize,
    iters: u64,
) -> Duration {
    let fixture = Arc::clone(fixture);
    let envelope = Arc::clone(envelope);
    runtime
        .block_on(runtime.spawn(async move { fixture.timed_sends(&envelope, size, iters).await }))
        .expect("the timing task ran to its end")
}

/// What `criterion_group!`/`criterion_main!` would generate (their public functions would need
/// docs), with a watchdog first: the process is stopped if the benches hang, so a run is bounded
/// in time whatever happens. Each group's settings keep the whole file near a minute.
fn main() {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("micro: still running after {DEADLINE:?}; stopping");
        std::process::exit(1);
    });
    let mut envelope = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    envelope_benches(&mut envelope);
    let mut routing = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .configure_from_args();
    routing_benches(&mut routing);
    Criterion::default().configure_from_args().final_summary();
}
