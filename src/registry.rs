//! Connection state: who is connected, their user and groups, and the indices routing reads.
//!
//! Members live in a slab so that the group and user indices hold small integer keys: fan-out walks
//! an index and reads members by position, with no hashing per recipient. The registry is generic
//! over what it keeps per connection (`T`, the outbox in the hub) so routing can be tested alone.

use std::collections::{HashMap, HashSet};

use crate::id::ConnectionId;

/// A member's position in the slab.
pub(crate) type Slot = u32;

#[derive(Debug)]
pub(crate) struct Member<T> {
    pub(crate) id: ConnectionId,
    /// `""` for an anonymous connection, which is in no user's index.
    pub(crate) user: Box<str>,
    /// Sorted, without duplicates; empty means the default group.
    pub(crate) groups: Vec<Box<str>>,
    pub(crate) outbox: T,
}

#[derive(Debug)]
pub(crate) struct Registry<T> {
    slots: Vec<Option<Member<T>>>,
    free: Vec<Slot>,
    by_id: HashMap<ConnectionId, Slot>,
    groups: HashMap<Box<str>, HashSet<Slot>>,
    users: HashMap<Box<str>, HashSet<Slot>>,
    ungrouped: HashSet<Slot>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            groups: HashMap::new(),
            users: HashMap::new(),
            ungrouped: HashSet::new(),
        }
    }
}

impl<T> Registry<T> {
    /// Adds a connection. Empty group names are skipped: `""` is the default group, which is
    /// membership in no group.
    pub(crate) fn insert(&mut self, id: ConnectionId, user: &str, groups: &[&str], outbox: T) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                // The connection limit keeps this far below u32::MAX.
                Slot::try_from(self.slots.len() - 1).unwrap_or(Slot::MAX)
            }
        };
        if !user.is_empty() {
            self.users.entry(user.into()).or_default().insert(slot);
        }
        let mut member_groups: Vec<Box<str>> = groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|&g| g.into())
            .collect();
        member_groups.sort_unstable();
        member_groups.dedup();
        if member_groups.is_empty() {
            self.ungrouped.insert(slot);
        }
        for g in &member_groups {
            self.groups.entry(g.clone()).or_default().insert(slot);
        }
        self.by_id.insert(id, slot);
        self.slots[slot as usize] = Some(Member {
            id,
            user: user.into(),
            groups: member_groups,
            outbox,
        });
    }

    pub(crate) fn remove(&mut self, id: ConnectionId) -> Option<Member<T>> {
        let slot = self.by_id.remove(&id)?;
        let member = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if !member.user.is_empty() {
            remove_from_index(&mut self.users, &member.user, slot);
        }
        if member.groups.is_empty() {
            self.ungrouped.remove(&slot);
        }
        for g in &member.groups {
            remove_from_index(&mut self.groups, g, slot);
        }
        Some(member)
    }

    /// Puts a connection into a group. False when the connection is unknown or already in it.
    pub(crate) fn join(&mut self, id: ConnectionId, group: &str) -> bool {
        if group.is_empty() {
            return false;
        }
        let Some(&slot) = self.by_id.get(&id) else {
            return false;
        };
        let Some(member) = self.slots[slot as usize].as_mut() else {
            return false;
        };
        let Err(at) = member.groups.binary_search_by(|g| (**g).cmp(group)) else {
            return false;
        };
        if member.groups.is_empty() {
            self.ungrouped.remove(&slot);
        }
        member.groups.insert(at, group.into());
        self.groups.entry(group.into()).or_default().insert(slot);
        true
    }

    /// Takes a connection out of a group. False when the connection is unknown or not in it.
    pub(crate) fn leave(&mut self, id: ConnectionId, group: &str) -> bool {
        let Some(&slot) = self.by_id.get(&id) else {
            return false;
        };
        let Some(member) = self.slots[slot as usize].as_mut() else {
            return false;
        };
        let Ok(at) = member.groups.binary_search_by(|g| (**g).cmp(group)) else {
            return false;
        };
        member.groups.remove(at);
        if member.groups.is_empty() {
            self.ungrouped.insert(slot);
        }
        remove_from_index(&mut self.groups, group, slot);
        true
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<&Member<T>> {
        self.at(*self.by_id.get(&id)?)
    }

    pub(crate) fn at(&self, slot: Slot) -> Option<&Member<T>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub(crate) fn slot_of(&self, id: ConnectionId) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &Member<T>> {
        self.slots.iter().flatten()
    }

    pub(crate) fn group(&self, group: &str) -> Option<&HashSet<Slot>> {
        self.groups.get(group)
    }

    pub(crate) fn user(&self, user: &str) -> Option<&HashSet<Slot>> {
        self.users.get(user)
    }

    pub(crate) fn ungrouped(&self) -> &HashSet<Slot> {
        &self.ungrouped
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(|g| &**g)
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(|u| &**u)
    }
}

fn remove_from_index(index: &mut HashMap<Box<str>, HashSet<Slot>>, key: &str, slot: Slot) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&slot);
        if set.is_empty() {
            // Empty entries would let a client grow the index without bound by naming groups.
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> ConnectionId {
        ConnectionId::from_u128(n)
    }

    #[test]
    fn indices_follow_insert_join_leave_remove() {
        let mut r = Registry::default();
        r.insert(id(1), "ann", &["a"], ());
        r.insert(id(2), "ann", &[], ());
        r.insert(id(3), "", &["a", "b", "a"], ());
        assert_eq!((r.len(), r.user_count(), r.group_count()), (3, 1, 2));
        assert_eq!(r.user("ann").map(HashSet::len), Some(2));
        assert_eq!(r.ungrouped().len(), 1);
        assert_eq!(r.get(id(3)).map(|m| m.groups.len()), Some(2));

        assert!(r.join(id(2), "b"));
        assert!(!r.join(id(2), "b"), "joining twice is a no-op");
        assert!(!r.join(id(9), "b"), "unknown connection");
        assert!(r.ungrouped().is_empty());
        assert_eq!(r.group("b").map(HashSet::len), Some(2));

        assert!(r.leave(id(2), "b"));
        assert!(!r.leave(id(2), "b"));
        assert_eq!(r.ungrouped().len(), 1);

        assert!(r.remove(id(3)).is_some());
        assert!(r.remove(id(3)).is_none());
        assert!(r.group("b").is_none(), "an emptied group disappears");
        r.remove(id(1));
        r.remove(id(2));
        assert_eq!((r.len(), r.user_count(), r.group_count()), (0, 0, 0));
        assert!(r.ungrouped().is_empty());
    }

    #[test]
    fn slots_are_reused() {
        let mut r = Registry::default();
        r.insert(id(1), "", &[], ());
        r.remove(id(1));
        r.insert(id(2), "", &[], ());
        assert_eq!(r.slot_of(id(2)), Some(0));
        assert_eq!(r.members().count(), 1);
    }
}
