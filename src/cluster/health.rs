//! Whether this node can reach the cluster now, and a count of what it could not send or may
//! have missed: a node never loses an envelope silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The subscriber is subscribed: envelopes from other nodes arrive.
    subscribed: AtomicBool,
    /// The last batch of commands went through (or none failed since the last that did).
    writing: AtomicBool,
    /// Envelopes for other nodes that were not sent.
    dropped: AtomicU64,
    /// Times the subscription was lost, during which envelopes from other nodes were missed.
    gaps: AtomicU64,
}

impl Health {
    pub(crate) fn is_up(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.writing.load(Ordering::Acquire)
    }

    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub(crate) fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Release);
    }

    /// Records whether commands go through; says whether that changed.
    pub(crate) fn set_writing(&self, up: bool) -> bool {
        self.writing.swap(up, Ordering::AcqRel) != up
    }

    /// `count` envelopes for other nodes were not sent, for `why`.
    pub(crate) fn dropped(&self, count: usize, why: &str) {
        let total = self.dropped.fetch_add(count as u64, Ordering::Relaxed) + count as u64;
        tracing::warn!(count, total, why, "envelopes for other nodes were not sent");
    }

    /// The subscription came back after a gap.
    pub(crate) fn gap_ended(&self) -> u64 {
        self.gaps.fetch_add(1, Ordering::Relaxed) + 1
    }
}
