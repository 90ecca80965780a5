//! A WebSocket client for the application's own tests (feature `testing`): connect to the real
//! app on 127.0.0.1, send envelopes, ask requests, and expect what comes back, every wait bounded
//! by the client's timeout (docs/testing.md).
//!
//! ```
//! use tower::Layer;
//! use wshub::testing::TestClient;
//! use wshub::{Envelope, Recipient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = wshub::Hub::builder().build();
//! let app = hub.layer("/ws").layer(axum::Router::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/ws", listener.local_addr()?);
//! tokio::spawn(async move { wshub::serve(listener, app).await });
//!
//! let mut ann = TestClient::connect(&format!("{url}?userId=ann&groupId=room-1")).await?;
//! let mut bob = TestClient::connect(&format!("{url}?userId=bob&groupId=room-1")).await?;
//! let hello = Envelope::new("chat").with_message(&"hello").to(Recipient::group("room-1"));
//! ann.send(&hello).await?;
//! let line = bob.expect("chat").await?;
//! assert_eq!((line.user_id.as_str(), line.message.get()), ("ann", r#""hello""#));
//! # Ok(())
//! # }
//! ```
//!
//! **Expectations are strict, in order.** [`expect`](TestClient::expect) takes the *next*
//! envelope and fails, naming it, when its action is another: a test sees every envelope its
//! client got, so an unexpected one is a failure rather than something silently skipped. To
//! prove that something did *not* arrive, send the client a marker envelope afterwards and
//! expect the marker: the hub delivers to each connection in order. A
//! [`request`](TestClient::request) keeps the envelopes that arrive before its answer, in order,
//! for the next `expect` calls.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::envelope::{Envelope, FieldLimits};
use crate::id::ConnectionId;

/// Long enough for a loaded CI machine, short enough that a test waiting for something that
/// never comes fails in seconds rather than hanging.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The code reported for a close frame without a code (RFC 6455 §7.1.5), as browsers do.
const NO_STATUS: u16 = 1005;

/// The code reported for a socket that ended without a close frame (RFC 6455 §7.1.5), as
/// browsers do.
const ABNORMAL: u16 = 1006;

/// How much of an unexpected envelope an error shows: enough to recognise it, not a 64 KiB
/// message in a test failure.
const SHOWN: usize = 1000;

/// A WebSocket client of the hub for tests: it connects, reads the `__connected` envelope, and
/// then sends and expects envelopes, each wait bounded by its [timeout](Self::set_timeout)
/// (5 s unless set).
///
/// See [the module documentation](self) for a whole example, and docs/testing.md.
pub struct TestClient {
    socket: Socket,
    connection_id: ConnectionId,
    user_id: String,
    group_id: String,
    timeout: Duration,
    requests: u64,
}

/// Options for [`TestClient::builder`]: headers on the upgrade request and the timeout.
///
/// ```no_run
/// # async fn run() -> Result<(), wshub::testing::TestError> {
/// use std::time::Duration;
/// use wshub::testing::TestClient;
///
/// let client = TestClient::builder("ws://127.0.0.1:3000/ws")
///     .header("cookie", "session=s-123")
///     .header("origin", "http://127.0.0.1:3000")
///     .timeout(Duration::from_secs(2))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder connects nothing until `connect` is awaited"]
pub struct TestClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

