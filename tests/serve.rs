//! `wshub::serve`: the header-read and keep-alive limits, and a graceful shutdown that ends by
//! its deadline whatever the clients do, over real TCP on 127.0.0.1. (`axum::serve` fails the
//! tests about those limits and that deadline: it gives hyper no timer.)

mod common;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::{expect_closed, read_response, within, Client, WAIT};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower::Layer;
use wshub::{Envelope, Hub, Recipient, RequestBody};

/// The server's limits in a test; each test shortens the one it is about.
#[derive(Clone, Copy)]
struct Limits {
    header_read: Duration,
    keep_alive: Duration,
    shutdown: Duration,
}

const LONG: Duration = Duration::from_secs(60);

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: LONG,
            keep_alive: LONG,
            shutdown: LONG,
        }
    }
}

/// `wshub::serve` running in its own task, with the hub in front of `app` on `/ws`, shut down
/// through `hub.shutdown_on` when [`Served::stop`] is called.
struct Served {
    addr: SocketAddr,
    hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    async fn start(app: Router, limits: Limits) -> Self {
        let hub = Hub::builder().build();
        let service = hub.layer("/ws").layer(app);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = wshub::serve(listener, service)
            .header_read_timeout(limits.header_read)
            .keep_alive_timeout(limits.keep_alive)
            .shutdown_timeout(limits.shutdown)
            .with_graceful_shutdown(hub.shutdown_on(async {
                stopped.await.ok();
            }));
        let task = tokio::spawn(server.into_future());
        Self {
            addr,
            hub,
            stop: Some(stop),
            task,
        }
    }

    /// The shutdown signal.
    fn stop(&mut self) {
        self.stop
            .take()
            .expect("stopped once")
            .send(())
            .expect("the server is running");
    }

    /// Waits for the server's future to return, and checks that it returned `Ok`.
    async fn stopped(&mut self) {
        within(
            "the server to return after the shutdown signal",
            &mut self.task,
        )
        .await
        .expect("the server's task did not panic")
        .expect("the server returned Ok");
    }

    async fn connect_ws(&self) -> Client {
        connect_ws(self.addr).await
    }
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "app" }))
}

async fn connect_ws(addr: SocketAddr) -> Client {
    let (ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?groupId=g")),
    )
    .await
    .expect("the handshake succeeds");
    assert_eq!(response.status(), 101);
    let mut client = Client {
        ws,
        id: String::new(),
    };
    client.recv_action("__connected").await;
    client
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// A connection that has sent half a request head, and nothing more.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write half a head");
    stream
}

