//! Scenario 6's client: round trips from each connection back to itself.
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --connections C --roundtrip relay|forward|echo --rate R
//!            --seconds S [--bytes 100] [--path ...] [--hello]
//! ```
//!
//! Opens C connections, prints `ready C MS`, then every connection sends envelopes on a fixed
//! schedule (open loop: R a second in all, spread evenly over the connections, each sent when it
//! is due whether or not the previous one has come back) for S seconds, and times each from the
//! moment it went out to the arrival of its answer (answers come back in order on each
//! connection). It prints `rtt N P50_US P99_US MAX_US LOST` and exits.
//!
//! - `relay`: an envelope addressed to the sender's own user (`userId=rt{i}` in `--path`),
//!   routed by the hub straight back;
//! - `forward`: an envelope with action `forwarded`, which the server forwards in process to a
//!   handler that answers to the sender's connection;
//! - `echo`: the relay envelope, for a baseline that echoes text messages.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use wshub_bench::client::{self, masked_frame, Parser, TEXT};
use wshub_bench::{percentile, Args};

use crate::{answer_ping, lock, Population};

pub async fn run(
    args: &Args,
    kind: &str,
    population: &Population,
    connections: usize,
) -> io::Result<()> {
    let rate: f64 = args.parsed("--rate", 1000.0);
    let seconds: f64 = args.parsed("--seconds", 5.0);
    let bytes: usize = args.parsed("--bytes", 100);
    if !matches!(kind, "relay" | "forward" | "echo") {
        return Err(io::Error::other(format!(
            "--roundtrip {kind}: relay, forward or echo"
        )));
    }
    let started = std::time::Instant::now();
    let mut opened = Vec::with_capacity(connections);
    for local in 0..connections {
        let (stream, leftover) =
            client::open(&population.addr, &population.path(local), None).await?;
        opened.push((stream, leftover));
    }
    // The hello (wshub's `__connected`) is read by each connection before it starts.
    println!("ready {connections} {}", started.elapsed().as_millis());

    let samples = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(Mutex::new(0u64));
    let start = Instant::now() + Duration::from_millis(200);
    let period = Duration::from_secs_f64(connections as f64 / rate);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for (local, (stream, leftover)) in opened.into_iter().enumerate() {
        let index = population.first + local;
        let text = "x".repeat(bytes.saturating_sub(90));
        let envelope = match kind {
            "forward" => format!(r#"{{"action":"forwarded","message":"{text}"}}"#),
            _ => format!(
                r#"{{"action":"relayed","message":"{text}","recipients":[{{"type":"user","value":"rt{index}"}}]}}"#
            ),
        };
        let first = start + Duration::from_secs_f64(local as f64 / rate);
        let (samples, lost) = (Arc::clone(&samples), Arc::clone(&lost));
        let hello = population.hello;
        tasks.push(tokio::spawn(async move {
            let frame = masked_frame(TEXT, envelope.as_bytes());
            let timed = one(stream, leftover, hello, &frame, first, period, end).await?;
            lock(&samples).extend(timed.0);
            *lock(&lost) += timed.1;
            Ok::<_, io::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(io::Error::other)??;
    }
    let mut samples = std::mem::take(&mut *lock(&samples));
    let n = samples.len();
    let p50 = percentile(&mut samples, 50.0);
    let p99 = percentile(&mut samples, 99.0);
    let max = samples.last().copied().unwrap_or(f64::NAN);
    println!("rtt {n} {p50:.1} {p99:.1} {max:.1} {}", *lock(&lost));
    Ok(())
}

/// One connection's round trips: their times in µs, and how many never came back.
async fn one(
    mut stream: tokio::net::TcpStream,
    leftover: Vec<u8>,
    hello: bool,
    frame: &[u8],
    first: Instant,
    period: Duration,
    end: Instant,
) -> io::Result<(Vec<f64>, u64)> {
    let mut parser = Parser::default();
    let mut buffer = vec![0u8; 4096];
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut samples = Vec::new();
    let mut skip = u64::from(hello);
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sending = true;
    let mut pong = None;
    let mut answered = |n: u64, pending: &mut VecDeque<Instant>, samples: &mut Vec<f64>| {
        let now = Instant::now();
        for _ in 0..n {
            if skip > 0 {
                skip -= 1;
            } else if let Some(due) = pending.pop_front() {
                samples.push(now.duration_since(due).as_secs_f64() * 1e6);
            }
        }
    };
    let n = parser
        .feed(&leftover, &mut pong, &mut |_| {})
        .map_err(|code| io::Error::other(format!("closed with {code}")))?;
    answered(n, &mut pending, &mut samples);
    let drain_until = end + Duration::from_secs(5);
    loop {
        if !sending && pending.is_empty() {
            break;
        }
        tokio::select! {
            readable = stream.readable() => {
                readable?;
                match stream.try_read(&mut buffer) {
                    Ok(0) => return Err(io::Error::other("the server closed the connection")),
                    Ok(read) => {
                        let n = parser
                            .feed(&buffer[..read], &mut pong, &mut |_| {})
                            .map_err(|code| io::Error::other(format!("closed with {code}")))?;
                        answered(n, &mut pending, &mut samples);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if let Some(payload) = pong.take() {
                    answer_ping(&mut stream, &payload).await?;
                }
            }
            due = ticks.tick(), if sending => {
                if due >= end {
                    sending = false;
                    continue;
                }
                // Timed from when it goes out: the timer that wakes us is a millisecond coarse,
                // which would otherwise count as latency. The schedule itself stays open loop.
                pending.push_back(Instant::now());
                tokio::io::AsyncWriteExt::write_all(&mut stream, frame).await?;
            }
            () = tokio::time::sleep_until(drain_until) => break,
        }
    }
    Ok((samples, pending.len() as u64))
}
