//! One whole socket session over an in-memory stream, for the `session` fuzz target: the client
//! sends whatever bytes the fuzzer gives, in pieces, while a second connection of the same group
//! listens. Everything the hub writes to either is checked to be well-formed frames, and both
//! sessions must end once the client has stopped. Run it on a current-thread runtime with paused
//! time, so that every timeout the session meets passes at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::connection;
use crate::connection::Link;
use crate::envelope::Envelope;
use crate::forward::RequestBody;
use crate::forward::{self, Forwarding};
use crate::hub::Hub;
use crate::identity::Identity;
use crate::info::ConnectionInfo;

/// How long, in the session's (paused) time, everything may take once the client has stopped;
/// a session still running then hangs.
const ENDS_WITHIN: Duration = Duration::from_secs(3600);

/// Runs the session: `input` is what the client sends after the handshake, written `piece` bytes
/// at a time (at least one). Panics on anything the hub writes that is not a well-formed frame,
/// and on a session that does not end.
pub async fn session(input: &[u8], piece: usize) {
    let hub = Hub::builder()
        .max_message_size(4096)
        .max_pending_bytes(16 * 1024)
        .max_buffered_bytes(64 * 1024)
        .stall_timeout(Duration::from_secs(2))
        .idle_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(1))
        .rate_limit(1000, 50)
        .forwarding(
            Forwarding::in_process("/forwarded")
                .actions(["fwd"])
                .timeout(Duration::from_secs(1)),
        )
        .build();
    let (mut client, fuzzed) = open(&hub, Identity::user("fuzz").in_group("g"));
    let (listener, listening) = open(&hub, Identity::user("listener").in_group("g"));
    let heard = tokio::spawn(read_frames(listener));

    let (mut from_hub, mut to_hub) = tokio::io::split(&mut client);
    let reading = read_frames_from(&mut from_hub);
    let writing = async {
        for chunk in input.chunks(piece.max(1)) {
            if to_hub.write_all(chunk).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = to_hub.shutdown().await;
    };
    tokio::join!(writing, reading);
    expect_end(fuzzed, "the fuzzed session").await;
    hub.shutdown().await;
    expect_end(listening, "the listening session").await;
    match tokio::time::timeout(ENDS_WITHIN, heard).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("the listener's stream did not end"),
    }
}

/// A connection of `identity` served by the hub over an in-memory stream; its client end.
fn open(hub: &Hub, identity: Identity) -> (DuplexStream, JoinHandle<()>) {
    let (server, client) = tokio::io::duplex(4096);
    let Ok(permit) = hub.reserve() else {
        panic!("two connections are under the limit");
    };
    let link = Link {
        call: Some(forward::in_process(Application, 1 << 20)),
        copied: HeaderMap::new(),
    };
    let task = tokio::spawn(connection::serve(
        hub.clone(),
        server,
        identity,
        link,
        permit,
    ));
    (client, task)
}

async fn expect_end(task: JoinHandle<()>, what: &str) {
    match tokio::time::timeout(ENDS_WITHIN, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("{what} did not end within {ENDS_WITHIN:?} of the client stopping"),
    }
}

async fn read_frames(mut stream: DuplexStream) {
    read_frames_from(&mut stream).await;
}

/// Reads what the hub writes until it ends, checking every frame: final, unmasked, a known
/// opcode, text that is a JSON envelope, a close frame last, and an end on a frame boundary.
async fn read_frames_from(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut closed = false;
    loop {
        let mut head = [0u8; 2];
        match stream.read(&mut head[..1]).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        assert!(!closed, "the hub wrote after its close frame");
        stream
            .read_exact(&mut head[1..])
            .await
            .expect("a frame's header is whole");
        assert_eq!(head[0] & 0xF0, 0x80, "final, no reserved bits: {head:02x?}");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7F {
            126 => u64::from(stream.read_u16().await.expect("a whole length")),
            127 => stream.read_u64().await.expect("a whole length"),
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).expect("a length that fits")];
        stream
            .read_exact(&mut payload)
            .await
            .expect("the hub ends its stream between frames");
        match head[0] & 0x0F {
            0x1 => {
                if let Err(e) = Envelope::from_json(&payload) {
                    panic!(
                        "the hub sent a text frame that is not an envelope ({e}): {}",
                        String::from_utf8_lossy(&payload)
                    );
                }
            }
            0x8 => {
                assert!(
                    payload.is_empty() || payload.len() >= 2,
                    "a close code is whole"
                );
                closed = true;
            }
            0x9 | 0xA => assert!(payload.len() <= 125),
            other => panic!("the hub sent opcode {other}"),
        }
    }
}

/// The application behind forwards: answers by the message, so that the fuzzer reaches every
/// kind of answer (docs/protocol.md §5).
#[derive(Debug, Clone, Copy)]
struct Application;

impl Service<Request<RequestBody<Empty<Bytes>>>> for Application {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody<Empty<Bytes>>>) -> Self::Future {
        Box::pin(async move {
            let sender = request.extensions().get::<ConnectionInfo>().cloned();
            let body = match request.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let Ok(envelope) = Envelope::from_json(&body) else {
                return Ok(answer(StatusCode::BAD_REQUEST, "not an envelope"));
            };
            Ok(match envelope.message.get() {
                r#""refuse""# => answer(StatusCode::FORBIDDEN, "refused"),
                r#""fail""# => answer(StatusCode::INTERNAL_SERVER_ERROR, ""),
                r#""garbage""# => answer(StatusCode::OK, "{not json"),
                r#""nothing""# => answer(StatusCode::NO_CONTENT, ""),
                r#""slow""# => {
                    // Past the forward timeout.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    answer(StatusCode::NO_CONTENT, "")
                }
                _ => {
                    // Back to the sender, and to everyone else its recipients named.
                    let mut reply = envelope.clone();
                    if let Some(sender) = sender {
                        reply = reply.to(crate::Recipient::connection(sender.connection_id));
                    }
                    let json = serde_json::to_string(&[reply, envelope]).unwrap_or_default();
                    answer(StatusCode::OK, &json)
                }
            })
        })
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}
