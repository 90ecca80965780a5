//! A hub as one node of a cluster of processes on one Redis (feature `cluster`).
//!
//! Each node subscribes to two channels: its own inbox and one broadcast channel. Which nodes
//! have a connection in a group or of a user is data in Redis (a set of node ids per group and per
//! user, written only when a node gains its first member or loses its last), and a connection id
//! names its node. An envelope for everyone goes once on the broadcast channel; any other goes to
//! the inboxes of the nodes its include recipients name, chosen inside Redis by one script, so a
//! group that lives on one node wakes one node. Each node routes what it receives over its own
//! registry with the same recipients: every selected connection gets one copy, and exclusions mean
//! what they mean on one node. The sending node delivers to its own connections directly.
//!
//! | part | job |
//! |---|---|
//! | `wire.rs` | channel and key names; the message: origin, recipients, frame |
//! | `publisher.rs` | this node's envelopes to Redis, in order, in pipelined batches |
//! | `subscriber.rs` | envelopes from the other nodes into this node's registry; gaps |
//! | `interest.rs` | this node's groups and users in Redis, kept in step with the registry |
//! | `heartbeat.rs` | which nodes are alive; removing the membership of those that died |
//! | `records.rs` | every connection's user and groups in Redis, and the questions about them |
//! | `tally.rs` | what the other nodes report of a publish that asks how many got it |
//! | `health.rs` | whether Redis is reachable now, and what was missed or dropped |
//!
//! See docs/cluster.md for what a deployment looks like and what each failure does.

mod health;
mod heartbeat;
mod interest;
mod publisher;
mod records;
mod subscriber;
mod tally;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::envelope::{Recipient, RecipientKind};
use crate::error::HubError;
use crate::id::ConnectionId;
use crate::membership::Watch;
use crate::node::{Node, Operation};
use crate::websocket::Frame;

use health::Health;
use interest::Interest;
use publisher::{Bundle, Outgoing, Publisher, Reach};
pub(crate) use records::{Answer, Question};
use tally::Tallies;
pub(crate) use tally::{count, Ticket};
use wire::{Names, NodeId};

/// The settings of a hub's place in a cluster on Redis: which Redis, and the prefix of every key
/// and channel the cluster uses there. Give it to [`HubBuilder::cluster`](crate::HubBuilder::cluster).
///
/// ```no_run
/// # async fn run() -> Result<(), wshub::HubError> {
/// let cluster = wshub::RedisCluster::new("redis://127.0.0.1:6379")?;
/// let hub = wshub::Hub::builder().cluster(cluster).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCluster {
    client: redis::Client,
    prefix: String,
    timings: Timings,
    pulse: heartbeat::Pulse,
}

/// How long Redis may take, and how often a node looks again when it is away.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    /// Any command, a connection attempt, or a ping that takes longer has failed.
    pub(crate) command_timeout: Duration,
    /// How often the subscriber checks that Redis still answers.
    pub(crate) ping_every: Duration,
    /// The first and the longest wait between two attempts to reach Redis again.
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_millis(1000),
            ping_every: Duration::from_millis(1000),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(1000),
        }
    }
}

impl RedisCluster {
    /// A cluster on the Redis at `url` (`redis://[:password@]host:port[/db]`), under the prefix
    /// `wshub`. Nothing connects yet; an invalid URL is an error.
    pub fn new(url: &str) -> Result<Self, HubError> {
        let client = redis::Client::open(url)
            .map_err(|e| HubError::new(format!("the Redis URL is not valid: {e}")))?;
        Ok(Self {
            client,
            prefix: "wshub".to_owned(),
            timings: Timings::default(),
            pulse: heartbeat::Pulse::default(),
        })
    }

    /// The prefix of every key and channel of this cluster (default `wshub`): hubs with different
    /// prefixes on one Redis are separate clusters.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long any Redis command, connection attempt or health check may take before it counts
    /// as failed (default 1 s), and how often the node checks that Redis still answers (the
    /// same). A node finds Redis gone within twice this.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timings.command_timeout = timeout;
        self.timings.ping_every = timeout;
        self
    }
}

