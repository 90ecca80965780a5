//! One scenario's server side: wshub, or one of the two baselines of issue 6.
//!
//! ```text
//! bench-server --impl wshub|tungstenite|raw --port P [--read-buffer BYTES] [--redis URL]
//!              [--ping-interval S] [--metrics] [--max-seconds S]
//! ```
//!
//! Listens on 127.0.0.1:P, prints `listening ADDR`, then reads commands on stdin, one a line:
//!
//! | command | answer |
//! |---|---|
//! | `rss` | `rss KIB ANON_KIB`: VmRSS and RssAnon of this process |
//! | `count` | `count N`: sockets open past the handshake |
//! | `burst N BYTES` | broadcasts N envelopes of about BYTES to every socket; `burst T0 T1 DELIVERED` (unix ns before the first and after the last send) |
//! | `scrape` | `scrape BYTES SAMPLES`: the size of a `--metrics` scrape rendered now and its samples (`scrape 0 0` without) |
//! | `openloop RATE SECONDS GROUPS USERS` | scenario 4: for SECONDS, RATE envelopes a second, each sent when it is due and stamped with that time, alternately to group `g{k % GROUPS}` and user `u{k % USERS}`; `openloop SENT DELIVERED LATE_MS` (the latest any send started after it was due) |
//! | `quit` | exits |
//!
//! `--read-buffer BYTES` sets the tungstenite baseline's read buffer (default 4 KiB), to measure
//! what that buffer costs per idle socket (wshub keeps no read buffer between reads).
//!
//! `--redis URL` (wshub only) makes the hub one node of a cluster on the Redis at URL
//! (`HubBuilder::cluster`, docs/cluster.md), for the cluster scenario; `count` then counts this
//! node's sockets. `--ping-interval S` (wshub only) pings each socket every S seconds instead
//! of 25 (and closes a silent one after 2.4 × S instead of 60 s, the same ratio), so that a
//! scenario can keep the waves of pings to thousands of sockets connected together out of what
//! it measures.
//!
//! `--metrics` (wshub only) installs Prometheus's exporter as the global `metrics` recorder before
//! the hub is built and renders its scrape once a second ([`exporter`]); without it nothing is
//! installed (the facade's no-op recorder), as in every other scenario.
//!
//! It exits by itself when stdin closes or after `--max-seconds` (default 900).
//!
//! - **wshub** ([`app`]): `Hub::builder()` with in-process forwarding of action `forwarded`,
//!   wrapping a service with `POST /api/publish` (`hub.publish_service().allow_anonymous()`),
//!   `/noop` (reads the body, answers 200 `{}`: the baseline of scenario 5) and the forward
//!   handler; served with hyper-util's `auto::Builder` (`serve_connection_with_upgrades`);
//!   `burst` and `openloop` call `Hub::send`.
//! - **tungstenite** ([`baselines`]): baseline (a), a bare tokio-tungstenite fan-out server:
//!   `accept_hdr_async` with a 4 KiB read buffer and an 8 KiB write buffer, one task and one
//!   bounded queue per socket (reading the socket, echoing small text messages, and writing queued
//!   frames in batches of up to 64 with one flush; tungstenite copies each frame into its write
//!   buffer, which keeps the capacity of the largest batch it has held), a registry of queues by id, group and user
//!   ([`registry`]); sends serialise each envelope once and `try_send` a clone of the shared
//!   `Utf8Bytes` to every targeted queue.
//! - **raw**: baseline (b), the floor: a hand-written handshake, then each envelope encoded once
//!   as a complete server frame (`Bytes`) and its clones queued to every socket's task, which
//!   writes what is queued straight to the TCP socket with one `write_all`.

mod app;
mod baselines;
mod exporter;
mod registry;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wshub::{Envelope, Hub, Recipient};
use wshub_bench::{
    burst_envelope, raise_nofile_limit, rss_anon_kib, rss_kib, stamp, text_frame_header, unix_ns,
    Args, READ_BUFFER,
};

