//! [`Hub`], the cheap-to-clone handle the application keeps: routing, membership, counts, shutdown.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore};

use crate::budget::Budget;
use crate::config::{Config, HubBuilder};
use crate::connection::{CLOSE_GOING_AWAY, CLOSE_OVERLOADED, CLOSE_SLOW_CONSUMER};
use crate::envelope::Envelope;
use crate::forward::{self, Call, Target};
use crate::id::ConnectionId;
use crate::identity::Identity;
use crate::layer::HubLayer;
use crate::mailbox::{Mailbox, Refused};
use crate::publish::PublishEndpoint;
use crate::registry::Registry;
use crate::routing::for_each_target;
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
    registry: RwLock<Registry<Outbox>>,
    /// Sockets open or being opened; what the connection limit counts.
    open: AtomicUsize,
    closing: AtomicBool,
    /// Woken when `open` drops to zero during shutdown.
    drained: Notify,
    /// Places for forwards in flight, across all connections.
    forward_slots: Arc<Semaphore>,
    /// The pooled client for an external forward URL.
    forward_client: Option<Client<HttpConnector, Full<Bytes>>>,
    /// What every connection's frames and partial messages hold, together.
    budget: Arc<Budget>,
    /// When the hub last shed connections to get back under its budget; held while it does.
    last_shed: Mutex<Option<Instant>>,
}

/// What the registry keeps per connection: the way into its socket task.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(pub(crate) Arc<Mailbox>);

impl Outbox {
    /// Queues a frame without waiting and returns what is then pending for the connection. One
    /// whose pending bytes would pass its bound does not keep up: it is closed rather than allowed
    /// to hold up the sender or grow without bound.
    pub(crate) fn offer(&self, frame: Frame) -> Option<usize> {
        match self.0.offer(frame) {
            Ok(pending) => Some(pending),
            Err(Refused::Full) => {
                self.0.close(CLOSE_SLOW_CONSUMER);
                None
            }
            Err(Refused::Closing) => None,
        }
    }

    /// Asks the connection's task to close its socket with `code`.
    pub(crate) fn close(&self, code: u16) {
        self.0.close(code);
    }
}

/// Where a routed envelope went.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// How many connections it was queued to.
    pub(crate) delivered: usize,
    /// Those of them with more than half their bound pending.
    pub(crate) behind: Vec<Arc<Mailbox>>,
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

/// Keeps a connection in the registry; dropping it (however the socket task ends) takes it out.
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Hub,
    id: ConnectionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.write().remove(self.id);
    }
}

/// Why the hub takes no new socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    AtLimit,
    ShuttingDown,
}

