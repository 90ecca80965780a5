//! Read speed for large client messages (scenario 1's buffer question).
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --upload BYTES --messages N [--path ...] [--hello]
//! ```
//!
//! One connection sends N envelopes of BYTES as fast as the server takes them, each addressed to
//! a user nobody is (`nobody`: the hub reads, parses and routes it to no one; a baseline reads
//! and drops it), then a small marker addressed to its own user (`up0`, answered by the hub's
//! relay or a baseline's echo). Prints `upload TOTAL_BYTES SECONDS` from the first byte sent to
//! the marker's return, and exits.

use std::io;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use wshub_bench::client::{self, masked_frame, Parser, TEXT};
use wshub_bench::Args;

use crate::{answer_ping, Population};

pub async fn run(args: &Args, population: &Population) -> io::Result<()> {
    let bytes: usize = args.parsed("--upload", 60_000);
    let messages: usize = args.parsed("--messages", 1000);
    let (mut stream, leftover) = client::open(&population.addr, &population.path(0), None).await?;
    let text = "x".repeat(bytes.saturating_sub(80));
    let big = masked_frame(
        TEXT,
        format!(
            r#"{{"action":"upload","message":"{text}","recipients":[{{"type":"user","value":"nobody"}}]}}"#
        )
        .as_bytes(),
    );
    let marker = masked_frame(
        TEXT,
        br#"{"action":"mark","message":"m","recipients":[{"type":"user","value":"up0"}]}"#,
    );
    let mut parser = Parser::default();
    let mut pong = None;
    let mut seen = parser
        .feed(&leftover, &mut pong, &mut |_| {})
        .map_err(|code| io::Error::other(format!("closed with {code}")))?;
    let mut buffer = vec![0u8; 4096];
    let mut read = |stream: &mut tokio::net::TcpStream, pong: &mut Option<Vec<u8>>| {
        let n = stream.try_read(&mut buffer)?;
        if n == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        parser
            .feed(&buffer[..n], pong, &mut |_| {})
            .map_err(|code| io::Error::other(format!("closed with {code}")))
    };
    let hello = u64::from(population.hello);
    while seen < hello {
        stream.readable().await?;
        match read(&mut stream, &mut pong) {
            Ok(n) => seen += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let started = Instant::now();
    for _ in 0..messages {
        stream.write_all(&big).await?;
    }
    stream.write_all(&marker).await?;
    while seen < hello + 1 {
        stream.readable().await?;
        match read(&mut stream, &mut pong) {
            Ok(n) => seen += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if let Some(payload) = pong.take() {
            answer_ping(&mut stream, &payload).await?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("upload {} {seconds:.4}", big.len() * messages);
    Ok(())
}
