//! This process's share of the hub: its connections (the registry), the memory their queues hold
//! (the budget), and the delivery of a frame to those of them a recipient list selects.
//!
//! Everything here is local and synchronous: a delivery takes the registry's read lock, offers a
//! shared frame to each target's mailbox and returns; nothing waits. Whatever decides which
//! *processes* an envelope goes to sits above this, in [`Hub`](crate::Hub).

use std::cell::LazyCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::closing::Asked;
use crate::data::Data;
use crate::envelope::Recipient;
use crate::id::ConnectionId;
use crate::identity::Identity;
use crate::info::ConnectionInfo;
use crate::mailbox::{Mailbox, Refused};
use crate::membership::{Change, Scope, Watch};
use crate::meters;
use crate::registry::{Member, Registry};
use crate::routing::{for_each_target, EmptyRecipients};
use crate::websocket::Frame;

/// This process's connections and their delivery.
#[derive(Debug)]
pub(crate) struct Node {
    registry: RwLock<Registry<Outbox>>,
    /// Set when the hub shuts down: no connection registers after it.
    closed: AtomicBool,
    empty_recipients: EmptyRecipients,
    /// What every connection's frames and partial messages hold, together.
    budget: Arc<Budget>,
    /// When the node last shed connections to get back under its budget; held while it does.
    last_shed: Mutex<Option<Instant>>,
    /// Told when a group or user gains its first connection here or loses its last.
    watch: Option<Arc<dyn Watch>>,
    /// The data of the connections that have some, beside the registry rather than in it: a
    /// member stays one cache line, which fan-out reads for every recipient.
    data: RwLock<HashMap<ConnectionId, Data>>,
    /// Counts what `deliver` queues.
    deliveries: metrics::Counter,
}

/// The way into a connection's socket task.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(pub(crate) Arc<Mailbox>);

impl Outbox {
    /// Queues a frame without waiting and returns what is then pending for the connection. One
    /// whose pending bytes would pass its bound does not keep up: it is closed rather than allowed
    /// to hold up the sender or grow without bound.
    pub(crate) fn offer(&self, frame: Frame) -> Option<usize> {
        match self.0.offer(frame) {
            Ok(pending) => Some(pending),
            Err(Refused::Full) => {
                self.0.close(Asked::SlowConsumer);
                None
            }
            Err(Refused::Closing) => None,
        }
    }

    /// Asks the connection's task to close its socket, and says why.
    pub(crate) fn close(&self, asked: Asked) {
        self.0.close(asked);
    }
}

/// Something done to this node's connections, by this node or at another node's request (so it
/// crosses the network as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Operation {
    Join {
        connection: ConnectionId,
        group: String,
    },
    Leave {
        connection: ConnectionId,
        group: String,
    },
    Disconnect {
        connection: ConnectionId,
        code: u16,
    },
    DisconnectUser {
        user: String,
        code: u16,
    },
}

/// Where a delivered frame went.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// How many connections it was queued to.
    pub(crate) delivered: usize,
    /// Those of them with more than half their bound pending.
    pub(crate) behind: Vec<Arc<Mailbox>>,
}

/// Keeps a connection in the registry; dropping it (however the socket task ends) takes it out.
#[derive(Debug)]
pub(crate) struct Registration {
    node: Arc<Node>,
    id: ConnectionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.node.write();
        if let Some(member) = registry.remove(self.id) {
            if let Some(watch) = &self.node.watch {
                watch.connection_changed(self.id);
                let scopes = member_scopes(&member);
                report_lost(&registry, watch.as_ref(), scopes);
            }
        }
        // After the member: a look-up that finds no member does not ask for its data.
        drop(registry);
        self.node.data_mut().remove(&self.id);
    }
}

impl Node {
    pub(crate) fn new(
        empty_recipients: EmptyRecipients,
        max_buffered_bytes: usize,
        watch: Option<Arc<dyn Watch>>,
    ) -> Self {
        Self {
            watch,
            registry: RwLock::default(),
            closed: AtomicBool::new(false),
            empty_recipients,
            budget: Budget::new(max_buffered_bytes),
            last_shed: Mutex::new(None),
            data: RwLock::default(),
            deliveries: meters::deliveries(),
        }
    }

