//! [`serve`]: an HTTP/1 server for the hub and the application around it, shaped like
//! `axum::serve`, with the limits a server facing the internet needs and a graceful shutdown that
//! always ends.
//!
//! `axum::serve` gives hyper no timer, so a client that never finishes its request head, or that
//! keeps an idle keep-alive connection open, holds its connection forever, and a graceful
//! shutdown waits for it forever. Here every connection is bounded while it is not being served,
//! and shutdown has a deadline.

mod activity;
mod conn;
mod service;

use std::fmt;
use std::future::{Future, IntoFuture, Pending};
use std::io;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;

use activity::Timeouts;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on every connection `listener` accepts, over HTTP/1.1 with upgrades (so the
/// hub's WebSockets work), until the future is dropped or the signal given to
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) fires.
///
/// It replaces `axum::serve` in one line and takes the same services: a
/// [`HubService`](crate::HubService) around an axum `Router` or any tower service, or any other
/// tower service of `Request<hyper::body::Incoming>`. Every accepted socket gets `TCP_NODELAY`.
///
/// | limit | default | what happens past it |
/// |---|---|---|
/// | [`header_read_timeout`](Serve::header_read_timeout) | 10 s | a connection that has not sent a whole request head (from its accept, or from the first byte after an idle wait) is closed |
/// | [`keep_alive_timeout`](Serve::keep_alive_timeout) | 75 s | a keep-alive connection with no request since its last response is closed |
/// | [`shutdown_timeout`](Serve::shutdown_timeout) | 10 s | after the shutdown signal, connections still open are dropped and the future returns |
///
/// How long a request may take once its head has arrived (its body, the application's work) is
/// the application's to bound: the hub's publish endpoint bounds its own body read
/// ([`HubBuilder::publish_body_timeout`](crate::HubBuilder::publish_body_timeout)).
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use tower::Layer;
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = wshub::Hub::builder().build();
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let app = hub.layer("/ws").layer(app);
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// wshub::serve(listener, app)
///     .with_graceful_shutdown(hub.shutdown_on(async { tokio::signal::ctrl_c().await.ok(); }))
///     .await
/// # }
/// ```
///
/// On the signal (with [`Hub::shutdown_on`](crate::Hub::shutdown_on), once every socket has been
/// closed with 1001): the listener is closed, idle connections are closed, requests in flight are
/// answered (with `Connection: close`) and their connections closed, and when all are done, or
/// at the shutdown deadline, the future returns.
///
/// HTTP/2 is not served: a WebSocket upgrade needs HTTP/1.1, and `axum::serve` with axum's
/// default features is no different. Put a proxy in front for HTTP/2 (and for TLS).
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        timeouts: Timeouts {
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
        },
        shutdown_timeout: Duration::from_secs(10),
        signal: std::future::pending(),
    }
}

/// The server [`serve`] builds; awaiting it runs it. Each option has a default that suits a
/// server facing the internet; a `Duration::MAX` turns a limit off.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S, F = Pending<()>> {
    listener: TcpListener,
    service: S,
    timeouts: Timeouts,
    shutdown_timeout: Duration,
    signal: F,
}

impl<S, F> Serve<S, F> {
    /// How long a connection may take to send a whole request head: from its accept for the
    /// first request, from the first byte of the next one on a keep-alive connection. Past it the
    /// connection is closed without an answer. Default 10 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.header_read = timeout;
        self
    }

    /// How long a keep-alive connection may wait, from the end of a response, for the first byte
    /// of its next request. Past it the connection is closed. Default 75 s: longer than the 60 s
    /// idle timeout common in load balancers, so the proxy, not this server, closes an idle
    /// connection, and never while it is sending a request on it.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.keep_alive = timeout;
        self
    }

    /// How long, after the shutdown signal, requests in flight get to finish. At the deadline
    /// the connections still open are dropped and the server returns. Default 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Shuts the server down gracefully when `signal` resolves. Pass
    /// [`hub.shutdown_on(signal)`](crate::Hub::shutdown_on) so the hub closes its sockets with
    /// 1001 first.
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<S, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            service: self.service,
            timeouts: self.timeouts,
            shutdown_timeout: self.shutdown_timeout,
            signal,
        }
    }
}

impl<S, F> fmt::Debug for Serve<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("header_read_timeout", &self.timeouts.header_read)
            .field("keep_alive_timeout", &self.timeouts.keep_alive)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl<S, B, F> IntoFuture for Serve<S, F>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, B, F> Serve<S, F>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send + 'static,
{
    async fn run(self) -> io::Result<()> {
        let Self {
            listener,
            service,
            timeouts,
            shutdown_timeout,
            signal,
        } = self;
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        nodelay(&stream);
                        let service = service.clone();
                        connections.spawn(conn::serve(stream, service, timeouts, stopping.clone()));
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin, but not
                        // past the signal.
                        tracing::error!(error = %e, "accept failed; retrying in 1 s");
                        tokio::select! {
                            () = &mut signal => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                },
                // Reaps finished connections, so the set does not grow for the server's life.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        drop(listener);
        stop.send_replace(true);
        let deadline = tokio::time::Instant::now().checked_add(shutdown_timeout);
        let drained = async { while connections.join_next().await.is_some() {} };
        let finished = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, drained).await.is_ok(),
            None => {
                drained.await;
                true
            }
        };
        if !finished {
            tracing::warn!(
                open = connections.len(),
                "HTTP connections still open at the shutdown deadline; dropping them"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// Small frames go out at once instead of waiting for the ACK of the previous one (Nagle).
fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Errors about one connection that went away before it was accepted, not about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
