//! This node's envelopes for the other nodes: one task, one Redis connection, so they leave (and
//! arrive) in the order they were sent; what is queued when the task runs goes as one pipeline.
//!
//! What is queued is a bundle: the envelopes of one send (one for a relay, a whole array for the
//! publish endpoint), run by one call of the routing script, so Redis takes all of them or none.
//! A bundle with a deadline (on Redis's clock) is refused by the script once it has passed: the
//! publish endpoint, which answers `503` when Redis does not confirm in time, can then be sure
//! that a bundle Redis runs later, when it wakes up, delivers nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::NodeId;
use super::{Backoff, Link};
use crate::meters::backplane::Task;

/// What may wait for Redis, in message bytes: past it, envelopes for other nodes are dropped
/// (and counted) rather than held while Redis is slow or away.
const MAX_QUEUED: usize = 64 << 20;
/// Bundles in one pipeline.
const BATCH: usize = 256;

/// Publishes a bundle of messages, unless its deadline has passed. For each, picks the nodes
/// with a member of any named group or user, plus the nodes named directly, and publishes it to
/// each one's inbox but the sender's; or, for everyone, on the broadcast channel. Returns, for
/// each message, how many nodes received it (a node that is gone has no subscriber and does not
/// count; a broadcast counts the sender's own subscriber), or -1 when the deadline had passed.
///
/// ARGV: prefix, origin node, deadline (ms on Redis's clock, 0 for none), then per message: the
/// message, the number of groups (-1: everyone) and the groups, the number of users and the
/// users, the number of nodes and the nodes.
const ROUTE: &str = r"
local prefix, origin, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3])
if deadline > 0 then
  local time = redis.call('TIME')
  if tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) > deadline then
    return -1
  end
end
local counts = {}
local at = 4
local function names(kind, nodes)
  local count = tonumber(ARGV[at])
  for i = at + 1, at + count do
    if kind then
      for _, node in ipairs(redis.call('SMEMBERS', prefix .. kind .. ARGV[i])) do
        nodes[node] = true
      end
    else
      nodes[ARGV[i]] = true
    end
  end
  at = at + count + 1
end
while at <= #ARGV do
  local message = ARGV[at]
  at = at + 1
  if tonumber(ARGV[at]) < 0 then
    at = at + 1
    table.insert(counts, redis.call('PUBLISH', prefix .. ':all', message))
  else
    local nodes = {}
    names(':g:', nodes)
    names(':u:', nodes)
    names(nil, nodes)
    nodes[origin] = nil
    local sent = 0
    for node in pairs(nodes) do
      sent = sent + redis.call('PUBLISH', prefix .. ':n:' .. node, message)
    end
    table.insert(counts, sent)
  end
end
return counts
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

/// A message on its way to other nodes.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) reach: Reach,
    /// Set when the sender counts: Redis's answer (how many nodes) goes to its tally.
    pub(crate) ticket: Option<u64>,
    pub(crate) message: Vec<u8>,
}

/// Messages that Redis takes all together or not at all.
#[derive(Debug)]
pub(crate) struct Bundle {
    pub(crate) parts: Vec<Outgoing>,
    /// When Redis must no longer run it (ms, Redis's clock).
    pub(crate) deadline: Option<u64>,
}

impl Bundle {
    pub(crate) fn one(outgoing: Outgoing) -> Self {
        Self {
            parts: vec![outgoing],
            deadline: None,
        }
    }

    fn bytes(&self) -> usize {
        self.parts.iter().map(|o| o.message.len()).sum()
    }

    fn tickets(&self) -> impl Iterator<Item = u64> + '_ {
        self.parts.iter().filter_map(|o| o.ticket)
    }
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    queue: mpsc::UnboundedSender<Bundle>,
    queued: Arc<AtomicUsize>,
}

