//! The hub in a plain hyper 1 server, without axum: the application is a `tower::service_fn`, the
//! hub's layer wraps it, and hyper-util's `auto::Builder` serves each connection with upgrades.
//!
//! ```text
//! cargo run --example hyper_server             # then open http://127.0.0.1:3001
//! WSHUB_ADDR=127.0.0.1:0 cargo run --example hyper_server   # any free port; the address is printed
//! ```
//!
//! | variable | default |
//! |---|---|
//! | `WSHUB_ADDR` | `127.0.0.1:3001` |
//! | `WSHUB_PUBLISH_TOKEN` | a random token, printed with a `curl` command that uses it |
//! | `RUST_LOG` | `info` |
//!
//! | path | what |
//! |---|---|
//! | `/` | a short text page saying what is where |
//! | `/ws` | the WebSocket (`?groupId=G&userId=U`); `/ws/wshub.js` is the browser client |
//! | `/api/publish` | `POST` an envelope with `Authorization: Bearer <token>` (see `backend_publish.sh`) |
//!
//! On Ctrl-C or SIGTERM it stops accepting, closes every socket with 1001, lets the HTTP
//! connections finish what they are doing, and exits 0.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IsTerminal};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};
use tracing_subscriber::EnvFilter;
use wshub::{Hub, PublishService, RequestBody};

/// How long open HTTP connections get to finish after the sockets are closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: &str = r#"wshub in a plain hyper server

  GET  /ws?groupId=G&userId=U   the WebSocket (its first envelope is __connected)
  GET  /ws/wshub.js             the browser client (an ES module); /ws/wshub.d.ts, its types
  POST /api/publish             publish an envelope, with Authorization: Bearer <token>

In a page:

  <script type="module">
    import { WsHub, to } from "/ws/wshub.js";
    const hub = new WsHub({ groupId: "room-1", userId: "ann" }).connect();
    hub.on("news", (message, envelope) => console.log(envelope.userId, message));
    hub.send("news", { text: "hello" }, [to.group("room-1")]);
  </script>
"#;

#[tokio::main]
async fn main() -> io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();

    let addr = std::env::var("WSHUB_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let (token, generated) = match std::env::var("WSHUB_PUBLISH_TOKEN") {
        Ok(token) if !token.is_empty() => (token, false),
        _ => (random_token()?, true),
    };

    let hub = Hub::builder().build();
    let publish = hub.publish_service().bearer_token(token.as_str());
    // The application: any tower service. Behind the layer it receives `RequestBody<Incoming>`:
    // the server's own bodies, and the bodies of forwarded socket messages.
    let app = tower::service_fn(move |request: Request<RequestBody<Incoming>>| {
        let publish = publish.clone();
        async move { Ok::<_, Infallible>(route(request, publish).await) }
    });
    // The hub answers upgrades on /ws and serves /ws/wshub.js; everything else reaches `app`.
    let service = hub.layer("/ws").layer(app);

    // Installed before the address is printed, so a signal sent right after it is not lost.
    let signal = shutdown_signal()?;
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    if generated {
        println!("publish token (set WSHUB_PUBLISH_TOKEN to choose it): {token}");
        println!(
            "try: WSHUB_ADDR={addr} WSHUB_PUBLISH_TOKEN={token} examples/backend_publish.sh news hello"
        );
    }

    // Every HTTP connection runs in `connections`; `draining` tells them to finish up.
    let (draining_tx, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(signal);
    loop {
        let stream = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small frames go out at once, not after the previous one's ACK (Nagle).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("TCP_NODELAY not set: {e}");
                    }
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(service.clone());
        let mut draining = draining.clone();
        connections.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { _ = draining.wait_for(|&d| d).await; } => {
                    // Answer what is in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
        // Forget connections that are done, so the set does not grow for the server's life.
        while connections.try_join_next().is_some() {}
    }

    tracing::info!("shutting down");
    drop(listener);
    // Every socket gets close 1001 (going away); waits until they are closed, or the hub's
    // shutdown timeout.
    hub.shutdown().await;
    draining_tx.send_replace(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after {DRAIN_TIMEOUT:?}; closing them"
        );
        connections.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The application's own routes.
async fn route(
    request: Request<RequestBody<Incoming>>,
    publish: PublishService,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            .unwrap_or_default(),
        (_, "/api/publish") => match publish.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"not found\n")))
            .unwrap_or_default(),
    }
}

/// 16 random bytes as 32 hex digits.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("no random bytes: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolves on Ctrl-C, or on SIGTERM where there are signals.
fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            tokio::signal::ctrl_c().await.ok();
        })
    }
}
