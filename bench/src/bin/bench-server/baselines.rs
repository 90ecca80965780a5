//! The two baselines of issue 6, serving the same scenarios as wshub.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wshub_bench::{MAX_BATCH, QUEUE, WRITE_BUFFER};

use crate::registry::{Place, Registry};

/// Text messages up to this size are echoed (scenario 6's round trips, the upload marker);
/// larger ones are read and dropped (the upload itself).
const ECHO_UP_TO: usize = 1024;

/// Baseline (a): one task per socket reads it and writes its queue in batches.
pub async fn tungstenite_socket(
    stream: TcpStream,
    registry: Arc<Registry<Utf8Bytes>>,
    read_buffer: usize,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(WRITE_BUFFER);
    let mut place = Place::default();
    // The callback's type is tungstenite's; its error variant is a whole response.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        place = Place::from_query(request.uri().query());
        Ok(response)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let (frames, mut queue) = mpsc::channel(QUEUE);
    let id = registry.insert(frames, &place);
    loop {
        tokio::select! {
            biased;
            Some(first) = queue.recv() => {
                let written = async {
                    ws.feed(Message::Text(first)).await?;
                    for _ in 1..MAX_BATCH {
                        match queue.try_recv() {
                            Ok(frame) => ws.feed(Message::Text(frame)).await?,
                            Err(_) => break,
                        }
                    }
                    ws.flush().await
                };
                if written.await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) if text.len() <= ECHO_UP_TO => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    registry.remove(id, &place);
}

/// Baseline (b): a minimal handshake, then pre-encoded frames straight to the socket.
pub async fn raw_socket(mut stream: TcpStream, registry: Arc<Registry<Bytes>>) {
    let Some(key) = read_handshake(&mut stream).await else {
        return;
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let (frames, mut queue) = mpsc::channel::<Bytes>(QUEUE);
    let id = registry.insert(frames, &Place::default());
    loop {
        tokio::select! {
            biased;
            Some(first) = queue.recv() => {
                let written = match queue.try_recv() {
                    Err(_) => stream.write_all(&first).await,
                    Ok(second) => {
                        let mut batch = Vec::with_capacity(first.len() * 8);
                        batch.extend_from_slice(&first);
                        batch.extend_from_slice(&second);
                        for _ in 2..MAX_BATCH {
                            match queue.try_recv() {
                                Ok(frame) => batch.extend_from_slice(&frame),
                                Err(_) => break,
                            }
                        }
                        stream.write_all(&batch).await
                    }
                };
                if written.is_err() {
                    break;
                }
            }
            readable = stream.readable() => {
                if readable.is_err() {
                    break;
                }
                // Client frames (pongs, close) are not looked at; end of stream ends the socket.
                let mut discard = [0u8; 256];
                match stream.try_read(&mut discard) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        }
    }
    registry.remove(id, &Place::default());
}

/// Reads an upgrade request's head; returns its `Sec-WebSocket-Key`.
async fn read_handshake(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() > 8192 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8(head).ok()?;
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    })
}
