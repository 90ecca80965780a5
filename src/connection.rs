//! One socket's task: the only code that reads or writes it. It reads client envelopes, writes
//! what is queued for it, pings, enforces the idle timeout, the size and rate limits, and closes
//! with the codes of docs/protocol.md §6.
//!
//! One task per socket, not a reader and a writer: half the tasks, and a write that blocks on a
//! client that does not read also stops reading from it, which is the backpressure we want.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::answer::Answers;
use crate::closing::CloseReason;
use crate::config::{self, Callback, RateLimit, Relay};
use crate::envelope::Envelope;
use crate::forward::{Call, Outcome};
use crate::hub::{Hub, Permit};
use crate::id::ConnectionId;
use crate::identity::{CloseAtOnce, Identity};
use crate::inbound::{self, PING};
use crate::info::ConnectionInfo;
use crate::mailbox::Mailbox;
use crate::meters;
use crate::node::Outbox;
use crate::notice::{notice, Kind};
use crate::pace::Pace;
use crate::pipeline::{Asker, Forwarder, Pipeline, Work};
use crate::websocket::{close, Event, Frame, Inbound, Socket};

/// What a connection's task gets from its upgrade request besides the socket.
pub(crate) struct Link {
    /// How its forwards reach the application, when forwarding is configured.
    pub(crate) call: Option<Call>,
    /// The upgrade request's headers that every forward carries (cookie, authorization, …).
    pub(crate) copied: HeaderMap,
}

/// How long each step of a closing handshake may go without progress before the TCP connection
/// is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Refusals in a row after which a rate-limited client is taken as abusive and closed.
const RATE_STRIKES: u32 = 20;

/// Runs one upgraded socket until it closes, then finishes its forwards. `permit` holds its
/// place under the connection limit until then.
pub(crate) async fn serve<S>(hub: Hub, io: S, identity: Identity, link: Link, permit: Permit)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut socket = socket_of(&hub, io);
    let Some(id) = hub.new_connection_id() else {
        tracing::error!("no random bytes for a connection id");
        socket.close(close::INTERNAL, "", CLOSE_GRACE).await;
        return;
    };
    // Everything the socket does, its forwards and the application's handlers of them included,
    // is inside this span: one `RUST_LOG` filter shows a socket's life.
    let span = tracing::info_span!(
        "socket",
        connection = %id,
        user = %identity.user_id,
        closed = tracing::field::Empty,
    );
    serve_as(hub, socket, id, identity, link, permit)
        .instrument(span)
        .await;
}

/// [`serve`], once the connection has its id.
async fn serve_as<S>(
    hub: Hub,
    mut socket: Socket<S>,
    id: ConnectionId,
    identity: Identity,
    link: Link,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = hub.config();
    let mailbox = Arc::new(Mailbox::new(config.max_pending_bytes));
    let outbox = Outbox(Arc::clone(&mailbox));
    let about = Connected {
        connection_id: id.to_string(),
        user_id: identity.user_id.clone(),
        group_id: identity.group_id().to_owned(),
    };
    // Queued before the socket is visible to routing, so it is the first thing the client reads.
    outbox.offer(hub.frame(&Envelope::system("__connected", &about)));
    let answers = Answers::new(outbox.clone(), Arc::clone(hub.budget()));
    let Some(registration) = hub.register(id, &identity, outbox) else {
        end(&mut socket, CloseReason::Shutdown).await;
        return;
    };
    tracing::debug!(groups = ?identity.groups, "socket open");
    hub.meters().opened();
    let info = ConnectionInfo::new(id, identity.user_id.clone(), identity.groups.clone())
        .with_data_of(identity.data.clone());
    if let Some(on_connect) = &config.on_connect {
        on_connect.call((hub.clone(), info.clone())).await;
    }
    // Fires however this task ends, even if it is dropped.
    let mut disconnected = Disconnected {
        hub: hub.clone(),
        info: Some(info),
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
        answers,
        ping_interval: config.ping_interval,
        idle_timeout: config.idle_timeout,
        pace: Pace::default(),
    };
    if events {
        // In a cluster, once every node knows the connection's groups: whatever the application
        // sends it from then on (the history of a room, then what is said there) arrives.
        hub.membership_settled().await;
        session.event("__connect", &about);
    }
    let ending = session.run(&mut socket, &mailbox).await;
    // Out of routing before the closing handshake, which may take a while.
    drop(registration);
    hub.meters().closed(ending);
    end(&mut socket, ending).await;
    tracing::Span::current().record("closed", ending.as_str());
    if ending.is_for_cause() {
        notice!(hub, Kind::Closed, info, reason = %ending, "socket closed");
    } else {
        tracing::debug!(reason = %ending, "socket closed");
    }
    drop(socket);
    session.finish().await;
    if events {
        session.event("__disconnect", &about);
        session.finish().await;
    }
    // Its line and forwarder are freed before the application's callback, which may take long.
    drop(session);
    // Before the permit: shutdown waits for the permits, and so for the callback.
    disconnected.fire(ending).await;
    drop(permit);
}

