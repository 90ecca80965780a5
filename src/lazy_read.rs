//! A read buffer that exists only while data is arriving.
//!
//! tungstenite allocates (and zero-fills) its read buffer for every socket, idle or not, and reads
//! at most that much per system call. A hub holds many more idle sockets than busy ones, so the
//! connection gives tungstenite a small buffer and reads through [`LazyRead`]: a read that fills
//! tungstenite's buffer means more is coming, and the next read takes up to [`CHUNK`] bytes into
//! a buffer of its own, which is freed as soon as tungstenite has consumed it. An idle socket
//! costs nothing here; a large message costs a few system calls, not one per small buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read at once while data keeps arriving.
const CHUNK: usize = 16 * 1024;

#[pin_project]
#[derive(Debug)]
pub(crate) struct LazyRead<IO> {
    #[pin]
    io: IO,
    /// Read but not yet handed out; empty (and unallocated) whenever it has been drained.
    buffered: Vec<u8>,
    taken: usize,
    /// The last read filled the caller's buffer: more is likely waiting.
    streaming: bool,
}

impl<IO> LazyRead<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            buffered: Vec::new(),
            taken: 0,
            streaming: false,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for LazyRead<IO> {
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

impl<IO: AsyncWrite> AsyncWrite for LazyRead<IO> {
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
        let mut reader = LazyRead::new(rx);
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
