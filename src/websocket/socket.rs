//! One upgraded connection's bytes: frames written from the connection's mailbox, frames read
//! and decoded, and the closing handshake.
//!
//! Memory exists only while data does. Reads go into a buffer on the stack and only what is left
//! of a read after a whole message (more messages that came with it) is kept, until handled. Writes
//! hand the queued frames' shared bytes to the socket in one vectored write, with no copy and no
//! buffer of the connection's own, so a connection that once sent a large frame holds nothing
//! once it is written.
//!
//! A client that stops taking bytes is told from one that is merely slower than a burst: the
//! socket is stalled only when it has accepted nothing for the stall timeout while frames waited.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::decode::{Decoder, Inbound, Violation};
use super::frame::{Frame, OP_PONG};
use crate::budget::{Budget, Charge};
use crate::closing::Asked;
use crate::mailbox::Mailbox;

/// Bytes read from the socket at once, into a buffer on the stack.
const READ_CHUNK: usize = 16 * 1024;
/// Frames handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Batches written in one poll before reading gets its turn.
const MAX_BATCHES: usize = 4;
/// Room the outgoing queue keeps once drained; a burst's larger allocation is given back.
const KEEP: usize = 8;

/// What happened on the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A message or control frame from the client.
    Inbound(Inbound),
    /// The client's bytes break the protocol or a limit: close with this code.
    Violation(u16),
    /// The hub asked for the connection to be closed, for this reason.
    CloseAsked(Asked),
    /// Frames waited and the socket accepted nothing for the stall timeout.
    Stalled,
    /// The connection is gone (end of stream or an error).
    Gone,
}

/// Why a partial message could not be kept.
const OVER_BUDGET: u16 = 1013;

#[derive(Debug)]
pub(crate) struct Socket<IO> {
    io: IO,
    decoder: Decoder,
    max_message: usize,
    /// What is left of a read after a whole message: more messages, handled before reading again.
    unread: Vec<u8>,
    unread_at: usize,
    /// Holds what `decoder` and `unread` keep against the hub's budget.
    inbound: Charge,
    /// Frames being written; `written` bytes of the first are already out.
    out: VecDeque<Frame>,
    written: usize,
    /// What `out` costs, as the mailbox counts it.
    out_cost: usize,
    stall: Stall,
}

/// Watches writes for progress while frames wait; a timer exists only while some do.
#[derive(Debug)]
struct Stall {
    after: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    last_progress: Instant,
}

impl Stall {
    /// Frames are waiting and the socket took what it could: start watching, if not already.
    fn waiting(&mut self) {
        if self.timer.is_none() {
            self.last_progress = Instant::now();
            self.timer = Some(Box::pin(sleep_until(self.last_progress + self.after)));
        }
    }

    /// The socket accepted bytes. Only noted: the timer, when it fires, looks at it.
    fn progressed(&mut self) {
        if self.timer.is_some() {
            self.last_progress = Instant::now();
        }
    }

    /// Nothing waits any more.
    fn settled(&mut self) {
        self.timer = None;
    }

    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        loop {
            ready!(timer.as_mut().poll(cx));
            let deadline = self.last_progress + self.after;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Socket<IO> {
    pub(crate) fn new(
        io: IO,
        max_message: usize,
        stall_after: Duration,
        budget: &Arc<Budget>,
    ) -> Self {
        Self {
            io,
            decoder: Decoder::default(),
            max_message,
            unread: Vec::new(),
            unread_at: 0,
            inbound: Charge::none(budget),
            out: VecDeque::new(),
            written: 0,
            out_cost: 0,
            stall: Stall {
                after: stall_after,
                timer: None,
                last_progress: Instant::now(),
            },
        }
    }

    /// The next thing that happens: the hub's close request first, then, while writing what the
    /// mailbox holds, a frame from the client (only when `reading`: a client whose messages wait
    /// is not read from).
    pub(crate) async fn next(&mut self, mailbox: &Mailbox, reading: bool) -> Event {
        poll_fn(|cx| self.poll_next(cx, mailbox, reading)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, mailbox: &Mailbox, reading: bool) -> Poll<Event> {
        if let Some(asked) = mailbox.closing() {
            return Poll::Ready(Event::CloseAsked(asked));
        }
        match self.poll_send(cx, mailbox) {
            Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                if self.stall.poll_stalled(cx).is_ready() {
                    return Poll::Ready(Event::Stalled);
                }
            }
        }
        if reading {
            if let Poll::Ready(event) = self.poll_receive(cx) {
                return Poll::Ready(event);
            }
        }
        // Woken by a close request or, once the socket has taken everything, by a new frame.
        if mailbox.register(cx.waker()) && (self.out.is_empty() || mailbox.closing().is_some()) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Queues a control frame: after the frame being written, before the others.
    pub(crate) fn send_control(&mut self, frame: Frame) {
        let at = usize::from(self.written > 0).min(self.out.len());
        self.out_cost += frame.cost();
        self.out.insert(at, frame);
    }

    /// Answers a ping. A pong not yet begun is replaced rather than joined by another (RFC 6455
    /// §5.5.3 allows answering the latest ping only), so a client that pings without reading
    /// cannot make answers pile up.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        let pong = Frame::control(OP_PONG, payload);
        let begun = usize::from(self.written > 0);
        let waiting = self.out.iter().skip(begun).position(Frame::is_pong);
        match waiting {
            Some(at) => {
                let old = std::mem::replace(&mut self.out[begun + at], pong);
                self.out_cost = self.out_cost - old.cost() + self.out[begun + at].cost();
            }
            None => self.send_control(pong),
        }
    }

    /// Writes what the mailbox holds until the socket takes no more, a few batches at most.
    /// Ready once everything is written and the mailbox is empty.
    fn poll_send(&mut self, cx: &mut Context<'_>, mailbox: &Mailbox) -> Poll<io::Result<()>> {
        for _ in 0..MAX_BATCHES {
            if self.out.is_empty() {
                self.out_cost = mailbox.take(&mut self.out);
                if self.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            let written = self.poll_write_out(cx);
            mailbox.set_writing(self.out_cost);
            ready!(written)?;
        }
        // More keeps coming: let the rest of the task, and other tasks, run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes `out` until it is empty or the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(&self.out) {
                let skip = if count == 0 { self.written } else { 0 };
                *slot = IoSlice::new(&frame.bytes()[skip..]);
                count += 1;
            }
            let n = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.stall.waiting();
                    return Poll::Pending;
                }
            };
            self.advance(n);
            self.inbound.budget().wrote(n);
            self.stall.progressed();
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.stall.settled();
        if self.out.capacity() > KEEP {
            self.out = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    /// `n` more bytes are out: drops the frames written whole.
    fn advance(&mut self, mut n: usize) {
        while let Some(front) = self.out.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.out_cost -= front.cost();
            self.out.pop_front();
        }
    }

    /// Reads and decodes until a message or control frame is whole, or the socket has no more.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let event = self.poll_decode(cx);
        // What is kept of a partial message is held against the budget, whatever happened.
        let kept = self.decoder.buffered() + self.unread.capacity();
        if !self.inbound.resize(kept) {
            return Poll::Ready(Event::Violation(OVER_BUDGET));
        }
        event
    }

