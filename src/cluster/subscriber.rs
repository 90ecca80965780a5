//! Envelopes from the other nodes: one Redis subscription (this node's inbox and the broadcast
//! channel), each message routed over this node's registry as it arrives.
//!
//! A subscription that ends, or a Redis that stops answering its pings, is a gap: envelopes sent
//! meanwhile are missed. The gap is logged and counted; when Redis answers again the node
//! subscribes again and writes its whole membership again (Redis may have restarted empty).

use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::time::Instant;

use super::interest::Interest;
use super::publisher::{Bundle, Outgoing, Publisher, Reach};
use super::wire::{self, Message, NodeId};
use super::{Backoff, Link};
use crate::meters::backplane::Task;
use crate::node::{Node, Operation};
use crate::pace::Pace;

/// Subscribes, and keeps subscribed, until the node is dropped.
pub(crate) async fn run(
    node: Weak<Node>,
    interest: Arc<Interest>,
    publisher: Publisher,
    link: Link,
) {
    let channels = [link.names.inbox(link.id), link.names.broadcast()];
    let mut backoff = Backoff::new(link.timings);
    // Since when envelopes from other nodes may have been missed; not before the first subscribe.
    let mut missing_since: Option<Instant> = None;
    loop {
        if node.strong_count() == 0 {
            return;
        }
        match subscribe(&link, &channels).await {
            Ok((sink, stream)) => {
                link.health.set_subscribed(true);
                backoff.reset();
                if let Some(since) = missing_since.take() {
                    let gaps = link.health.gap_ended();
                    tracing::warn!(
                        gap_ms = since.elapsed().as_millis() as u64,
                        gaps,
                        "subscribed to Redis again: envelopes other nodes sent during the gap were missed"
                    );
                } else {
                    tracing::info!(node = %link.id, "subscribed to Redis");
                }
                // Redis may have lost this node's membership (a restart, a flush): write it all.
                interest.resync();
                let ended = pump(&node, sink, stream, &interest, &publisher, &link).await;
                link.health.set_subscribed(false);
                let Some(why) = ended else {
                    return;
                };
                link.health.redis_error(Task::Subscriber);
                tracing::warn!(why, "lost the Redis subscription: envelopes from other nodes are missed until it is back");
                missing_since = Some(Instant::now());
            }
            Err(e) => {
                link.health.redis_error(Task::Subscriber);
                if missing_since.is_none() {
                    tracing::warn!(error = %e, "cannot subscribe to Redis: envelopes from other nodes are missed until it is back");
                    missing_since = Some(Instant::now());
                }
            }
        }
        backoff.wait().await;
    }
}

async fn subscribe(link: &Link, channels: &[String]) -> Result<(PubSubSink, PubSubStream), String> {
    let subscribing = async {
        let (mut sink, stream) = link.client.get_async_pubsub().await?.split();
        sink.subscribe(channels).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(link.timings.command_timeout, subscribing).await {
        Ok(Ok(subscribed)) => Ok(subscribed),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Routes messages until the subscription fails (returns why) or the node is dropped (`None`).
async fn pump(
    node: &Weak<Node>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    interest: &Arc<Interest>,
    publisher: &Publisher,
    link: &Link,
) -> Option<&'static str> {
    let mut pace = Pace::default();
    let mut check = tokio::time::interval(link.timings.ping_every);
    check.reset();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Some("the connection closed");
                };
                let node = node.upgrade()?;
                receive(&node, message.get_payload_bytes(), interest, publisher, link);
                drop(node);
                pace.tick().await;
            }
            _ = check.tick() => {
                node.upgrade()?;
                // A Redis that is stopped (or a connection that silently died) sends nothing;
                // only an unanswered ping tells.
                let ping = sink.ping::<redis::Value>();
                match tokio::time::timeout(link.timings.command_timeout, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return Some("a ping failed"),
                    Err(_) => return Some("a ping went unanswered"),
                }
            }
        }
    }
}

fn receive(
    node: &Node,
    payload: &[u8],
    interest: &Arc<Interest>,
    publisher: &Publisher,
    link: &Link,
) {
    let incoming = match wire::decode(payload.to_vec(), node.budget()) {
        Ok(Message::Envelope(incoming)) => incoming,
        Ok(Message::Probe { origin, sent }) => {
            if origin == link.id {
                link.health.probe_returned(sent);
            }
            return;
        }
        Ok(Message::Count {
            origin,
            ticket,
            count,
        }) => {
            tracing::trace!(node = %origin, ticket, count, "a node's count");
            link.tallies.reported(ticket, count);
            return;
        }
        Ok(Message::Control {
            origin,
            ticket,
            control,
        }) => {
            let count = node.carry_out(&control);
            if let (Operation::Join { .. }, 1) = (&control, count) {
                // Answered once every node knows: the caller's next publish to the group
                // reaches the connection.
                let (interest, publisher, link) =
                    (Arc::clone(interest), publisher.clone(), link.clone());
                tokio::spawn(async move {
                    interest.settled(link.timings.command_timeout).await;
                    answer(&publisher, &link, origin, ticket, count);
                });
            } else {
                answer(publisher, link, origin, ticket, count);
            }
            return;
        }
        Err(wire::Malformed(why)) => {
            tracing::warn!(why, "a message from the cluster could not be read; dropped");
            return;
        }
    };
    // Its own broadcasts come back to the sender, which delivered them already.
    if incoming.origin == link.id {
        return;
    }
    link.health.received();
    let frame = incoming.frame;
    let routed = node.deliver(&incoming.recipients, || frame);
    if let Some(ticket) = incoming.ticket {
        answer(publisher, link, incoming.origin, ticket, routed.delivered);
    }
}

/// Tells `origin` this node's count for its `ticket`.
fn answer(publisher: &Publisher, link: &Link, origin: NodeId, ticket: u64, count: usize) {
    let answer = Outgoing {
        reach: Reach::Node(origin),
        ticket: None,
        message: wire::encode_count(link.id, ticket, count),
    };
    if !publisher.offer(Bundle::one(answer)) {
        link.health.dropped(1, "the queue to Redis is full");
    }
}
