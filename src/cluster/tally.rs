//! Counting a publish across the cluster: an envelope that asks (a ticket) is answered by every
//! node it reached with the number of connections it queued it to. The publisher learns how many
//! nodes it reached from Redis; the sender waits a short while for as many answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The tallies of this node's publishes still being counted.
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Tally>>,
    changed: Notify,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// How many other nodes Redis passed it to; `None` until the publisher knows.
    nodes: Option<usize>,
    answered: usize,
    delivered: usize,
    /// Sending it to Redis failed: it may or may not have reached anyone.
    failed: bool,
}

/// A publish being counted; forgotten when dropped (late answers are then ignored).
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    tallies: Arc<Tallies>,
}

/// What the other nodes reported of some envelopes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count {
    /// Deliveries to other nodes: for each envelope, the nodes it went to.
    pub(crate) nodes: usize,
    /// Of those, how many answered in time.
    pub(crate) answered: usize,
    /// The connections they reported.
    pub(crate) delivered: usize,
    /// Some did not answer in time, or a send failed: `delivered` is a lower bound.
    pub(crate) partial: bool,
}

impl Tallies {
    pub(crate) fn open(self: &Arc<Self>) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Tally::default());
        Ticket {
            id,
            tallies: Arc::clone(self),
        }
    }

    /// Redis passed envelope `ticket` to `nodes` other nodes.
    pub(crate) fn sent(&self, ticket: u64, nodes: usize) {
        self.update(ticket, |tally| tally.nodes = Some(nodes));
    }

    pub(crate) fn failed(&self, ticket: u64) {
        self.update(ticket, |tally| tally.failed = true);
    }

    /// A node queued envelope `ticket` to `count` connections.
    pub(crate) fn reported(&self, ticket: u64, count: usize) {
        self.update(ticket, |tally| {
            tally.answered += 1;
            tally.delivered += count;
        });
    }

    fn update(&self, ticket: u64, f: impl FnOnce(&mut Tally)) {
        if let Some(tally) = self.lock().get_mut(&ticket) {
            f(tally);
            self.changed.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tally>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Ticket {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.tallies.lock().remove(&self.id);
    }
}

/// Waits until Redis has taken every ticket's envelope (or failed to), `deadline` at most; true
/// when it took them all.
pub(crate) async fn confirmed(tickets: &[Ticket], deadline: Instant) -> bool {
    let Some(first) = tickets.first() else {
        return true;
    };
    let tallies = &first.tallies;
    loop {
        let changed = tallies.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (settled, taken) = {
            let open = tallies.lock();
            let tallies: Vec<Option<&Tally>> = tickets.iter().map(|t| open.get(&t.id)).collect();
            let settled = tallies
                .iter()
                .all(|t| t.is_some_and(|t| t.failed || t.nodes.is_some()));
            let taken = tallies
                .iter()
                .all(|t| t.is_some_and(|t| !t.failed && t.nodes.is_some()));
            (settled, taken)
        };
        if settled {
            return taken;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return false;
        }
    }
}

/// Waits until every ticket is answered by every node it reached, or until `deadline`, and adds
/// up what was reported.
pub(crate) async fn count(tickets: Vec<Ticket>, deadline: Instant) -> Count {
    let Some(first) = tickets.first() else {
        return Count::default();
    };
    let tallies = Arc::clone(&first.tallies);
    loop {
        let changed = tallies.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let done = {
            let open = tallies.lock();
            tickets.iter().all(|t| {
                open.get(&t.id)
                    .is_some_and(|t| t.failed || t.nodes.is_some_and(|n| t.answered >= n))
            })
        };
        if done || tokio::time::timeout_at(deadline, changed).await.is_err() {
            break;
        }
    }
    let open = tallies.lock();
    let mut count = Count::default();
    for tally in tickets.iter().filter_map(|t| open.get(&t.id)) {
        let nodes = tally.nodes.unwrap_or(0);
        count.nodes += nodes;
        count.answered += tally.answered.min(nodes);
        count.delivered += tally.delivered;
        count.partial |= tally.failed || tally.nodes.is_none() || tally.answered < nodes;
    }
    count
}
