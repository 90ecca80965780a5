//! What the nodes of a cluster say to each other through Redis: the names of their channels and
//! keys, and the one message they exchange, an envelope as already framed with its recipients.
//!
//! An envelope is `origin` (the sending node's id, 8 hex digits) and, when the sender wants to
//! know how many connections got it, ` ticket` (a number); `\n`; the recipients as a JSON array
//! of `[type, value]` pairs; `\n`; and the WebSocket frame exactly as the sender's own
//! connections were sent it. The receiving node routes the frame over its own registry with the
//! same recipients, so a connection gets the same bytes whichever node it is on, and no node
//! serialises the envelope again. Its answer to a ticket is `origin ticket count`, with no
//! newline, on the sender's inbox. An operation on another node's connections (join, leave,
//! disconnect) is `origin ticket`, `\n`, `!` and the operation as JSON; it is answered like a
//! count.

use std::fmt;
use std::sync::Arc;

use crate::budget::{Budget, FrameCharge};
use crate::envelope::{Recipient, RecipientKind};
use crate::id::ConnectionId;
use crate::node::Operation;
use crate::websocket::Frame;

/// A node's id: 32 random bits, the first 8 hex digits of its connections' ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NodeId(pub(crate) u32);

impl NodeId {
    /// The node a connection id was made by.
    pub(crate) fn of(connection: ConnectionId) -> Self {
        Self(connection.node_bits())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The names a cluster uses in Redis, all under one prefix so that several clusters (or other
/// applications) can share a Redis.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel every node reads, for envelopes that may reach a connection anywhere.
    pub(crate) fn broadcast(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// The channel only `node` reads.
    pub(crate) fn inbox(&self, node: NodeId) -> String {
        format!("{}:n:{node}", self.prefix)
    }

    /// The keys of the group and user sets `node` is in.
    pub(crate) fn scopes_of(&self, node: NodeId) -> String {
        format!("{}:ns:{node}", self.prefix)
    }

    /// The set of nodes with a connection in `group`.
    pub(crate) fn group(&self, group: &str) -> String {
        format!("{}:g:{group}", self.prefix)
    }

    /// The set of nodes with a connection of `user`.
    pub(crate) fn user(&self, user: &str) -> String {
        format!("{}:u:{user}", self.prefix)
    }
}

/// Encodes an envelope from `origin`; with a ticket, receivers report their count.
pub(crate) fn encode(
    origin: NodeId,
    ticket: Option<u64>,
    recipients: &[Recipient],
    frame: &Frame,
) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = recipients
        .iter()
        .map(|r| (r.kind.as_str(), r.value.as_str()))
        .collect();
    let mut message = Vec::with_capacity(16 + frame.len() + 32 * pairs.len());
    message.extend_from_slice(origin.to_string().as_bytes());
    if let Some(ticket) = ticket {
        message.extend_from_slice(format!(" {ticket}").as_bytes());
    }
    message.push(b'\n');
    // Serialising strings into a Vec cannot fail; JSON text never holds a raw newline.
    let _ = serde_json::to_writer(&mut message, &pairs);
    message.push(b'\n');
    message.extend_from_slice(frame.bytes());
    message
}

/// Encodes an operation from `origin`, answered to `ticket`.
pub(crate) fn encode_control(origin: NodeId, ticket: u64, control: &Operation) -> Vec<u8> {
    let mut message = format!("{origin} {ticket}\n!").into_bytes();
    // Serialising strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut message, control);
    message
}

/// Encodes `origin`'s answer to `ticket`: it queued the envelope to `count` connections.
pub(crate) fn encode_count(origin: NodeId, ticket: u64, count: usize) -> Vec<u8> {
    format!("{origin} {ticket} {count}").into_bytes()
}

/// Encodes a probe `origin` sends itself at `sent` (its own clock): the time it takes to come
/// back is how far behind the node's subscription is.
pub(crate) fn encode_probe(origin: NodeId, sent: u64) -> Vec<u8> {
    format!("?{origin} {sent}").into_bytes()
}

/// A message from another node, decoded.
#[derive(Debug)]
pub(crate) enum Message {
    /// A node's probe of its own subscription.
    Probe {
        origin: NodeId,
        sent: u64,
    },
    Envelope(Incoming),
    /// An operation on this node's connections, to answer to `ticket`.
    Control {
        origin: NodeId,
        ticket: u64,
        control: Operation,
    },
    /// A node's answer to a ticket of ours.
    Count {
        origin: NodeId,
        ticket: u64,
        count: usize,
    },
}

/// An envelope from another node.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) origin: NodeId,
    pub(crate) ticket: Option<u64>,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) frame: Frame,
}

