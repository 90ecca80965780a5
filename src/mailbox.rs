//! One connection's outbound queue and close request: what routing writes into without waiting,
//! and what the connection's task reads.
//!
//! A bounded queue of shared frames behind one small lock, a close code beside it, and one waker
//! for the one task that reads it. The task takes the whole queue at once (a swap under the lock)
//! and works through its own copy, so routing and the task meet on the lock once per batch, not
//! once per frame. Unlike a general channel it allocates nothing while empty (a tokio
//! channel allocates a block of 32 slots up front), and gives its memory back once drained, so
//! an idle connection costs a few dozen bytes here.
//!
//! A burst that outgrows the queue makes routing allocate a larger buffer of its own and move the
//! frames over, rather than `realloc` the old one: glibc's `realloc` works under the lock of the
//! arena the block came from, and one of a connection's two buffers comes from its task's thread
//! (the task queues the first frame itself). Routing then waited on a busy worker's arena lock and,
//! on two cores, lost its core while asleep: `cargo bench --bench fanout` measured up to twice the
//! time per recipient (docs/benchmarks.md).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What the connection's task is to do next.
#[derive(Debug)]
pub(crate) enum Delivery {
    Frame(Utf8Bytes),
    Close(u16),
}

/// Capacity kept after the queue drains; a burst's larger allocation is given back.
const KEEP: usize = 8;