/// Closes an accepted socket at once, with the identity resolver's code and reason: how a page
/// learns why it was refused (docs/protocol.md §6). The socket never joins the hub.
pub(crate) async fn turn_away<S>(hub: &Hub, io: S, close: &CloseAtOnce)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut socket = socket_of(hub, io);
    socket.close(close.code, &close.reason, CLOSE_GRACE).await;
}

/// The hub's side of an upgraded connection, with the hub's limits.
fn socket_of<S>(hub: &Hub, io: S) -> Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = hub.config();
    Socket::new(
        io,
        config.max_message_size,
        config.stall_timeout,
        hub.budget(),
    )
}

/// Ends the connection as the session ended: the hub's close, or the answer to the client's.
async fn end<S>(socket: &mut Socket<S>, ending: CloseReason)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match (ending, ending.close_frame()) {
        (_, Some((code, reason))) => socket.close(code, reason, CLOSE_GRACE).await,
        (CloseReason::ClientClosed(code), None) => socket.answer_close(code, CLOSE_GRACE).await,
        _ => {}
    }
}

/// Calls the application's disconnect callback once: when the session is over, or, should its
/// task be dropped before (a runtime shutting down), on a task of its own.
struct Disconnected {
    hub: Hub,
    info: Option<ConnectionInfo>,
}

impl Disconnected {
    async fn fire(&mut self, reason: CloseReason) {
        if let (Some(on_disconnect), Some(info)) = (self.callback(), self.info.take()) {
            on_disconnect.call((self.hub.clone(), info, reason)).await;
        }
    }

    fn callback(&self) -> Option<Callback<config::Disconnected>> {
        self.hub.config().on_disconnect.clone()
    }
}

