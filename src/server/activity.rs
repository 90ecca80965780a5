//! What a keep-alive HTTP/1 connection is doing, as far as its timeouts care: reading a request
//! head, serving a request, or waiting for the next one. The connection's task reads it to know
//! which deadline applies; the socket and the service wrapper move it along.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The two limits a connection's task enforces while no request is in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) header_read: Duration,
    pub(super) keep_alive: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is due, counted from the connection's accept or from the first byte after
    /// an idle wait.
    Head(Instant),
    /// A request is in flight: from its head until its response body is done or dropped.
    Busy,
    /// Between requests, since the last response ended.
    Idle(Instant),
}

/// Which limit a deadline comes from, for the log line when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    HeaderRead,
    KeepAlive,
}

#[derive(Debug)]
pub(super) struct Activity {
    phase: Mutex<Phase>,
    /// Mirrors `Phase::Idle` so that the socket's reads, the only frequent caller, check it
    /// without the lock (they keep going through here after a WebSocket upgrade).
    idle: AtomicBool,
    /// Wakes the connection's task when the deadline moves: a request ended, or the first byte
    /// of the next one arrived.
    changed: Notify,
}

impl Activity {
    /// A new connection owes its first request head from now on.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    /// When the connection is to be closed if nothing changes, and under which limit; `None`
    /// while a request is in flight (how long a request may take is the application's business).
    pub(super) fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Limit)> {
        match *self.lock() {
            Phase::Head(since) => {
                Some((since.checked_add(timeouts.header_read)?, Limit::HeaderRead))
            }
            Phase::Idle(since) => Some((since.checked_add(timeouts.keep_alive)?, Limit::KeepAlive)),
            Phase::Busy => None,
        }
    }

    /// Resolves when the deadline may have moved. A change made before this is awaited is not
    /// lost: `notify_one` keeps it for the next waiter.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A request head has been parsed: no deadline until it is answered.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        *self.lock() = Phase::Busy;
        InFlight(Arc::clone(self))
    }

    fn end(&self) {
        *self.lock() = Phase::Idle(Instant::now());
        self.idle.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived. After an idle wait they start the next request head, which from now on has
    /// the (usually shorter) header-read limit.
    fn on_read(&self) {
        if !self.idle.load(Ordering::Acquire) {
            return;
        }
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
        self.idle.store(false, Ordering::Release);
        drop(phase);
        self.changed.notify_one();
    }

    // Nothing can panic while the lock is held, so a poisoned lock still holds a valid phase.
    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request in flight; dropping it (its response body done, or the request abandoned) starts
/// the idle wait.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The accepted socket, telling the connection's [`Activity`] when bytes arrive.
#[pin_project]
#[derive(Debug)]
pub(super) struct Watched<I> {
    #[pin]
    io: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub(super) fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.on_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keep_alive: Duration::from_secs(75),
    };

    /// The deadline of `activity`, checked to be `limit` counted from a moment within `during`.
    fn assert_deadline(activity: &Activity, limit: Limit, during: (Instant, Instant)) {
        let (deadline, actual) = activity.deadline(&TIMEOUTS).expect("a deadline");
        assert_eq!(actual, limit);
        let length = match limit {
            Limit::HeaderRead => TIMEOUTS.header_read,
            Limit::KeepAlive => TIMEOUTS.keep_alive,
        };
        assert!(deadline >= during.0 + length && deadline <= during.1 + length);
    }

    #[test]
    fn deadlines_follow_the_request_cycle() {
        let before = Instant::now();
        let activity = Activity::new();
        // A new connection owes a head within the header-read limit.
        assert_deadline(&activity, Limit::HeaderRead, (before, Instant::now()));

        let request = activity.begin();
        assert_eq!(activity.deadline(&TIMEOUTS), None, "no deadline in flight");
        activity.on_read(); // body bytes change nothing
        assert_eq!(activity.deadline(&TIMEOUTS), None);

        let before = Instant::now();
        drop(request);
        assert_deadline(&activity, Limit::KeepAlive, (before, Instant::now()));

        // The first byte after an idle wait starts the header-read limit.
        let before = Instant::now();
        activity.on_read();
        assert_deadline(&activity, Limit::HeaderRead, (before, Instant::now()));
    }

    #[test]
    fn an_endless_limit_is_no_deadline() {
        let activity = Activity::new();
        let endless = Timeouts {
            header_read: Duration::MAX,
            keep_alive: Duration::MAX,
        };
        assert_eq!(activity.deadline(&endless), None);
    }
}
