//! Whether this node can reach the cluster now, and a count of what it could not send or may
//! have missed: a node never loses an envelope silently. What operators see of the node's
//! dealings with Redis is reported here too, so every cluster task reports through the one
//! `Health` it already shares.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::meters::backplane::{Backplane, Task};

#[derive(Debug)]
pub(crate) struct Health {
    /// The subscriber is subscribed: envelopes from other nodes arrive.
    subscribed: AtomicBool,
    /// The last batch of commands went through (or none failed since the last that did).
    writing: AtomicBool,
    /// Envelopes for other nodes that were not sent.
    dropped: AtomicU64,
    /// Times the subscription was lost, during which envelopes from other nodes were missed.
    gaps: AtomicU64,
    meters: Backplane,
    /// What this node's probes are timed from.
    epoch: Instant,
}

impl Default for Health {
    fn default() -> Self {
        let meters = Backplane::register();
        meters.up(false);
        Self {
            subscribed: AtomicBool::default(),
            writing: AtomicBool::default(),
            dropped: AtomicU64::default(),
            gaps: AtomicU64::default(),
            meters,
            epoch: Instant::now(),
        }
    }
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
        self.meters.up(self.is_up());
    }

    /// Records whether commands go through; says whether that changed.
    pub(crate) fn set_writing(&self, up: bool) -> bool {
        let changed = self.writing.swap(up, Ordering::AcqRel) != up;
        self.meters.up(self.is_up());
        changed
    }

    /// `count` envelopes for other nodes were not sent, for `why`.
    pub(crate) fn dropped(&self, count: usize, why: &str) {
        let total = self.dropped.fetch_add(count as u64, Ordering::Relaxed) + count as u64;
        self.meters.dropped(count);
        tracing::warn!(count, total, why, "envelopes for other nodes were not sent");
    }

    /// The subscription came back after a gap.
    pub(crate) fn gap_ended(&self) -> u64 {
        self.meters.gap();
        self.gaps.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Redis took `count` messages for other nodes.
    pub(crate) fn published(&self, count: usize) {
        self.meters.published(count);
    }

    /// An envelope from another node arrived.
    pub(crate) fn received(&self) {
        self.meters.received();
    }

    /// The time a probe carries: microseconds on this node's own clock.
    pub(crate) fn probe_time(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// This node's probe, sent at `sent` ([`probe_time`](Self::probe_time)), came back through
    /// its subscription.
    pub(crate) fn probe_returned(&self, sent: u64) {
        let lag = self.probe_time().saturating_sub(sent);
        self.meters.lag(Duration::from_micros(lag));
    }

    /// The last heartbeat saw `alive` nodes.
    pub(crate) fn nodes(&self, alive: usize) {
        self.meters.nodes(alive);
        // Now and then from one task, so that `up` is right even if two changes raced.
        self.meters.up(self.is_up());
    }

    /// A command or connection of `task` to Redis failed.
    pub(crate) fn redis_error(&self, task: Task) {
        self.meters.redis_error(task);
    }
}
