//! The hub's limits and options, with their defaults, and the builder that sets them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::closing::CloseReason;
use crate::envelope::{Envelope, FieldLimits};
use crate::forward::Forwarding;
use crate::hub::Hub;
use crate::identity::IdentityResolver;
use crate::info::ConnectionInfo;
use crate::routing::EmptyRecipients;

/// Which `Origin` headers may open a socket (docs/protocol.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginPolicy {
    /// No `Origin` header, or one whose host and port are the request's `Host`.
    SameHost,
    /// The listed origins (`scheme://host[:port]`, compared case-insensitively), or no `Origin`.
    List(Vec<String>),
    Any,
}

/// A per-connection message rate: `per_second` on average, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateLimit {
    pub(crate) per_second: f64,
    pub(crate) burst: f64,
}

/// Whether and which client envelopes may be relayed directly (those not forwarded).
#[derive(Clone, Default)]
pub(crate) enum Relay {
    #[default]
    Allow,
    ForwardOnly,
    Filter(Arc<RelayFilter>),
}

/// Decides whether a client envelope may be relayed; `Err` holds the reason it may not.
pub(crate) type RelayFilter = dyn Fn(&Envelope) -> Result<(), String> + Send + Sync;

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "Allow",
            Self::ForwardOnly => "ForwardOnly",
            Self::Filter(_) => "Filter",
        })
    }
}

/// An application callback about a connection: it gets the hub, so that it can act on the
/// connection (join it to groups, send it something) without a global.
/// `Args` is what it is called with: `(Hub, ConnectionInfo)` when a socket opens, and the
/// [`CloseReason`] too when it has closed.
pub(crate) struct Callback<Args>(Arc<CallbackFn<Args>>);

type CallbackFn<Args> = dyn Fn(Args) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

impl<Args> Clone for Callback<Args> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<Args> Callback<Args> {
    pub(crate) fn call(&self, args: Args) -> impl Future<Output = ()> + Send {
        (self.0)(args)
    }
}

/// What `on_connect` is called with.
pub(crate) type Connected = (Hub, ConnectionInfo);
/// What `on_disconnect` is called with.
pub(crate) type Disconnected = (Hub, ConnectionInfo, CloseReason);

impl<Args> fmt::Debug for Callback<Args> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Callback")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_message_size: usize,
    pub(crate) max_publish_body: usize,
    pub(crate) publish_body_timeout: Duration,
    pub(crate) max_pending_bytes: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) empty_recipients: EmptyRecipients,
    pub(crate) origins: OriginPolicy,
    pub(crate) fields: FieldLimits,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) forwarding: Option<Forwarding>,
    pub(crate) identity: Option<Arc<dyn IdentityResolver>>,
    pub(crate) relay: Relay,
    pub(crate) on_connect: Option<Callback<Connected>>,
    pub(crate) on_disconnect: Option<Callback<Disconnected>>,
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<crate::cluster::RedisCluster>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_publish_body: 1024 * 1024,
            publish_body_timeout: Duration::from_secs(10),
            max_pending_bytes: 4 * 1024 * 1024,
            stall_timeout: Duration::from_secs(15),
            max_buffered_bytes: 256 * 1024 * 1024,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_connections: 100_000,
            rate_limit: None,
            empty_recipients: EmptyRecipients::DefaultGroup,
            origins: OriginPolicy::SameHost,
            fields: FieldLimits::default(),
            shutdown_timeout: Duration::from_secs(10),
            forwarding: None,
            #[cfg(feature = "cluster")]
            cluster: None,
            identity: None,
            relay: Relay::Allow,
            on_connect: None,
            on_disconnect: None,
        }
    }
}

