//! One accepted connection's task: hyper's HTTP/1 connection (with upgrades), the header-read
//! and keep-alive deadlines that hyper's own timer cannot tell apart, and the graceful close
//! when the server shuts down.

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower_service::Service;

use super::activity::{Activity, Limit, Timeouts, Watched};
use super::service::Tracked;
use super::BoxError;

/// Serves `stream` until the client closes it, a deadline passes, it is upgraded (the upgraded
/// socket then lives on in the task the upgrade handler spawned), or shutdown has let its request
/// in flight finish. The server aborts the task if shutdown's own deadline passes first.
pub(super) async fn serve<S, B>(
    stream: TcpStream,
    service: S,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let connection = http1::Builder::new()
        // Off: in hyper it runs from the end of one response to the head of the next, so it
        // would also be the keep-alive limit. The loop below keeps the two apart.
        .header_read_timeout(None)
        .serve_connection(io, Tracked::new(service, activity.clone()))
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&timeouts);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                // The phase may have changed since the deadline was read; look again.
                if let Some((at, limit)) = activity.deadline(&timeouts) {
                    if at <= tokio::time::Instant::now() {
                        match limit {
                            Limit::HeaderRead => tracing::debug!("closing a connection: no complete request head within the header-read timeout"),
                            Limit::KeepAlive => tracing::debug!("closing an idle keep-alive connection"),
                        }
                        return;
                    }
                }
            }
            () = activity.changed() => {}
            _ = stopping.wait_for(|&stop| stop), if !draining => {
                // Idle connections close now; one with a request in flight answers it with
                // `Connection: close` first. Its deadlines still apply.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<(tokio::time::Instant, Limit)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