impl RedisCluster {
    /// How often the node tells the others it is alive (default every 500 ms), and after how long
    /// without that a node is taken for dead (default 2 s): its connections then leave every
    /// group and user set of the cluster. `dead_after` is at least twice `every`, or a busy node
    /// could be taken for dead.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration, dead_after: Duration) -> Self {
        self.pulse = heartbeat::Pulse {
            every,
            dead_after: dead_after.max(every * 2),
        };
        self
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisCluster")
            .field("prefix", &self.prefix)
            .field("timings", &self.timings)
            .field("pulse", &self.pulse)
            .finish_non_exhaustive()
    }
}

/// This node's part of a running cluster: what the hub calls to send beyond this process.
#[derive(Debug)]
pub(crate) struct Cluster {
    id: NodeId,
    publisher: Publisher,
    interest: Arc<Interest>,
    link: Link,
    pulse: heartbeat::Pulse,
    /// The connection questions go on (shared by every caller; opened on the first).
    questions: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Cluster {
    /// Starts this node's cluster tasks on the current Tokio runtime; `node` gets the watch that
    /// keeps this node's groups and users in Redis. The tasks end when the node is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime: a clustered hub is built where it will run.
    pub(crate) fn start(
        settings: RedisCluster,
        node: impl FnOnce(Arc<dyn Watch>) -> Arc<Node>,
    ) -> (Self, Arc<Node>) {
        let runtime = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("a hub with a cluster must be built inside a Tokio runtime")
        });
        let id = NodeId(ConnectionId::random().map_or(0, |id| id.node_bits()));
        let names = Names::new(&settings.prefix);
        let link = Link {
            client: settings.client,
            names,
            id,
            timings: settings.timings,
            health: Arc::default(),
            tallies: Arc::default(),
            clock: Arc::default(),
        };
        let interest = Arc::new(Interest::default());
        let node = node(Arc::clone(&interest) as Arc<dyn Watch>);
        let (publisher, outgoing) = Publisher::new();
        runtime.spawn(publisher::run(outgoing, link.clone()));
        runtime.spawn(subscriber::run(
            Arc::downgrade(&node),
            Arc::clone(&interest),
            publisher.clone(),
            link.clone(),
        ));
        runtime.spawn(heartbeat::run(
            Arc::downgrade(&node),
            Arc::clone(&interest),
            settings.pulse,
            link.clone(),
        ));
        runtime.spawn(interest::run(
            Arc::clone(&interest),
            Arc::downgrade(&node),
            link.clone(),
        ));
        tracing::info!(node = %id, prefix = %settings.prefix, "joining the cluster");
        (
            Self {
                id,
                publisher,
                interest,
                link,
                pulse: settings.pulse,
                questions: tokio::sync::Mutex::new(None),
            },
            node,
        )
    }

    /// Waits until this node's membership changes so far are in Redis (one command timeout at
    /// most): from then on, what other nodes send to this node's groups and users arrives.
    pub(crate) async fn settled(&self) {
        if !self
            .interest
            .settled(self.link.timings.command_timeout)
            .await
        {
            tracing::warn!("this node's membership did not reach Redis in time");
        }
    }

    /// A fresh id for a connection of this node.
    pub(crate) fn connection_id(&self) -> Option<ConnectionId> {
        ConnectionId::random_on(self.id.0)
    }

    /// Asks Redis about the other nodes' connections (see `records.rs`), within the command
    /// timeout.
    pub(crate) async fn ask(&self, question: Question<'_>) -> Result<Answer, HubError> {
        if !self.is_up() {
            return Err(HubError::unavailable(
                "the cluster's Redis is unreachable; only this node's connections are known",
            ));
        }
        let mut connection = {
            let mut shared = self.questions.lock().await;
            match shared.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let connection = self.link.connect().await.map_err(|e| {
                        HubError::unavailable(format!("cannot reach the cluster's Redis: {e}"))
                    })?;
                    shared.insert(connection).clone()
                }
            }
        };
        let dead_after = self.pulse.dead_after.as_millis() as u64;
        let answer = records::ask(&mut connection, &self.link, dead_after, question).await;
        if answer.is_err() {
            // Perhaps a broken connection: the next question opens another.
            *self.questions.lock().await = None;
        }
        answer
    }

    /// Whether `connection` is one of this node's (by its id; it may have closed since).
    pub(crate) fn owns(&self, connection: ConnectionId) -> bool {
        NodeId::of(connection) == self.id
    }

    /// Asks the node of `connection` to carry out `control`, and returns its count (0 when no
    /// node has it).
    pub(crate) async fn control_connection(
        &self,
        connection: ConnectionId,
        control: Operation,
    ) -> Result<usize, HubError> {
        let node = NodeId::of(connection);
        self.control(Reach::Node(node), control).await
    }

    /// Asks every other node with a connection of `user` to carry out `control`, and returns the
    /// sum of their counts.
    pub(crate) async fn control_user(
        &self,
        user: &str,
        control: Operation,
    ) -> Result<usize, HubError> {
        let targets = publisher::Targets {
            users: vec![user.to_owned()],
            ..publisher::Targets::default()
        };
        self.control(Reach::Nodes(targets), control).await
    }

    /// Sends `control` where `reach` says and waits for the answers, one command timeout at
    /// most. An operation that some node did not answer may or may not have taken place there:
    /// an error says so rather than a count that is silently short.
    async fn control(&self, reach: Reach, control: Operation) -> Result<usize, HubError> {
        if !self.is_up() {
            return Err(HubError::unavailable(
                "the cluster's Redis is unreachable; nothing was done on other nodes",
            ));
        }
        let ticket = self.link.tallies.open();
        let message = wire::encode_control(self.id, ticket.id(), &control);
        let outgoing = Outgoing {
            reach,
            ticket: Some(ticket.id()),
            message,
        };
        if !self.publisher.offer(Bundle::one(outgoing)) {
            return Err(HubError::unavailable(
                "the queue to Redis is full; nothing was done on other nodes",
            ));
        }
        let deadline = tokio::time::Instant::now() + self.link.timings.command_timeout;
        let count = count(vec![ticket], deadline).await;
        if count.partial {
            return Err(HubError::unavailable(format!(
                "{} of {} nodes answered in time (or the send to Redis failed); the others may or may not have done it",
                count.answered, count.nodes
            )));
        }
        Ok(count.delivered)
    }

    /// Whether this node can reach the other nodes now: subscribed, and its last commands went
    /// through.
    pub(crate) fn is_up(&self) -> bool {
        self.link.health.is_up()
    }

    /// Sends `frame` to the other nodes that `recipients` may select a connection on. Never
    /// waits: it is queued for this node's one publisher, which keeps the order.
    pub(crate) fn publish(&self, recipients: &[Recipient], frame: &Frame) {
        let Some(reach) = reach(recipients, self.id) else {
            return;
        };
        let outgoing = Outgoing {
            reach,
            ticket: None,
            message: wire::encode(self.id, None, recipients, frame),
        };
        if !self.publisher.offer(Bundle::one(outgoing)) {
            self.link.health.dropped(1, "the queue to Redis is full");
        }
    }

    /// Sends envelopes (already framed) to the other nodes with targets as one bundle that Redis
    /// takes whole or not at all, and waits until Redis has taken it, [`CONFIRM_WAIT`] at most.
    /// The nodes it reaches report how many connections they queued each to ([`count`], with the
    /// returned tickets).
    ///
    /// An error means that nothing was delivered on any node, and nothing will be: the bundle
    /// carries a deadline on Redis's clock, [`CONFIRM_DEADLINE`] from now, past which the routing
    /// script refuses it, so a Redis that was stopped and runs it later sends nothing. (What
    /// remains: Redis ran it in time and its answer took longer than the difference to come
    /// back.)
    pub(crate) async fn publish_confirmed<'a>(
        &self,
        envelopes: impl Iterator<Item = (&'a [Recipient], &'a Frame)>,
    ) -> Result<Vec<Ticket>, HubError> {
        let Some(now) = self.link.clock.now() else {
            return Err(HubError::unavailable(
                "this node has not heard from the cluster's Redis yet; nothing was delivered",
            ));
        };
        let mut tickets = Vec::new();
        let mut parts = Vec::new();
        for (recipients, frame) in envelopes {
            let Some(reach) = reach(recipients, self.id) else {
                continue;
            };
            let ticket = self.link.tallies.open();
            let message = wire::encode(self.id, Some(ticket.id()), recipients, frame);
            parts.push(Outgoing {
                reach,
                ticket: Some(ticket.id()),
                message,
            });
            tickets.push(ticket);
        }
        if parts.is_empty() {
            return Ok(tickets);
        }
        let deadline = now + CONFIRM_DEADLINE.as_millis() as u64;
        let bundle = Bundle {
            parts,
            deadline: Some(deadline),
        };
        if !self.publisher.offer(bundle) {
            return Err(HubError::unavailable(
                "the queue to the cluster's Redis is full; nothing was delivered",
            ));
        }
        let wait = tokio::time::Instant::now() + CONFIRM_WAIT;
        if !tally::confirmed(&tickets, wait).await {
            return Err(HubError::unavailable(
                "the cluster's Redis did not take the envelopes in time; nothing was delivered",
            ));
        }
        Ok(tickets)
    }
}