/// The task's side of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    queue: mpsc::UnboundedReceiver<Bundle>,
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

    /// Queues a bundle; false when the queue is over its bound (or the task is gone).
    pub(crate) fn offer(&self, bundle: Bundle) -> bool {
        let len = bundle.bytes();
        let taken = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + len <= MAX_QUEUED).then_some(queued + len)
            });
        if taken.is_err() {
            return false;
        }
        if self.queue.send(bundle).is_err() {
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
                    link.health.redis_error(Task::Publisher);
                    if link.health.set_writing(false) {
                        tracing::warn!(error = %e, "cannot reach Redis to publish: envelopes for other nodes are dropped until it is back");
                    }
                    retry_at = Instant::now() + backoff.next_wait();
                }
            }
        }
        let received = if connection.is_some() {
            tokio::select! {
                received = queue.queue.recv_many(&mut batch, BATCH) => received,
                // Idle: make sure the connection still works, so that the next envelope does
                // not find out by being lost (after a Redis restart, say).
                () = tokio::time::sleep(link.timings.ping_every) => {
                    if !answers(connection.as_mut(), &link).await {
                        link.health.redis_error(Task::Publisher);
                        tracing::debug!("the publishing connection to Redis stopped answering");
                        link.health.set_writing(false);
                        connection = None;
                    }
                    continue;
                }
            }
        } else {
            tokio::select! {
                received = queue.queue.recv_many(&mut batch, BATCH) => received,
                () = tokio::time::sleep_until(retry_at) => continue,
            }
        };
        if received == 0 {
            return;
        }
        let bytes: usize = batch.iter().map(Bundle::bytes).sum();
        queue.queued.fetch_sub(bytes, Ordering::AcqRel);
        let count: usize = batch.iter().map(|b| b.parts.len()).sum();
        let Some(c) = connection.as_mut() else {
            link.health.dropped(count, "Redis is unreachable");
            for ticket in batch
                .drain(..)
                .flat_map(|b| b.tickets().collect::<Vec<_>>())
            {
                link.tallies.failed(ticket);
            }
            continue;
        };
        let pipe = pipeline(&batch, &script, &origin, &link);
        let sent = tokio::time::timeout(
            link.timings.command_timeout,
            pipe.query_async::<Vec<redis::Value>>(c),
        )
        .await;
        let why = match sent {
            Ok(Ok(results)) => {
                for (bundle, result) in batch.drain(..).zip(results) {
                    settle(bundle, &result, &link);
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        // Some of the batch may have gone out: sending it again could deliver twice.
        for ticket in batch
            .drain(..)
            .flat_map(|b| b.tickets().collect::<Vec<_>>())
        {
            link.tallies.failed(ticket);
        }
        link.health.set_writing(false);
        link.health.redis_error(Task::Publisher);
        tracing::warn!(error = %why, "publishing to Redis failed");
        link.health.dropped(count, "publishing to Redis failed");
        connection = None;
        retry_at = Instant::now() + backoff.next_wait();
    }
}

/// Whether the connection answers a `PING` within the command timeout.
async fn answers(connection: Option<&mut MultiplexedConnection>, link: &Link) -> bool {
    let Some(connection) = connection else {
        return false;
    };
    let ping = redis::cmd("PING");
    let ping = ping.query_async::<redis::Value>(connection);
    matches!(
        tokio::time::timeout(link.timings.command_timeout, ping).await,
        Ok(Ok(_))
    )
}

/// Tells the tallies what Redis did with a bundle: how many nodes each message reached, or that
/// its deadline had passed and nothing was sent.
fn settle(bundle: Bundle, result: &redis::Value, link: &Link) {
    let counts = match result {
        // A lone `PUBLISH` (see `pipeline`): how many received it.
        redis::Value::Int(count) => Ok(vec![usize::try_from(*count).unwrap_or(0)]),
        result => redis::from_redis_value_ref::<Vec<usize>>(result),
    };
    let Ok(counts) = counts else {
        // -1: too late, nothing was published.
        for ticket in bundle.tickets() {
            link.tallies.failed(ticket);
        }
        return;
    };
    link.health.published(bundle.parts.len());
    // A broadcast reaches every subscriber, this node's too, which ignores it.
    let own = usize::from(link.health.is_subscribed());
    for (outgoing, reached) in bundle.parts.iter().zip(counts) {
        if let Some(ticket) = outgoing.ticket {
            let others = match outgoing.reach {
                Reach::Everywhere => reached.saturating_sub(own),
                _ => reached,
            };
            link.tallies.sent(ticket, others);
        }
    }
}

/// One pipeline for a batch: a call of the routing script per bundle.
fn pipeline(
    batch: &[Bundle],
    script: &redis::Script,
    origin: &str,
    link: &Link,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for bundle in batch {
        // One message to one node (an answer, an operation) needs no script: a plain PUBLISH
        // costs Redis a tenth as much.
        if let ([one], None) = (bundle.parts.as_slice(), bundle.deadline) {
            if let Reach::Node(node) = one.reach {
                pipe.cmd("PUBLISH")
                    .arg(link.names.inbox(node))
                    .arg(&one.message);
                continue;
            }
        }
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(link.names.prefix())
            .arg(origin)
            .arg(bundle.deadline.unwrap_or(0));
        for outgoing in &bundle.parts {
            invocation.arg(&outgoing.message);
            match &outgoing.reach {
                Reach::Everywhere => {
                    invocation.arg(-1);
                }
                Reach::Nodes(targets) => {
                    invocation
                        .arg(targets.groups.len())
                        .arg(&targets.groups)
                        .arg(targets.users.len())
                        .arg(&targets.users)
                        .arg(targets.nodes.len());
                    for node in &targets.nodes {
                        invocation.arg(node.to_string());
                    }
                }
                Reach::Node(node) => {
                    invocation.arg(0).arg(0).arg(1).arg(node.to_string());
                }
            }
        }
        pipe.invoke_script(&invocation);
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
