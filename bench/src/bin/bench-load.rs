//! The load client: holds C WebSocket connections and counts the messages they receive.
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --connections C [--path /ws?groupId=bench] [--hello]
//!            [--concurrency 256] [--max-seconds 900]
//! ```
//!
//! It does the opening handshake by hand and then parses the server's frames itself, counting
//! complete data messages without copying or validating their payloads (a tungstenite client
//! would cost more than the servers it measures). It answers pings, and fails loudly (exit 3) if
//! the server closes a connection. With `--hello`, each connection is ready only after its first
//! message (wshub's `__connected`).
//!
//! Prints `ready C MS` once every connection is ready, then reads commands on stdin:
//!
//! | command | answer |
//! |---|---|
//! | `arm N` | `armed`; later `done NS` (unix ns) when every connection has received N more messages |
//! | `rss` | `rss KIB` |
//! | `quit` | exits |
//!
//! It exits by itself when stdin closes or after `--max-seconds`. One thread: pin it with
//! `taskset`, and start several processes for more than about 19,900 sockets.
//!
//! ```text
//! bench-load --addr 127.0.0.1:P --http PATH [--concurrency 16] [--seconds 3] [--bytes 100]
//! ```
//!
//! With `--http`, it is instead an HTTP/1.1 load client (scenario 5): `--concurrency` keep-alive
//! connections each POST an envelope of about `--bytes` to PATH one request after the other, for
//! `--seconds`; it prints `rps RATE OK FAILED` (requests answered 2xx per second, their count, the
//! count of the others) and exits.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use wshub_bench::{burst_envelope, raise_nofile_limit, rss_kib, unix_ns, Args};

struct Shared {
    connections: usize,
    /// Connections past the handshake (and the hello, with `--hello`).
    ready: AtomicUsize,
    ready_notify: Notify,
    /// Messages each connection must have received, counted from its first (`u64::MAX` until the
    /// first `arm`).
    target: AtomicU64,
    /// Messages before the first burst: 1 with `--hello`.
    base: u64,
    /// Connections that have not reached `target` yet.
    remaining: AtomicUsize,
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
    let connections: usize = args.parsed("--connections", 1000);
    let path = args
        .value("--path")
        .unwrap_or("/ws?groupId=bench")
        .to_owned();
    let hello = args.flag("--hello");
    let concurrency: usize = args.parsed("--concurrency", 256);
    let max_seconds: u64 = args.parsed("--max-seconds", 900);
    if let Some(target) = args.value("--http") {
        let concurrency: usize = args.parsed("--concurrency", 16);
        let seconds: f64 = args.parsed("--seconds", 3.0);
        let bytes: usize = args.parsed("--bytes", 100);
        http_load(&addr, target, concurrency, seconds, bytes);
        std::process::exit(0);
    }
    let limit = raise_nofile_limit();
    if connections as u64 + 50 > limit {
        eprintln!("{connections} connections need more open files than the limit {limit}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shared = Arc::new(Shared {
        connections,
        ready: AtomicUsize::new(0),
        ready_notify: Notify::new(),
        target: AtomicU64::new(u64::MAX),
        base: u64::from(hello),
        remaining: AtomicUsize::new(connections),
    });
    runtime.block_on(async move {
        let run = run(addr, path, hello, concurrency, shared);
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

async fn run(
    addr: String,
    path: String,
    hello: bool,
    concurrency: usize,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let started = Instant::now();
    let opening = Arc::new(Semaphore::new(concurrency));
    let request = Arc::new(format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ));
    for _ in 0..shared.connections {
        let permit = Arc::clone(&opening)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (addr, request, shared) = (addr.clone(), Arc::clone(&request), Arc::clone(&shared));
        tokio::spawn(async move {
            if let Err(e) = connection(&addr, &request, hello, &shared, permit).await {
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
                shared
                    .remaining
                    .store(shared.connections, Ordering::Release);
                let target = match shared.target.load(Ordering::Acquire) {
                    u64::MAX => shared.base + n,
                    target => target + n,
                };
                shared.target.store(target, Ordering::Release);
                println!("armed");
            }
            ["rss"] => println!("rss {}", rss_kib()),
            ["quit"] => return Ok(()),
            [] => {}
            _ => println!("error unknown command: {line}"),
        }
    }
    Ok(())
}

async fn connection(
    addr: &str,
    request: &str,
    hello: bool,
    shared: &Shared,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    // The response head; what follows it is the first frames.
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let body_at = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 8192 {
            return Err(io::Error::other("handshake response too long"));
        }
    };
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
        return Err(io::Error::other(format!("refused: {line}")));
    }
    let mut parser = Parser::default();
    let mut received: u64 = 0;
    let mut permit = Some(permit);
    let mut ready = !hello;
    if ready {
        mark_ready(shared, &mut permit);
    }
    let mut leftover = head.split_off(body_at);
    drop(head);
    loop {
        let mut pong = None;
        let result = if leftover.is_empty() {
            READ.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                match stream.try_read(&mut buffer) {
                    Ok(0) => Err(io::Error::other("the server closed the connection")),
                    Ok(n) => Ok(parser.feed(&buffer[..n], &mut pong)),
                    Err(e) => Err(e),
                }
            })
        } else {
            let messages = parser.feed(&leftover, &mut pong);
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
            // A masked pong (mask key 0: the payload is sent as it is).
            let mut frame = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
            frame.extend_from_slice(&payload);
            stream.write_all(&frame).await?;
        }
        stream.readable().await?;
    }
}