/// A keep-alive connection that has been answered once and is now idle.
async fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(get_request("/").as_bytes())
        .await
        .expect("write a request");
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "app");
    stream
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_read_timeout() {
    let limit = Duration::from_millis(500);
    let server = Served::start(
        app(),
        Limits {
            header_read: limit,
            ..Limits::default()
        },
    )
    .await;

    let started = Instant::now();
    let mut stream = half_sent(server.addr).await;
    expect_closed(&mut stream, "the half-sent connection to be closed").await;
    assert!(
        started.elapsed() >= limit - Duration::from_millis(50),
        "closed after {:?}, before the header-read timeout",
        started.elapsed()
    );

    // A connection that sends nothing at all is bounded the same way.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    expect_closed(&mut silent, "the silent connection to be closed").await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let limit = Duration::from_millis(500);
    let server = Served::start(
        app(),
        Limits {
            keep_alive: limit,
            header_read: Duration::from_secs(8),
            ..Limits::default()
        },
    )
    .await;

    let mut stream = idle_keep_alive(server.addr).await;
    let answered = Instant::now();
    expect_closed(&mut stream, "the idle keep-alive connection to be closed").await;
    let idle = answered.elapsed();
    assert!(
        idle >= limit - Duration::from_millis(50) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle; the keep-alive timeout is {limit:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_may_wait_longer_than_the_header_read_timeout() {
    let header_read = Duration::from_millis(300);
    let server = Served::start(
        app(),
        Limits {
            header_read,
            keep_alive: Duration::from_secs(30),
            ..Limits::default()
        },
    )
    .await;

    let mut stream = idle_keep_alive(server.addr).await;
    // The idle wait under test, three header-read timeouts long.
    tokio::time::sleep(3 * header_read).await;
    stream
        .write_all(get_request("/").as_bytes())
        .await
        .expect("write a second request");
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{response:?}");

    // Once the next request has begun, its head is due within the header-read timeout.
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write half a head");
    expect_closed(&mut stream, "the half-sent keep-alive request to be closed").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}: the keep-alive timeout, not the header-read one",
        started.elapsed()
    );
}

#[tokio::test]
async fn graceful_shutdown_ends_by_its_deadline_and_closes_websockets_with_1001() {
    let deadline = Duration::from_secs(1);
    let mut server = Served::start(
        app(),
        Limits {
            shutdown: deadline,
            ..Limits::default()
        },
    )
    .await;
    let mut half = half_sent(server.addr).await;
    let mut idle = idle_keep_alive(server.addr).await;
    let mut socket = server.connect_ws().await;

    let stopping = Instant::now();
    server.stop();
    assert_eq!(socket.expect_close().await, Some(CloseCode::Away));
    socket.expect_end().await; // answers the close, so the hub need not wait for it
    expect_closed(&mut idle, "the idle keep-alive connection to be closed").await;
    server.stopped().await;
    let took = stopping.elapsed();
    assert!(
        took < deadline + Duration::from_secs(4),
        "shutdown took {took:?}; its deadline is {deadline:?}"
    );
    expect_closed(&mut half, "the half-sent connection to be dropped").await;
    assert_eq!(server.hub.local_connection_count(), 0);
}

/// A route that tells the test it has started, then answers when the test releases it.
fn slow_app() -> (Router, mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let (started, starts) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let released = release.clone();
    let app = app().route(
        "/slow",
        get(move || {
            let started = started.clone();
            let released = released.clone();
            async move {
                started.send(()).expect("the test is waiting");
                released.notified().await;
                "slow done"
            }
        }),
    );
    (app, starts, release)
}

/// Waits until the server no longer accepts connections: its listener is closed.
async fn until_refused(addr: SocketAddr) {
    within("the listener to be closed", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_in_flight_is_answered_during_graceful_shutdown() {
    let (app, mut starts, release) = slow_app();
    let mut server = Served::start(app, Limits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(get_request("/slow").as_bytes())
        .await
        .expect("write a request");
    within("the slow request to start", starts.recv())
        .await
        .expect("started");

    let stopping = Instant::now();
    server.stop();
    until_refused(server.addr).await;
    release.notify_one();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "slow done");
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    expect_closed(&mut stream, "the connection to close after its answer").await;
    server.stopped().await;
    assert!(
        stopping.elapsed() < WAIT,
        "the server waited for its deadline instead of for the request"
    );
}

#[tokio::test]
async fn requests_still_running_at_the_shutdown_deadline_are_dropped() {
    let (app, mut starts, _never_released) = slow_app();
    let deadline = Duration::from_millis(500);
    let mut server = Served::start(
        app,
        Limits {
            shutdown: deadline,
            ..Limits::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(get_request("/slow").as_bytes())
        .await
        .expect("write a request");
    within("the slow request to start", starts.recv())
        .await
        .expect("started");

    let stopping = Instant::now();
    server.stop();
    server.stopped().await;
    assert!(
        stopping.elapsed() >= deadline - Duration::from_millis(50),
        "returned after {:?}, before the deadline, with a request in flight",
        stopping.elapsed()
    );
    expect_closed(&mut stream, "the unanswered connection to be dropped").await;
}

#[tokio::test]
async fn serves_a_plain_tower_service_with_websocket_upgrades() {
    let hub = Hub::builder().build();
    let app = tower::service_fn(
        |_: http::Request<RequestBody<hyper::body::Incoming>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"plain"))))
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(wshub::serve(listener, hub.layer("/ws").layer(app)).into_future());

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(get_request("/").as_bytes())
            .await
            .expect("write a request");
        let response = read_response(&mut stream).await;
        assert_eq!((response.status, response.body.as_str()), (200, "plain"));
    }

    let mut socket = connect_ws(addr).await;
    let delivered = hub.send(&Envelope::new("news").to(Recipient::group("g")));
    assert_eq!(delivered, 1);
    socket.recv_action("news").await;
    server.abort();
}
