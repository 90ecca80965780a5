//! One socket's task: the only code that reads or writes it. It reads client envelopes, writes
//! what is queued for it in batches, pings, enforces the idle timeout, the size and rate limits,
//! and closes with the codes of PROTOCOL.md §6.
//!
//! One task per socket, not a reader and a writer: half the tasks, and a write that blocks on a
//! client that does not read also stops reading from it, which is the backpressure we want.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::config::{Callback, RateLimit, Relay};
use crate::envelope::Envelope;
use crate::forward::Outcome;
use crate::handshake::Link;
use crate::hub::{Hub, Outbox, Pace, Permit};
use crate::id::ConnectionId;
use crate::identity::Identity;
use crate::inbound;
use crate::info::ConnectionInfo;
use crate::lazy_io::LazyIo;
use crate::mailbox::{Delivery, Mailbox};
use crate::pipeline::{Forwarder, Pipeline, Work};

pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
pub(crate) const CLOSE_SLOW_CONSUMER: u16 = 1008;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_INVALID_UTF8: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_INTERNAL: u16 = 1011;

/// Queued frames written per flush; bounds how long the task goes without reading.
const MAX_BATCH: usize = 64;
/// How long a closing handshake may take before the TCP connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Refusals in a row after which a rate-limited client is taken as abusive and closed.
const RATE_STRIKES: u32 = 20;
/// The read buffer tungstenite allocates (and zero-fills) for every socket, idle or not. Kept
/// small: reads go through [`LazyIo`], which brings larger reads while data keeps arriving.
const READ_BUFFER: usize = 256;

/// Runs one upgraded socket until it closes, then finishes its forwards. `permit` holds its
/// place under the connection limit until then.
pub(crate) async fn serve<S>(hub: Hub, io: S, identity: Identity, link: Link, permit: Permit)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = hub.config();
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Frames go straight to `LazyIo`, which gathers them until the flush and then frees
        // its buffer; tungstenite's own would keep its largest size for good.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let mut ws =
        WebSocketStream::from_raw_socket(LazyIo::new(io), Role::Server, Some(ws_config)).await;

    let Some(id) = ConnectionId::random() else {
        tracing::error!("no random bytes for a connection id");
        close(&mut ws, CLOSE_INTERNAL).await;
        return;
    };
    let mailbox = Arc::new(Mailbox::new(config.outbound_queue));
    let outbox = Outbox(Arc::clone(&mailbox));
    let about = Connected {
        connection_id: id.to_string(),
        user_id: identity.user_id.clone(),
        group_id: identity.group_id().to_owned(),
    };
    // Queued before the socket is visible to routing, so it is the first thing the client reads.
    outbox.offer(Envelope::system("__connected", &about).to_frame());
    let own = outbox.clone();
    let Some(registration) = hub.register(id, &identity, outbox) else {
        close(&mut ws, CLOSE_GOING_AWAY).await;
        return;
    };
    tracing::debug!(%id, user = %identity.user_id, groups = ?identity.groups, "socket open");
    let info = ConnectionInfo::new(id, identity.user_id.clone(), identity.groups.clone());
    if let Some(Callback(on_connect)) = &config.on_connect {
        on_connect(&info);
    }
    // Fires however this task ends, even if it is dropped.
    let disconnected = Disconnected {
        hub: hub.clone(),
        info,
    };

    let events = config
        .forwarding
        .as_ref()
        .is_some_and(|f| f.connection_events);
    let forwarder = link.call.map(|call| Forwarder {
        call,
        copied: link.copied,
    });
    let mut session = Session {
        rate: config.rate_limit.map(TokenBucket::new),
        pipeline: Pipeline::new(id, identity.clone(), forwarder),
        hub: hub.clone(),
        identity,
        own,
        ping_interval: config.ping_interval,
        idle_timeout: config.idle_timeout,
        pace: Pace::default(),
    };
    if events {
        session.event("__connect", &about);
    }
    let code = session.run(&mut ws, &mailbox).await;
    // Out of routing before the closing handshake, which may take a while.
    drop(registration);
    if let Some(code) = code {
        close(&mut ws, code).await;
    }
    tracing::debug!(%id, ?code, "socket closed");
    // Whatever tungstenite wrote last (its answer to the client's close frame) leaves before the
    // TCP connection ends; the forwards still in line do not need it.
    let _ = timeout(CLOSE_GRACE, ws.get_mut().flush()).await;
    drop(ws);
    session.finish().await;
    if events {
        session.event("__disconnect", &about);
        session.finish().await;
    }
    // Before the permit: shutdown waits for the permits, and so for the callback.
    drop(disconnected);
    drop(permit);
}