use registry::{Registry, Target};

fn main() {
    let args = Args::from_env();
    let which = args.value("--impl").unwrap_or("wshub").to_owned();
    let port: u16 = args.parsed("--port", 0);
    let max_seconds: u64 = args.parsed("--max-seconds", 900);
    if port == 0 || port >= 32768 {
        eprintln!("--port P with 0 < P < 32768 (the ephemeral range starts at 32768)");
        std::process::exit(2);
    }
    raise_nofile_limit();
    // One worker per core this process may run on: one under `taskset -c 0`.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = args.flag("--metrics");
    if (args.value("--redis").is_some() || args.value("--ping-interval").is_some() || metrics)
        && which != "wshub"
    {
        eprintln!("--redis, --ping-interval and --metrics are for --impl wshub");
        std::process::exit(2);
    }
    let ping_interval = args
        .value("--ping-interval")
        .map(|_| Duration::from_secs(args.parsed("--ping-interval", 25)));
    // A clustered hub starts its Redis tasks on the runtime it is built in.
    let _entered = runtime.enter();
    // Before the hub: what it reports goes to the recorder installed when it reports.
    let scrape = if metrics {
        match exporter::install() {
            Ok(handle) => Some(handle),
            Err(e) => {
                eprintln!("bench-server: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let server = match which.as_str() {
        "wshub" => match app::hub(args.value("--redis"), ping_interval) {
            Ok(hub) => Server::Wshub(hub),
            Err(e) => {
                eprintln!("bench-server: {e}");
                std::process::exit(2);
            }
        },
        "tungstenite" => {
            Server::Tungstenite(Arc::default(), args.parsed("--read-buffer", READ_BUFFER))
        }
        "raw" => Server::Raw(Arc::default()),
        other => {
            eprintln!("unknown --impl {other}: wshub, tungstenite or raw");
            std::process::exit(2);
        }
    };
    runtime.block_on(async move {
        tokio::select! {
            r = run(server, port, scrape) => if let Err(e) = r {
                eprintln!("bench-server: {e}");
                std::process::exit(1);
            },
            () = tokio::time::sleep(Duration::from_secs(max_seconds)) => {
                eprintln!("bench-server: --max-seconds passed, exiting");
            }
        }
    });
    // Open sockets are not closed one by one: the process exits.
    std::process::exit(0);
}

enum Server {
    Wshub(Hub),
    Tungstenite(Arc<Registry<Utf8Bytes>>, usize),
    Raw(Arc<Registry<Bytes>>),
}

async fn run(server: Server, port: u16, scrape: Option<PrometheusHandle>) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    let server = Arc::new(server);
    tokio::spawn(accept(listener, Arc::clone(&server)));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["rss"] => println!("rss {} {}", rss_kib(), rss_anon_kib()),
            ["count"] => println!("count {}", server.count()),
            ["scrape"] => println!("{}", exporter::summary(scrape.as_ref())),
            ["burst", n, bytes] => {
                let (Ok(n), Ok(bytes)) = (n.parse::<usize>(), bytes.parse::<usize>()) else {
                    println!("error bad burst: {line}");
                    continue;
                };
                let envelopes: Vec<_> = (0..n).map(|i| burst_envelope(i, bytes)).collect();
                let started = unix_ns();
                let delivered: usize = envelopes.iter().map(|e| server.send(e)).sum();
                let ended = unix_ns();
                println!("burst {started} {ended} {delivered}");
            }
            ["openloop", rate, seconds, groups, users] => {
                let parsed = (rate.parse(), seconds.parse(), groups.parse(), users.parse());
                let (Ok(rate), Ok(seconds), Ok(groups), Ok(users)) = parsed else {
                    println!("error bad openloop: {line}");
                    continue;
                };
                if matches!(*server, Server::Raw(_)) {
                    println!("error the raw floor has no groups or users");
                    continue;
                }
                // On the runtime's worker, as an application's publisher would be: this thread
                // would have to wait for a time slice on the core the worker keeps busy.
                let publisher = Arc::clone(&server);
                let run = tokio::spawn(async move {
                    open_loop(&publisher, rate, seconds, groups, users).await
                });
                match run.await {
                    Ok((sent, delivered, late)) => {
                        println!("openloop {sent} {delivered} {late:.3}")
                    }
                    Err(e) => println!("error openloop: {e}"),
                }
            }
            ["quit"] => return Ok(()),
            [] => {}
            _ => println!("error unknown command: {line}"),
        }
    }
    Ok(())
}

