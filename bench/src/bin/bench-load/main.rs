//! The load client: holds C WebSocket connections and counts the messages they receive, or
//! runs one of the other client sides of the suite.
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --connections C [--path /ws?groupId=bench] [--hello]
//!            [--first 0] [--group-size 100] [--users 1000] [--stall-every K] [--stamps]
//!            [--concurrency 256] [--max-seconds 900]
//! ```
//!
//! It does the opening handshake by hand and then parses the server's frames itself, counting
//! complete data messages without copying or validating their payloads (a tungstenite client
//! would cost more than the servers it measures). It answers pings, and fails loudly (exit 3) if
//! the server closes a connection that reads. With `--hello`, each connection is ready only
//! after its first message (wshub's `__connected`).
//!
//! `--path` is a template: `{g}`, `{u}` and `{i}` become the connection's group
//! (`index / --group-size`), user (`index % --users`) and index, counted from `--first` (so that
//! several processes can share one population).
//!
//! `--stall-every K` (scenario 7): the connections whose index is `K - 1` modulo `K` stop reading
//! once ready, with a 4 KiB receive buffer; they are not waited for by `arm`, and the server may
//! close them.
//!
//! `--stamps` (scenario 4): messages carrying a due time (`@NS@`, see `wshub_bench::stamp`) are
//! timed from that time to their arrival.
//!
//! Prints `ready C MS` once every connection is ready, then reads commands on stdin:
//!
//! | command | answer |
//! |---|---|
//! | `arm N` | `armed`; later `done NS` (unix ns) when every reading connection has received N more messages |
//! | `stats` | `stats N P50_US P99_US MAX_US`: the stamped messages received since the last `stats` |
//! | `received` | `received N`: how many stamped messages `stats` would count now |
//! | `rss` | `rss KIB` |
//! | `quit` | exits |
//!
//! It exits by itself when stdin closes or after `--max-seconds`. One thread: pin it with
//! `taskset`, and start several processes for more than about 19,900 sockets.
//!
//! The other modes, each documented in its module: `--http` (scenario 5, [`http`]),
//! `--roundtrip` (scenario 6, [`roundtrip`]), `--churn` (scenario 7, [`churn`]) and `--upload`
//! (read speed, [`upload`]).

mod churn;
mod http;
mod roundtrip;
mod upload;

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use wshub_bench::client::{self, masked_frame, Parser, PONG};
use wshub_bench::{
    expand_path, percentile, raise_nofile_limit, read_stamp, rss_kib, unix_ns, Args,
};

/// What every connection of the counting mode shares.
struct Shared {
    connections: usize,
    /// Connections that read (all but the stalled ones).
    readers: usize,
    /// Connections past the handshake (and the hello, with `--hello`).
    ready: AtomicUsize,
    ready_notify: Notify,
    /// Messages each connection must have received, counted from its first (`u64::MAX` until the
    /// first `arm`).
    target: AtomicU64,
    /// Messages before the first burst: 1 with `--hello`.
    base: u64,
    /// Reading connections that have not reached `target` yet.
    remaining: AtomicUsize,
    /// Latencies of stamped messages in µs, since the last `stats`.
    stamps: Mutex<Vec<f64>>,
}

/// How the connections of the counting mode are opened.
struct Population {
    addr: String,
    template: String,
    first: usize,
    group_size: usize,
    users: usize,
    hello: bool,
    stall_every: usize,
    stamps: bool,
}

impl Population {
    fn path(&self, local: usize) -> String {
        expand_path(
            &self.template,
            self.first + local,
            self.group_size,
            self.users,
        )
    }

    fn stalls(&self, local: usize) -> bool {
        self.stall_every > 0 && (self.first + local) % self.stall_every == self.stall_every - 1
    }
}

