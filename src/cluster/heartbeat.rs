//! Which nodes are alive: every node beats (a sorted set of node → last beat, on Redis's clock),
//! and a node that has been beating all along removes the nodes that stopped: their ids leave
//! every group and user set, so no envelope is sent to a node that is gone and no answer waits on
//! one. Writes grow with the number of nodes, not of connections.
//!
//! A node judges others only if its own previous beat is recent: one that comes back from a Redis
//! outage (or a Redis restarted empty) reaps nobody on its first beat. If it finds that it was
//! itself taken for dead, it writes its whole membership again.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::interest::Interest;
use super::records::FORGET_FN;
use super::wire;
use super::{Backoff, Link};
use crate::meters::backplane::Task;
use crate::node::Node;

/// How many dead nodes one beat removes, and how many connection records of each (a script
/// blocks Redis while it runs; a node with more is finished on the next beats).
const REAP_AT_MOST: usize = 8;
const RECORDS_AT_MOST: usize = 2000;

/// Beats, reaps dead nodes, and removes this node's entry in the set of nodes.
///
/// ARGV: prefix, this node, how long (ms) since its last beat a node is dead, how many nodes and
/// how many records of each to remove, and a probe to publish to this node's inbox. Returns
/// `{this node was known and alive before this beat (1 or 0), Redis's time (ms), nodes alive,
/// removed ids...}`. Needs `records::FORGET_FN` before it.
const BEAT: &str = r"
local prefix, node = ARGV[1], ARGV[2]
local dead_after, most, records = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nodes = prefix .. ':nodes'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local last = redis.call('ZSCORE', nodes, node)
local alive = last and (now - tonumber(last)) <= dead_after
redis.call('ZADD', nodes, now, node)
redis.call('PUBLISH', prefix .. ':n:' .. node, ARGV[6])
local live = redis.call('ZCOUNT', nodes, now - dead_after, '+inf')
local result = {alive and 1 or 0, now, live}
if alive then
  local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now - dead_after - 1, 'LIMIT', 0, most)
  for _, gone in ipairs(dead) do
    -- First out of routing, then its connections' records, a bounded number per beat.
    local scopes = prefix .. ':ns:' .. gone
    for _, key in ipairs(redis.call('SMEMBERS', scopes)) do
      redis.call('SREM', key, gone)
    end
    redis.call('DEL', scopes)
    local hash = prefix .. ':c:' .. gone
    local conns = redis.call('HKEYS', hash)
    for i = 1, math.min(#conns, records) do
      forget(prefix, hash, conns[i])
    end
    if #conns <= records then
      redis.call('ZREM', nodes, gone)
      table.insert(result, gone)
    end
  end
end
return result
";

/// Redis's clock as this node sees it: the offset from its own, measured at each beat to within
/// half a round trip. Deadlines that Redis checks are set on it.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// Redis's time minus this node's, in ms, once `known`.
    offset: AtomicI64,
    known: AtomicBool,
}

impl Clock {
    fn local_ms() -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }

    fn set(&self, offset: i64) {
        self.offset.store(offset, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    /// Redis's time now (ms), once a beat has measured it.
    pub(crate) fn now(&self) -> Option<u64> {
        if !self.known.load(Ordering::Acquire) {
            return None;
        }
        let now = Self::local_ms().saturating_add(self.offset.load(Ordering::Relaxed));
        u64::try_from(now).ok()
    }
}

/// How often a node beats, and after how long without a beat it is dead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pulse {
    pub(crate) every: Duration,
    pub(crate) dead_after: Duration,
}

impl Default for Pulse {
    fn default() -> Self {
        Self {
            every: Duration::from_millis(500),
            dead_after: Duration::from_secs(2),
        }
    }
}

/// Beats until the node is dropped.
pub(crate) async fn run(node: Weak<Node>, interest: Arc<Interest>, pulse: Pulse, link: Link) {
    let script = redis::Script::new(&format!("{FORGET_FN}\n{BEAT}"));
    let mut connection = None;
    let mut backoff = Backoff::new(link.timings);
    let mut ticks = tokio::time::interval(pulse.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the last beat found this node alive; a node is new before its first.
    let mut was_alive = true;
    loop {
        ticks.tick().await;
        if node.strong_count() == 0 {
            return;
        }
        if connection.is_none() {
            match link.connect().await {
                Ok(c) => {
                    connection = Some(c);
                    backoff.reset();
                }
                Err(e) => {
                    link.health.redis_error(Task::Heartbeat);
                    tracing::debug!(error = %e, "cannot reach Redis to beat");
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(link.names.prefix())
            .arg(link.id.to_string())
            .arg(pulse.dead_after.as_millis() as u64)
            .arg(REAP_AT_MOST)
            .arg(RECORDS_AT_MOST)
            .arg(wire::encode_probe(link.id, link.health.probe_time()));
        let sent = Clock::local_ms();
        let beat = tokio::time::timeout(
            link.timings.command_timeout,
            invocation.invoke_async::<Vec<redis::Value>>(c),
        )
        .await;
        let received = Clock::local_ms();
        let result = match beat {
            Ok(Ok(result)) => result,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                link.health.redis_error(Task::Heartbeat);
                tracing::debug!(error = %why, "a heartbeat failed");
                connection = None;
                continue;
            }
        };
        let alive = matches!(result.first(), Some(redis::Value::Int(1)));
        if let Some(redis::Value::Int(now)) = result.get(1) {
            // Redis read its clock about halfway through the round trip.
            link.clock.set(*now - (sent + received) / 2);
        }
        if let Some(redis::Value::Int(live)) = result.get(2) {
            link.health.nodes(usize::try_from(*live).unwrap_or(0));
        }
        if !alive && was_alive {
            // New, or back after being taken for dead: the others may have removed this
            // node's membership.
            interest.resync();
        }
        was_alive = alive;
        let reaped: Vec<String> = result
            .iter()
            .skip(3)
            .filter_map(|v| redis::from_redis_value_ref::<String>(v).ok())
            .collect();
        if !reaped.is_empty() {
            tracing::warn!(nodes = ?reaped, "removed nodes that stopped beating, and their membership");
        }
    }
}