    /// Queues a frame to every connection of this node that `recipients` select, and says which
    /// of them are behind. `frame` is called for the first target only, so a frame that reaches
    /// nobody here is never built.
    pub(crate) fn deliver(
        &self,
        recipients: &[Recipient],
        frame: impl FnOnce() -> Frame,
    ) -> Routed {
        let frame = LazyCell::new(frame);
        let mut routed = Routed::default();
        let registry = self.read();
        for_each_target(&registry, recipients, self.empty_recipients, |member| {
            let Some(pending) = member.outbox.offer(LazyCell::force(&frame).clone()) else {
                return;
            };
            routed.delivered += 1;
            if member.outbox.0.behind_at(pending) {
                routed.behind.push(Arc::clone(&member.outbox.0));
            }
        });
        drop(registry);
        self.deliveries.increment(routed.delivered as u64);
        drop(frame);
        if let Some(excess) = self.budget.excess() {
            self.shed(excess);
        }
        routed
    }

    /// Gets back under the memory budget: closes the connections furthest behind (most bytes
    /// pending), with 1013, until what they hold covers the excess. Not more often than every
    /// few milliseconds, and never by two callers at once: the scan is over every connection.
    fn shed(&self, excess: usize) {
        /// Connections with less than this pending are never shed: they are keeping up.
        const FLOOR: usize = 64 * 1024;
        const INTERVAL: Duration = Duration::from_millis(20);
        let Ok(mut last) = self.last_shed.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < INTERVAL) {
            return;
        }
        *last = Some(now);
        let registry = self.read();
        let mut behind: Vec<(usize, &Outbox)> = registry
            .members()
            .map(|member| (member.outbox.0.pending(), &member.outbox))
            .filter(|&(pending, _)| pending >= FLOOR)
            .collect();
        behind.sort_unstable_by_key(|&(pending, _)| std::cmp::Reverse(pending));
        let mut freed = 0;
        let mut closed = 0;
        for (pending, outbox) in behind {
            if freed >= excess {
                break;
            }
            outbox.close(Asked::Overloaded);
            freed += pending;
            closed += 1;
        }
        tracing::warn!(
            used = self.budget.used(),
            limit = self.budget.limit(),
            closed,
            "over the memory budget: closed the connections furthest behind"
        );
    }

    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Adds a connection to the registry until the returned guard is dropped; `None` once the
    /// node is closed (checked under the same lock [`close_all`](Self::close_all) reads the
    /// members under, so no connection slips past it).
    pub(crate) fn register(
        self: &Arc<Self>,
        id: ConnectionId,
        identity: &Identity,
        outbox: Outbox,
    ) -> Option<Registration> {
        // Before the member, which look-ups find first: whoever is told of the new connection
        // (the cluster's record writer) reads its data too.
        let has_data = identity.data.json().is_some();
        if has_data {
            self.data_mut().insert(id, identity.data.clone());
        }
        let mut registry = self.write();
        if self.closed.load(Ordering::Acquire) {
            drop(registry);
            if has_data {
                self.data_mut().remove(&id);
            }
            return None;
        }
        let groups: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
        let new = self.watch.as_ref().map(|watch| {
            let user = Scope::User(&identity.user_id);
            let groups = groups.iter().map(|&g| Scope::Group(g));
            let scopes: Vec<Scope<'_>> = std::iter::once(user).chain(groups).collect();
            let new: Vec<Scope<'_>> = scopes
                .into_iter()
                .filter(|&scope| !has(&registry, scope))
                .collect();
            (watch, new)
        });
        registry.insert(id, &identity.user_id, &groups, outbox);
        if let Some((watch, new)) = new {
            watch.connection_changed(id);
            // `has` is false for the anonymous user and the default group, which are no scope.
            for scope in new.into_iter().filter(|&scope| has(&registry, scope)) {
                watch.changed(Change {
                    scope,
                    present: true,
                });
            }
        }
        Some(Registration {
            node: Arc::clone(self),
            id,
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes no connection from now on, and asks every connection to close: the hub shuts down.
    pub(crate) fn close_all(&self) {
        let registry = self.read();
        self.closed.store(true, Ordering::Release);
        for member in registry.members() {
            member.outbox.close(Asked::Shutdown);
        }
    }

    pub(crate) fn join(&self, connection: ConnectionId, group: &str) -> bool {
        let mut registry = self.write();
        let first = registry.group(group).is_none();
        let joined = registry.join(connection, group);
        if let (true, Some(watch)) = (joined, &self.watch) {
            watch.connection_changed(connection);
            if first {
                let scope = Scope::Group(group);
                watch.changed(Change {
                    scope,
                    present: true,
                });
            }
        }
        joined
    }

    pub(crate) fn leave(&self, connection: ConnectionId, group: &str) -> bool {
        let mut registry = self.write();
        let left = registry.leave(connection, group);
        if let (true, Some(watch)) = (left, &self.watch) {
            watch.connection_changed(connection);
            report_lost(&registry, watch.as_ref(), [Scope::Group(group)]);
        }
        left
    }

    /// Whether any connection here is in `scope`.
    #[cfg(feature = "cluster")]
    pub(crate) fn has(&self, scope: Scope<'_>) -> bool {
        has(&self.read(), scope)
    }

    /// A connection's user, groups (sorted) and data, when it is here.
    pub(crate) fn info(&self, connection: ConnectionId) -> Option<ConnectionInfo> {
        let registry = self.read();
        let member = registry.get(connection)?;
        let groups = member.groups.iter().map(|g| g.to_string()).collect();
        let info = ConnectionInfo::new(connection, member.user.to_string(), groups);
        let data = self.data.read().unwrap_or_else(PoisonError::into_inner);
        Some(info.with_data_of(data.get(&connection).cloned().unwrap_or_default()))
    }

    /// Every connection here.
    #[cfg(feature = "cluster")]
    pub(crate) fn connections(&self) -> Vec<ConnectionId> {
        self.read().members().map(|member| member.id).collect()
    }

    /// Every group and user this node has connections in.
    #[cfg(feature = "cluster")]
    pub(crate) fn scopes(&self) -> (Vec<String>, Vec<String>) {
        let registry = self.read();
        let groups = registry.group_names().map(str::to_owned).collect();
        let users = registry.user_names().map(str::to_owned).collect();
        (groups, users)
    }

    /// Carries out `operation` on this node's connections. Returns 1 or 0 for whether a join,
    /// leave or disconnect took place, and how many connections were closed for a user.
    pub(crate) fn carry_out(&self, operation: &Operation) -> usize {
        let done = match operation {
            Operation::Join { connection, group } => self.join(*connection, group),
            Operation::Leave { connection, group } => self.leave(*connection, group),
            Operation::Disconnect { connection, code } => self.disconnect(*connection, *code),
            Operation::DisconnectUser { user, code } => return self.disconnect_user(user, *code),
        };
        usize::from(done)
    }

    /// Asks a connection here to close with `code`; false when it is not here.
    pub(crate) fn disconnect(&self, connection: ConnectionId, code: u16) -> bool {
        let registry = self.read();
        let Some(member) = registry.get(connection) else {
            return false;
        };
        member.outbox.close(Asked::Application(code));
        true
    }

    /// Asks every connection of `user` here to close with `code`; returns how many.
    pub(crate) fn disconnect_user(&self, user: &str, code: u16) -> usize {
        if user.is_empty() {
            return 0;
        }
        let registry = self.read();
        let slots = registry.user(user).into_iter().flatten();
        let members = slots.filter_map(|&slot| registry.at(slot));
        members
            .map(|member| member.outbox.close(Asked::Application(code)))
            .count()
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.read().len()
    }

    pub(crate) fn user_count(&self) -> usize {
        self.read().user_count()
    }

    pub(crate) fn group_count(&self) -> usize {
        self.read().group_count()
    }

    pub(crate) fn user_connections(&self, user_id: &str) -> Vec<ConnectionId> {
        let registry = self.read();
        let slots = registry.user(user_id).into_iter().flatten();
        slots
            .filter_map(|&slot| registry.at(slot).map(|m| m.id))
            .collect()
    }

    pub(crate) fn group_connections(&self, group: &str) -> Vec<ConnectionId> {
        let registry = self.read();
        let slots = registry.group(group).into_iter().flatten();
        slots
            .filter_map(|&slot| registry.at(slot).map(|m| m.id))
            .collect()
    }

    pub(crate) fn groups_of(&self, connection: ConnectionId) -> Option<Vec<String>> {
        let registry = self.read();
        let member = registry.get(connection)?;
        Some(member.groups.iter().map(|g| g.to_string()).collect())
    }

    // A panic while the lock is held cannot leave the registry half-changed in a way that matters
    // more than losing every socket would, so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Registry<Outbox>> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn data_mut(&self) -> RwLockWriteGuard<'_, HashMap<ConnectionId, Data>> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry<Outbox>> {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn has<T>(registry: &Registry<T>, scope: Scope<'_>) -> bool {
    match scope {
        Scope::Group(group) => registry.group(group).is_some(),
        Scope::User(user) => registry.user(user).is_some(),
    }
}

/// A removed member's user and groups.
fn member_scopes<T>(member: &Member<T>) -> impl Iterator<Item = Scope<'_>> {
    let user = Some(Scope::User(&member.user)).filter(|_| !member.user.is_empty());
    user.into_iter()
        .chain(member.groups.iter().map(|g| Scope::Group(g)))
}

/// Reports the scopes among `left` that no connection here is in any more.
fn report_lost<'a, T>(
    registry: &Registry<T>,
    watch: &dyn Watch,
    left: impl IntoIterator<Item = Scope<'a>>,
) {
    for scope in left {
        if !has(registry, scope) {
            watch.changed(Change {
                scope,
                present: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Record(Mutex<Vec<String>>);

    impl Watch for Record {
        fn changed(&self, change: Change<'_>) {
            let sign = if change.present { '+' } else { '-' };
            let scope = match change.scope {
                Scope::Group(g) => format!("g:{g}"),
                Scope::User(u) => format!("u:{u}"),
            };
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{sign}{scope}"));
        }

        fn connection_changed(&self, connection: ConnectionId) {
            let n = connection.to_string().trim_start_matches('0').to_owned();
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("c{n}"));
        }
    }

    impl Record {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    fn connect(node: &Arc<Node>, n: u128, user: &str, groups: &[&str]) -> Registration {
        let identity = groups
            .iter()
            .fold(Identity::user(user), |identity, &g| identity.in_group(g));
        let outbox = Outbox(Arc::new(Mailbox::new(1 << 20)));
        let registration = node.register(ConnectionId::from_u128(n), &identity, outbox);
        registration.unwrap_or_else(|| panic!("the node is open"))
    }

    #[test]
    fn data_is_kept_while_its_connection_is_and_only_when_there_is_some() {
        let node = Arc::new(Node::new(EmptyRecipients::default(), usize::MAX, None));
        let register = |n: u128, identity: Identity| {
            let outbox = Outbox(Arc::new(Mailbox::new(1 << 20)));
            let registration = node.register(ConnectionId::from_u128(n), &identity, outbox);
            registration.unwrap_or_else(|| panic!("the node is open"))
        };
        let ann = register(
            1,
            Identity::user("ann").with_data(&serde_json::json!({"team": 7})),
        );
        let bob = register(2, Identity::user("bob"));
        let info = node.info(ConnectionId::from_u128(1)).unwrap();
        assert_eq!(info.data_json(), Some(r#"{"team":7}"#));
        assert_eq!(
            node.info(ConnectionId::from_u128(2)).unwrap().data_json(),
            None
        );
        assert_eq!(node.data.read().unwrap().len(), 1, "none kept for bob");
        drop((ann, bob));
        assert!(node.info(ConnectionId::from_u128(1)).is_none());
        assert!(node.data.read().unwrap().is_empty(), "ann's went with her");
    }

    #[test]
    fn reports_first_and_last_connection_of_each_group_and_user() {
        let record = Arc::new(Record::default());
        let watch: Arc<dyn Watch> = record.clone();
        let node = Arc::new(Node::new(
            EmptyRecipients::default(),
            usize::MAX,
            Some(watch),
        ));

        let a = connect(&node, 1, "ann", &["x", "y"]);
        assert_eq!(record.take(), ["c1", "+u:ann", "+g:x", "+g:y"]);
        let b = connect(&node, 2, "ann", &["x"]);
        assert_eq!(record.take(), ["c2"], "ann and x have members already");
        let c = connect(&node, 3, "", &[]);
        assert_eq!(
            record.take(),
            ["c3"],
            "the anonymous user and the default group are no scope"
        );

        assert!(node.join(ConnectionId::from_u128(3), "z"));
        assert!(node.join(ConnectionId::from_u128(2), "z"));
        assert!(!node.join(ConnectionId::from_u128(2), "z"), "already in it");
        assert_eq!(record.take(), ["c3", "+g:z", "c2"]);

        assert!(node.leave(ConnectionId::from_u128(3), "z"));
        assert_eq!(record.take(), ["c3"], "2 is still in z");
        assert!(node.leave(ConnectionId::from_u128(2), "z"));
        assert!(
            !node.leave(ConnectionId::from_u128(2), "z"),
            "not in it any more"
        );
        assert_eq!(record.take(), ["c2", "-g:z"]);

        drop(a);
        assert_eq!(record.take(), ["c1", "-g:y"], "ann and x keep connection 2");
        drop(b);
        assert_eq!(record.take(), ["c2", "-u:ann", "-g:x"]);
        drop(c);
        assert_eq!(record.take(), ["c3"]);
    }
}
