//! [`Hub`], the cheap-to-clone handle the application keeps: routing, membership, counts, shutdown.
//! What it does to connections is in `operations`, what it answers about them in `questions`.

mod operations;
mod questions;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore};

use crate::budget::Budget;
use crate::config::{Config, HubBuilder};
use crate::envelope::Envelope;
use crate::error::HubError;
use crate::forward::{self, Call, Target};
use crate::id::ConnectionId;
use crate::identity::{Identity, IdentityResolver};
use crate::meters::Meters;
use crate::node::{Node, Outbox, Registration, Routed};
use crate::notice::Notices;
use crate::websocket::Frame;

/// The hub: a registry of connections, groups and users, and the router over it.
///
/// Cloning is a reference-count bump; every clone is the same hub.
///
/// ```
/// use wshub::{Envelope, Hub, Recipient};
///
/// let hub = Hub::builder().build();
/// let delivered = hub.send(&Envelope::new("news").with_message("hello").to(Recipient::all()));
/// assert_eq!(delivered, 0, "nobody is connected yet");
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// This process's connections, and delivery to them.
    node: Arc<Node>,
    /// Sockets open or being opened; what the connection limit counts.
    open: AtomicUsize,
    /// Woken when `open` drops to zero during shutdown.
    drained: Notify,
    /// Places for forwards in flight, across all connections.
    forward_slots: Arc<Semaphore>,
    /// How many refusals and closes for cause are logged a second, of each kind.
    notices: Notices,
    /// Its metrics' handles.
    meters: Meters,
    /// The pooled client for an external forward URL.
    forward_client: Option<Client<HttpConnector, Full<Bytes>>>,
    /// This node's part in a cluster, when it is one.
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::Cluster>,
}

/// The counts the other nodes of a cluster report of the envelopes one publish sent them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    #[cfg(feature = "cluster")]
    tickets: Vec<crate::cluster::Ticket>,
}

/// What the other nodes reported (docs/protocol.md §7, in a cluster).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reported {
    /// Connections the other nodes queued the envelopes to.
    pub(crate) delivered: usize,
    /// Deliveries to other nodes: for each envelope, the nodes it went to.
    pub(crate) nodes: usize,
    /// Of those, how many reported in time.
    pub(crate) answered: usize,
    /// Some did not, or a send failed: `delivered` is a lower bound.
    pub(crate) partial: bool,
}

impl Tally {
    /// How long a publish waits for the other nodes' counts.
    #[cfg(feature = "cluster")]
    const PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

    /// Waits until every node the envelopes went to has reported, [a short
    /// while](Self::PATIENCE) at most.
    pub(crate) async fn finish(self) -> Reported {
        #[cfg(feature = "cluster")]
        {
            let deadline = tokio::time::Instant::now() + Self::PATIENCE;
            let count = crate::cluster::count(self.tickets, deadline).await;
            Reported {
                delivered: count.delivered,
                nodes: count.nodes,
                answered: count.answered,
                partial: count.partial,
            }
        }
        #[cfg(not(feature = "cluster"))]
        Reported::default()
    }
}

/// Holds one place under the connection limit from the handshake until the socket task ends.
#[derive(Debug)]
pub(crate) struct Permit {
    hub: Hub,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.hub.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.hub.inner.drained.notify_waiters();
        }
    }
}

/// Why the hub takes no new socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    AtLimit,
    ShuttingDown,
}

impl Hub {
    /// Starts a [`HubBuilder`] with the default limits, which trust the client as Web Connection
    /// does: identity from `?userId=`, and any client may relay to anyone. For a hub that trusts
    /// no client, start with [`strict`](Self::strict).
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// Starts a [`HubBuilder`] that trusts no client: the secure setup in one call.
    ///
    /// - **Identity** comes from `resolver` alone (a session cookie with
    ///   [`identity_from_cookie`](crate::identity_from_cookie), a signed token); the query string
    ///   is ignored.
    /// - **No client relays**: a client's message reaches others only through a forwarded
    ///   handler ([`forwarding`](HubBuilder::forwarding)), which checks it; any other action is
    ///   refused with `__error` `forbidden`. (Add a [`relay_filter`](HubBuilder::relay_filter) to
    ///   let some through.)
    /// - **A rate limit** of 20 messages a second per connection, in bursts of up to 40.
    /// - Pages of other sites may not open sockets (the default origin check, kept).
    ///
    /// The publish endpoint needs its own authentication whatever the preset (it has no
    /// default), and every option can still be changed on the builder.
    ///
    /// ```
    /// use wshub::{identity_from_cookie, Forwarding, Hub, Identity};
    ///
    /// let hub = Hub::strict(identity_from_cookie("session", |session: String| async move {
    ///     // Ask the application's session store.
    ///     (session == "s-123").then(|| Identity::user("ann").in_group("team-7"))
    /// }))
    /// .forwarding(Forwarding::in_process("/hub/messages").actions(["chat"]))
    /// .build();
    /// # drop(hub);
    /// ```
    pub fn strict(resolver: impl IdentityResolver) -> HubBuilder {
        Self::builder()
            .identity(resolver)
            .relay_only_through_forwarding()
            .rate_limit(20, 40)
    }

