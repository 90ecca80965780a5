//! One connection's outbound queue and close request: what routing writes into without waiting,
//! and what the connection's task reads.
//!
//! A queue of shared frames behind one small lock, bounded in bytes; a close code beside it; and
//! one waker for the one task that reads it. The task takes the whole queue at once (a swap under
//! the lock) and writes from its own copy, so routing and the task meet on the lock once per
//! batch, not once per frame. Unlike a general channel it allocates nothing while empty (a tokio
//! channel allocates a block of 32 slots up front), so an idle connection costs a few dozen bytes.
//!
//! A burst that outgrows the queue makes routing allocate a larger buffer of its own and move the
//! frames over, rather than `realloc` the old one: glibc's `realloc` works under the lock of the
//! arena the block came from, and the buffer the task swapped back comes from its task's thread.
//! Routing then waited on a busy worker's arena lock and, on two cores, lost its core while
//! asleep: `cargo bench --bench fanout` measured up to twice the time per recipient
//! (docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use futures_util::task::AtomicWaker;

use crate::closing::Asked;
use crate::websocket::Frame;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// What the frames cost ([`Frame::cost`]), summed.
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    /// What the task took and has not written yet, in bytes; only the task stores it.
    writing: AtomicUsize,
    /// 0 while open; otherwise the close asked for first ([`Asked::encode`]).
    close: AtomicU32,
    waker: AtomicWaker,
    /// Most bytes that may be pending (queued and being written) for the connection.
    limit: usize,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// What is pending for the connection would pass its bound: the client does not keep up.
    Full,
    /// The connection is closing.
    Closing,
}

impl Mailbox {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            queue: Mutex::default(),
            writing: AtomicUsize::new(0),
            close: AtomicU32::new(0),
            waker: AtomicWaker::new(),
            limit,
        }
    }

    /// Queues a frame without waiting and returns the bytes then pending. A frame larger than the
    /// bound is taken when nothing else is pending, so that no envelope is too big for every
    /// connection.
    pub(crate) fn offer(&self, frame: Frame) -> Result<usize, Refused> {
        if self.close.load(Ordering::Acquire) != 0 {
            return Err(Refused::Closing);
        }
        let cost = frame.cost();
        let mut queue = lock(&self.queue);
        let pending = queue.bytes + self.writing.load(Ordering::Relaxed);
        if pending > 0 && pending + cost > self.limit {
            return Err(Refused::Full);
        }
        let frames = &mut queue.frames;
        // Grown here, in this thread's own allocation, not by `push_back`'s `realloc` (module doc).
        let outgrown = (frames.len() == frames.capacity()).then(|| {
            let mut grown = VecDeque::with_capacity((frames.len() * 2).max(4));
            grown.append(frames);
            std::mem::replace(frames, grown)
        });
        frames.push_back(frame);
        // The task waits only after finding the queue empty: a frame behind others needs no wake.
        let first = frames.len() == 1;
        queue.bytes += cost;
        drop(queue);
        // Outside the lock: freeing may wait on another thread's arena too.
        drop(outgrown);
        if first {
            self.waker.wake();
        }
        Ok(pending + cost)
    }

    /// Asks the task to close the socket, and says why; the first ask wins. What is still
    /// queued is dropped at once: a connection being closed holds no memory for frames it will
    /// never send.
    pub(crate) fn close(&self, asked: Asked) {
        let _ = self
            .close
            .compare_exchange(0, asked.encode(), Ordering::AcqRel, Ordering::Acquire);
        let dropped = std::mem::take(&mut *lock(&self.queue));
        drop(dropped);
        self.waker.wake();
    }

    /// The close asked for, if any.
    pub(crate) fn closing(&self) -> Option<Asked> {
        Asked::decode(self.close.load(Ordering::Acquire))
    }

    /// Moves the queued frames into `into` (which the task has emptied) and returns their cost.
    pub(crate) fn take(&self, into: &mut VecDeque<Frame>) -> usize {
        debug_assert!(into.is_empty());
        let mut queue = lock(&self.queue);
        std::mem::swap(&mut queue.frames, into);
        std::mem::take(&mut queue.bytes)
    }

    /// Wakes `waker` when a frame arrives in an empty queue or a close is asked for. Returns
    /// whether there is something to do already (registered first, then checked, so that nothing
    /// offered in between is missed).
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        self.waker.register(waker);
        self.closing().is_some() || !lock(&self.queue).frames.is_empty()
    }

    /// The task's count of what it took and has not written yet.
    pub(crate) fn set_writing(&self, bytes: usize) {
        self.writing.store(bytes, Ordering::Relaxed);
    }

    /// What is pending for the connection: queued, or taken and not written yet.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.queue).bytes + self.writing.load(Ordering::Relaxed)
    }

    /// Whether `pending` bytes are more than half the bound: the client is far behind.
    pub(crate) fn behind_at(&self, pending: usize) -> bool {
        pending > self.limit / 2
    }

    /// Whether the client is far behind now.
    pub(crate) fn is_behind(&self) -> bool {
        self.behind_at(self.pending())
    }
}