/// Scenario 5's client: `concurrency` keep-alive connections POSTing in a closed loop.
fn http_load(addr: &str, target: &str, concurrency: usize, seconds: f64, bytes: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = Bytes::from(burst_envelope(0, bytes).to_json());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let result = runtime.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..concurrency {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for mut sender in senders {
            let (ok, failed, body) = (Arc::clone(&ok), Arc::clone(&failed), body.clone());
            let (addr, target) = (addr.to_owned(), target.to_owned());
            tasks.push(tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    let request = http::Request::post(target.as_str())
                        .header(http::header::HOST, addr.as_str())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body.clone()))
                        .map_err(io::Error::other)?;
                    let answered = async {
                        sender.ready().await?;
                        let response = sender.send_request(request).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        Ok::<_, hyper::Error>(status)
                    };
                    match tokio::time::timeout_at(deadline + Duration::from_secs(5), answered).await
                    {
                        Ok(Ok(status)) if status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(Ok(_)) => failed.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(e)) => return Err(io::Error::other(e)),
                        Err(_) => return Err(io::Error::other("no answer within 5 s")),
                    };
                }
                Ok::<_, io::Error>(())
            }));
        }
        for task in tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok::<_, io::Error>(started.elapsed())
    });
    match result {
        Ok(took) => {
            let ok = ok.load(Ordering::Relaxed);
            println!(
                "rps {:.0} {ok} {}",
                ok as f64 / took.as_secs_f64(),
                failed.load(Ordering::Relaxed)
            );
        }
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    }
}

fn mark_ready(shared: &Shared, permit: &mut Option<tokio::sync::OwnedSemaphorePermit>) {
    *permit = None;
    if shared.ready.fetch_add(1, Ordering::AcqRel) + 1 == shared.connections {
        shared.ready_notify.notify_one();
    }
}

/// Counts complete data messages in a stream of unmasked server frames.
#[derive(Default)]
struct Parser {
    /// A header not yet complete.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    skip: u64,
    opcode: u8,
    fin: bool,
    /// The payload of a control frame (ping, close), at most 125 bytes.
    control: Vec<u8>,
}

impl Parser {
    /// Feeds bytes; returns the data messages completed, or the close code the server sent.
    /// A ping's payload is put in `pong`.
    fn feed(&mut self, mut data: &[u8], pong: &mut Option<Vec<u8>>) -> Result<u64, u16> {
        let mut messages = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let take = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if self.opcode >= 8 {
                    self.control.extend_from_slice(&data[..take]);
                }
                data = &data[take..];
                self.skip -= take as u64;
                if self.skip == 0 {
                    messages += self.finish(pong)?;
                }
                continue;
            }
            // A header: 2 bytes, then 0, 2 or 8 of length, then 4 of mask (never from a server).
            while self.header.len() < 2 && !data.is_empty() {
                self.header.push(data[0]);
                data = &data[1..];
            }
            if self.header.len() < 2 {
                break;
            }
            let extra = match self.header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            } + if self.header[1] & 0x80 != 0 { 4 } else { 0 };
            let need = 2 + extra - self.header.len();
            let take = need.min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take < need {
                break;
            }
            let h = std::mem::take(&mut self.header);
            self.fin = h[0] & 0x80 != 0;
            self.opcode = h[0] & 0x0f;
            self.skip = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => u64::from(n),
            };
            self.header = h;
            self.header.clear();
            if self.skip == 0 {
                messages += self.finish(pong)?;
            }
        }
        Ok(messages)
    }

    fn finish(&mut self, pong: &mut Option<Vec<u8>>) -> Result<u64, u16> {
        match self.opcode {
            0..=2 => Ok(u64::from(self.fin)),
            8 => {
                let code = match self.control.as_slice() {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1005,
                };
                Err(code)
            }
            9 => {
                *pong = Some(std::mem::take(&mut self.control));
                Ok(0)
            }
            _ => {
                self.control.clear();
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Parser;

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        f.extend(
            wshub_bench::text_frame_header(payload.len())
                .into_iter()
                .skip(1),
        );
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_messages_fed_byte_by_byte() {
        let mut stream = Vec::new();
        for len in [0, 5, 125, 126, 300, 70_000] {
            stream.extend(frame(1, &vec![b'a'; len]));
        }
        stream.extend(frame(9, b"hi"));
        let mut parser = Parser::default();
        let mut pong = None;
        let mut total = 0;
        for byte in &stream {
            total += parser.feed(std::slice::from_ref(byte), &mut pong).unwrap();
        }
        assert_eq!(total, 6);
        assert_eq!(pong.as_deref(), Some(&b"hi"[..]));
        let mut pong = None;
        assert_eq!(Parser::default().feed(&stream, &mut pong), Ok(6));
        let close = frame(8, &1008u16.to_be_bytes());
        assert_eq!(Parser::default().feed(&close, &mut pong), Err(1008));
    }
}
