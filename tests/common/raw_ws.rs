//! A WebSocket client written frame by frame over a plain TCP stream, for what a library client
//! hides: a client that stops reading, a frame sent in pieces, a close frame told apart from a
//! connection cut mid-frame, and an exact count of what arrives.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::within;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// One frame from the server.
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("a text frame is UTF-8")
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// How a server's stream of frames ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A close frame with this code, after whole frames only.
    Close(Option<u16>),
    /// The connection ended between frames without a close frame.
    Eof,
    /// The connection ended in the middle of a frame.
    CutMidFrame,
}

pub struct RawWs {
    stream: BufReader<TcpStream>,
}

impl RawWs {
    /// Opens `/ws<query>` and reads the `101`. `receive_buffer` shrinks the socket's receive
    /// buffer, so that a client that stops reading fills the kernel's buffers quickly.
    pub async fn connect(addr: SocketAddr, query: &str, receive_buffer: Option<u32>) -> Self {
        within("a raw WebSocket handshake", async {
            let socket = TcpSocket::new_v4().expect("socket");
            if let Some(size) = receive_buffer {
                socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
            }
            let mut stream = socket.connect(addr).await.expect("connect");
            let request = format!(
                "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("write");
            // Byte by byte, so that nothing after the head is read: the frames are the reader's.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let byte = stream.read_u8().await.expect("read the response head");
                head.push(byte);
            }
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 101"), "not a 101: {head}");
            Self {
                stream: BufReader::new(stream),
            }
        })
        .await
    }

    /// The next frame, or how the stream ended if it did.
    pub async fn read_frame(&mut self) -> Result<RawFrame, End> {
        let mut head = [0u8; 2];
        match self.stream.read(&mut head[..1]).await {
            Ok(0) | Err(_) => return Err(End::Eof),
            Ok(_) => {}
        }
        let cut = |_| End::CutMidFrame;
        self.stream.read_exact(&mut head[1..]).await.map_err(cut)?;
        let len = match head[1] & 0x7F {
            126 => u64::from(self.stream.read_u16().await.map_err(cut)?),
            127 => self.stream.read_u64().await.map_err(cut)?,
            n => u64::from(n),
        };
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let mut payload = vec![0; usize::try_from(len).expect("fits")];
        self.stream.read_exact(&mut payload).await.map_err(cut)?;
        Ok(RawFrame {
            opcode: head[0] & 0x0F,
            payload,
        })
    }

    /// The next frame, which must come within the test's wait.
    pub async fn frame(&mut self) -> RawFrame {
        match within("a frame", self.read_frame()).await {
            Ok(frame) => frame,
            Err(end) => panic!("the stream ended ({end:?}) while a frame was expected"),
        }
    }

    /// The next text frame, skipping pings.
    pub async fn text(&mut self) -> String {
        loop {
            let frame = self.frame().await;
            match frame.opcode {
                OP_TEXT => return frame.text().to_owned(),
                OP_PING => continue,
                other => panic!("expected a text frame, got opcode {other}: {frame:?}"),
            }
        }
    }

    /// Reads until the stream ends, calling `each` with every text frame, and says how it ended.
    pub async fn read_to_end(&mut self, mut each: impl FnMut(&str)) -> End {
        within("the stream to end", async {
            loop {
                match self.read_frame().await {
                    Ok(frame) if frame.opcode == OP_CLOSE => return End::Close(frame.close_code()),
                    Ok(frame) if frame.opcode == OP_TEXT => each(frame.text()),
                    Ok(_) => {}
                    Err(end) => return end,
                }
            }
        })
        .await
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = masked_frame(fin, opcode, payload);
        let write = self.stream.get_mut().write_all(&frame);
        within("sending a frame", write).await.expect("write");
    }

    /// Sends raw bytes (a frame in pieces, or garbage).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let write = self.stream.get_mut().write_all(bytes);
        within("sending bytes", write).await.expect("write");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes()).await;
    }
}

/// A client frame: masked, as RFC 6455 §5.3 requires.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