thread_local! {
    /// The one read buffer, borrowed only between two awaits (a current-thread runtime).
    static READ: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

fn main() {
    let args = Args::from_env();
    let Some(addr) = args.value("--addr").map(str::to_owned) else {
        eprintln!("--addr HOST:PORT is required");
        std::process::exit(2);
    };
    let max_seconds: u64 = args.parsed("--max-seconds", 900);
    if let Some(target) = args.value("--http") {
        let concurrency: usize = args.parsed("--concurrency", 16);
        let seconds: f64 = args.parsed("--seconds", 3.0);
        let bytes: usize = args.parsed("--bytes", 100);
        http::http_load(&addr, target, concurrency, seconds, bytes);
        std::process::exit(0);
    }
    let limit = raise_nofile_limit();
    let connections: usize = args.parsed("--connections", 1000);
    if connections as u64 + 50 > limit {
        eprintln!("{connections} connections need more open files than the limit {limit}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let population = Population {
        addr,
        template: args
            .value("--path")
            .unwrap_or("/ws?groupId=bench")
            .to_owned(),
        first: args.parsed("--first", 0),
        group_size: args.parsed("--group-size", 100),
        users: args.parsed("--users", 1000),
        hello: args.flag("--hello"),
        stall_every: args.parsed("--stall-every", 0),
        stamps: args.flag("--stamps"),
    };
    let concurrency: usize = args.parsed("--concurrency", 256);
    runtime.block_on(async move {
        let run = async {
            if let Some(kind) = args.value("--roundtrip") {
                roundtrip::run(&args, kind, &population, connections).await
            } else if args.value("--churn").is_some() {
                churn::run(&args, &population).await
            } else if args.value("--upload").is_some() {
                upload::run(&args, &population).await
            } else {
                count(population, connections, concurrency).await
            }
        };
        tokio::select! {
            r = run => if let Err(e) = r {
                println!("error {e}");
                std::process::exit(1);
            },
            () = tokio::time::sleep(Duration::from_secs(max_seconds)) => {
                eprintln!("bench-load: --max-seconds passed, exiting");
            }
        }
    });
    std::process::exit(0);
}

/// The counting mode: opens every connection, then answers the driver's commands.
async fn count(population: Population, connections: usize, concurrency: usize) -> io::Result<()> {
    let started = Instant::now();
    let stalled = (0..connections).filter(|&i| population.stalls(i)).count();
    let shared = Arc::new(Shared {
        connections,
        readers: connections - stalled,
        ready: AtomicUsize::new(0),
        ready_notify: Notify::new(),
        target: AtomicU64::new(u64::MAX),
        base: u64::from(population.hello),
        remaining: AtomicUsize::new(connections - stalled),
        stamps: Mutex::default(),
    });
    let population = Arc::new(population);
    let opening = Arc::new(Semaphore::new(concurrency));
    for local in 0..connections {
        let permit = Arc::clone(&opening)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (population, shared) = (Arc::clone(&population), Arc::clone(&shared));
        tokio::spawn(async move {
            if let Err(e) = connection(&population, local, &shared, permit).await {
                println!("error connection: {e}");
                std::process::exit(3);
            }
        });
    }
    while shared.ready.load(Ordering::Acquire) < shared.connections {
        let notified = shared.ready_notify.notified();
        if shared.ready.load(Ordering::Acquire) >= shared.connections {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    println!(
        "ready {} {}",
        shared.connections,
        started.elapsed().as_millis()
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["arm", n] => {
                let Ok(n) = n.parse::<u64>() else {
                    println!("error bad arm: {line}");
                    continue;
                };
                shared.remaining.store(shared.readers, Ordering::Release);
                let target = match shared.target.load(Ordering::Acquire) {
                    u64::MAX => shared.base + n,
                    target => target + n,
                };
                shared.target.store(target, Ordering::Release);
                println!("armed");
            }
            ["stats"] => {
                let mut stamps = std::mem::take(&mut *lock(&shared.stamps));
                let n = stamps.len();
                let p50 = percentile(&mut stamps, 50.0);
                let p99 = percentile(&mut stamps, 99.0);
                let max = stamps.last().copied().unwrap_or(f64::NAN);
                println!("stats {n} {p50:.0} {p99:.0} {max:.0}");
            }
            ["received"] => println!("received {}", lock(&shared.stamps).len()),
            ["rss"] => println!("rss {}", rss_kib()),
            ["quit"] => return Ok(()),
            [] => {}
            _ => println!("error unknown command: {line}"),
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connection(
    population: &Population,
    local: usize,
    shared: &Shared,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> io::Result<()> {
    let stalls = population.stalls(local);
    let path = population.path(local);
    let recv_buffer = stalls.then_some(4096);
    let (mut stream, mut leftover) = client::open(&population.addr, &path, recv_buffer).await?;
    let mut parser = if population.stamps {
        Parser::capturing()
    } else {
        Parser::default()
    };
    let mut received: u64 = 0;
    let mut permit = Some(permit);
    let mut ready = !population.hello;
    if ready {
        mark_ready(shared, &mut permit);
    }
    let mut on_message = |payload: &[u8]| {
        if let Some(due) = read_stamp(payload) {
            let late_us = unix_ns().saturating_sub(due) as f64 / 1e3;
            lock(&shared.stamps).push(late_us);
        }
    };
    loop {
        let mut pong = None;
        let result = if leftover.is_empty() {
            READ.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                match stream.try_read(&mut buffer) {
                    Ok(0) => Err(io::Error::other("the server closed the connection")),
                    Ok(n) => Ok(parser.feed(&buffer[..n], &mut pong, &mut on_message)),
                    Err(e) => Err(e),
                }
            })
        } else {
            let messages = parser.feed(&leftover, &mut pong, &mut on_message);
            leftover = Vec::new();
            Ok(messages)
        };
        match result {
            Ok(Ok(messages)) => {
                for _ in 0..messages {
                    received += 1;
                    if !ready {
                        ready = true;
                        mark_ready(shared, &mut permit);
                        if stalls {
                            // Holds the socket and never reads again.
                            std::future::pending::<()>().await;
                        }
                    }
                    if received == shared.target.load(Ordering::Acquire)
                        && shared.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                    {
                        println!("done {}", unix_ns());
                    }
                }
            }
            Ok(Err(code)) => {
                return Err(io::Error::other(format!(
                    "the server closed with code {code}"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if let Some(payload) = pong {
            answer_ping(&mut stream, &payload).await?;
        }
        if stalls && ready {
            std::future::pending::<()>().await;
        }
        stream.readable().await?;
    }
}

/// Answers a ping with a pong carrying its payload.
async fn answer_ping(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    stream.write_all(&masked_frame(PONG, payload)).await
}

fn mark_ready(shared: &Shared, permit: &mut Option<tokio::sync::OwnedSemaphorePermit>) {
    *permit = None;
    if shared.ready.fetch_add(1, Ordering::AcqRel) + 1 == shared.connections {
        shared.ready_notify.notify_one();
    }
}