impl Drop for Disconnected {
    fn drop(&mut self) {
        let (Some(on_disconnect), Some(info)) = (self.callback(), self.info.take()) else {
            return;
        };
        // Only a runtime that shuts down drops a socket's task before its end.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let reason = CloseReason::Shutdown;
            runtime.spawn(on_disconnect.call((self.hub.clone(), info, reason)));
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

struct Session {
    hub: Hub,
    identity: Identity,
    answers: Answers,
    rate: Option<TokenBucket>,
    pipeline: Pipeline,
    pace: Pace,
    ping_interval: Duration,
    idle_timeout: Duration,
}

impl Session {
    /// Serves the socket until the session ends, and says how.
    async fn run<S>(&mut self, socket: &mut Socket<S>, mailbox: &Mailbox) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Whatever was put in line before the socket was read (`__connect`).
        self.pipeline
            .advance(&self.hub, &self.answers, &mut self.pace)
            .await;
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + self.ping_interval;
        // When the client began a message that is not whole yet, as last seen.
        let mut message_since = None;
        let timer = sleep_until(next_ping.min(last_heard + self.idle_timeout));
        tokio::pin!(timer);
        loop {
            // A client with a full line of envelopes waits, unread: TCP backpressure.
            let reading = !self.pipeline.is_full(&self.hub);
            tokio::select! {
                // The socket first: a close request, then writes, then reads.
                biased;
                event = socket.next(mailbox, reading) => {
                    let inbound = match event {
                        Event::Inbound(inbound) => inbound,
                        Event::Violation(code) => return CloseReason::of_violation(code),
                        Event::CloseAsked(asked) => return asked.into(),
                        Event::Stalled => return CloseReason::SlowConsumer,
                        Event::Gone => return CloseReason::ConnectionLost,
                    };
                    last_heard = Instant::now();
                    match inbound {
                        Inbound::Text(text) => {
                            if let Some(ending) = self.on_text(&text) {
                                return ending;
                            }
                            self.pipeline
                .advance(&self.hub, &self.answers, &mut self.pace)
                .await;
                            self.pace.tick().await;
                        }
                        Inbound::Ping(payload) => socket.pong(&payload),
                        Inbound::Pong => {}
                        Inbound::Close(code) => return CloseReason::ClientClosed(code),
                    }
                }
                (outcome, asker) = self.pipeline.answered() => {
                    self.on_outcome(outcome, asker).await;
                    self.pipeline
                .advance(&self.hub, &self.answers, &mut self.pace)
                .await;
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if !reading {
                        // The hub is the one not reading: its silence is not the client's.
                        last_heard = now;
                    }
                    if now >= last_heard + self.idle_timeout {
                        return CloseReason::Idle;
                    }
                    // Control frames keep a socket alive, so a message sent a few bytes at a time
                    // between them gets the idle timeout to be whole, and no more.
                    message_since = socket.in_message().then(|| message_since.unwrap_or(now));
                    if message_since.is_some_and(|since| now >= since + self.idle_timeout) {
                        return CloseReason::SlowMessage;
                    }
                    if now >= next_ping {
                        next_ping = now + self.ping_interval;
                        socket.send_control(Frame::ping());
                    }
                    // Re-armed only here, not per message: hearing from the client only moves
                    // the idle deadline later, so a timer that fires early just re-arms.
                    timer.as_mut().reset(next_ping.min(last_heard + self.idle_timeout));
                }
            }
        }
    }

    /// Handles a client envelope; `Some` ends the session.
    fn on_text(&mut self, text: &str) -> Option<CloseReason> {
        self.hub.meters().message_received();
        if let Some(bucket) = &mut self.rate {
            match bucket.take() {
                Ok(()) => {}
                Err(strikes) if strikes >= RATE_STRIKES => return Some(CloseReason::RateAbuse),
                Err(_) => {
                    let request = Envelope::request_id_of(text.as_bytes(), self.max_id_len());
                    let detail = "too many messages; slow down";
                    self.refuse("rate_limited", detail, request.as_deref());
                    return None;
                }
            }
        }
        let fields = self.hub.config().fields;
        let envelope = match inbound::admit(text.as_bytes(), fields, &self.identity) {
            Ok(envelope) => envelope,
            Err(rejection) => {
                let request = rejection.request_id.as_deref();
                self.refuse(rejection.code, &rejection.detail, request);
                return None;
            }
        };
        if envelope.action == PING {
            // Ahead of whatever waits for a forward: it asks whether the socket works, not
            // whether the application has caught up.
            if let Some(id) = &envelope.request_id {
                self.answers.reply(id, None);
            }
            return None;
        }
        let work = if self.pipeline.forwards(&self.hub, &envelope.action) {
            let asker = Asker::Client(envelope.request_id.clone());
            Work::Forward { envelope, asker }
        } else {
            let refused = match &self.hub.config().relay {
                Relay::Allow => None,
                Relay::ForwardOnly => Some("clients may not relay this action".to_owned()),
                Relay::Filter(filter) => filter(&envelope).err(),
            };
            if let Some(reason) = refused {
                self.refuse("forbidden", &reason, envelope.request_id.as_deref());
                return None;
            }
            Work::Relay(envelope)
        };
        self.pipeline.push(work);
        None
    }

    /// Forwards a connection event (`__connect`, `__disconnect`) in line with the messages.
    fn event(&mut self, action: &str, about: &Connected) {
        let envelope = Envelope::system(action, about)
            .from_user(self.identity.user_id.clone())
            .from_group(self.identity.group_id().to_owned());
        let work = Work::Forward {
            envelope,
            asker: Asker::Nobody,
        };
        self.pipeline.push(work);
    }

    /// Routes what the application answered, then answers the client's request; or tells the
    /// client why it failed.
    async fn on_outcome(&mut self, outcome: Outcome, asker: Asker) {
        let reply = match outcome {
            Outcome::Route { envelopes, reply } => {
                for envelope in &envelopes {
                    self.hub.send(envelope);
                    self.pace.tick().await;
                }
                reply
            }
            Outcome::Nothing => None,
            Outcome::Failed { code, detail } => {
                match &asker {
                    Asker::Client(request) => self.refuse(code, &detail, request.as_deref()),
                    Asker::Nobody => {
                        tracing::warn!(code, detail, "a connection event was not handled");
                    }
                }
                return;
            }
        };
        if let Asker::Client(Some(request)) = &asker {
            self.answers.reply(request, reply);
        }
    }

    /// Tells the client that a message of its was refused or failed, and the operator, within
    /// the log's allowance: at `info` what the client caused, at `warn` what the application did
    /// not answer.
    fn refuse(&self, code: &'static str, detail: &str, request_id: Option<&str>) {
        let kind = match code {
            "invalid_envelope" => Kind::Invalid,
            "rate_limited" => Kind::RateLimited,
            "forbidden" => Kind::Forbidden,
            _ => Kind::Forward,
        };
        if kind == Kind::Forward {
            meters::forward_failed(code);
            notice!(self.hub, kind, warn, code, detail, "a forward failed");
        } else {
            meters::message_refused(code);
            notice!(self.hub, kind, info, code, detail, "refused");
        }
        self.answers.error(code, detail, request_id);
    }

    fn max_id_len(&self) -> usize {
        self.hub.config().fields.max_id_len
    }

    /// Handles everything still in line after the socket has closed: forwards may have effects
    /// on others, and their answers still reach other connections.
    async fn finish(&mut self) {
        self.pipeline
            .advance(&self.hub, &self.answers, &mut self.pace)
            .await;
        while !self.pipeline.is_idle() {
            let (outcome, asker) = self.pipeline.answered().await;
            self.on_outcome(outcome, asker).await;
            self.pipeline
                .advance(&self.hub, &self.answers, &mut self.pace)
                .await;
        }
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
