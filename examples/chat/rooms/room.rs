//! One room's state: its recent history and who is in it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use wshub::ConnectionId;

use super::line::Line;

/// Messages kept per room.
pub(crate) const HISTORY: usize = 50;
/// The most bytes of messages (as JSON) kept per room, and so sent to each newcomer. The longest
/// message takes 12 KB at most (2,000 characters, 6 bytes each once escaped), so it always fits.
pub(crate) const HISTORY_BYTES: usize = 32 * 1024;

/// A room: its last messages, oldest first ([`HISTORY`] of them, fewer when they would take over
/// [`HISTORY_BYTES`]), and the connections of each user in it (several tabs of one user count as
/// one person).
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Each line with its size as JSON.
    history: VecDeque<(Line, usize)>,
    history_bytes: usize,
    people: BTreeMap<String, BTreeSet<ConnectionId>>,
}

impl Room {
    /// Keeps `line`, forgetting the oldest ones while the history is over its bounds.
    pub(crate) fn remember(&mut self, line: Line) {
        let size = serde_json::to_vec(&line).map_or(0, |json| json.len());
        self.history.push_back((line, size));
        self.history_bytes += size;
        while self.history.len() > HISTORY || self.history_bytes > HISTORY_BYTES {
            let Some((_, size)) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= size;
        }
    }

    /// The recent messages, oldest first.
    pub(crate) fn history(&self) -> Vec<&Line> {
        self.history.iter().map(|(line, _)| line).collect()
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
    pub(crate) fn people(&self) -> Vec<&str> {
        self.people.keys().map(String::as_str).collect()
    }

    /// How many sockets are in the room (a user's tabs count one each).
    pub(crate) fn connection_count(&self) -> usize {
        self.people.values().map(BTreeSet::len).sum()
    }

    /// Whether nobody is in the room.
    pub(crate) fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Whether `connection` of `user` is in the room.
    pub(crate) fn has(&self, user: &str, connection: ConnectionId) -> bool {
        self.connections_of(user).any(|c| c == connection)
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
        assert!(room.is_empty());
        assert!(room.enter("bob", id(1)));
        assert!(room.enter("ann", id(2)));
        assert!(!room.enter("ann", id(3)), "a second tab is no newcomer");
        assert_eq!(room.people(), ["ann", "bob"]);
        assert_eq!(room.connection_count(), 3);
        assert!(room.has("ann", id(3)) && !room.has("ann", id(1)));
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
        assert!(room.leave("bob", id(1)));
        assert!(room.is_empty());
    }

    #[test]
    fn history_keeps_the_last_messages_oldest_first() {
        let mut room = Room::default();
        for i in 0..HISTORY + 3 {
            room.remember(line(&i.to_string()));
        }
        let texts: Vec<&str> = room.history().iter().map(|l| l.text.as_str()).collect();
        let expected: Vec<String> = (3..HISTORY + 3).map(|i| i.to_string()).collect();
        assert_eq!(texts, expected);
    }

    #[test]
    fn history_keeps_what_fits_in_its_bytes() {
        let mut room = Room::default();
        let long = |i: usize| format!("{i:02}{}", "x".repeat(4000));
        for i in 0..HISTORY {
            room.remember(line(&long(i)));
        }
        let history = room.history();
        let bytes = serde_json::to_vec(&history).unwrap().len();
        assert!(bytes <= HISTORY_BYTES + history.len() + 1, "{bytes} bytes");
        assert!(history.len() >= 7, "only {} lines kept", history.len());
        let texts: Vec<&str> = history.iter().map(|l| l.text.as_str()).collect();
        let expected: Vec<String> = (HISTORY - texts.len()..HISTORY).map(long).collect();
        assert_eq!(texts, expected, "the newest, oldest first");

        // Short lines fill the space the long ones leave, up to the count.
        for i in 0..HISTORY {
            room.remember(line(&i.to_string()));
        }
        assert_eq!(room.history().len(), HISTORY);
        assert_eq!(
            room.history_bytes,
            serde_json::to_vec(&room.history()).unwrap().len() - HISTORY - 1
        );
    }
}
