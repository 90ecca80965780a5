//! This node's membership in Redis, kept in step with the registry: its id in the set of each
//! group and user it has members of (what routing reads), and the record of each of its
//! connections (what questions about connections read, `records.rs`).
//!
//! The registry reports a change under its lock, where nothing may wait, so the change is only
//! noted here; a task writes it. What it writes is the registry's state when it writes, not the
//! change: a group joined and left again before the task runs costs nothing, and a write that
//! fails is simply tried again, since the state it writes is still true or newer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{watch, Notify};

use super::records::Scripts;
use super::{Backoff, Link};
use crate::id::ConnectionId;
use crate::membership::{Change, Scope, Watch};
use crate::meters::backplane::Task;
use crate::node::Node;

/// A group (`true`) or a user (`false`), owned.
type Key = (bool, Box<str>);

/// What is still to be written.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    pending: Mutex<Pending>,
    wake: Notify,
    /// The generation of the last changes written: see [`settled`](Interest::settled).
    written: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Pending {
    scopes: HashSet<Key>,
    /// Connections whose record is to be written, or removed when they are gone.
    connections: HashSet<ConnectionId>,
    /// Every group, user and connection this node has: after Redis was away.
    everything: bool,
    /// Changes noted so far: a change is written once a write of this generation or a later
    /// one has succeeded.
    generation: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.everything && self.scopes.is_empty() && self.connections.is_empty()
    }
}

impl Watch for Interest {
    fn changed(&self, change: Change<'_>) {
        let key = match change.scope {
            Scope::Group(group) => (true, group.into()),
            Scope::User(user) => (false, user.into()),
        };
        let mut pending = self.pending();
        pending.scopes.insert(key);
        pending.generation += 1;
        drop(pending);
        self.wake.notify_one();
    }

    fn connection_changed(&self, connection: ConnectionId) {
        let mut pending = self.pending();
        pending.connections.insert(connection);
        pending.generation += 1;
        drop(pending);
        self.wake.notify_one();
    }
}

impl Interest {
    /// Writes this node's whole membership again.
    pub(crate) fn resync(&self) {
        let mut pending = self.pending();
        pending.everything = true;
        pending.generation += 1;
        drop(pending);
        self.wake.notify_one();
    }

    /// Waits until every change noted so far is in Redis, `timeout` at most: a connection's
    /// group is then known to every node, and what they send it arrives.
    pub(crate) async fn settled(&self, timeout: std::time::Duration) -> bool {
        let target = self.pending().generation;
        let mut written = self.written.subscribe();
        let settled = async { written.wait_for(|&written| written >= target).await.is_ok() };
        tokio::time::timeout(timeout, settled)
            .await
            .unwrap_or(false)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is to be written, with the generation it brings Redis to.
    fn take(&self) -> Pending {
        let mut pending = self.pending();
        let generation = pending.generation;
        let taken = std::mem::take(&mut *pending);
        pending.generation = generation;
        taken
    }

    /// Puts back what could not be written, under anything noted since.
    fn put_back(&self, failed: Pending) {
        let mut pending = self.pending();
        pending.everything |= failed.everything;
        pending.scopes.extend(failed.scopes);
        pending.connections.extend(failed.connections);
    }
}

/// Writes changes as they are noted, until the node is dropped.
pub(crate) async fn run(interest: Arc<Interest>, node: Weak<Node>, link: Link) {
    let scripts = Scripts::new();
    let mut connection = None;
    let mut backoff = Backoff::new(link.timings);
    loop {
        // Woken by a change, or now and then to notice that the node is gone.
        let _ = tokio::time::timeout(link.timings.ping_every, interest.wake.notified()).await;
        loop {
            let Some(node) = node.upgrade() else {
                return;
            };
            let pending = interest.take();
            if pending.is_empty() {
                break;
            }
            let generation = pending.generation;
            let pipe = pipeline(&node, &pending, &scripts, &link);
            drop(node);
            let written = match connection.as_mut() {
                Some(c) => {
                    let writing = pipe.exec_async(c);
                    match tokio::time::timeout(link.timings.command_timeout, writing).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    }
                }
                None => match connect(&scripts, &link).await {
                    Ok(c) => {
                        connection = Some(c);
                        // Written on the next turn, with anything noted meanwhile.
                        interest.put_back(pending);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match written {
                Ok(()) => {
                    backoff.reset();
                    interest.written.send_if_modified(|written| {
                        let newer = generation > *written;
                        *written = (*written).max(generation);
                        newer
                    });
                }
                Err(e) => {
                    link.health.redis_error(Task::Interest);
                    tracing::debug!(error = %e, "writing this node's membership to Redis failed; will retry");
                    connection = None;
                    interest.put_back(pending);
                    backoff.wait().await;
                }
            }
        }
    }
}

/// A command connection with the record scripts loaded.
async fn connect(
    scripts: &Scripts,
    link: &Link,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let mut connection = link.connect().await?;
    scripts.load(&mut connection, link).await?;
    Ok(connection)
}

/// `SADD` this node to the set of each group and user it has, `SREM` it from the others; write
/// the record of each connection that changed, or remove it when the connection is gone.
fn pipeline(node: &Node, pending: &Pending, scripts: &Scripts, link: &Link) -> redis::Pipeline {
    let id = link.id.to_string();
    // The keys this node is in, so that a node that finds it dead can take it out of them.
    let own = link.names.scopes_of(link.id);
    let key = |group: bool, name: &str| {
        if group {
            link.names.group(name)
        } else {
            link.names.user(name)
        }
    };
    let mut pipe = redis::pipe();
    if pending.everything {
        let (groups, users) = node.scopes();
        let groups = groups.iter().map(|g| (true, g.as_str()));
        for (group, name) in groups.chain(users.iter().map(|u| (false, u.as_str()))) {
            let key = key(group, name);
            pipe.cmd("SADD").arg(&key).arg(&id).ignore();
            pipe.cmd("SADD").arg(&own).arg(&key).ignore();
        }
    }
    for (group, name) in &pending.scopes {
        let scope = if *group {
            Scope::Group(name)
        } else {
            Scope::User(name)
        };
        let command = if node.has(scope) { "SADD" } else { "SREM" };
        let key = key(*group, name);
        pipe.cmd(command).arg(&key).arg(&id).ignore();
        pipe.cmd(command).arg(&own).arg(&key).ignore();
    }
    let everyone;
    let connections: Box<dyn Iterator<Item = &ConnectionId>> = if pending.everything {
        everyone = node.connections();
        Box::new(everyone.iter().chain(&pending.connections))
    } else {
        Box::new(pending.connections.iter())
    };
    for &connection in connections {
        let invocation = match node.info(connection) {
            Some(info) => {
                let mut invocation = scripts.put.prepare_invoke();
                invocation
                    .arg(link.names.prefix())
                    .arg(&id)
                    .arg(connection.to_string())
                    .arg(&info.user_id)
                    .arg(info.data_json().unwrap_or(""))
                    .arg(&info.groups);
                invocation
            }
            None => {
                let mut invocation = scripts.forget.prepare_invoke();
                invocation
                    .arg(link.names.prefix())
                    .arg(&id)
                    .arg(connection.to_string());
                invocation
            }
        };
        pipe.invoke_script(&invocation).ignore();
    }
    pipe
}