// Nothing here can be left half-changed by a panic, so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, FrameCharge};
    use crate::websocket::HEAD_ROOM;

    fn frame(text: &str) -> Frame {
        let mut buffer = vec![0; HEAD_ROOM];
        buffer.extend_from_slice(text.as_bytes());
        Frame::text(buffer, FrameCharge::new(&Budget::unlimited(), 0))
    }

    fn taken(mailbox: &Mailbox) -> Vec<Frame> {
        let mut into = VecDeque::new();
        mailbox.take(&mut into);
        into.into()
    }

    #[test]
    fn frames_in_order_bounded_in_bytes_then_close_drops_the_rest() {
        let a = frame("a");
        let mailbox = Mailbox::new(3 * a.cost());
        for text in ["a", "b", "c"] {
            assert!(mailbox.offer(frame(text)).is_ok());
        }
        assert_eq!(mailbox.offer(frame("d")), Err(Refused::Full));
        assert_eq!(mailbox.pending(), 3 * a.cost());
        assert_eq!(taken(&mailbox), [frame("a"), frame("b"), frame("c")]);
        mailbox.set_writing(3 * a.cost());
        assert_eq!(
            mailbox.offer(frame("d")),
            Err(Refused::Full),
            "still being written"
        );
        mailbox.set_writing(0);
        assert_eq!(mailbox.offer(frame("d")), Ok(a.cost()));
        mailbox.close(Asked::SlowConsumer);
        mailbox.close(Asked::Shutdown);
        assert_eq!(
            mailbox.closing(),
            Some(Asked::SlowConsumer),
            "the first ask wins"
        );
        assert_eq!(mailbox.pending(), 0, "what was queued is dropped");
        assert_eq!(mailbox.offer(frame("e")), Err(Refused::Closing));
    }

    #[test]
    fn a_frame_larger_than_the_bound_goes_alone() {
        let mailbox = Mailbox::new(10);
        let big = frame(&"x".repeat(100));
        assert_eq!(mailbox.offer(big.clone()), Ok(big.cost()));
        assert_eq!(mailbox.offer(frame("y")), Err(Refused::Full));
        assert_eq!(taken(&mailbox), [big]);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_an_offer_and_by_a_close() {
        let mailbox = std::sync::Arc::new(Mailbox::new(1 << 20));
        for close in [false, true] {
            let waiter = tokio::spawn({
                let mailbox = std::sync::Arc::clone(&mailbox);
                std::future::poll_fn(move |cx| {
                    if mailbox.register(cx.waker()) {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
            });
            tokio::task::yield_now().await;
            if close {
                mailbox.close(Asked::Application(1000));
            } else {
                mailbox.offer(frame("x")).unwrap();
            }
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
            taken(&mailbox);
        }
    }

    /// The reader registers its waker only when it finds nothing: a producer on another thread
    /// racing with it must never leave a frame unseen (a lost wake-up hangs the reader).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_between_a_producer_and_a_reader_on_two_threads() {
        const FRAMES: usize = 100_000;
        let mailbox = std::sync::Arc::new(Mailbox::new(usize::MAX));
        let reader = tokio::spawn({
            let mailbox = std::sync::Arc::clone(&mailbox);
            async move {
                let mut next = 0;
                let mut batch = VecDeque::new();
                while next < FRAMES {
                    std::future::poll_fn(|cx| {
                        if mailbox.register(cx.waker()) {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                    mailbox.take(&mut batch);
                    for got in batch.drain(..) {
                        assert_eq!(got, frame(&next.to_string()));
                        next += 1;
                    }
                }
            }
        });
        let producer = std::thread::spawn({
            let mailbox = std::sync::Arc::clone(&mailbox);
            move || {
                for n in 0..FRAMES {
                    mailbox.offer(frame(&n.to_string())).unwrap();
                    if n % 3 == 0 {
                        // Lets the reader drain and go back to waiting now and then.
                        std::thread::yield_now();
                    }
                }
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the reader saw every frame: no wake-up was lost")
            .unwrap();
        producer.join().unwrap();
    }
}
