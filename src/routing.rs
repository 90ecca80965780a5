//! Who receives an envelope (docs/protocol.md §2): the one place that turns a recipient list into a
//! target set. A pure function of the registry's indices.
//!
//! The target set is the union of the include recipients (or every connection when there are
//! only excludes), minus the union of the exclude recipients; each target is visited exactly once.
//! An empty or unknown value (a group nobody is in, a malformed connection id) selects nobody.

use std::collections::HashSet;

use crate::envelope::{Recipient, RecipientKind};
use crate::id::ConnectionId;
use crate::registry::{Member, Registry, Slot};

/// Whom an envelope with an empty `recipients` list reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyRecipients {
    /// The connections that are in no group, as Web Connection documents (the default).
    #[default]
    DefaultGroup,
    /// Every connection.
    Everyone,
}

/// Calls `visit` once for every connection the recipients select.
pub(crate) fn for_each_target<T>(
    registry: &Registry<T>,
    recipients: &[Recipient],
    empty: EmptyRecipients,
    mut visit: impl FnMut(&Member<T>),
) {
    if recipients.is_empty() {
        match empty {
            EmptyRecipients::DefaultGroup => visit_slots(registry, registry.ungrouped(), visit),
            EmptyRecipients::Everyone => registry.members().for_each(visit),
        }
        return;
    }

    let exclusions = Exclusions::new(recipients);
    let mut visit = |member: &Member<T>| {
        if !exclusions.excludes(member) {
            visit(member)
        }
    };

    let mut includes = recipients
        .iter()
        .filter(|r| !r.kind.is_exclude())
        .peekable();
    let everyone =
        includes.peek().is_none() || recipients.iter().any(|r| r.kind == RecipientKind::All);
    if everyone {
        registry.members().for_each(visit);
        return;
    }

    let includes: Vec<&Recipient> = includes.collect();
    if let [only] = includes[..] {
        // One include selects each connection at most once: no de-duplication needed.
        for_each_selected(registry, only, |slot| {
            visit_slot(registry, slot, &mut visit)
        });
        return;
    }
    let mut seen = HashSet::new();
    for include in includes {
        for_each_selected(registry, include, |slot| {
            if seen.insert(slot) {
                visit_slot(registry, slot, &mut visit)
            }
        });
    }
}

fn visit_slots<T>(
    registry: &Registry<T>,
    slots: &HashSet<Slot>,
    mut visit: impl FnMut(&Member<T>),
) {
    for &slot in slots {
        visit_slot(registry, slot, &mut visit);
    }
}

fn visit_slot<T>(registry: &Registry<T>, slot: Slot, visit: &mut impl FnMut(&Member<T>)) {
    if let Some(member) = registry.at(slot) {
        visit(member)
    }
}

/// The slots one include recipient selects (never `all`, which the caller handles).
fn for_each_selected<T>(registry: &Registry<T>, include: &Recipient, mut f: impl FnMut(Slot)) {
    let value = include.value.as_str();
    match include.kind {
        RecipientKind::Group => registry
            .group(value)
            .into_iter()
            .flatten()
            .for_each(|&s| f(s)),
        RecipientKind::User => registry
            .user(value)
            .into_iter()
            .flatten()
            .for_each(|&s| f(s)),
        RecipientKind::Connection => {
            if let Some(slot) = value.parse().ok().and_then(|id| registry.slot_of(id)) {
                f(slot)
            }
        }
        RecipientKind::All
        | RecipientKind::AllButUser
        | RecipientKind::AllButGroup
        | RecipientKind::AllButConnection => {}
    }
}

/// The exclude recipients, as sorted lists: cheap to build for the usual one or two, and a
/// logarithmic look-up per target when a sender names thousands.
struct Exclusions<'a> {
    users: Vec<&'a str>,
    groups: Vec<&'a str>,
    connections: Vec<ConnectionId>,
}

impl<'a> Exclusions<'a> {
    fn new(recipients: &'a [Recipient]) -> Self {
        let mut this = Self {
            users: Vec::new(),
            groups: Vec::new(),
            connections: Vec::new(),
        };
        for r in recipients.iter().filter(|r| !r.value.is_empty()) {
            match r.kind {
                RecipientKind::AllButUser => this.users.push(&r.value),
                RecipientKind::AllButGroup => this.groups.push(&r.value),
                RecipientKind::AllButConnection => {
                    if let Ok(id) = r.value.parse() {
                        this.connections.push(id)
                    }
                }
                _ => {}
            }
        }
        this.users.sort_unstable();
        this.groups.sort_unstable();
        this.connections.sort_unstable();
        this
    }