/// What went wrong in a [`TestClient`]: its `Display` says so in words a test failure can show,
/// with what the client was doing.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestError {
    /// The URL or a header could not make an upgrade request (only `ws://` URLs: no TLS).
    InvalidRequest(String),
    /// The server answered the upgrade with something other than `101`: an identity resolver's
    /// `401`, a `403` for the origin, a `503` at the connection limit.
    UpgradeRefused {
        /// The status.
        status: StatusCode,
        /// The response's headers (`WWW-Authenticate`, `Retry-After`).
        headers: Box<HeaderMap>,
        /// The response's body, as text.
        body: String,
    },
    /// Nothing came (or a send did not finish) within the client's timeout.
    Timeout {
        /// What the client was doing, e.g. "waiting for an envelope with action `chat`".
        during: String,
        /// The timeout.
        after: Duration,
    },
    /// The next envelope was not the one expected.
    Unexpected {
        /// What the client was waiting for.
        during: String,
        /// The envelope that came instead.
        got: Box<Envelope>,
    },
    /// A request was answered with an `__error` (docs/protocol.md §4.1, §6).
    RequestFailed {
        /// The request's action.
        action: String,
        /// The error's code, e.g. `forbidden` for a `Reply::refuse`.
        code: String,
        /// The error's detail, e.g. the reason given to `Reply::refuse`.
        detail: String,
    },
    /// The socket was closed, by a close frame or by the connection ending (code `1006`).
    Closed {
        /// What the client was doing.
        during: String,
        /// The close code: the frame's, `1005` for a frame without one, `1006` for none.
        code: u16,
        /// The close frame's reason.
        reason: String,
    },
    /// The server sent something that is not an envelope (a binary frame, text that does not
    /// parse), or a hub envelope without its fields.
    Malformed {
        /// What the client was doing.
        during: String,
        /// What came, and what is wrong with it.
        what: String,
    },
    /// The connection failed (an I/O or WebSocket protocol error).
    Socket {
        /// What the client was doing.
        during: String,
        /// The error.
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(why) => write!(f, "cannot make the upgrade request: {why}"),
            Self::UpgradeRefused { status, body, .. } => {
                write!(f, "the upgrade was refused with {status}")?;
                match body.trim() {
                    "" => Ok(()),
                    body => write!(f, ": {}", shorten(body)),
                }
            }
            Self::Timeout { during, after } => write!(f, "timed out after {after:?} {during}"),
            Self::Unexpected { during, got } => {
                write!(f, "{during}, got {}", shorten(&got.to_json()))
            }
            Self::RequestFailed {
                action,
                code,
                detail,
            } => write!(
                f,
                "the request `{action}` was answered with __error `{code}`: {detail}"
            ),
            Self::Closed {
                during,
                code,
                reason,
            } => {
                write!(f, "the socket was closed with {code}")?;
                if !reason.is_empty() {
                    write!(f, " ({reason:?})")?;
                }
                write!(f, " while {during}")
            }
            Self::Malformed { during, what } => write!(f, "{during}: the server sent {what}"),
            Self::Socket { during, source } => write!(f, "socket error while {during}: {source}"),
        }
    }
}

impl StdError for TestError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Socket { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl TestClient {
    /// Connects to `url` (`ws://host:port/path?userId=…&groupId=…`) and reads the `__connected`
    /// envelope, within the default timeout of 5 s.
    ///
    /// A refused upgrade is [`TestError::UpgradeRefused`] with the status and body; an upgrade
    /// accepted and then closed at once (an identity resolver refusing a browser, which sends
    /// `Origin`: docs/protocol.md §3) is [`TestError::Closed`] with the code.
    pub async fn connect(url: &str) -> Result<Self, TestError> {
        Self::builder(url).connect().await
    }