/// How long the publish endpoint waits for Redis to take its envelopes before it answers `503`.
pub(crate) const CONFIRM_WAIT: Duration = Duration::from_millis(80);
/// How long after it was sent Redis may still run a confirmed bundle: well under
/// [`CONFIRM_WAIT`], so that Redis's answer has the rest of it to come back.
pub(crate) const CONFIRM_DEADLINE: Duration = Duration::from_millis(40);

/// Which nodes an envelope may have targets on, or `None` when only this one.
fn reach(recipients: &[Recipient], own: NodeId) -> Option<Reach> {
    let mut includes = recipients
        .iter()
        .filter(|r| !r.kind.is_exclude())
        .peekable();
    if includes.peek().is_none() || recipients.iter().any(|r| r.kind == RecipientKind::All) {
        // No recipients (the default group), only exclusions, or `all`: anyone, anywhere.
        return Some(Reach::Everywhere);
    }
    let mut targeted = publisher::Targets::default();
    for include in includes {
        match include.kind {
            RecipientKind::Group => targeted.groups.push(include.value.clone()),
            RecipientKind::User => targeted.users.push(include.value.clone()),
            RecipientKind::Connection => {
                // An id that does not parse selects nobody, anywhere.
                if let Ok(id) = include.value.parse::<ConnectionId>() {
                    let node = NodeId::of(id);
                    if node != own && !targeted.nodes.contains(&node) {
                        targeted.nodes.push(node);
                    }
                }
            }
            _ => {}
        }
    }
    let nowhere =
        targeted.groups.is_empty() && targeted.users.is_empty() && targeted.nodes.is_empty();
    (!nowhere).then_some(Reach::Nodes(targeted))
}