/// Calls the application's disconnect callback when dropped.
struct Disconnected {
    hub: Hub,
    info: ConnectionInfo,
}

impl Drop for Disconnected {
    fn drop(&mut self) {
        if let Some(Callback(on_disconnect)) = &self.hub.config().on_disconnect {
            on_disconnect(&self.info);
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connected {
    connection_id: String,
    user_id: String,
    group_id: String,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    code: &'a str,
    detail: &'a str,
}

struct Session {
    hub: Hub,
    identity: Identity,
    /// The connection's own queue, for `__error` envelopes: they wait behind what is queued
    /// already, so a client sees events in the order they happened.
    own: Outbox,
    rate: Option<TokenBucket>,
    pipeline: Pipeline,
    pace: Pace,
    ping_interval: Duration,
    idle_timeout: Duration,
}

/// What the read loop decided: keep going, or close with a code (`None`: the socket is gone).
enum Next {
    Continue,
    Close(Option<u16>),
}

impl Session {
    /// Serves the socket; returns the close code to send, or `None` when it is already closed.
    async fn run<S>(&mut self, ws: &mut WebSocketStream<S>, mailbox: &Mailbox) -> Option<u16>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Whatever was put in line before the socket was read (`__connect`).
        self.pipeline.advance(&self.hub, &mut self.pace).await;
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + self.ping_interval;
        let timer = sleep_until(next_ping.min(last_heard + self.idle_timeout));
        tokio::pin!(timer);
        loop {
            // A client with a full line of envelopes waits, unread: TCP backpressure.
            let reading = !self.pipeline.is_full(&self.hub);
            tokio::select! {
                // Closing first: a queue that never empties must not keep a socket open.
                biased;
                delivery = mailbox.next() => {
                    let first = match delivery {
                        Delivery::Close(code) => return Some(code),
                        Delivery::Frame(frame) => frame,
                    };
                    let written = tokio::select! {
                        // The write first: one that finishes at once (the usual case) never
                        // touches the close signal, and a close asked for meanwhile is the next
                        // thing `mailbox.next()` returns. One that blocks on a client that does
                        // not read is cut short by a close request.
                        biased;
                        r = timeout(self.idle_timeout, write_batch(ws, mailbox, first)) => r,
                        code = mailbox.closing() => return Some(code),
                    };
                    match written {
                        Ok(Ok(())) => {}
                        // A write that cannot finish in the idle timeout: the client is gone.
                        Ok(Err(_)) | Err(_) => return None,
                    }
                }
                (outcome, report) = self.pipeline.answered() => {
                    self.on_outcome(outcome, report).await;
                    self.pipeline.advance(&self.hub, &mut self.pace).await;
                }
                incoming = ws.next(), if reading => {
                    last_heard = Instant::now();
                    match self.on_incoming(incoming) {
                        Next::Continue => {}
                        Next::Close(code) => return code,
                    }
                    self.pipeline.advance(&self.hub, &mut self.pace).await;
                    self.pace.tick().await;
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if !reading {
                        // The hub is the one not reading: its silence is not the client's.
                        last_heard = now;
                    }
                    if now >= last_heard + self.idle_timeout {
                        return Some(CLOSE_GOING_AWAY);
                    }
                    if now >= next_ping {
                        next_ping = now + self.ping_interval;
                        let ping = ws.send(Message::Ping(Default::default()));
                        match timeout(self.idle_timeout, ping).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) | Err(_) => return None,
                        }
                    }
                    // Re-armed only here, not per message: hearing from the client only moves
                    // the idle deadline later, so a timer that fires early just re-arms.
                    timer.as_mut().reset(next_ping.min(last_heard + self.idle_timeout));
                }
            }
        }
    }