    pub(crate) fn from_config(#[allow(unused_mut)] mut config: Config) -> Self {
        let meters = Meters::register();
        let forwarding = config.forwarding.as_ref();
        let forward_slots = Arc::new(Semaphore::new(forwarding.map_or(1, |f| f.max_concurrent)));
        let forward_client = forwarding
            .filter(|f| matches!(f.target, Target::External(_)))
            .map(|_| Client::builder(TokioExecutor::new()).build_http());
        let node = |watch| {
            Arc::new(Node::new(
                config.empty_recipients,
                config.max_buffered_bytes,
                watch,
            ))
        };
        #[cfg(feature = "cluster")]
        let (cluster, node) = match config.cluster.take() {
            Some(settings) => {
                let (cluster, node) = crate::cluster::Cluster::start(settings, |w| node(Some(w)));
                (Some(cluster), node)
            }
            None => (None, node(None)),
        };
        #[cfg(not(feature = "cluster"))]
        let node = node(None);
        Self {
            inner: Arc::new(Inner {
                forward_slots,
                notices: Notices::default(),
                meters,
                forward_client,
                node,
                #[cfg(feature = "cluster")]
                cluster,
                config,
                open: AtomicUsize::new(0),
                drained: Notify::new(),
            }),
        }
    }

    /// Routes an envelope to its recipients (docs/protocol.md §2) and returns how many connections it
    /// was queued to. Never waits: the envelope is serialised once and each target's queue gets a
    /// shared reference to the same frame.
    ///
    /// A connection that does not keep up is closed rather than waited for: one whose pending
    /// bytes would pass [`max_pending_bytes`](crate::HubBuilder::max_pending_bytes) is closed with
    /// 1008. When sending many envelopes in a loop, let the runtime run between them
    /// (`tokio::task::yield_now().await` every few sends) so the connections' tasks can write:
    /// without a pause, a burst larger than that bound to one connection would close it. The
    /// hub's own producers (relays, the publish endpoint) do this.
    ///
    /// On a cluster node (feature `cluster`) the envelope also goes to the other nodes with
    /// targets, through Redis, without waiting, and the count is this node's connections only
    /// (the publish endpoint's answer counts every node's).
    pub fn send(&self, envelope: &Envelope) -> usize {
        self.route(envelope).delivered
    }