#[derive(Debug)]
pub(crate) struct Mailbox {
    /// Where routing puts frames.
    queued: Mutex<VecDeque<Utf8Bytes>>,
    /// The frames the task took, still to write; only the task locks it, so it is never contended.
    taken: Mutex<VecDeque<Utf8Bytes>>,
    /// 0 while open; otherwise the close code asked for first.
    close: AtomicU16,
    waker: AtomicWaker,
    capacity: usize,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full: the client does not read.
    Full,
    /// The connection is closing.
    Closing,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queued: Mutex::default(),
            taken: Mutex::default(),
            close: AtomicU16::new(0),
            waker: AtomicWaker::new(),
            capacity,
        }
    }

    /// Queues a frame without waiting.
    pub(crate) fn offer(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        if self.close.load(Ordering::Acquire) != 0 {
            return Err(Refused::Closing);
        }
        let mut queued = lock(&self.queued);
        if queued.len() >= self.capacity {
            return Err(Refused::Full);
        }
        // Grown here, in this thread's own allocation, not by `push_back`'s `realloc` (module doc).
        let outgrown = (queued.len() == queued.capacity()).then(|| {
            // Doubling as `VecDeque` would, but never past the bound, where the queue refuses.
            let size = (queued.len() * 2).max(4).min(self.capacity);
            let mut grown = VecDeque::with_capacity(size);
            grown.append(&mut queued);
            std::mem::replace(&mut *queued, grown)
        });
        queued.push_back(frame);
        // The task waits only after finding the queue empty: a frame behind others needs no wake.
        let first = queued.len() == 1;
        drop(queued);
        // Outside the lock: freeing may wait on another thread's arena too.
        drop(outgrown);
        if first {
            self.waker.wake();
        }
        Ok(())
    }

    /// Asks the task to close the socket with `code`; the first code asked for wins.
    pub(crate) fn close(&self, code: u16) {
        let _ = self
            .close
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    /// The next thing to do: a close request comes before any frame still queued.
    pub(crate) async fn next(&self) -> Delivery {
        poll_fn(|cx| {
            // The waker is registered only when there is nothing to do: the task is woken for a
            // frame and finds it without another round of atomics on the waker.
            if let Some(delivery) = self.ready() {
                return Poll::Ready(delivery);
            }
            // Registered before looking again, so a frame offered in between wakes us.
            self.waker.register(cx.waker());
            self.ready().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    fn ready(&self) -> Option<Delivery> {
        match self.closing_code() {
            Some(code) => Some(Delivery::Close(code)),
            None => self.take().map(Delivery::Frame),
        }
    }

    /// A queued frame, if there is one and no close was asked for.
    pub(crate) fn try_frame(&self) -> Option<Utf8Bytes> {
        if self.closing_code().is_some() {
            return None;
        }
        self.take()
    }

    /// Resolves with the code once a close is asked for.
    pub(crate) async fn closing(&self) -> u16 {
        poll_fn(|cx| {
            if let Some(code) = self.closing_code() {
                return Poll::Ready(code);
            }
            self.waker.register(cx.waker());
            self.closing_code().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    fn closing_code(&self) -> Option<u16> {
        match self.close.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// The next frame: from the task's own batch, or else the whole queue taken at once.
    fn take(&self) -> Option<Utf8Bytes> {
        let mut taken = lock(&self.taken);
        if taken.is_empty() {
            std::mem::swap(&mut *taken, &mut *lock(&self.queued));
        }
        let frame = taken.pop_front();
        if taken.is_empty() && taken.capacity() > KEEP {
            // A burst's allocation is given back once it is written.
            *taken = VecDeque::new();
        }
        frame
    }
}

// Nothing here can be left half-changed by a panic, so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_in_order_then_full_then_close_first() {
        let mailbox = Mailbox::new(2);
        assert_eq!(mailbox.offer("a".into()), Ok(()));
        assert_eq!(mailbox.offer("b".into()), Ok(()));
        assert_eq!(mailbox.offer("c".into()), Err(Refused::Full));
        assert!(matches!(mailbox.next().await, Delivery::Frame(f) if f == "a"));
        mailbox.close(1008);
        mailbox.close(1001);
        assert!(
            matches!(mailbox.next().await, Delivery::Close(1008)),
            "close before frames"
        );
        assert_eq!(mailbox.try_frame(), None);
        assert_eq!(mailbox.offer("d".into()), Err(Refused::Closing));
        assert_eq!(mailbox.closing().await, 1008);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_an_offer() {
        let mailbox = std::sync::Arc::new(Mailbox::new(4));
        let reader = tokio::spawn({
            let mailbox = std::sync::Arc::clone(&mailbox);
            async move { mailbox.next().await }
        });
        tokio::task::yield_now().await;
        mailbox.offer("x".into()).unwrap();
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(delivery, Delivery::Frame(f) if f == "x"));
    }

    /// The reader registers its waker only when it finds nothing: a producer on another thread
    /// racing with it must never leave a frame unseen (a lost wake-up hangs the reader).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_between_a_producer_and_a_reader_on_two_threads() {
        const FRAMES: usize = 100_000;
        let mailbox = std::sync::Arc::new(Mailbox::new(FRAMES));
        let (read_all, all_read) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn({
            let mailbox = std::sync::Arc::clone(&mailbox);
            async move {
                for n in 0..FRAMES {
                    match mailbox.next().await {
                        Delivery::Frame(f) => assert_eq!(f.as_str(), n.to_string()),
                        Delivery::Close(code) => panic!("closed with {code}"),
                    }
                }
                let _ = read_all.send(());
                // Waiting again, now for the close alone.
                mailbox.closing().await
            }
        });
        let producer = std::thread::spawn({
            let mailbox = std::sync::Arc::clone(&mailbox);
            move || {
                for n in 0..FRAMES {
                    mailbox.offer(n.to_string().into()).unwrap();
                    if n % 3 == 0 {
                        // Lets the reader drain and go back to waiting now and then.
                        std::thread::yield_now();
                    }
                }
            }
        });
        let within = std::time::Duration::from_secs(10);
        tokio::time::timeout(within, all_read)
            .await
            .expect("the reader saw every frame: no wake-up was lost")
            .unwrap();
        producer.join().unwrap();
        mailbox.close(1000);
        let code = tokio::time::timeout(within, reader)
            .await
            .expect("the reader was woken by the close")
            .unwrap();
        assert_eq!(code, 1000);
    }

    #[test]
    fn a_queue_grows_in_order_up_to_its_bound_and_no_further() {
        let mailbox = Mailbox::new(100);
        for n in 0..100 {
            mailbox.offer(n.to_string().into()).unwrap();
        }
        assert_eq!(mailbox.offer("x".into()), Err(Refused::Full));
        assert_eq!(lock(&mailbox.queued).capacity(), 100);
        for n in 0..100 {
            assert_eq!(mailbox.try_frame().as_deref(), Some(&*n.to_string()));
        }
        assert_eq!(mailbox.try_frame(), None);
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let mailbox = Mailbox::new(1000);
        for _ in 0..100 {
            mailbox.offer("x".into()).unwrap();
        }
        while mailbox.try_frame().is_some() {}
        assert_eq!(lock(&mailbox.queued).capacity(), 0);
        assert_eq!(lock(&mailbox.taken).capacity(), 0);
    }
}
