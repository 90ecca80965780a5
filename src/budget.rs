//! The hub's memory budget: the bytes that all connections together hold in frames waiting to be
//! written and in client messages not yet complete.
//!
//! Per-connection bounds alone do not bound the whole: a thousand clients that stop reading, each
//! under its own bound, still add up. Every frame the hub builds carries a [`Charge`] for its
//! allocation, released when the last connection has written it (or dropped it), so a frame routed
//! to ten thousand connections is counted once, as the memory it is. Partial client messages are
//! charged by their connection while they grow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::meters::Buffered;

/// Bytes held for connections, against a limit.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// What operators see of it.
    meters: Buffered,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            meters: Buffered::register(limit),
        })
    }

    /// A budget nothing is ever refused by: for frames built outside a hub.
    #[cfg(test)]
    pub(crate) fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    /// How far over the limit the hub is, if it is.
    pub(crate) fn excess(&self) -> Option<usize> {
        self.used
            .load(Ordering::Relaxed)
            .checked_sub(self.limit)
            .filter(|&n| n > 0)
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// `bytes` were written to a socket.
    pub(crate) fn wrote(&self, bytes: usize) {
        self.meters.written(bytes);
    }
}

/// Bytes held against a [`Budget`] until dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// Nothing held yet.
    pub(crate) fn none(budget: &Arc<Budget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            bytes: 0,
        }
    }

    /// Holds `bytes` whatever the limit.
    fn new(budget: &Arc<Budget>, bytes: usize) -> Self {
        budget.used.fetch_add(bytes, Ordering::Relaxed);
        budget.meters.held(bytes);
        Self {
            budget: Arc::clone(budget),
            bytes,
        }
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Holds `bytes` instead of what it held; `false`, holding what it held, when growing would
    /// pass the limit.
    pub(crate) fn resize(&mut self, bytes: usize) -> bool {
        if bytes == self.bytes {
            return true;
        }
        if bytes > self.bytes {
            let more = bytes - self.bytes;
            let grown =
                self.budget
                    .used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                        used.checked_add(more).filter(|&n| n <= self.budget.limit)
                    });
            if grown.is_err() {
                return false;
            }
            self.budget.meters.held(more);
        } else {
            let less = self.bytes - bytes;
            self.budget.used.fetch_sub(less, Ordering::Relaxed);
            self.budget.meters.released(less);
        }
        self.bytes = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.budget.meters.released(self.bytes);
    }
}

/// A frame's hold on a [`Budget`]: its bytes whatever the limit (the hub answers an excess by
/// shedding the connections furthest behind rather than by refusing to route), and one frame
/// queued, until the last connection has written or dropped it.
#[derive(Debug)]
pub(crate) struct FrameCharge(Charge);

impl FrameCharge {
    pub(crate) fn new(budget: &Arc<Budget>, bytes: usize) -> Self {
        budget.meters.frame_queued();
        Self(Charge::new(budget, bytes))
    }
}

impl Drop for FrameCharge {
    fn drop(&mut self) {
        self.0.budget.meters.frame_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_released_when_dropped_and_growth_stops_at_the_limit() {
        let budget = Budget::new(100);
        let frame = FrameCharge::new(&budget, 60);
        assert_eq!(budget.used(), 60);
        let mut partial = Charge::none(&budget);
        assert!(partial.resize(40));
        assert!(!partial.resize(41), "past the limit");
        assert_eq!(budget.used(), 100);
        assert_eq!(budget.excess(), None);
        let over = FrameCharge::new(&budget, 10);
        assert_eq!(
            budget.excess(),
            Some(10),
            "frames are held even past the limit"
        );
        drop((frame, over));
        assert!(partial.resize(5));
        assert_eq!(budget.used(), 5);
        drop(partial);
        assert_eq!(budget.used(), 0);
    }
}
