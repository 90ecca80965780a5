//! The load client's WebSocket side, written by hand so that it costs less than the servers it
//! measures: the opening handshake, masked client frames, and a parser of server frames that
//! counts messages without copying their payloads unless asked to.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr`, sends an upgrade request for `path` and reads the `101` answer; returns
/// the stream and the bytes that came after the answer's head (the first frames).
///
/// `recv_buffer` sets `SO_RCVBUF` before connecting: a small one makes a client that stops
/// reading push back on the server sooner.
pub async fn open(
    addr: &str,
    path: &str,
    recv_buffer: Option<u32>,
) -> io::Result<(TcpStream, Vec<u8>)> {
    let target = addr
        .parse()
        .map_err(|_| io::Error::other(format!("bad address {addr}")))?;
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let mut stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let body_at = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 8192 {
            return Err(io::Error::other("handshake response too long"));
        }
    };
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
        return Err(io::Error::other(format!("refused: {line}")));
    }
    Ok((stream, head.split_off(body_at)))
}

/// Text frame opcode.
pub const TEXT: u8 = 1;
/// Close frame opcode.
pub const CLOSE: u8 = 8;
/// Pong frame opcode.
pub const PONG: u8 = 10;

/// A complete, masked client frame. The mask key is zero, so the payload goes out as it is: the
/// servers must unmask all the same, and the client saves the work.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    // A server frame's header with the opcode and the mask bit set, then the key.
    let mut frame = crate::text_frame_header(payload.len());
    frame[0] = 0x80 | opcode;
    frame[1] |= 0x80;
    frame.reserve(4 + payload.len());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

/// Counts complete data messages in a stream of unmasked server frames.
#[derive(Default)]
pub struct Parser {
    /// A header not yet complete.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    skip: u64,
    opcode: u8,
    fin: bool,
    /// The payload of a control frame (ping, close), at most 125 bytes.
    control: Vec<u8>,
    /// Whether data payloads are kept and handed to the caller.
    capture: bool,
    /// The current data message's payload, when capturing.
    data: Vec<u8>,
}

impl Parser {
    /// A parser that hands every data message's payload to `feed`'s callback.
    pub fn capturing() -> Self {
        Self {
            capture: true,
            ..Self::default()
        }
    }

    /// Feeds bytes; returns the data messages completed, or the close code the server sent.
    /// A ping's payload is put in `pong`; each message's payload (empty unless capturing) is
    /// given to `on_message`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        pong: &mut Option<Vec<u8>>,
        on_message: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, u16> {
        let mut messages = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let take = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if self.opcode >= 8 {
                    self.control.extend_from_slice(&data[..take]);
                } else if self.capture {
                    self.data.extend_from_slice(&data[..take]);
                }
                data = &data[take..];
                self.skip -= take as u64;
                if self.skip == 0 {
                    messages += self.finish(pong, on_message)?;
                }
                continue;
            }
            // A header: 2 bytes, then 0, 2 or 8 of length, then 4 of mask (never from a server).
            while self.header.len() < 2 && !data.is_empty() {
                self.header.push(data[0]);
                data = &data[1..];
            }
            if self.header.len() < 2 {
                break;
            }
            let extra = match self.header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            } + if self.header[1] & 0x80 != 0 { 4 } else { 0 };
            let need = 2 + extra - self.header.len();
            let take = need.min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take < need {
                break;
            }
            let h = std::mem::take(&mut self.header);
            self.fin = h[0] & 0x80 != 0;
            self.opcode = h[0] & 0x0f;
            self.skip = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => u64::from(n),
            };
            self.header = h;
            self.header.clear();
            if self.skip == 0 {
                messages += self.finish(pong, on_message)?;
            }
        }
        Ok(messages)
    }

    fn finish(
        &mut self,
        pong: &mut Option<Vec<u8>>,
        on_message: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, u16> {
        match self.opcode {
            0..=2 => {
                if !self.fin {
                    return Ok(0);
                }
                on_message(&self.data);
                self.data.clear();
                Ok(1)
            }
            8 => {
                let code = match self.control.as_slice() {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1005,
                };
                Err(code)
            }
            9 => {
                *pong = Some(std::mem::take(&mut self.control));
                Ok(0)
            }
            _ => {
                self.control.clear();
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        f.extend(crate::text_frame_header(payload.len()).into_iter().skip(1));
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_messages_fed_byte_by_byte() {
        let mut stream = Vec::new();
        for len in [0, 5, 125, 126, 300, 70_000] {
            stream.extend(frame(1, &vec![b'a'; len]));
        }
        stream.extend(frame(9, b"hi"));
        let mut parser = Parser::default();
        let mut pong = None;
        let mut total = 0;
        for byte in &stream {
            total += parser
                .feed(std::slice::from_ref(byte), &mut pong, &mut |_| {})
                .unwrap();
        }
        assert_eq!(total, 6);
        assert_eq!(pong.as_deref(), Some(&b"hi"[..]));
        let mut pong = None;
        assert_eq!(
            Parser::default().feed(&stream, &mut pong, &mut |_| {}),
            Ok(6)
        );
        let close = frame(8, &1008u16.to_be_bytes());
        assert_eq!(
            Parser::default().feed(&close, &mut pong, &mut |_| {}),
            Err(1008)
        );
    }

    #[test]
    fn capturing_hands_over_whole_payloads() {
        let mut stream = frame(1, b"first");
        stream.extend(frame(1, &vec![b'b'; 300]));
        let mut parser = Parser::capturing();
        let mut seen = Vec::new();
        for chunk in stream.chunks(7) {
            parser
                .feed(chunk, &mut None, &mut |p| seen.push(p.to_vec()))
                .unwrap();
        }
        assert_eq!(seen, [b"first".to_vec(), vec![b'b'; 300]]);
    }

    #[test]
    fn masked_frames_have_the_right_lengths() {
        assert_eq!(
            masked_frame(TEXT, b"ab"),
            [0x81, 0x82, 0, 0, 0, 0, b'a', b'b']
        );
        let long = masked_frame(TEXT, &[0; 300]);
        assert_eq!(&long[..4], [0x81, 0xFE, 1, 44]);
        assert_eq!(long.len(), 4 + 4 + 300);
    }
}
