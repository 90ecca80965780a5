//! The close codes the hub sends (RFC 6455 §7.4.1), named for why it sends them.

/// The server is shutting down.
pub(crate) const GOING_AWAY: u16 = 1001;
/// The client broke a rule of the hub (it did not keep up with its messages, a message too slow
/// to arrive, too many messages).
pub(crate) const POLICY: u16 = 1008;
/// A message or frame over the size limit.
pub(crate) const TOO_BIG: u16 = 1009;
/// Something failed inside the hub.
pub(crate) const INTERNAL: u16 = 1011;
/// The hub is over its memory budget and sheds the connections furthest behind.
pub(crate) const OVERLOADED: u16 = 1013;