/// Sets a [`Hub`](crate::Hub)'s limits and options; every one has a default.
///
/// | option | default |
/// |---|---|
/// | [`max_message_size`](Self::max_message_size) | 64 KiB |
/// | [`max_publish_body`](Self::max_publish_body) | 1 MiB |
/// | [`publish_body_timeout`](Self::publish_body_timeout) | 10 s |
/// | [`max_pending_bytes`](Self::max_pending_bytes) | 4 MiB per connection |
/// | [`stall_timeout`](Self::stall_timeout) | 15 s |
/// | [`max_buffered_bytes`](Self::max_buffered_bytes) | 256 MiB for the whole hub |
/// | [`ping_interval`](Self::ping_interval) | 25 s |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s |
/// | [`max_connections`](Self::max_connections) | 100,000 |
/// | [`rate_limit`](Self::rate_limit) | off |
/// | [`max_recipients`](Self::max_recipients) | 1,024 per envelope |
/// | [`max_id_len`](Self::max_id_len) | 256 bytes for action, groupId, userId and recipient values |
/// | [`empty_recipients`](Self::empty_recipients) | the default group |
/// | origins | the request's own host ([`allow_origin`](Self::allow_origin), [`allow_any_origin`](Self::allow_any_origin)) |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 10 s |
///
/// ```
/// use std::time::Duration;
///
/// let hub = wshub::Hub::builder()
///     .max_connections(10_000)
///     .rate_limit(20, 40)
///     .idle_timeout(Duration::from_secs(30))
///     .allow_origin("https://chat.example.com")
///     .build();
/// assert_eq!(hub.local_connection_count(), 0);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HubBuilder {
    config: Config,
}

impl HubBuilder {
    /// Largest WebSocket message (and frame) a client may send; a bigger one closes its socket
    /// with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest body the publish endpoint reads; a bigger one is answered `413`.
    ///
    /// Before answering, the endpoint reads and discards up to as much again, so that a client
    /// that sends its whole body before reading gets the `413` rather than a connection reset.
    /// A body declared larger than twice the limit is not read: it is answered at once, with
    /// `Connection: close`, and a client that is still sending it may see a reset instead (one
    /// that sends `Expect: 100-continue` gets the `413` before sending anything).
    pub fn max_publish_body(mut self, bytes: usize) -> Self {
        self.config.max_publish_body = bytes;
        self
    }