    /// Routes like [`send`](Self::send), and says which targets are behind: more than half their
    /// bound pending, so that a producer that can wait for them (`Pace::catch_up`) does.
    pub(crate) fn route(&self, envelope: &Envelope) -> Routed {
        self.inner.meters.envelopes_sent(1);
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            let frame = self.frame(envelope);
            cluster.publish(&envelope.recipients, &frame);
            return self.inner.node.deliver(&envelope.recipients, || frame);
        }
        // Serialised for the first target: an envelope that reaches nobody costs no frame.
        self.inner
            .node
            .deliver(&envelope.recipients, || self.frame(envelope))
    }

    /// Starts counting a publish across the cluster; `None` on a single node, where
    /// [`Routed::delivered`] is the whole count.
    pub(crate) fn tally(&self) -> Option<Tally> {
        #[cfg(feature = "cluster")]
        if self.inner.cluster.is_some() {
            return Some(Tally::default());
        }
        None
    }

    /// In a cluster, sends `envelopes` to the other nodes first, as one bundle Redis takes whole
    /// or not at all, and returns their frames once Redis has taken them, for
    /// [`deliver_here`](Self::deliver_here); their counts go to `tally`. An error means nothing
    /// was delivered anywhere. On a single node it only frames them.
    pub(crate) async fn send_confirmed(
        &self,
        envelopes: &[Envelope],
        tally: &mut Tally,
    ) -> Result<Vec<Frame>, HubError> {
        let frames: Vec<Frame> = envelopes.iter().map(|e| self.frame(e)).collect();
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            let sent = envelopes
                .iter()
                .map(|e| e.recipients.as_slice())
                .zip(&frames);
            tally.tickets = cluster.publish_confirmed(sent).await?;
        }
        let _ = tally;
        self.inner.meters.envelopes_sent(envelopes.len());
        Ok(frames)
    }

    /// Delivers a frame to this node's connections only.
    pub(crate) fn deliver_here(&self, envelope: &Envelope, frame: Frame) -> Routed {
        self.inner.node.deliver(&envelope.recipients, || frame)
    }

    /// Waits until this node's membership changes so far are known to the whole cluster, so
    /// that what other nodes send to its groups and users from now on arrives (one Redis command
    /// timeout at most). At once on a single node.
    pub(crate) async fn membership_settled(&self) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            cluster.settled().await;
        }
    }

    /// Whether an envelope sent now can reach every node: true on a single node; in a cluster,
    /// whether Redis is reachable (the publish endpoint answers `503` when it is not).
    pub(crate) fn reaches_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            return cluster.is_up();
        }
        true
    }

    /// A fresh id for a connection of this hub; in a cluster, one that names this node.
    pub(crate) fn new_connection_id(&self) -> Option<ConnectionId> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            return cluster.connection_id();
        }
        ConnectionId::random()
    }

    /// The frame of `envelope`, held against the hub's memory budget.
    pub(crate) fn frame(&self, envelope: &Envelope) -> Frame {
        envelope.to_frame(self.budget())
    }

    pub(crate) fn budget(&self) -> &Arc<Budget> {
        self.inner.node.budget()
    }

    /// Closes every socket with 1001 (going away), refuses new ones with `503`, and waits until
    /// the sockets are closed or the shutdown timeout has passed.
    pub async fn shutdown(&self) {
        self.inner.node.close_all();
        let drained = async {
            loop {
                let notified = self.inner.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(self.inner.config.shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.inner.open.load(Ordering::Acquire),
                "sockets still open when the shutdown timeout passed"
            );
        }
    }

    /// A future for [`serve(..).with_graceful_shutdown(..)`](crate::Serve::with_graceful_shutdown)
    /// (or `axum::serve`'s, or any server's equivalent): it waits for `signal`, then shuts the hub
    /// down, so every socket is closed with 1001 before the server stops.
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// let hub = wshub::Hub::builder().build();
    /// let app = tower::Layer::layer(&hub.layer("/ws"), app);
    /// wshub::serve(listener, app)
    ///     .with_graceful_shutdown(hub.shutdown_on(async { tokio::signal::ctrl_c().await.ok(); }))
    ///     .await
    /// # }
    /// ```
    pub fn shutdown_on(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let hub = self.clone();
        async move {
            signal.await;
            hub.shutdown().await;
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.node.is_closed()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    pub(crate) fn notices(&self) -> &Notices {
        &self.inner.notices
    }

    pub(crate) fn forward_slots(&self) -> &Arc<Semaphore> {
        &self.inner.forward_slots
    }

    /// The forward call for an external URL; in-process calls are made where the wrapped
    /// service is known, in [`HubService`](crate::HubService).
    pub(crate) fn external_call(&self) -> Option<Call> {
        let client = self.inner.forward_client.clone()?;
        Some(forward::external(
            client,
            self.inner.config.max_publish_body,
        ))
    }

    /// Takes a place under the connection limit for a socket about to open.
    pub(crate) fn reserve(&self) -> Result<Permit, Unavailable> {
        if self.is_shutting_down() {
            return Err(Unavailable::ShuttingDown);
        }
        let limit = self.inner.config.max_connections;
        let taken = self
            .inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Permit { hub: self.clone() }),
            Err(_) => Err(Unavailable::AtLimit),
        }
    }

    /// Adds a connection to this node's registry until the returned guard is dropped; `None`
    /// when shutdown began first.
    pub(crate) fn register(
        &self,
        id: ConnectionId,
        identity: &Identity,
        outbox: Outbox,
    ) -> Option<Registration> {
        self.inner.node.register(id, identity, outbox)
    }
}

impl HubBuilder {
    /// Builds the hub.
    pub fn build(self) -> Hub {
        Hub::from_config(self.into_config())
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.local_connection_count())
            .field("open", &self.inner.open.load(Ordering::Relaxed))
            .field("closing", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}
