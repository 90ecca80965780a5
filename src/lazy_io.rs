//! Socket buffers that exist only while data flows.
//!
//! **Reads.**
//! tungstenite allocates (and zero-fills) its read buffer for every socket, idle or not, and reads
//! at most that much per system call. A hub holds many more idle sockets than busy ones, so the
//! connection gives tungstenite a small buffer and reads through [`LazyRead`]: a read that fills
//! tungstenite's buffer means more is coming, and the next read takes up to [`CHUNK`] bytes into
//! a buffer of its own, which is freed as soon as tungstenite has consumed it. An idle socket
//! costs nothing here; a large message costs a few system calls, not one per small buffer.
//!
//! **Writes.** tungstenite keeps its write buffer at the largest size it ever grew to, so a socket
//! that once took a burst would hold that memory while idle. The connection gives tungstenite no
//! write buffer (every frame is handed over at once) and [`LazyIo`] gathers the frames until the
//! flush, writes them with one system call where the socket allows, and frees the buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read at once while data keeps arriving.
const CHUNK: usize = 16 * 1024;
/// Gathered frames written out before more are taken, even without a flush.
const GATHER: usize = 64 * 1024;
/// What the gathering buffer starts with: room for a batch of a few dozen small frames.
const FIRST_GATHER: usize = 1024;

#[pin_project]
#[derive(Debug)]
pub(crate) struct LazyIo<IO> {
    #[pin]
    io: IO,
    /// Read but not yet handed out; empty (and unallocated) whenever it has been drained.
    buffered: Vec<u8>,
    taken: usize,
    /// The last read filled the caller's buffer: more is likely waiting.
    streaming: bool,
    /// Written by the caller, not yet by the socket: `gathered[sent..]`.
    gathered: Vec<u8>,
    sent: usize,
}

impl<IO> LazyIo<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            buffered: Vec::new(),
            taken: 0,
            streaming: false,
            gathered: Vec::new(),
            sent: 0,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for LazyIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.taken < this.buffered.len() {
            let n = out.remaining().min(this.buffered.len() - *this.taken);
            out.put_slice(&this.buffered[*this.taken..*this.taken + n]);
            *this.taken += n;
            if *this.taken == this.buffered.len() {
                *this.buffered = Vec::new();
                *this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if !*this.streaming || out.remaining() >= CHUNK {
            let wanted = out.remaining();
            let before = out.filled().len();
            ready!(this.io.poll_read(cx, out))?;
            *this.streaming = wanted > 0 && out.filled().len() - before == wanted;
            return Poll::Ready(Ok(()));
        }
        let mut chunk = vec![0; CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        match this.io.poll_read(cx, &mut read) {
            // Drained: back to reading straight into the caller's small buffer.
            Poll::Pending => {
                *this.streaming = false;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                *this.streaming = n == CHUNK;
                chunk.truncate(n);
                let now = out.remaining().min(n);
                out.put_slice(&chunk[..now]);
                if now < n {
                    *this.buffered = chunk;
                    *this.taken = now;
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<IO: AsyncWrite> LazyIo<IO> {
    /// Writes out what was gathered; frees the buffer once all of it is written.
    fn poll_send(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while *this.sent < this.gathered.len() {
            let n = ready!(this
                .io
                .as_mut()
                .poll_write(cx, &this.gathered[*this.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *this.sent += n;
        }
        *this.gathered = Vec::new();
        *this.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for LazyIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.gathered.len() >= GATHER {
            ready!(self.as_mut().poll_send(cx))?;
        }
        let gathered = self.project().gathered;
        if gathered.capacity() == 0 {
            // One allocation for a typical batch of small frames rather than a doubling per
            // frame: malloc and free were a fifth of the server's user-space CPU in a burst.
            gathered.reserve(buf.len().max(FIRST_GATHER));
        }
        gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_send(cx))?;
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_send(cx))?;
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Every byte arrives once and in order, whatever the sizes of the reads.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                tx.write_all(&data).await.unwrap();
            })
        };
        let mut reader = LazyIo::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 256];
        loop {
            let n = reader.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert!(
            reader.buffered.capacity() == 0,
            "nothing is held once drained"
        );
    }
}
