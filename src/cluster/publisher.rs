//! This node's envelopes for the other nodes: one task, one Redis connection, so they leave (and
//! arrive) in the order they were sent; what is queued when the task runs goes as one pipeline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::NodeId;
use super::{Backoff, Link};

/// What may wait for Redis, in message bytes: past it, envelopes for other nodes are dropped
/// (and counted) rather than held while Redis is slow or away.
const MAX_QUEUED: usize = 64 << 20;
/// Messages in one pipeline.
const BATCH: usize = 256;

/// Picks the nodes with a member of any named group or user, plus the nodes named directly, and
/// publishes the message to each one's inbox but the sender's. Returns how many nodes received
/// it (a node that is gone, not yet reaped, has no subscriber and does not count).
///
/// ARGV: prefix, origin node, message, number of groups, the groups, number of users, the users,
/// then node ids.
const ROUTE: &str = r"
local prefix, origin, message = ARGV[1], ARGV[2], ARGV[3]
local nodes = {}
local at = 4
for _, kind in ipairs({':g:', ':u:'}) do
  local count = tonumber(ARGV[at])
  for i = at + 1, at + count do
    for _, node in ipairs(redis.call('SMEMBERS', prefix .. kind .. ARGV[i])) do
      nodes[node] = true
    end
  end
  at = at + count + 1
end
for i = at, #ARGV do
  nodes[ARGV[i]] = true
end
nodes[origin] = nil
local sent = 0
for node in pairs(nodes) do
  sent = sent + redis.call('PUBLISH', prefix .. ':n:' .. node, message)
end
return sent
";

/// The nodes an envelope may have targets on.
#[derive(Debug)]
pub(crate) enum Reach {
    /// Any node: the broadcast channel.
    Everywhere,
    /// The nodes with members of these groups or users, and these nodes.
    Nodes(Targets),
    /// One node's inbox: an answer to its ticket.
    Node(NodeId),
}

#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub(crate) groups: Vec<String>,
    pub(crate) users: Vec<String>,
    pub(crate) nodes: Vec<NodeId>,
}

/// An envelope on its way to other nodes.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) reach: Reach,
    /// Set when the sender counts: Redis's answer (how many nodes) goes to its tally.
    pub(crate) ticket: Option<u64>,
    pub(crate) message: Vec<u8>,
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    queue: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
}

/// The task's side of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    queue: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl Publisher {
    pub(crate) fn new() -> (Self, Queue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let queue = Queue {
            queue: rx,
            queued: Arc::clone(&queued),
        };
        (Self { queue: tx, queued }, queue)
    }

    /// Queues a message; false when the queue is over its bound (or the task is gone).
    pub(crate) fn offer(&self, outgoing: Outgoing) -> bool {
        let len = outgoing.message.len();
        let taken = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + len <= MAX_QUEUED).then_some(queued + len)
            });
        if taken.is_err() {
            return false;
        }
        if self.queue.send(outgoing).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Sends what is queued until the hub is dropped. Keeps a connection open (reconnecting with a
/// backoff while Redis is away) so that the node knows whether it can publish before it has to.
pub(crate) async fn run(mut queue: Queue, link: Link) {
    let script = redis::Script::new(ROUTE);
    let broadcast = link.names.broadcast();
    let origin = link.id.to_string();
    let mut connection: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new(link.timings);
    let mut retry_at = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if connection.is_none() && Instant::now() >= retry_at {
            match connect(&script, &link).await {
                Ok(c) => {
                    connection = Some(c);
                    backoff.reset();
                    if link.health.set_writing(true) {
                        tracing::info!("publishing to Redis");
                    }
                }
                Err(e) => {
                    if link.health.set_writing(false) {
                        tracing::warn!(error = %e, "cannot reach Redis to publish: envelopes for other nodes are dropped until it is back");
                    }
                    retry_at = Instant::now() + backoff.next_wait();
                }
            }
        }
        let received = if connection.is_some() {
            queue.queue.recv_many(&mut batch, BATCH).await
        } else {
            tokio::select! {
                received = queue.queue.recv_many(&mut batch, BATCH) => received,
                () = tokio::time::sleep_until(retry_at) => continue,
            }
        };
        if received == 0 {
            return;
        }
        let bytes: usize = batch.iter().map(|o| o.message.len()).sum();
        queue.queued.fetch_sub(bytes, Ordering::AcqRel);
        let count = batch.len();
        let Some(c) = connection.as_mut() else {
            link.health.dropped(count, "Redis is unreachable");
            for ticket in batch.drain(..).filter_map(|o| o.ticket) {
                link.tallies.failed(ticket);
            }
            continue;
        };
        let pipe = pipeline(&batch, &script, &broadcast, &origin, &link);
        let sent = tokio::time::timeout(
            link.timings.command_timeout,
            pipe.query_async::<Vec<usize>>(c),
        )
        .await;
        let why = match sent {
            Ok(Ok(reached)) => {
                // A broadcast reaches every subscriber, this node's too, which ignores it.
                let own = usize::from(link.health.is_subscribed());
                for (outgoing, reached) in batch.drain(..).zip(reached) {
                    if let Some(ticket) = outgoing.ticket {
                        let others = match outgoing.reach {
                            Reach::Everywhere => reached.saturating_sub(own),
                            _ => reached,
                        };
                        link.tallies.sent(ticket, others);
                    }
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        // Some of the batch may have gone out: sending it again could deliver twice.
        for ticket in batch.drain(..).filter_map(|o| o.ticket) {
            link.tallies.failed(ticket);
        }
        link.health.set_writing(false);
        tracing::warn!(error = %why, "publishing to Redis failed");
        link.health.dropped(count, "publishing to Redis failed");
        connection = None;
        retry_at = Instant::now() + backoff.next_wait();
    }
}

/// One pipeline for a batch: a `PUBLISH` on the broadcast channel, or the routing script.
fn pipeline(
    batch: &[Outgoing],
    script: &redis::Script,
    broadcast: &str,
    origin: &str,
    link: &Link,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for outgoing in batch {
        match &outgoing.reach {
            Reach::Everywhere => {
                pipe.cmd("PUBLISH").arg(broadcast).arg(&outgoing.message);
            }
            Reach::Node(node) => {
                pipe.cmd("PUBLISH")
                    .arg(link.names.inbox(*node))
                    .arg(&outgoing.message);
            }
            Reach::Nodes(targets) => {
                let mut invocation = script.prepare_invoke();
                invocation
                    .arg(link.names.prefix())
                    .arg(origin)
                    .arg(&outgoing.message)
                    .arg(targets.groups.len())
                    .arg(&targets.groups)
                    .arg(targets.users.len())
                    .arg(&targets.users);
                for node in &targets.nodes {
                    invocation.arg(node.to_string());
                }
                pipe.invoke_script(&invocation);
            }
        }
    }
    pipe
}

/// A command connection with the routing script loaded, so that pipelines can call it by its
/// hash (Redis may have restarted without it).
async fn connect(script: &redis::Script, link: &Link) -> Result<MultiplexedConnection, String> {
    let mut connection = link.connect().await?;
    let invocation = script.prepare_invoke();
    let loading = invocation.load_async(&mut connection);
    match tokio::time::timeout(link.timings.command_timeout, loading).await {
        Ok(Ok(_)) => Ok(connection),
        Ok(Err(e)) => Err(format!("loading the routing script: {e}")),
        Err(_) => Err("loading the routing script timed out".to_owned()),
    }
}