    /// A client for `url` with headers on its upgrade request or another timeout.
    pub fn builder(url: &str) -> TestClientBuilder {
        TestClientBuilder {
            url: url.to_owned(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The connection id the hub announced in `__connected`: what `Hub::disconnect` and
    /// `Recipient::connection` take.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection_id
    }

    /// The user id the hub announced in `__connected` (`""` when anonymous).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The group id the hub announced in `__connected` (`""` for the default group).
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// How long each later send, `request` or `expect…` may take. A short one (a few hundred
    /// milliseconds) suits a wait that is meant to time out.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `envelope` as one text frame, its `requestId` included if it has one.
    pub async fn send(&mut self, envelope: &Envelope) -> Result<(), TestError> {
        self.send_text(&envelope.to_json()).await
    }

    /// Sends `value` (an envelope written with `serde_json::json!`, or anything else) as one
    /// text frame.
    pub async fn send_json(&mut self, value: &Value) -> Result<(), TestError> {
        self.send_text(&value.to_string()).await
    }

    /// Sends `text` as one text frame, as it is: for what a well-behaved client would not send.
    pub async fn send_text(&mut self, text: &str) -> Result<(), TestError> {
        let deadline = Instant::now() + self.timeout;
        self.socket
            .send(Message::text(text), "sending a text frame", deadline)
            .await
    }

    /// Sends `message` with `action` and a fresh `requestId`, and waits for its answer
    /// (docs/protocol.md §4.1): the `__reply`'s message, or [`TestError::RequestFailed`] for an
    /// `__error`.
    ///
    /// Envelopes that arrive before the answer are kept, in order, for the next `expect` calls.
    /// The envelope has no recipients: a relayed request goes to the default group (use
    /// [`request_envelope`](Self::request_envelope) to address it).
    ///
    /// ```no_run
    /// # async fn run(client: &mut wshub::testing::TestClient) -> Result<(), wshub::testing::TestError> {
    /// use serde_json::json;
    /// use wshub::testing::TestError;
    ///
    /// assert_eq!(client.request("ask", &"hello").await?, json!({ "heard": "hello" }));
    /// match client.request("ask", &"no").await {
    ///     Err(TestError::RequestFailed { code, detail, .. }) => {
    ///         assert_eq!((code.as_str(), detail.as_str()), ("forbidden", "not allowed"));
    ///     }
    ///     other => panic!("expected a refusal, got {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request<T: Serialize + ?Sized>(
        &mut self,
        action: &str,
        message: &T,
    ) -> Result<Value, TestError> {
        self.request_envelope(Envelope::new(action).with_message(message))
            .await
    }

    /// Like [`request`](Self::request), for an envelope of the caller's (with recipients); its
    /// `requestId` is replaced by a fresh one.
    pub async fn request_envelope(&mut self, mut envelope: Envelope) -> Result<Value, TestError> {
        self.requests += 1;
        let id = format!("wshub-test-{}", self.requests);
        envelope.request_id = Some(id.clone());
        let action = envelope.action.clone();
        let during = format!("waiting for the answer to the request `{action}` ({id})");
        let deadline = Instant::now() + self.timeout;
        self.socket
            .send(
                Message::text(envelope.to_json()),
                "sending a request",
                deadline,
            )
            .await?;
        loop {
            let got = self.socket.read(&during, deadline, self.timeout).await?;
            if got.request_id.as_deref() != Some(id.as_str()) {
                self.socket.buffer.push_back(got);
                continue;
            }
            match got.action.as_str() {
                "__reply" => {
                    return serde_json::from_str(got.message.get()).map_err(|e| {
                        TestError::Malformed {
                            during,
                            what: format!("a `__reply` whose message is not JSON ({e})"),
                        }
                    });
                }
                "__error" => {
                    let (code, detail) = error_of(&got, &during)?;
                    return Err(TestError::RequestFailed {
                        action,
                        code,
                        detail,
                    });
                }
                // Not an answer, whatever id it carries: the application's to see.
                _ => self.socket.buffer.push_back(got),
            }
        }
    }

    /// The next envelope, which must have `action`; otherwise [`TestError::Unexpected`] with
    /// the one that came (it is consumed), or [`TestError::Timeout`] when none came in time.
    pub async fn expect(&mut self, action: &str) -> Result<Envelope, TestError> {
        let during = format!("waiting for an envelope with action `{action}`");
        let got = self.next(&during).await?;
        if got.action == action {
            Ok(got)
        } else {
            Err(TestError::Unexpected {
                during,
                got: Box::new(got),
            })
        }
    }

    /// The next envelope, whatever its action.
    pub async fn expect_any(&mut self) -> Result<Envelope, TestError> {
        self.next("waiting for an envelope").await
    }

    /// The next envelope, which must be an `__error` with `code` (docs/protocol.md §6); returns
    /// its detail.
    pub async fn expect_error(&mut self, code: &str) -> Result<String, TestError> {
        let during = format!("waiting for an `__error` with code `{code}`");
        let got = self.next(&during).await?;
        if got.action == "__error" {
            let (got_code, detail) = error_of(&got, &during)?;
            if got_code == code {
                return Ok(detail);
            }
        }
        Err(TestError::Unexpected {
            during,
            got: Box::new(got),
        })
    }

    /// Waits for the server to close the socket and returns the close code and reason (`1006`
    /// and `""` when the connection ended without a close frame, as a browser reports it).
    /// An envelope that comes first is [`TestError::Unexpected`]: expect it before.
    pub async fn expect_close(&mut self) -> Result<(u16, String), TestError> {
        let during = "waiting for the server to close the socket";
        match self.next(during).await {
            Ok(got) => Err(TestError::Unexpected {
                during: during.to_owned(),
                got: Box::new(got),
            }),
            Err(TestError::Closed { code, reason, .. }) => Ok((code, reason)),
            Err(e) => Err(e),
        }
    }

    /// Closes the socket with `1000` and waits, within the timeout, for the server's close frame.
    /// Envelopes not yet expected are dropped.
    pub async fn close(mut self) -> Result<(), TestError> {
        if self.socket.closed.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        let during = "closing the socket";
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        match self
            .socket
            .send(Message::Close(Some(frame)), during, deadline)
            .await
        {
            Ok(()) => {}
            // The server closed first: there is nothing left to close.
            Err(TestError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        // The server answers with its own close frame and then ends the connection; whatever
        // else comes meanwhile no longer matters.
        loop {
            match timeout_at(deadline, self.socket.ws.next()).await {
                Err(_) => {
                    return Err(TestError::Timeout {
                        during: format!("{during} (waiting for the server's close frame)"),
                        after: self.timeout,
                    })
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None | Some(Err(_))) => return Ok(()),
            }
        }
    }

    /// The oldest envelope kept by a request, or the next one from the socket.
    async fn next(&mut self, during: &str) -> Result<Envelope, TestError> {
        if let Some(kept) = self.socket.buffer.pop_front() {
            return Ok(kept);
        }
        let deadline = Instant::now() + self.timeout;
        self.socket.read(during, deadline, self.timeout).await
    }
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("connection_id", &self.connection_id)
            .field("user_id", &self.user_id)
            .field("group_id", &self.group_id)
            .field("timeout", &self.timeout)
            .field("kept", &self.socket.buffer.len())
            .field("closed", &self.socket.closed)
            .finish_non_exhaustive()
    }
}

impl TestClientBuilder {
    /// Adds a header to the upgrade request: `cookie` for an identity resolver, `authorization`,
    /// `origin` (which the hub checks). Repeating a name sends it twice.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long connecting, and then each send, `request` or `expect…`, may take. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and reads the `__connected` envelope; see [`TestClient::connect`].
    pub async fn connect(self) -> Result<TestClient, TestError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| TestError::InvalidRequest(format!("`{}`: {e}", self.url)))?;
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| TestError::InvalidRequest(format!("header name `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| TestError::InvalidRequest(format!("header `{name}`: {e}")))?;
            request.headers_mut().append(name, value);
        }

        let deadline = Instant::now() + self.timeout;
        let during = format!("connecting to {}", self.url);
        let ws = match timeout_at(deadline, tokio_tungstenite::connect_async(request)).await {
            Err(_) => {
                return Err(TestError::Timeout {
                    during,
                    after: self.timeout,
                })
            }
            Ok(Ok((ws, _))) => ws,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let (parts, body) = response.into_parts();
                return Err(TestError::UpgradeRefused {
                    status: parts.status,
                    headers: Box::new(parts.headers),
                    body: String::from_utf8_lossy(body.as_deref().unwrap_or_default()).into_owned(),
                });
            }
            Ok(Err(tungstenite::Error::Url(e))) => {
                return Err(TestError::InvalidRequest(format!("`{}`: {e}", self.url)))
            }
            Ok(Err(e)) => {
                return Err(TestError::Socket {
                    during,
                    source: Box::new(e),
                })
            }
        };

        let mut socket = Socket {
            ws,
            buffer: VecDeque::new(),
            closed: None,
        };
        let during = "waiting for `__connected`";
        let got = socket.read(during, deadline, self.timeout).await?;
        if got.action != "__connected" {
            return Err(TestError::Unexpected {
                during: during.to_owned(),
                got: Box::new(got),
            });
        }
        let connected: Connected = got.message_as().map_err(|e| TestError::Malformed {
            during: during.to_owned(),
            what: format!(
                "a `__connected` without its fields ({e}): {}",
                got.message.get()
            ),
        })?;
        Ok(TestClient {
            socket,
            connection_id: connected.connection_id,
            user_id: connected.user_id,
            group_id: connected.group_id,
            timeout: self.timeout,
            requests: 0,
        })
    }
}

/// The message of `__connected` (docs/protocol.md §3).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connected {
    connection_id: ConnectionId,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    group_id: String,
}