    fn poll_decode(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if self.unread_at < self.unread.len() {
            let (used, event) = self
                .decoder
                .decode(&self.unread[self.unread_at..], self.max_message);
            self.unread_at += used;
            if self.unread_at == self.unread.len() {
                self.unread = Vec::new();
                self.unread_at = 0;
            }
            if let Some(event) = event {
                return Poll::Ready(decoded(event));
            }
        }
        loop {
            // Uninitialised: a read zeroes nothing; and on the stack: an idle socket keeps nothing.
            let mut buffer = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buffer = ReadBuf::uninit(&mut buffer);
            if ready!(Pin::new(&mut self.io).poll_read(cx, &mut buffer)).is_err() {
                return Poll::Ready(Event::Gone);
            }
            let read = buffer.filled();
            if read.is_empty() {
                return Poll::Ready(Event::Gone);
            }
            let (used, event) = self.decoder.decode(read, self.max_message);
            if let Some(event) = event {
                if used < read.len() {
                    self.unread = read[used..].to_vec();
                }
                return Poll::Ready(decoded(event));
            }
        }
    }

    /// Whether a client message has begun and is not whole yet.
    pub(crate) fn in_message(&self) -> bool {
        self.decoder.in_message()
    }

    /// Closes with `code`: what was queued and not begun is dropped, the frame being written is
    /// finished so the client can read what follows, and the close frame goes out. Then the
    /// client's answer is awaited, briefly, and the connection is shut down. `grace` bounds each
    /// wait for progress: a client still reading gets its close frame, however slowly.
    pub(crate) async fn close(&mut self, code: u16, reason: &str, grace: Duration) {
        self.finish_with(Frame::close(code, reason), grace).await;
        let answered = async {
            loop {
                match poll_fn(|cx| self.poll_receive(cx)).await {
                    Event::Inbound(Inbound::Close(_)) | Event::Gone | Event::Violation(_) => break,
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(grace, answered).await;
        self.shut_down(grace).await;
    }

    /// Answers the client's close frame (RFC 6455 §5.5.1: with the code it sent) and shuts down.
    pub(crate) async fn answer_close(&mut self, code: Option<u16>, grace: Duration) {
        let frame = match code {
            Some(code) => Frame::close(code, ""),
            None => Frame::control(super::frame::OP_CLOSE, &[]),
        };
        self.finish_with(frame, grace).await;
        self.shut_down(grace).await;
    }

    /// Drops what has not begun, then writes the frame begun (if any) and `last`.
    async fn finish_with(&mut self, last: Frame, grace: Duration) {
        let begun = if self.written > 0 { 1 } else { 0 };
        self.out.truncate(begun);
        self.out.push_back(last);
        self.out_cost = self.out.iter().map(Frame::cost).sum();
        self.stall.after = grace;
        self.stall.settled();
        let written = poll_fn(|cx| match self.poll_write_out(cx) {
            Poll::Ready(result) => Poll::Ready(result.is_ok()),
            Poll::Pending => self.stall.poll_stalled(cx).map(|()| false),
        });
        let _ = written.await;
    }

    async fn shut_down(&mut self, grace: Duration) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(grace, self.io.shutdown()).await;
    }
}

fn decoded(event: Result<Inbound, Violation>) -> Event {
    match event {
        Ok(inbound) => Event::Inbound(inbound),
        Err(Violation(code)) => Event::Violation(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;

    #[tokio::test]
    async fn pings_from_a_client_that_does_not_read_leave_one_pong_waiting() {
        // The other end never reads: writes stop once the pipe is full.
        let (io, _peer) = tokio::io::duplex(64);
        let budget = Budget::unlimited();
        let mut socket = Socket::new(io, 1024, Duration::from_secs(60), &budget);
        let mailbox = Mailbox::new(1 << 20);
        for n in 0..200u32 {
            socket.pong(&n.to_be_bytes());
            let _ =
                tokio::time::timeout(Duration::from_millis(1), socket.next(&mailbox, false)).await;
        }
        assert!(socket.out.len() <= 2, "{} pongs wait", socket.out.len());
        assert_eq!(
            socket.out_cost,
            socket.out.iter().map(Frame::cost).sum::<usize>()
        );
    }
}