/// Why a message could not be read: only a node of another version, or something that is not a
/// wshub node writing to our channels, sends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Decodes a message, keeping its bytes: the frame is the tail of `message`, charged to `budget`.
pub(crate) fn decode(message: Vec<u8>, budget: &Arc<Budget>) -> Result<Message, Malformed> {
    if let Some(probe) = message.strip_prefix(b"?") {
        return decode_probe(probe);
    }
    let Some(origin_end) = position(&message, 0) else {
        return decode_count(&message);
    };
    let head = std::str::from_utf8(&message[..origin_end]).map_err(|_| Malformed("no origin"))?;
    let (origin, ticket) = match head.split_once(' ') {
        Some((origin, ticket)) => {
            let ticket = ticket
                .parse()
                .map_err(|_| Malformed("the ticket is not a number"))?;
            (origin, Some(ticket))
        }
        None => (head, None),
    };
    let origin = node_id(origin)?;
    if message.get(origin_end + 1) == Some(&b'!') {
        let ticket = ticket.ok_or(Malformed("an operation without a ticket"))?;
        let control = serde_json::from_slice(&message[origin_end + 2..])
            .map_err(|_| Malformed("not an operation"))?;
        return Ok(Message::Control {
            origin,
            ticket,
            control,
        });
    }
    let recipients_end = position(&message, origin_end + 1).ok_or(Malformed("no recipients"))?;
    // Owned: a value with an escape in it cannot be borrowed from the message.
    let pairs: Vec<(String, String)> =
        serde_json::from_slice(&message[origin_end + 1..recipients_end])
            .map_err(|_| Malformed("the recipients are not a list of pairs"))?;
    let recipients = pairs
        .into_iter()
        .map(|(kind, value)| {
            let kind = RecipientKind::parse(&kind).ok_or(Malformed("an unknown recipient type"))?;
            Ok(Recipient { kind, value })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let charge = FrameCharge::new(budget, message.capacity());
    let frame = Frame::received(message, recipients_end + 1, charge)
        .ok_or(Malformed("not one whole text frame"))?;
    Ok(Message::Envelope(Incoming {
        origin,
        ticket,
        recipients,
        frame,
    }))
}

fn decode_count(message: &[u8]) -> Result<Message, Malformed> {
    let text = std::str::from_utf8(message).map_err(|_| Malformed("not an envelope or a count"))?;
    let mut parts = text.split(' ');
    let (Some(origin), Some(ticket), Some(count), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("not an envelope or a count"));
    };
    Ok(Message::Count {
        origin: node_id(origin)?,
        ticket: ticket
            .parse()
            .map_err(|_| Malformed("the ticket is not a number"))?,
        count: count
            .parse()
            .map_err(|_| Malformed("the count is not a number"))?,
    })
}

fn decode_probe(probe: &[u8]) -> Result<Message, Malformed> {
    let text = std::str::from_utf8(probe).map_err(|_| Malformed("not a probe"))?;
    let (origin, sent) = text.split_once(' ').ok_or(Malformed("not a probe"))?;
    Ok(Message::Probe {
        origin: node_id(origin)?,
        sent: sent
            .parse()
            .map_err(|_| Malformed("the probe's time is not a number"))?,
    })
}

fn node_id(text: &str) -> Result<NodeId, Malformed> {
    Some(text)
        .filter(|s| s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .map(NodeId)
        .ok_or(Malformed("the origin is not a node id"))
}

fn position(message: &[u8], from: usize) -> Option<usize> {
    let at = message.get(from..)?.iter().position(|&b| b == b'\n')?;
    Some(from + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    #[test]
    fn a_message_round_trips_with_the_same_frame_bytes() {
        let budget = Budget::unlimited();
        let envelope = Envelope::new("news")
            .with_message("a\nb")
            .to(Recipient::group("g\n1"))
            .to(Recipient::all_but_user("ann"));
        let frame = envelope.to_frame(&budget);
        for ticket in [None, Some(42)] {
            let bytes = encode(NodeId(0xa1b2_c3d4), ticket, &envelope.recipients, &frame);
            assert!(bytes.starts_with(b"a1b2c3d4"));
            let Ok(Message::Envelope(message)) = decode(bytes, &budget) else {
                panic!("an envelope")
            };
            assert_eq!(message.origin, NodeId(0xa1b2_c3d4));
            assert_eq!(message.ticket, ticket);
            assert_eq!(message.recipients, envelope.recipients);
            assert_eq!(message.frame.bytes(), frame.bytes());
        }
    }

    #[test]
    fn an_operation_round_trips() {
        let control = Operation::DisconnectUser {
            user: "a\nb".into(),
            code: 4001,
        };
        let bytes = encode_control(NodeId(3), 5, &control);
        let Ok(Message::Control {
            origin,
            ticket,
            control: got,
        }) = decode(bytes, &Budget::unlimited())
        else {
            panic!("an operation")
        };
        assert_eq!((origin, ticket, got), (NodeId(3), 5, control));
        let unticketed = b"00000003\n!{\"op\":\"join\"}".to_vec();
        assert!(decode(unticketed, &Budget::unlimited()).is_err());
    }

    #[test]
    fn a_count_round_trips() {
        let bytes = encode_count(NodeId(9), 7, 1234);
        let Ok(Message::Count {
            origin,
            ticket,
            count,
        }) = decode(bytes, &Budget::unlimited())
        else {
            panic!("a count")
        };
        assert_eq!((origin, ticket, count), (NodeId(9), 7, 1234));
    }

    #[test]
    fn a_probe_round_trips() {
        let bytes = encode_probe(NodeId(0xfe), 123_456);
        let Ok(Message::Probe { origin, sent }) = decode(bytes, &Budget::unlimited()) else {
            panic!("a probe")
        };
        assert_eq!((origin, sent), (NodeId(0xfe), 123_456));
        for bad in [&b"?000000fe"[..], b"?000000fe x", b"?fe 1"] {
            assert!(
                decode(bad.to_vec(), &Budget::unlimited()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn garbage_is_refused_not_delivered() {
        let budget = Budget::unlimited();
        let frame = Envelope::new("x").to_frame(&budget);
        let mut cut = encode(NodeId(1), None, &[], &frame);
        cut.pop();
        for bad in [
            b"".to_vec(),
            b"zz\n[]\n".to_vec(),
            b"+0000001\n[]\n".to_vec(),
            b"00000001 x\n[]\n".to_vec(),
            b"00000001 1".to_vec(),
            b"00000001 1 2 3".to_vec(),
            b"00000001\n[[\"bogus\",\"\"]]\n".to_vec(),
            b"00000001\n{}\n".to_vec(),
            b"00000001\n[]\n\x81\x05ab".to_vec(),
            cut,
        ] {
            assert!(decode(bad.clone(), &budget).is_err(), "{bad:?}");
        }
    }
}