/// What every cluster task needs to talk to Redis.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) client: redis::Client,
    pub(crate) names: Names,
    pub(crate) id: NodeId,
    pub(crate) timings: Timings,
    pub(crate) health: Arc<Health>,
    pub(crate) tallies: Arc<Tallies>,
    pub(crate) clock: Arc<heartbeat::Clock>,
}

impl Link {
    /// A new command connection, within the command timeout.
    pub(crate) async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timings.command_timeout))
            .set_response_timeout(Some(self.timings.command_timeout));
        let connecting = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.timings.command_timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}

/// Waits between attempts to reach Redis: doubling from the shortest wait to the longest.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    timings: Timings,
}

impl Backoff {
    pub(crate) fn new(timings: Timings) -> Self {
        Self {
            next: timings.retry_min,
            timings,
        }
    }

    /// How long to wait before the next attempt; each call doubles the next.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.timings.retry_max);
        wait
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.timings.retry_min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> NodeId {
        NodeId(7)
    }

    fn on(node: u32) -> String {
        format!("{node:08x}{:024x}", 1)
    }

    #[test]
    fn everyone_goes_on_the_broadcast_channel() {
        for recipients in [
            vec![],
            vec![Recipient::all()],
            vec![Recipient::group("g"), Recipient::all()],
            vec![Recipient::all_but_user("ann")],
        ] {
            assert!(
                matches!(reach(&recipients, own()), Some(Reach::Everywhere)),
                "{recipients:?}"
            );
        }
    }

    #[test]
    fn includes_name_the_nodes_and_own_connections_stay_home() {
        assert!(reach(&[Recipient::connection(on(7))], own()).is_none());
        assert!(reach(&[Recipient::connection("not an id")], own()).is_none());
        let Some(Reach::Nodes(targets)) = reach(
            &[
                Recipient::group("g"),
                Recipient::user("u"),
                Recipient::connection(on(9)),
                Recipient::connection(on(9)),
                Recipient::connection(on(7)),
                Recipient::all_but_group("h"),
            ],
            own(),
        ) else {
            panic!("targeted")
        };
        assert_eq!(targets.groups, ["g"]);
        assert_eq!(targets.users, ["u"]);
        assert_eq!(targets.nodes, [NodeId(9)]);
    }
}