impl Hub {
    /// Starts a [`HubBuilder`] with the default limits.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let forwarding = config.forwarding.as_ref();
        let forward_slots = Arc::new(Semaphore::new(forwarding.map_or(1, |f| f.max_concurrent)));
        let forward_client = forwarding
            .filter(|f| matches!(f.target, Target::External(_)))
            .map(|_| Client::builder(TokioExecutor::new()).build_http());
        Self {
            inner: Arc::new(Inner {
                forward_slots,
                forward_client,
                budget: Budget::new(config.max_buffered_bytes),
                last_shed: Mutex::new(None),
                config,
                registry: RwLock::default(),
                open: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
                drained: Notify::new(),
            }),
        }
    }

    /// The tower [`Layer`](tower_layer::Layer) that accepts WebSocket upgrades on `path` (matched
    /// exactly) and passes every other request to the service it wraps.
    ///
    /// Wrap the **whole** application with it: with axum, `hub.layer("/ws").layer(router)`
    /// rather than `router.layer(..)`, which would wrap each route on its own.
    pub fn layer(&self, path: impl Into<String>) -> HubLayer {
        HubLayer::new(self.clone(), path.into())
    }

    /// The HTTP publish endpoint (PROTOCOL.md §7). Choose how it authenticates to get the
    /// service: [`PublishEndpoint::bearer_token`] or [`PublishEndpoint::allow_anonymous`].
    pub fn publish_service(&self) -> PublishEndpoint {
        PublishEndpoint::new(self.clone())
    }

    /// Routes an envelope to its recipients (PROTOCOL.md §2) and returns how many connections it
    /// was queued to. Never waits: the envelope is serialised once and each target's queue gets a
    /// shared reference to the same frame.
    ///
    /// A connection that does not keep up is closed rather than waited for: one whose pending
    /// bytes would pass [`max_pending_bytes`](crate::HubBuilder::max_pending_bytes) is closed with
    /// 1008. When sending many envelopes in a loop, let the runtime run between them
    /// (`tokio::task::yield_now().await` every few sends) so the connections' tasks can write:
    /// without a pause, a burst larger than that bound to one connection would close it. The
    /// hub's own producers (relays, the publish endpoint) do this.
    pub fn send(&self, envelope: &Envelope) -> usize {
        self.route(envelope).delivered
    }

    /// Routes like [`send`](Self::send), and says which targets are behind: more than half their
    /// bound pending, so that a producer that can wait for them (`Pace::catch_up`) does.
    pub(crate) fn route(&self, envelope: &Envelope) -> Routed {
        // Serialised for the first target: an envelope that reaches nobody costs no frame.
        let mut frame = None;
        let mut routed = Routed::default();
        let registry = self.read();
        for_each_target(
            &registry,
            &envelope.recipients,
            self.inner.config.empty_recipients,
            |member| {
                let frame = frame.get_or_insert_with(|| self.frame(envelope));
                let Some(pending) = member.outbox.offer(frame.clone()) else {
                    return;
                };
                routed.delivered += 1;
                if member.outbox.0.behind_at(pending) {
                    routed.behind.push(Arc::clone(&member.outbox.0));
                }
            },
        );
        drop(registry);
        drop(frame);
        if let Some(excess) = self.inner.budget.excess() {
            self.shed(excess);
        }
        routed
    }

    /// The frame of `envelope`, held against the hub's memory budget.
    pub(crate) fn frame(&self, envelope: &Envelope) -> Frame {
        envelope.to_frame(&self.inner.budget)
    }

    /// Gets back under the memory budget: closes the connections furthest behind (most bytes
    /// pending), with 1013, until what they hold covers the excess. Not more often than every
    /// few milliseconds, and never by two callers at once: the scan is over every connection.
    fn shed(&self, excess: usize) {
        /// Connections with less than this pending are never shed: they are keeping up.
        const FLOOR: usize = 64 * 1024;
        const INTERVAL: Duration = Duration::from_millis(20);
        let Ok(mut last) = self.inner.last_shed.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < INTERVAL) {
            return;
        }
        *last = Some(now);
        let registry = self.read();
        let mut behind: Vec<(usize, &Outbox)> = registry
            .members()
            .map(|member| (member.outbox.0.pending(), &member.outbox))
            .filter(|&(pending, _)| pending >= FLOOR)
            .collect();
        behind.sort_unstable_by_key(|&(pending, _)| std::cmp::Reverse(pending));
        let mut freed = 0;
        let mut closed = 0;
        for (pending, outbox) in behind {
            if freed >= excess {
                break;
            }
            outbox.close(CLOSE_OVERLOADED);
            freed += pending;
            closed += 1;
        }
        tracing::warn!(
            used = self.inner.budget.used(),
            limit = self.inner.config.max_buffered_bytes,
            closed,
            "over the memory budget: closed the connections furthest behind"
        );
    }

    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// Puts a connection into a group. Returns false when the connection is gone or already in it.
    pub fn join(&self, connection: ConnectionId, group: &str) -> bool {
        self.write().join(connection, group)
    }

    /// Takes a connection out of a group. Returns false when the connection is gone or not in it.
    pub fn leave(&self, connection: ConnectionId, group: &str) -> bool {
        self.write().leave(connection, group)
    }

    /// How many sockets are connected.
    pub fn connection_count(&self) -> usize {
        self.read().len()
    }

    /// How many distinct non-empty user ids are connected.
    pub fn user_count(&self) -> usize {
        self.read().user_count()
    }

    /// How many groups have at least one connection.
    pub fn group_count(&self) -> usize {
        self.read().group_count()
    }

    /// The connections of a user (all of their tabs and devices).
    pub fn user_connections(&self, user_id: &str) -> Vec<ConnectionId> {
        let registry = self.read();
        let slots = registry.user(user_id).into_iter().flatten();
        slots
            .filter_map(|&slot| registry.at(slot).map(|m| m.id))
            .collect()
    }

    /// The connections in a group.
    pub fn group_connections(&self, group: &str) -> Vec<ConnectionId> {
        let registry = self.read();
        let slots = registry.group(group).into_iter().flatten();
        slots
            .filter_map(|&slot| registry.at(slot).map(|m| m.id))
            .collect()
    }

    /// The groups a connection is in, or `None` when it is not connected.
    pub fn groups_of(&self, connection: ConnectionId) -> Option<Vec<String>> {
        let registry = self.read();
        let member = registry.get(connection)?;
        Some(member.groups.iter().map(|g| g.to_string()).collect())
    }

    /// Closes every socket with 1001 (going away), refuses new ones with `503`, and waits until
    /// the sockets are closed or the shutdown timeout has passed.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        for member in self.read().members() {
            member.outbox.close(CLOSE_GOING_AWAY);
        }
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
        self.inner.closing.load(Ordering::Acquire)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
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

    /// Adds a connection to the registry until the returned guard is dropped; `None` when
    /// shutdown began first (checked under the same lock shutdown reads the members under, so no
    /// connection slips past it).
    pub(crate) fn register(
        &self,
        id: ConnectionId,
        identity: &Identity,
        outbox: Outbox,
    ) -> Option<Registration> {
        let mut registry = self.write();
        if self.is_shutting_down() {
            return None;
        }
        let groups: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
        registry.insert(id, &identity.user_id, &groups, outbox);
        Some(Registration {
            hub: self.clone(),
            id,
        })
    }

    // A panic while the lock is held cannot leave the registry half-changed in a way that matters
    // more than losing every socket would, so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Registry<Outbox>> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry<Outbox>> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .field("open", &self.inner.open.load(Ordering::Relaxed))
            .field("closing", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}
