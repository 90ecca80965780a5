//! One room's state: its recent history and who is in it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use wshub::ConnectionId;

use super::line::Line;

/// Messages kept per room.
pub(crate) const HISTORY: usize = 50;

/// A room: the last [`HISTORY`] messages, oldest first, and the connections of each user in it
/// (several tabs of one user count as one person).
#[derive(Debug, Default)]
pub(crate) struct Room {
    history: VecDeque<Line>,
    people: BTreeMap<String, BTreeSet<ConnectionId>>,
}

impl Room {
    /// Keeps `line`, forgetting the oldest when the history is full.
    pub(crate) fn remember(&mut self, line: Line) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(line);
    }

    /// The recent messages, oldest first.
    pub(crate) fn history(&self) -> Vec<Line> {
        self.history.iter().cloned().collect()
    }

    /// Adds a connection of `user`; true when the user was not in the room before.
    pub(crate) fn enter(&mut self, user: &str, connection: ConnectionId) -> bool {
        let connections = self.people.entry(user.to_owned()).or_default();
        connections.insert(connection);
        connections.len() == 1
    }

    /// Removes a connection of `user`; true when it was the user's last one in the room.
    pub(crate) fn leave(&mut self, user: &str, connection: ConnectionId) -> bool {
        let Some(connections) = self.people.get_mut(user) else {
            return false;
        };
        if !connections.remove(&connection) || !connections.is_empty() {
            return false;
        }
        self.people.remove(user);
        true
    }

    /// Who is in the room, sorted.
    pub(crate) fn people(&self) -> Vec<String> {
        self.people.keys().cloned().collect()
    }

    /// The connections of `user` in the room (none when the user is not in it).
    pub(crate) fn connections_of(&self, user: &str) -> impl Iterator<Item = ConnectionId> + '_ {
        self.people.get(user).into_iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ConnectionId {
        format!("{n:032x}").parse().unwrap()
    }

    fn line(text: &str) -> Line {
        Line {
            user: "ann".into(),
            text: text.into(),
            time: "2025-01-01T00:00:00Z".into(),
            to: None,
        }
    }

    #[test]
    fn tabs_of_one_user_count_once() {
        let mut room = Room::default();
        assert!(room.enter("bob", id(1)));
        assert!(room.enter("ann", id(2)));
        assert!(!room.enter("ann", id(3)), "a second tab is no newcomer");
        assert_eq!(room.people(), ["ann", "bob"]);
        assert_eq!(
            room.connections_of("ann").collect::<Vec<_>>(),
            [id(2), id(3)]
        );

        assert!(!room.leave("ann", id(2)), "ann still has a tab open");
        assert_eq!(room.people(), ["ann", "bob"]);
        assert!(room.leave("ann", id(3)));
        assert_eq!(room.people(), ["bob"]);
        assert!(!room.leave("ann", id(3)), "leaving twice changes nothing");
        assert!(
            !room.leave("bob", id(9)),
            "an unknown connection changes nothing"
        );
        assert_eq!(room.connections_of("ann").count(), 0);
    }

    #[test]
    fn history_keeps_the_last_messages_oldest_first() {
        let mut room = Room::default();
        for i in 0..HISTORY + 3 {
            room.remember(line(&i.to_string()));
        }
        let texts: Vec<String> = room.history().into_iter().map(|l| l.text).collect();
        let expected: Vec<String> = (3..HISTORY + 3).map(|i| i.to_string()).collect();
        assert_eq!(texts, expected);
    }
}