/// Scenario 4's publisher: envelope `k` is due at `k / rate` s and goes out as soon as it is
/// due, however late the previous ones were (open loop), stamped with its due time.
async fn open_loop(
    server: &Server,
    rate: f64,
    seconds: f64,
    groups: usize,
    users: usize,
) -> (usize, usize, f64) {
    let total = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    let start_ns = unix_ns();
    let (mut sent, mut delivered, mut late) = (0, 0, Duration::ZERO);
    while sent < total {
        let due = start + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        while sent < total {
            let offset = Duration::from_secs_f64(sent as f64 / rate);
            if start + offset > now {
                break;
            }
            late = late.max(now - (start + offset));
            let k = sent / 2;
            let recipient = if sent % 2 == 0 {
                Recipient::group(format!("g{}", k % groups))
            } else {
                Recipient::user(format!("u{}", k % users))
            };
            let due_ns = start_ns + offset.as_nanos();
            let envelope = Envelope::new("news")
                .with_message(&stamp(due_ns, 40))
                .to(recipient);
            delivered += server.send(&envelope);
            sent += 1;
        }
    }
    (sent, delivered, late.as_secs_f64() * 1e3)
}

impl Server {
    fn count(&self) -> usize {
        match self {
            Self::Wshub(hub) => hub.local_connection_count(),
            Self::Tungstenite(registry, _) => registry.len(),
            Self::Raw(registry) => registry.len(),
        }
    }

    /// Routes one envelope, each implementation its own way; the baselines understand one
    /// recipient: everyone (none given), a group or a user.
    fn send(&self, envelope: &Envelope) -> usize {
        let target = match envelope.recipients.first() {
            None => Target::All,
            Some(r) if r.kind == wshub::RecipientKind::User => Target::User(&r.value),
            Some(r) if r.value == wshub_bench::GROUP => Target::All,
            Some(r) => Target::Group(&r.value),
        };
        // The baselines send what wshub delivers: the envelope with `recipients: []`
        // (PROTOCOL.md §1), so every implementation puts the same bytes on the wire.
        let delivered = || {
            Envelope {
                recipients: Vec::new(),
                ..envelope.clone()
            }
            .to_json()
        };
        match self {
            Self::Wshub(hub) => hub.send(envelope),
            Self::Tungstenite(registry, _) => registry.send(target, &Utf8Bytes::from(delivered())),
            Self::Raw(registry) => {
                let json = delivered();
                let mut frame = text_frame_header(json.len());
                frame.extend_from_slice(json.as_bytes());
                registry.send(target, &Bytes::from(frame))
            }
        }
    }
}

async fn accept(listener: TcpListener, server: Arc<Server>) {
    let service = match &*server {
        Server::Wshub(hub) => Some(app::service(hub)),
        _ => None,
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                // What a real-time server wants: a small frame goes out now, not after the
                // client's delayed ACK of the previous one (Nagle: up to 40 ms on Linux).
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match &*server {
            Server::Wshub(_) => {
                let Some(service) = service.clone() else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            TowerToHyperService::new(service),
                        )
                        .await;
                });
            }
            Server::Tungstenite(registry, read_buffer) => {
                tokio::spawn(baselines::tungstenite_socket(
                    stream,
                    Arc::clone(registry),
                    *read_buffer,
                ));
            }
            Server::Raw(registry) => {
                tokio::spawn(baselines::raw_socket(stream, Arc::clone(registry)));
            }
        }
    }
}
