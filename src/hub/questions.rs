//! What the hub answers about connections: counts, members of a group or user, one
//! connection's user, groups and data; for the whole cluster, or this node alone (`local_*`).

#[cfg(feature = "cluster")]
use crate::cluster::{Answer, Question};
use crate::error::HubError;
use crate::id::ConnectionId;
use crate::info::ConnectionInfo;

use super::Hub;

impl Hub {
    /// How many sockets are connected, on every node of the cluster: this node's count, and
    /// the other live nodes' from Redis. On a single node it is
    /// [`local_connection_count`](Self::local_connection_count) and never fails.
    pub async fn connection_count(&self) -> Result<usize, HubError> {
        let here = self.local_connection_count();
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if let Answer::Counts { connections, .. } = cluster.ask(Question::Counts).await? {
                return Ok(here + connections);
            }
        }
        Ok(here)
    }

    /// How many distinct non-empty user ids are connected, on every node. In a cluster this is
    /// Redis's count, which may lag this node's last changes by a Redis round trip.
    pub async fn user_count(&self) -> Result<usize, HubError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if let Answer::Counts { users, .. } = cluster.ask(Question::Counts).await? {
                return Ok(users);
            }
        }
        Ok(self.local_user_count())
    }

    /// How many groups have at least one connection, on any node; as
    /// [`user_count`](Self::user_count).
    pub async fn group_count(&self) -> Result<usize, HubError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if let Answer::Counts { groups, .. } = cluster.ask(Question::Counts).await? {
                return Ok(groups);
            }
        }
        Ok(self.local_group_count())
    }

    /// The connections of a user (all of their tabs and devices), on every node.
    pub async fn user_connections(&self, user_id: &str) -> Result<Vec<ConnectionId>, HubError> {
        let here = self.local_user_connections(user_id);
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if let Answer::Connections(others) = cluster.ask(Question::User(user_id)).await? {
                return Ok(here.into_iter().chain(others).collect());
            }
        }
        Ok(here)
    }

    /// The connections in a group, on every node.
    pub async fn group_connections(&self, group: &str) -> Result<Vec<ConnectionId>, HubError> {
        let here = self.local_group_connections(group);
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if let Answer::Connections(others) = cluster.ask(Question::Group(group)).await? {
                return Ok(here.into_iter().chain(others).collect());
            }
        }
        Ok(here)
    }

    /// The groups a connection is in, whichever node it is on, or `None` when no node has it.
    pub async fn groups_of(
        &self,
        connection: ConnectionId,
    ) -> Result<Option<Vec<String>>, HubError> {
        Ok(self.connection(connection).await?.map(|info| info.groups))
    }

    /// A connection's user, groups (sorted) and data ([`Identity::with_data`](crate::Identity::with_data)),
    /// whichever node it is on, or `None` when no node has it: for an administrator's "who is
    /// this", or a check before acting on a connection named in a message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wshub::HubError> {
    /// let hub = wshub::Hub::builder().build();
    /// let id = "0123456789abcdef0123456789abcdef".parse().unwrap();
    /// assert_eq!(hub.connection(id).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn connection(
        &self,
        connection: ConnectionId,
    ) -> Result<Option<ConnectionInfo>, HubError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if !cluster.owns(connection) {
                if let Answer::Connection(info) =
                    cluster.ask(Question::Connection(connection)).await?
                {
                    return Ok(info);
                }
            }
        }
        Ok(self.local_connection(connection))
    }

    /// A connection of this node: its user, groups (sorted) and data; `None` when it is not here.
    pub fn local_connection(&self, connection: ConnectionId) -> Option<ConnectionInfo> {
        self.inner.node.info(connection)
    }

    /// How many sockets this node has.
    pub fn local_connection_count(&self) -> usize {
        self.inner.node.connection_count()
    }

    /// How many distinct non-empty user ids this node's connections have.
    pub fn local_user_count(&self) -> usize {
        self.inner.node.user_count()
    }

    /// How many groups this node's connections are in.
    pub fn local_group_count(&self) -> usize {
        self.inner.node.group_count()
    }

    /// This node's connections of a user.
    pub fn local_user_connections(&self, user_id: &str) -> Vec<ConnectionId> {
        self.inner.node.user_connections(user_id)
    }

    /// This node's connections in a group.
    pub fn local_group_connections(&self, group: &str) -> Vec<ConnectionId> {
        self.inner.node.group_connections(group)
    }

    /// The groups of a connection of this node, or `None` when it is not here.
    pub fn local_groups_of(&self, connection: ConnectionId) -> Option<Vec<String>> {
        self.inner.node.groups_of(connection)
    }
}