    fn on_incoming(&mut self, incoming: Option<Result<Message, WsError>>) -> Next {
        match incoming {
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Binary(_))) => Next::Close(Some(CLOSE_UNSUPPORTED_DATA)),
            // Tungstenite answers pings and close frames itself; a pong only proves liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Next::Continue,
            Some(Ok(Message::Close(_))) => Next::Continue,
            Some(Err(WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            ))) => Next::Close(Some(CLOSE_TOO_BIG)),
            Some(Err(WsError::Utf8(_))) => Next::Close(Some(CLOSE_INVALID_UTF8)),
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "protocol error from client");
                Next::Close(Some(CLOSE_PROTOCOL_ERROR))
            }
            Some(Err(_)) | None => Next::Close(None),
        }
    }

    fn on_text(&mut self, text: &str) -> Next {
        if let Some(bucket) = &mut self.rate {
            match bucket.take() {
                Ok(()) => {}
                Err(strikes) if strikes >= RATE_STRIKES => return Next::Close(Some(CLOSE_POLICY)),
                Err(_) => {
                    self.error("rate_limited", "too many messages; slow down");
                    return Next::Continue;
                }
            }
        }
        let fields = self.hub.config().fields;
        let envelope = match inbound::admit(text.as_bytes(), fields, &self.identity) {
            Ok(envelope) => envelope,
            Err(rejection) => {
                self.error(rejection.code, &rejection.detail);
                return Next::Continue;
            }
        };
        let work = if self.pipeline.forwards(&self.hub, &envelope.action) {
            Work::Forward {
                envelope,
                report: true,
            }
        } else {
            let refused = match &self.hub.config().relay {
                Relay::Allow => None,
                Relay::ForwardOnly => Some("clients may not relay this action".to_owned()),
                Relay::Filter(filter) => filter(&envelope).err(),
            };
            if let Some(reason) = refused {
                self.error("forbidden", &reason);
                return Next::Continue;
            }
            Work::Relay(envelope)
        };
        self.pipeline.push(work);
        Next::Continue
    }

    /// Forwards a connection event (`__connect`, `__disconnect`) in line with the messages.
    fn event(&mut self, action: &str, about: &Connected) {
        let envelope = Envelope::system(action, about)
            .from_user(self.identity.user_id.clone())
            .from_group(self.identity.group_id().to_owned());
        let work = Work::Forward {
            envelope,
            report: false,
        };
        self.pipeline.push(work);
    }

    /// Routes what the application answered, or tells the client why it failed.
    async fn on_outcome(&mut self, outcome: Outcome, report: bool) {
        match outcome {
            Outcome::Route(envelopes) => {
                for envelope in &envelopes {
                    self.hub.send(envelope);
                    self.pace.tick().await;
                }
            }
            Outcome::Nothing => {}
            Outcome::Failed { code, detail } if report => self.error(code, &detail),
            Outcome::Failed { code, detail } => {
                tracing::warn!(code, detail, "a connection event was not handled")
            }
        }
    }

    /// Handles everything still in line after the socket has closed: forwards may have effects
    /// on others, and their answers still reach other connections.
    async fn finish(&mut self) {
        self.pipeline.advance(&self.hub, &mut self.pace).await;
        while !self.pipeline.is_idle() {
            let (outcome, report) = self.pipeline.answered().await;
            self.on_outcome(outcome, report).await;
            self.pipeline.advance(&self.hub, &mut self.pace).await;
        }
    }

    fn error(&self, code: &str, detail: &str) {
        let envelope = Envelope::system("__error", &ErrorMessage { code, detail });
        self.own.offer(envelope.to_frame());
    }
}

/// Writes `first` and whatever else is queued (up to a batch), then flushes once.
async fn write_batch<S>(
    ws: &mut WebSocketStream<S>,
    mailbox: &Mailbox,
    first: Utf8Bytes,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.feed(Message::Text(first)).await?;
    for _ in 1..MAX_BATCH {
        match mailbox.try_frame() {
            Some(frame) => ws.feed(Message::Text(frame)).await?,
            None => break,
        }
    }
    ws.flush().await
}

/// Sends a close frame and waits, briefly, for the client's answer, so the client reads the code
/// instead of a reset.
async fn close<S>(ws: &mut WebSocketStream<S>, code: u16)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(close_reason(code)),
    };
    let handshake = async {
        ws.close(Some(frame)).await.ok()?;
        while let Some(Ok(_)) = ws.next().await {}
        Some(())
    };
    let _ = timeout(CLOSE_GRACE, handshake).await;
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_GOING_AWAY => "going away",
        CLOSE_PROTOCOL_ERROR => "protocol error",
        CLOSE_UNSUPPORTED_DATA => "binary frames are not supported",
        CLOSE_INVALID_UTF8 => "invalid UTF-8",
        CLOSE_POLICY => "policy violation",
        CLOSE_TOO_BIG => "message too big",
        _ => "",
    }
}

/// A token bucket; counts refusals in a row so that sustained abuse can be told from a burst.
struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
    strikes: u32,
}

impl TokenBucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: limit.burst,
            refilled: Instant::now(),
            strikes: 0,
        }
    }

    fn take(&mut self) -> Result<(), u32> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.limit.per_second;
        self.tokens = (self.tokens + earned).min(self.limit.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            Ok(())
        } else {
            self.strikes += 1;
            Err(self.strikes)
        }
    }
}
