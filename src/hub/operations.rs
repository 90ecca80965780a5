//! What the hub does to connections, on whichever node of a cluster they are: moves them between
//! groups, and closes them (a logout).

use crate::error::HubError;
use crate::id::ConnectionId;
use crate::node::Operation;

use super::Hub;

/// A close code an application may send (RFC 6455 §7.4): not one that only a protocol error,
/// an extension or the absence of a code may carry.
fn check_close_code(code: u16) -> Result<(), HubError> {
    if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Ok(());
    }
    Err(HubError::new(format!(
        "{code} is not a close code an application may send (1000, or 3000-4999 for its own)"
    )))
}

impl Hub {
    /// Puts a connection into a group, on whichever node of the cluster it is. Returns false when
    /// the connection is gone or already in it. On a single node, or for a connection of this
    /// node, it does not wait; otherwise it waits for the connection's node (one Redis command
    /// timeout at most) and fails when it cannot know the outcome.
    pub async fn join(&self, connection: ConnectionId, group: &str) -> Result<bool, HubError> {
        let group = group.to_owned();
        let joined = self
            .on_connection(connection, Operation::Join { connection, group })
            .await?;
        if joined {
            // Once it returns, what any node sends the group reaches the connection.
            self.membership_settled().await;
        }
        Ok(joined)
    }

    /// Takes a connection out of a group, on whichever node it is; as [`join`](Self::join).
    pub async fn leave(&self, connection: ConnectionId, group: &str) -> Result<bool, HubError> {
        let group = group.to_owned();
        self.on_connection(connection, Operation::Leave { connection, group })
            .await
    }

    /// [`join`](Self::join) for a connection of this node (in a forwarded handler, the sender's):
    /// never waits. False also when the connection is on another node.
    pub fn join_local(&self, connection: ConnectionId, group: &str) -> bool {
        self.inner.node.join(connection, group)
    }

    /// [`leave`](Self::leave) for a connection of this node: never waits.
    pub fn leave_local(&self, connection: ConnectionId, group: &str) -> bool {
        self.inner.node.leave(connection, group)
    }

    /// Closes a connection, on whichever node it is, with `code` (1000, or an application's
    /// 3000–4999; docs/protocol.md §6) after what it was already sent. Returns false when no node has
    /// it. In a cluster, waits for the connection's node as [`join`](Self::join) does.
    pub async fn disconnect(&self, connection: ConnectionId, code: u16) -> Result<bool, HubError> {
        check_close_code(code)?;
        self.on_connection(connection, Operation::Disconnect { connection, code })
            .await
    }

    /// Closes every connection of `user` on every node, with `code` as in
    /// [`disconnect`](Self::disconnect): what a logout or a revoked session needs, so that no push
    /// reaches the user afterwards. Returns how many were closed; in a cluster, fails when a node
    /// with the user's connections did not answer in time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = wshub::Hub::builder().build();
    /// assert_eq!(hub.disconnect_user("ann", 4001).await, Ok(0), "ann is not connected");
    /// assert!(hub.disconnect_user("ann", 1006).await.is_err(), "1006 is never sent");
    /// # }
    /// ```
    pub async fn disconnect_user(&self, user: &str, code: u16) -> Result<usize, HubError> {
        check_close_code(code)?;
        let here = self.inner.node.disconnect_user(user, code);
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            let operation = Operation::DisconnectUser {
                user: user.to_owned(),
                code,
            };
            return Ok(here + cluster.control_user(user, operation).await?);
        }
        Ok(here)
    }

    /// Carries out an operation on one connection: here when it is this node's (or there is no
    /// cluster), on its node otherwise.
    async fn on_connection(
        &self,
        connection: ConnectionId,
        operation: Operation,
    ) -> Result<bool, HubError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if !cluster.owns(connection) {
                let count = cluster.control_connection(connection, operation).await?;
                return Ok(count > 0);
            }
        }
        #[cfg(not(feature = "cluster"))]
        let _ = connection;
        Ok(self.inner.node.carry_out(&operation) > 0)
    }
}