    fn excludes<T>(&self, member: &Member<T>) -> bool {
        (!self.connections.is_empty() && self.connections.binary_search(&member.id).is_ok())
            || (!self.users.is_empty() && self.users.binary_search(&&*member.user).is_ok())
            || (!self.groups.is_empty()
                && member
                    .groups
                    .iter()
                    .any(|g| self.groups.binary_search(&&**g).is_ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A connection of the reference model: its id, user and groups.
    #[derive(Debug, Clone)]
    struct Conn {
        id: u128,
        user: String,
        groups: Vec<String>,
    }

    /// docs/protocol.md §2 read literally, one connection at a time.
    fn reference(conns: &[Conn], recipients: &[Recipient], empty: EmptyRecipients) -> Vec<u128> {
        let selects = |c: &Conn, r: &Recipient| {
            let v = r.value.as_str();
            match r.kind {
                RecipientKind::All => true,
                RecipientKind::Group | RecipientKind::AllButGroup => {
                    !v.is_empty() && c.groups.iter().any(|g| g == v)
                }
                RecipientKind::User | RecipientKind::AllButUser => !v.is_empty() && c.user == v,
                RecipientKind::Connection | RecipientKind::AllButConnection => {
                    ConnectionId::from_u128(c.id).to_string() == v
                }
            }
        };
        let mut out: Vec<u128> = conns
            .iter()
            .filter(|c| {
                if recipients.is_empty() {
                    return empty == EmptyRecipients::Everyone
                        || c.groups.iter().all(String::is_empty);
                }
                let includes: Vec<_> = recipients.iter().filter(|r| !r.kind.is_exclude()).collect();
                let included = includes.is_empty() || includes.iter().any(|r| selects(c, r));
                let excluded = recipients
                    .iter()
                    .filter(|r| r.kind.is_exclude())
                    .any(|r| selects(c, r));
                included && !excluded
            })
            .map(|c| c.id)
            .collect();
        out.sort_unstable();
        out
    }

    fn conn_strategy() -> impl Strategy<Value = (String, Vec<String>)> {
        let name = prop::sample::select(vec!["", "a", "b", "c"]).prop_map(str::to_owned);
        (name.clone(), prop::collection::vec(name, 0..3))
    }

    fn recipient_strategy(ids: usize) -> impl Strategy<Value = Recipient> {
        let kind = prop::sample::select(vec![
            RecipientKind::All,
            RecipientKind::Group,
            RecipientKind::User,
            RecipientKind::Connection,
            RecipientKind::AllButUser,
            RecipientKind::AllButGroup,
            RecipientKind::AllButConnection,
        ]);
        let value = prop_oneof![
            prop::sample::select(vec!["", "a", "b", "c", "zz"]).prop_map(str::to_owned),
            (0..ids as u128 + 2).prop_map(|n| ConnectionId::from_u128(n).to_string()),
        ];
        (kind, value).prop_map(|(kind, value)| Recipient { kind, value })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn targets_match_the_reference_model(
            specs in prop::collection::vec(conn_strategy(), 0..12),
            recipients in prop::collection::vec(recipient_strategy(12), 0..5),
            everyone in any::<bool>(),
            leaves in prop::collection::vec((0usize..12, prop::sample::select(vec!["a", "b"])), 0..4),
        ) {
            let empty = if everyone { EmptyRecipients::Everyone } else { EmptyRecipients::DefaultGroup };
            let mut registry = Registry::default();
            let mut conns: Vec<Conn> = Vec::new();
            for (n, (user, groups)) in specs.into_iter().enumerate() {
                let id = n as u128;
                let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
                registry.insert(ConnectionId::from_u128(id), &user, &refs, ());
                conns.push(Conn { id, user, groups });
            }
            // Run-time leaves, so the indices are tested after change, not only after insert.
            for (n, group) in leaves {
                if let Some(c) = conns.get_mut(n) {
                    registry.leave(ConnectionId::from_u128(c.id), group);
                    c.groups.retain(|g| g != group);
                }
            }
            let mut got = Vec::new();
            for_each_target(&registry, &recipients, empty, |m| {
                got.push(u128::from_str_radix(&m.id.to_string(), 16).unwrap())
            });
            let count = got.len();
            got.sort_unstable();
            got.dedup();
            prop_assert_eq!(count, got.len(), "a connection was visited twice");
            prop_assert_eq!(got, reference(&conns, &recipients, empty));
        }
    }
}
