//! The baselines' registry: every socket's queue by a counter id, and the same queues by group
//! and by user (scenario 4), with no more logic than a fan-out needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::mpsc;

pub struct Registry<T> {
    next: AtomicU64,
    queues: RwLock<Queues<T>>,
}

struct Queues<T> {
    all: HashMap<u64, mpsc::Sender<T>>,
    groups: HashMap<String, HashMap<u64, mpsc::Sender<T>>>,
    users: HashMap<String, HashMap<u64, mpsc::Sender<T>>>,
}

/// Where a socket is: its group and user from the upgrade request's query, if any.
#[derive(Default, Clone)]
pub struct Place {
    pub group: Option<String>,
    pub user: Option<String>,
}

impl Place {
    /// `groupId` and `userId` of a query string (benchmark values need no percent-decoding).
    pub fn from_query(query: Option<&str>) -> Self {
        let mut place = Self::default();
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("groupId", v)) if !v.is_empty() => place.group = Some(v.to_owned()),
                Some(("userId", v)) if !v.is_empty() => place.user = Some(v.to_owned()),
                _ => {}
            }
        }
        place
    }
}

/// Who a frame goes to.
pub enum Target<'a> {
    All,
    Group(&'a str),
    User(&'a str),
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(0),
            queues: RwLock::new(Queues {
                all: HashMap::new(),
                groups: HashMap::new(),
                users: HashMap::new(),
            }),
        }
    }
}

impl<T: Clone> Registry<T> {
    pub fn insert(&self, queue: mpsc::Sender<T>, place: &Place) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut queues = self.write();
        if let Some(group) = &place.group {
            queues
                .groups
                .entry(group.clone())
                .or_default()
                .insert(id, queue.clone());
        }
        if let Some(user) = &place.user {
            queues
                .users
                .entry(user.clone())
                .or_default()
                .insert(id, queue.clone());
        }
        queues.all.insert(id, queue);
        id
    }

    pub fn remove(&self, id: u64, place: &Place) {
        let mut guard = self.write();
        let queues = &mut *guard;
        queues.all.remove(&id);
        for (index, key) in [
            (&mut queues.groups, &place.group),
            (&mut queues.users, &place.user),
        ] {
            if let Some(key) = key {
                if let Some(members) = index.get_mut(key) {
                    members.remove(&id);
                    if members.is_empty() {
                        index.remove(key);
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.read().all.len()
    }

    /// A clone of `frame` into every targeted queue, without waiting; returns how many took it.
    pub fn send(&self, target: Target<'_>, frame: &T) -> usize {
        let queues = self.read();
        let members = match target {
            Target::All => Some(&queues.all),
            Target::Group(g) => queues.groups.get(g),
            Target::User(u) => queues.users.get(u),
        };
        members.map_or(0, |members| {
            members
                .values()
                .filter(|q| q.try_send(frame.clone()).is_ok())
                .count()
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Queues<T>> {
        self.queues.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Queues<T>> {
        self.queues.write().unwrap_or_else(PoisonError::into_inner)
    }
}