/// The message of `__error` (docs/protocol.md §6).
#[derive(Deserialize)]
struct ErrorMessage {
    code: String,
    #[serde(default)]
    detail: String,
}

fn error_of(envelope: &Envelope, during: &str) -> Result<(String, String), TestError> {
    let ErrorMessage { code, detail } =
        envelope.message_as().map_err(|e| TestError::Malformed {
            during: during.to_owned(),
            what: format!(
                "an `__error` without code and detail ({e}): {}",
                envelope.message.get()
            ),
        })?;
    Ok((code, detail))
}

/// The socket, the envelopes a request read past, and how the socket was closed, once it was.
struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buffer: VecDeque<Envelope>,
    closed: Option<(u16, String)>,
}

impl Socket {
    async fn send(
        &mut self,
        message: Message,
        during: &str,
        deadline: Instant,
    ) -> Result<(), TestError> {
        if let Some((code, reason)) = &self.closed {
            return Err(closed(during, *code, reason));
        }
        let after = deadline.saturating_duration_since(Instant::now());
        match timeout_at(deadline, self.ws.send(message)).await {
            Err(_) => Err(TestError::Timeout {
                during: during.to_owned(),
                after,
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                Err(closed(during, ABNORMAL, ""))
            }
            Ok(Err(tungstenite::Error::Io(e))) if ended(&e) => Err(closed(during, ABNORMAL, "")),
            Ok(Err(e)) => Err(TestError::Socket {
                during: during.to_owned(),
                source: Box::new(e),
            }),
        }
    }

    /// The next envelope from the socket (never from `buffer`), skipping pings and pongs.
    /// `timeout` is what the deadline was set from, for the error.
    async fn read(
        &mut self,
        during: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Envelope, TestError> {
        loop {
            if let Some((code, reason)) = &self.closed {
                return Err(closed(during, *code, reason));
            }
            // `next` on the stream is cancel-safe: a timeout loses no frame.
            let frame = match timeout_at(deadline, self.ws.next()).await {
                Err(_) => {
                    return Err(TestError::Timeout {
                        during: during.to_owned(),
                        after: timeout,
                    })
                }
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return parse(text.as_bytes()).map_err(|e| TestError::Malformed {
                        during: during.to_owned(),
                        what: format!("text that is not an envelope ({e}): {}", shorten(&text)),
                    });
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Err(TestError::Malformed {
                        during: during.to_owned(),
                        what: format!("a binary frame of {} bytes", bytes.len()),
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(match frame {
                        Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                        None => (NO_STATUS, String::new()),
                    });
                    // Sends the close frame tungstenite queued in answer, so the server sees a
                    // clean closing handshake; failing that changes nothing for the test.
                    let _ = timeout_at(deadline, self.ws.flush()).await;
                }
                None
                | Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                )) => {
                    self.closed.get_or_insert((ABNORMAL, String::new()));
                }
                Some(Err(tungstenite::Error::Io(e))) if ended(&e) => {
                    self.closed.get_or_insert((ABNORMAL, String::new()));
                }
                Some(Err(e)) => {
                    return Err(TestError::Socket {
                        during: during.to_owned(),
                        source: Box::new(e),
                    })
                }
            }
        }
    }
}

/// Whether an I/O error only says that the peer has gone.
fn ended(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

fn closed(during: &str, code: u16, reason: &str) -> TestError {
    TestError::Closed {
        during: during.to_owned(),
        code,
        reason: reason.to_owned(),
    }
}

/// Parses what the hub delivers. The hub checks its own limits, which the application may have
/// raised; the client takes whatever it was sent.
fn parse(text: &[u8]) -> Result<Envelope, crate::EnvelopeError> {
    let limits = FieldLimits {
        max_recipients: usize::MAX,
        max_id_len: usize::MAX,
    };
    Envelope::parse(text, limits)
}

/// `text`, cut at about [`SHOWN`] bytes.
fn shorten(text: &str) -> String {
    if text.len() <= SHOWN {
        return text.to_owned();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_happened_and_what_was_awaited() {
        let timeout = TestError::Timeout {
            during: "waiting for an envelope with action `chat`".to_owned(),
            after: Duration::from_millis(200),
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 200ms waiting for an envelope with action `chat`"
        );
        let closed = closed("waiting for `__connected`", 4401, "no valid session");
        assert_eq!(
            closed.to_string(),
            "the socket was closed with 4401 (\"no valid session\") while waiting for `__connected`"
        );
        let refused = TestError::UpgradeRefused {
            status: StatusCode::UNAUTHORIZED,
            headers: Box::default(),
            body: "no valid session\n".to_owned(),
        };
        assert_eq!(
            refused.to_string(),
            "the upgrade was refused with 401 Unauthorized: no valid session"
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        let text = "é".repeat(SHOWN);
        let short = shorten(&text);
        assert!(short.len() < SHOWN + 20, "{}", short.len());
        assert!(
            short.ends_with(&format!("… ({} bytes)", text.len())),
            "{short}"
        );
    }
}
