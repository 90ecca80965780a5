//! Scenario 7's churn: connections opened and closed at a fixed rate.
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --churn RATE --seconds S [--hello] [--path ...]
//! ```
//!
//! Starts RATE connections a second for S seconds (open loop: each when it is due), each of
//! which completes the handshake, waits for its hello (`--hello`), sends a close frame (1000) and
//! waits for the server to close the TCP connection (so the server, which closes first, keeps
//! the TIME_WAIT and the client's ports are free again at once). At most 1,024 are under way at
//! once. Prints `churn OK FAILED` and exits.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use wshub_bench::client::{self, masked_frame, Parser, CLOSE};
use wshub_bench::Args;

use crate::Population;

pub async fn run(args: &Args, population: &Population) -> io::Result<()> {
    let rate: f64 = args.parsed("--churn", 1000.0);
    let seconds: f64 = args.parsed("--seconds", 10.0);
    let population = Arc::new(Population {
        addr: population.addr.clone(),
        template: population.template.clone(),
        ..*population
    });
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let under_way = Arc::new(Semaphore::new(1024));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut local = 0;
    while ticks.tick().await < end {
        let Ok(permit) = Arc::clone(&under_way).try_acquire_owned() else {
            // Too many still closing: counted as failures rather than slowing the schedule.
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (population, ok, failed) = (
            Arc::clone(&population),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        let path = population.path(local);
        local += 1;
        tokio::spawn(async move {
            let once = tokio::time::timeout(Duration::from_secs(10), one(&population, &path));
            match once.await {
                Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                Ok(Err(e)) => {
                    eprintln!("churn: {e}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        });
    }
    // Waits for the last ones to finish.
    let _ = tokio::time::timeout(Duration::from_secs(15), under_way.acquire_many(1024)).await;
    println!(
        "churn {} {}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn one(population: &Population, path: &str) -> io::Result<()> {
    let (mut stream, leftover) = client::open(&population.addr, path, None).await?;
    if population.hello {
        let mut parser = Parser::default();
        let mut seen = parser
            .feed(&leftover, &mut None, &mut |_| {})
            .map_err(|code| io::Error::other(format!("closed with {code}")))?;
        let mut buffer = [0u8; 512];
        while seen == 0 {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return Err(io::Error::other("closed before the hello"));
            }
            seen = parser
                .feed(&buffer[..n], &mut None, &mut |_| {})
                .map_err(|code| io::Error::other(format!("closed with {code}")))?;
        }
    }
    stream
        .write_all(&masked_frame(CLOSE, &1000u16.to_be_bytes()))
        .await?;
    // The server answers the close and then closes the connection.
    let mut buffer = [0u8; 512];
    while stream.read(&mut buffer).await? > 0 {}
    Ok(())
}
