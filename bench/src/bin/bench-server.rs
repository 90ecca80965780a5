//! One scenario's server side: wshub, or one of the two baselines of issue 6.
//!
//! ```text
//! bench-server --impl wshub|tungstenite|raw --port P [--max-seconds S]
//! ```
//!
//! Listens on 127.0.0.1:P, prints `listening ADDR`, then reads commands on stdin, one a line:
//!
//! | command | answer |
//! |---|---|
//! | `rss` | `rss KIB`: VmRSS of this process |
//! | `count` | `count N`: sockets open past the handshake |
//! | `burst N BYTES` | broadcasts N envelopes of about BYTES to every socket; `burst T0 T1 DELIVERED` (unix ns before the first and after the last send) |
//! | `quit` | exits |
//!
//! `--read-buffer BYTES` sets the tungstenite baseline's read buffer (default 4 KiB, as wshub's),
//! to measure what that buffer costs per idle socket.
//!
//! It exits by itself when stdin closes or after `--max-seconds` (default 900).
//!
//! - **wshub**: `Hub::builder().build()` wrapping a service that routes `POST /api/publish` to
//!   `hub.publish_service().allow_anonymous()` and `/noop` to a route that reads the body and
//!   answers 200 `{}` (the baseline of scenario 5); served with hyper-util's `auto::Builder`
//!   (`serve_connection_with_upgrades`); clients join group `bench`; `burst` calls `Hub::send`.
//! - **tungstenite**: baseline (a), a bare tokio-tungstenite fan-out server: `accept_async` with
//!   the same read and write buffer sizes as wshub, one task and one bounded queue per socket
//!   (reading the socket and writing queued frames in batches of up to 64 with one flush), a
//!   registry of queues; `burst` serialises each envelope once and `try_send`s a clone of the
//!   shared `Utf8Bytes` to every queue.
//! - **raw**: baseline (b), the floor: a hand-written handshake, then each envelope encoded once
//!   as a complete server frame (`Bytes`) and its clones queued to every socket's task, which
//!   writes what is queued straight to the TCP socket with one `write_all`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tower::{Layer, Service};
use wshub::{Hub, RequestBody};
use wshub_bench::{
    burst_envelope, raise_nofile_limit, rss_kib, text_frame_header, unix_ns, Args, MAX_BATCH,
    QUEUE, READ_BUFFER, WRITE_BUFFER,
};

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
    let server = match which.as_str() {
        "wshub" => Server::Wshub(Hub::builder().build()),
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
            r = run(server, port) => if let Err(e) = r {
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

/// The baselines' registry: every socket's queue, by a counter id.
struct Registry<T> {
    next: AtomicU64,
    queues: RwLock<HashMap<u64, mpsc::Sender<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(0),
            queues: RwLock::default(),
        }
    }
}

impl<T: Clone> Registry<T> {
    fn insert(&self, queue: mpsc::Sender<T>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.write().insert(id, queue);
        id
    }