    /// How long the publish endpoint waits for a whole request body, from the moment it starts
    /// reading it; past it the request is answered `408` and the connection closed, so a client
    /// that trickles its body holds nothing for long.
    pub fn publish_body_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_body_timeout = timeout;
        self
    }

    /// Most bytes that may wait for one connection's socket (queued frames, and the frame being
    /// written). A connection that would pass it does not keep up: it is closed with 1008, so one
    /// slow reader never slows the rest. A single frame larger than the bound still goes to a
    /// connection with nothing else pending.
    ///
    /// A queue costs only what is in it, so the bound can be generous: it must hold the largest
    /// burst routed to one connection faster than it reads (see [`Hub::send`](crate::Hub::send)).
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.config.max_pending_bytes = bytes.max(1);
        self
    }

    /// How long frames may wait for a socket that accepts no bytes at all before the client is
    /// taken as stalled and closed with 1008. A client that keeps reading, however slowly, is not
    /// stalled.
    pub fn stall_timeout(mut self, after: Duration) -> Self {
        self.config.stall_timeout = after;
        self
    }

    /// Most bytes the hub holds for all connections together: frames not yet written to every
    /// recipient (a frame shared by many connections counts once) and client messages not yet
    /// whole. Past it, the connections with the most bytes pending are closed with 1013 (try
    /// again later) until the rest fits, and a client whose partial message would pass it is
    /// closed with 1013.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.config.max_buffered_bytes = bytes;
        self
    }

    /// How often the hub pings each socket.
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.config.ping_interval = every;
        self
    }

    /// How long a socket may stay silent (no frame, no pong) before the hub closes it with 1001.
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.config.idle_timeout = after;
        self
    }

    /// Most sockets open (or opening) at once; past it, upgrades are answered `503`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Limits each connection to `per_second` messages on average with bursts of `burst`.
    /// A message over the limit is answered with a `rate_limited` error; a client that keeps
    /// sending while limited is closed with 1008. Off by default.
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.config.rate_limit = Some(RateLimit {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
        });
        self
    }

    /// Whom an envelope with an empty recipient list reaches.
    pub fn empty_recipients(mut self, target: EmptyRecipients) -> Self {
        self.config.empty_recipients = target;
        self
    }

    /// Most recipients one envelope from the network may list.
    pub fn max_recipients(mut self, n: usize) -> Self {
        self.config.fields.max_recipients = n;
        self
    }

    /// Longest `action`, `groupId`, `userId` or recipient value (in bytes) an envelope from the
    /// network may hold, and longest id a connection may have: a query-string `userId` or
    /// `groupId` over it refuses the upgrade with `400`, an [identity resolver](Self::identity)'s
    /// answer over it with `500` (a bug of the application's, logged).
    pub fn max_id_len(mut self, bytes: usize) -> Self {
        self.config.fields.max_id_len = bytes;
        self
    }

    /// Lets pages from `origin` (`scheme://host[:port]`) open sockets. Once any origin is listed,
    /// only listed origins (and clients that send no `Origin`, which are not browsers) may connect.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_ascii_lowercase();
        match &mut self.config.origins {
            OriginPolicy::List(list) => list.push(origin),
            other => *other = OriginPolicy::List(vec![origin]),
        }
        self
    }

    /// Lets pages from any origin open sockets. Only for hubs whose sockets carry no cookies or
    /// other ambient credentials: any web page a user visits could connect as that user.
    pub fn allow_any_origin(mut self) -> Self {
        self.config.origins = OriginPolicy::Any;
        self
    }

    /// How long [`Hub::shutdown`](crate::Hub::shutdown) waits for sockets to finish closing.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Forwards client envelopes to the application as HTTP requests (docs/protocol.md §5); see
    /// [`Forwarding`]. Without it, every client envelope is relayed.
    ///
    /// # Panics
    ///
    /// When called a second time: one [`Forwarding`] names every forwarded action
    /// ([`actions`](Forwarding::actions) takes them all), and a second one would otherwise
    /// silently replace the first, whose actions would then be relayed to their recipients
    /// unchecked.
    pub fn forwarding(mut self, forwarding: Forwarding) -> Self {
        if let Some(first) = &self.config.forwarding {
            panic!(
                "wshub: `HubBuilder::forwarding` is called twice (first {first}, then {forwarding}); \
                 one `Forwarding` names every forwarded action: `.actions([\"a\", \"b\"])`"
            );
        }
        self.config.forwarding = Some(forwarding);
        self
    }

    /// Decides each connection's identity from its upgrade request; the query string is then
    /// ignored. See [`IdentityResolver`] and [`identity_from_cookie`](crate::identity_from_cookie).
    pub fn identity(mut self, resolver: impl IdentityResolver) -> Self {
        self.config.identity = Some(Arc::new(resolver));
        self
    }

    /// Clients may not relay: an envelope whose action is not forwarded is refused with
    /// `__error` code `forbidden`. (By default clients relay, as Web Connection's do.)
    pub fn relay_only_through_forwarding(mut self) -> Self {
        self.config.relay = Relay::ForwardOnly;
        self
    }

    /// Decides which client envelopes may be relayed directly (after identity stamping); an
    /// `Err(reason)` refuses one with `__error` code `forbidden` and the reason as detail.
    ///
    /// ```
    /// let hub = wshub::Hub::builder()
    ///     .relay_filter(|envelope: &wshub::Envelope| {
    ///         if envelope.recipients.iter().any(|r| r.kind == wshub::RecipientKind::All) {
    ///             Err("clients may not send to everyone".to_owned())
    ///         } else {
    ///             Ok(())
    ///         }
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn relay_filter(
        mut self,
        filter: impl Fn(&Envelope) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.config.relay = Relay::Filter(Arc::new(filter));
        self
    }

    /// Runs when a socket has opened and joined the registry, with the hub and the connection.
    /// The hub reads the client's first message only once it has returned, so what it does (a
    /// join, a welcome sent with [`Hub::send`]) comes before anything the client says; keep it
    /// short, since the socket is not served meanwhile.
    ///
    /// ```
    /// use wshub::{ConnectionInfo, Envelope, Hub, Recipient};
    ///
    /// let hub = Hub::builder()
    ///     .on_connect(|hub: Hub, info: ConnectionInfo| async move {
    ///         // Staff also hear the staff room, wherever they connect from.
    ///         if info.user_id.starts_with("staff-") {
    ///             let _ = hub.join(info.connection_id, "staff").await;
    ///         }
    ///         hub.send(&Envelope::new("welcome").to(Recipient::connection(info.connection_id)));
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Hub, ConnectionInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.config.on_connect = Some(Callback(Arc::new(move |(hub, info)| {
            Box::pin(f(hub, info))
        })));
        self
    }

    /// Runs once for every socket that was connected, however it ended, and says why
    /// ([`CloseReason`]: the client closed it, the connection was lost, a slow reader, a rate
    /// abuser, the application's logout, shutdown…), after its pending forwards are done; the
    /// connection is out of the registry by then. Graceful shutdown waits for it, within
    /// [`shutdown_timeout`](Self::shutdown_timeout).
    ///
    /// ```
    /// use wshub::{CloseReason, ConnectionInfo, Hub};
    ///
    /// let hub = Hub::builder()
    ///     .on_disconnect(|_: Hub, info: ConnectionInfo, reason: CloseReason| async move {
    ///         if reason == CloseReason::SlowConsumer {
    ///             eprintln!("{} could not keep up", info.user_id);
    ///         }
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn on_disconnect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Hub, ConnectionInfo, CloseReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = move |(hub, info, reason)| Box::pin(f(hub, info, reason)) as Pin<Box<_>>;
        self.config.on_disconnect = Some(Callback(Arc::new(hook)));
        self
    }

    /// Makes the hub one node of a cluster on Redis (feature `cluster`): any node then takes
    /// any client and any publish, and an envelope reaches its recipients on every node
    /// (docs/cluster.md). Build the hub inside the Tokio runtime it will run on.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), wshub::HubError> {
    /// let hub = wshub::Hub::builder()
    ///     .cluster(wshub::RedisCluster::new("redis://127.0.0.1:6379")?)
    ///     .build();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: crate::cluster::RedisCluster) -> Self {
        self.config.cluster = Some(cluster);
        self
    }

    pub(crate) fn into_config(self) -> Config {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults the README and the builder's docs promise.
    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.max_message_size, 64 * 1024);
        assert_eq!(c.max_publish_body, 1024 * 1024);
        assert_eq!(c.publish_body_timeout, Duration::from_secs(10));
        assert_eq!(c.max_pending_bytes, 4 * 1024 * 1024);
        assert_eq!(c.stall_timeout, Duration::from_secs(15));
        assert_eq!(c.max_buffered_bytes, 256 * 1024 * 1024);
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, 100_000);
        assert_eq!(c.rate_limit, None);
        assert_eq!(c.empty_recipients, EmptyRecipients::DefaultGroup);
        assert_eq!(c.origins, OriginPolicy::SameHost);
        assert_eq!(c.fields.max_recipients, 1024);
        assert_eq!(c.fields.max_id_len, 256);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    }

    /// What `Hub::strict` promises besides its resolver (its sockets' behaviour is in
    /// tests/defaults.rs).
    #[test]
    fn the_strict_preset_refuses_relays_and_limits_the_rate() {
        let resolver = |_: &http::request::Parts| async { Ok(crate::Identity::anonymous()) };
        let c = crate::Hub::strict(resolver).into_config();
        assert!(c.identity.is_some());
        assert!(matches!(c.relay, Relay::ForwardOnly));
        let limit = RateLimit {
            per_second: 20.0,
            burst: 40.0,
        };
        assert_eq!(c.rate_limit, Some(limit));
        assert_eq!(c.origins, OriginPolicy::SameHost);
    }
}
