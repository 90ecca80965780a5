//! Which connections this node has, and which groups and users they are in, as it changes. The node reports a change
//! from one place, under its registry's lock, in the order it happened; whoever needs to know
//! (a cluster telling the other nodes where to send) watches.

use std::fmt;

use crate::id::ConnectionId;

/// A group or a user: what a recipient can name and a node can have members of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope<'a> {
    Group(&'a str),
    User(&'a str),
}

/// A group or user that this node now has its first connection in (`present`), or its last no
/// longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) present: bool,
}

/// Told of every change. Called with the registry's write lock held, so it must only note the
/// change (and wake whoever acts on it), never wait.
pub(crate) trait Watch: Send + Sync + fmt::Debug {
    /// A group or user gained its first connection here, or lost its last.
    fn changed(&self, change: Change<'_>);

    /// A connection arrived or left, or joined or left a group.
    fn connection_changed(&self, connection: ConnectionId);
}
