//! A chat on wshub: rooms, nicknames, who is in each room, private messages, and a page that
//! reconnects by itself. One page (`index.html`, on the browser client `/ws/wshub.js`), one
//! socket path, a handler that every chat message and every socket's arrival and departure go
//! through (`rooms/`: checks, escaping, history, presence), and one publish endpoint.
//!
//! What a visitor can make the chat keep is bounded: at most 100 rooms (a room goes, history
//! and all, when its last person leaves), room names and nicknames of at most 32 characters, and
//! a history of the last 50 messages and at most 32 KiB per room, which is what a newcomer is
//! sent. A socket whose room or nickname is refused is told why (`refused`); the page shows it.
//!
//! | path | what |
//! |---|---|
//! | `/` | the chat page |
//! | `/webconnection` | a minimal page written only against Web Connection's client names (`WebConnectionWebSocket`), talking to the same rooms |
//! | `/ws` | the sockets; `/ws/wshub.js` is the browser client |
//! | `/api/publish` | the publish endpoint, with a bearer token |
//! | `/metrics` | the hub's metrics in Prometheus's text format (docs/operations.md) |
//! | `/status` | a live status page: sockets open, messages, deliveries and envelopes per second, closes by reason, refusals, and who is in each room (`status.rs`) |
//! | `/api/status` | the rooms that page shows, as JSON: each with its people and sockets |
//! | `/api/logout` | `POST {"user": U}`, same token: logs the user out of the chat on every node; their pages show it and stop reconnecting (close code 4401) |
//!
//! `/metrics`, `/status` and `/api/status` are open: keep the port private, or put them behind
//! the operator's auth (like `/api/logout`) in production.
//!
//! ```text
//! cargo run --example chat                      # then open http://127.0.0.1:3000 in two tabs
//! WSHUB_ADDR=0.0.0.0:8080 cargo run --example chat
//! RUST_LOG=wshub=debug cargo run --example chat # the hub's own logs
//! ```
//!
//! | variable | default |
//! |---|---|
//! | `WSHUB_ADDR` | `127.0.0.1:3000` |
//! | `WSHUB_PUBLISH_TOKEN` | a random token, printed with a `curl` command that uses it |
//! | `WSHUB_REDIS_URL` | unset: a single process. Set (`redis://127.0.0.1:6379`): one node of a chat cluster on that Redis, rooms included (needs `--features cluster`; docs/cluster.md) |
//! | `RUST_LOG` | `info` |
//!
//! What is published goes straight to the sockets, past the handler: it is not checked, escaped
//! or kept in the history. The page shows a `broadcastchatmessage` whose message is
//! `{user, text, time}`, like the handler's.

use std::future::Future;
use std::io::{self, IsTerminal};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tracing_subscriber::EnvFilter;

mod metrics;
mod rooms;
mod status;

#[tokio::main]
async fn main() -> io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();

    let addr = std::env::var("WSHUB_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let (token, generated) = match std::env::var("WSHUB_PUBLISH_TOKEN") {
        Ok(token) if !token.is_empty() => (token, false),
        _ => (random_token()?, true),
    };

    // Before the hub: what it reports goes to the recorder installed when it reports.
    let recorder = metrics::recorder();
    let handle = recorder.handle();
    if ::metrics::set_global_recorder(recorder).is_err() {
        eprintln!("a metrics recorder is installed already");
    }
    let (hub, store) = hub_from_env();
    let store = Arc::new(store);
    let router = rooms::router_on(&hub, Arc::clone(&store))
        .merge(metrics::route(handle))
        .merge(status::routes(store))
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route(
            "/webconnection",
            get(|| async { Html(include_str!("webconnection.html")) }),
        )
        .route_service(
            "/api/publish",
            hub.publish_service().bearer_token(token.as_str()),
        )
        .merge(
            // The operator's own routes behind an auth layer: `route_layer` guards these routes
            // alone, not the hub's in-process forwards to the chat's handler.
            axum::Router::new()
                .route("/api/logout", post(logout))
                .route_layer(ValidateRequestHeaderLayer::custom(bearer(&token)))
                .layer(Extension(hub.clone())),
        );
    // The hub wraps the WHOLE router, so it sees upgrades on /ws before axum routes anything.
    // (`Router::layer` would wrap each route on its own instead.)
    let app = tower::Layer::layer(&hub.layer("/ws"), router);

    // Installed before the address is printed, so a signal sent right after it is not lost.
    let signal = shutdown_signal()?;
    let listener = match tokio::net::TcpListener::bind(&addr).await {
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
        // A message like the handler's; the shell fills in the time.
        let envelope = r#"{"action":"broadcastchatmessage","message":{"user":"curl","text":"hello from curl","time":"'"$(date -u +%FT%TZ)"'"},"recipients":[{"type":"group","value":"lobby"}]}"#;
        println!(
            "try: curl -H 'Authorization: Bearer {token}' http://{addr}/api/publish -d '{envelope}'"
        );
    }

    // On Ctrl-C or SIGTERM: close every socket with 1001, then stop accepting, let requests in
    // flight finish, and return within the server's shutdown deadline whatever the clients do.
    // (`wshub::serve` also bounds the time a connection may take to send a request head or stay
    // idle, and sets TCP_NODELAY.)
    wshub::serve(listener, app)
        .with_graceful_shutdown(hub.shutdown_on(signal))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// `/api/logout`: closes every socket of a user, on every node, with 4401 (logged out). Their
/// pages say so and stop reconnecting until the person joins again.
async fn logout(Extension(hub): Extension<wshub::Hub>, Json(who): Json<Who>) -> Response {
    match hub.disconnect_user(&who.user, wshub::LOGGED_OUT).await {
        Ok(closed) => Json(serde_json::json!({ "closed": closed })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Who {
    user: String,
}

/// A request check for tower-http: `Authorization: Bearer <token>`, or `401`.
// tower-http's `ValidateRequest` fixes the error type to a whole response.
#[allow(clippy::result_large_err)]
fn bearer(token: &str) -> impl FnMut(&mut Request) -> Result<(), Response> + Clone {
    let expected = format!("Bearer {token}");
    move |request: &mut Request| {
        let presented = request.headers().get(header::AUTHORIZATION);
        if presented.is_some_and(|value| value.as_bytes() == expected.as_bytes()) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response())
        }
    }
}

/// The chat's hub and where its rooms live: this process, or with `WSHUB_REDIS_URL` a cluster on
/// that Redis.
fn hub_from_env() -> (wshub::Hub, rooms::Store) {
    match std::env::var("WSHUB_REDIS_URL") {
        Ok(url) if !url.is_empty() => clustered(&url),
        _ => (rooms::hub(), rooms::Store::default()),
    }
}

#[cfg(feature = "cluster")]
fn clustered(url: &str) -> (wshub::Hub, rooms::Store) {
    rooms::clustered(url).unwrap_or_else(|e| {
        eprintln!("WSHUB_REDIS_URL: {e}");
        std::process::exit(2);
    })
}

#[cfg(not(feature = "cluster"))]
fn clustered(_: &str) -> (wshub::Hub, rooms::Store) {
    eprintln!(
        "WSHUB_REDIS_URL is set, but this build has no cluster mode: \
         run with `--features cluster` (or `--all-features`), or unset WSHUB_REDIS_URL"
    );
    std::process::exit(2);
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
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            tokio::signal::ctrl_c().await.ok();
            tracing::info!("shutting down");
        })
    }
}