    fn remove(&self, id: u64) {
        self.write().remove(&id);
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    /// A clone of `frame` into every queue, without waiting; returns how many took it.
    fn broadcast(&self, frame: &T) -> usize {
        self.read()
            .values()
            .filter(|q| q.try_send(frame.clone()).is_ok())
            .count()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, mpsc::Sender<T>>> {
        self.queues
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, mpsc::Sender<T>>> {
        self.queues
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn run(server: Server, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    let server = Arc::new(server);
    tokio::spawn(accept(listener, Arc::clone(&server)));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["rss"] => println!("rss {}", rss_kib()),
            ["count"] => println!("count {}", server.count()),
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
            ["quit"] => return Ok(()),
            [] => {}
            _ => println!("error unknown command: {line}"),
        }
    }
    Ok(())
}

impl Server {
    fn count(&self) -> usize {
        match self {
            Self::Wshub(hub) => hub.connection_count(),
            Self::Tungstenite(registry, _) => registry.len(),
            Self::Raw(registry) => registry.len(),
        }
    }

    /// Routes one envelope to every socket, each the way its implementation does.
    fn send(&self, envelope: &wshub::Envelope) -> usize {
        match self {
            Self::Wshub(hub) => hub.send(envelope),
            Self::Tungstenite(registry, _) => {
                registry.broadcast(&Utf8Bytes::from(envelope.to_json()))
            }
            Self::Raw(registry) => {
                let json = envelope.to_json();
                let mut frame = text_frame_header(json.len());
                frame.extend_from_slice(json.as_bytes());
                registry.broadcast(&Bytes::from(frame))
            }
        }
    }
}

async fn accept(listener: TcpListener, server: Arc<Server>) {
    let service = match &*server {
        Server::Wshub(hub) => Some(wshub_service(hub)),
        _ => None,
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
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
                tokio::spawn(tungstenite_socket(
                    stream,
                    Arc::clone(registry),
                    *read_buffer,
                ));
            }
            Server::Raw(registry) => {
                tokio::spawn(raw_socket(stream, Arc::clone(registry)));
            }
        }
    }
}

type WshubService = wshub::HubService<
    tower::util::BoxCloneSyncService<
        Request<RequestBody<Incoming>>,
        Response<Full<Bytes>>,
        Infallible,
    >,
>;

/// The hub on `/ws`, the publish endpoint on `/api/publish`, a no-op route on `/noop` (200 `{}`),
/// 404 elsewhere.
fn wshub_service(hub: &Hub) -> WshubService {
    let publish = hub.publish_service().allow_anonymous();
    let app = tower::service_fn(move |request: Request<RequestBody<Incoming>>| {
        let mut publish = publish.clone();
        async move {
            if request.uri().path() == "/api/publish" {
                publish.call(request).await
            } else if request.uri().path() == "/noop" {
                // The baseline of scenario 5: the same hyper server, a route that reads the body
                // and does nothing with it.
                let _ = request.into_body().collect().await;
                let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok(response)
            } else {
                let mut response = Response::new(Full::default());
                *response.status_mut() = StatusCode::NOT_FOUND;
                Ok(response)
            }
        }
    });
    hub.layer("/ws")
        .layer(tower::util::BoxCloneSyncService::new(app))
}

/// Baseline (a): one task per socket reads it and writes its queue in batches.
async fn tungstenite_socket(
    stream: TcpStream,
    registry: Arc<Registry<Utf8Bytes>>,
    read_buffer: usize,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(WRITE_BUFFER);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (frames, mut queue) = mpsc::channel(QUEUE);
    let id = registry.insert(frames);
    loop {
        tokio::select! {
            biased;
            Some(first) = queue.recv() => {
                let written = async {
                    ws.feed(Message::Text(first)).await?;
                    for _ in 1..MAX_BATCH {
                        match queue.try_recv() {
                            Ok(frame) => ws.feed(Message::Text(frame)).await?,
                            Err(_) => break,
                        }
                    }
                    ws.flush().await
                };
                if written.await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    registry.remove(id);
}

/// Baseline (b): a minimal handshake, then pre-encoded frames straight to the socket.
async fn raw_socket(mut stream: TcpStream, registry: Arc<Registry<Bytes>>) {
    let Some(key) = read_handshake(&mut stream).await else {
        return;
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let (frames, mut queue) = mpsc::channel::<Bytes>(QUEUE);
    let id = registry.insert(frames);
    loop {
        tokio::select! {
            biased;
            Some(first) = queue.recv() => {
                let written = match queue.try_recv() {
                    Err(_) => stream.write_all(&first).await,
                    Ok(second) => {
                        let mut batch = Vec::with_capacity(first.len() * 8);
                        batch.extend_from_slice(&first);
                        batch.extend_from_slice(&second);
                        for _ in 2..MAX_BATCH {
                            match queue.try_recv() {
                                Ok(frame) => batch.extend_from_slice(&frame),
                                Err(_) => break,
                            }
                        }
                        stream.write_all(&batch).await
                    }
                };
                if written.is_err() {
                    break;
                }
            }
            readable = stream.readable() => {
                if readable.is_err() {
                    break;
                }
                // Client frames (pongs, close) are not looked at; end of stream ends the socket.
                let mut discard = [0u8; 256];
                match stream.try_read(&mut discard) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        }
    }
    registry.remove(id);
}

/// Reads an upgrade request's head; returns its `Sec-WebSocket-Key`.
async fn read_handshake(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() > 8192 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8(head).ok()?;
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    })
}
