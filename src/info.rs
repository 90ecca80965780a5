//! What the application is told about a connection: in a forwarded request and in the
//! connect and disconnect callbacks.

use crate::id::ConnectionId;

/// A connection as the hub knows it: trusted, since only the hub sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The hub's id for the connection.
    pub connection_id: ConnectionId,
    /// Its user (`""` when anonymous).
    pub user_id: String,
    /// Its groups when the message was handled (the first is its `groupId`).
    pub groups: Vec<String>,
}

impl ConnectionInfo {
    /// A connection's description, for testing a handler without a hub. (Forging one gains a
    /// client nothing: the `Forwarded` extractor reads it from a request extension, which only code
    /// in the application's process can set.)
    pub fn new(connection_id: ConnectionId, user_id: String, groups: Vec<String>) -> Self {
        Self {
            connection_id,
            user_id,
            groups,
        }
    }

    /// The connection's `groupId`: its first group, or `""`.
    pub fn group_id(&self) -> &str {
        self.groups.first().map_or("", String::as_str)
    }
}
