//! How producers that route envelopes in a row keep from outrunning the connections they feed.
//!
//! Routing never waits. A producer that finds its input already buffered (a client's burst, a
//! long publish array) would otherwise fill every target's queue before any connection task ran,
//! and close healthy clients as if they did not read. So every producer yields now and then, which
//! lets the targets write as the burst goes; and the publish endpoint, which can make its caller
//! wait, also waits for targets that are far behind while they keep reading. A target that has
//! stopped reading is not waited for: it passes its bound or its stall timeout and is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::mailbox::Mailbox;

/// Envelopes routed between two yields; well under any sensible outbound bound.
const EVERY: u32 = 16;
/// How long a target behind may go without writing a frame before it is taken as not reading
/// and no longer waited for.
const PROGRESS_WINDOW: Duration = Duration::from_millis(500);
/// How often a waiting producer looks again.
const LOOK_EVERY: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
pub(crate) struct Pace {
    routed: u32,
    /// What is left of the time this producer may spend waiting for targets behind.
    patience: Option<Duration>,
    /// Targets found not reading: not waited for again.
    given_up: Vec<Arc<Mailbox>>,
}

impl Pace {
    /// A pace that also waits, for `patience` at most in all, for targets behind that keep
    /// reading ([`catch_up`](Self::catch_up)).
    pub(crate) fn patient(patience: Duration) -> Self {
        Self {
            patience: Some(patience),
            ..Self::default()
        }
    }

    /// One envelope routed: every few, let the runtime run.
    pub(crate) async fn tick(&mut self) {
        self.routed += 1;
        if self.routed.is_multiple_of(EVERY) {
            tokio::task::yield_now().await;
        }
    }

    /// One envelope routed, to the `behind` targets among others: waits until each of them is
    /// back under half its bound, has stopped making progress for [`PROGRESS_WINDOW`] (it is not
    /// reading, and will be closed), or is closing, or this producer's patience is used up.
    pub(crate) async fn catch_up(&mut self, behind: Vec<Arc<Mailbox>>) {
        self.tick().await;
        let Some(patience) = self.patience.filter(|p| !p.is_zero()) else {
            return;
        };
        if behind.is_empty() {
            return;
        }
        let started = Instant::now();
        let deadline = started + patience;
        for mailbox in behind {
            if self.given_up.iter().any(|m| Arc::ptr_eq(m, &mailbox)) {
                continue;
            }
            let mut last = mailbox.pending();
            let mut progressed = Instant::now();
            while mailbox.is_behind() && mailbox.closing().is_none() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if now >= progressed + PROGRESS_WINDOW {
                    self.given_up.push(Arc::clone(&mailbox));
                    break;
                }
                tokio::time::sleep(LOOK_EVERY).await;
                let pending = mailbox.pending();
                if pending < last {
                    progressed = Instant::now();
                }
                last = pending;
            }
        }
        self.patience = Some(patience.saturating_sub(started.elapsed()));
    }
}
