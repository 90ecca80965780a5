//! Where the rooms live: in this process, or, when the chat runs as a cluster, in Redis, so that
//! every node sees the same rooms, people and history.
//!
//! Each operation takes an `announce` callback that sends what the change means to the room.
//! In this process it runs while the rooms are locked, so every socket sees the changes in the
//! order they happened. In Redis it runs once the change is made, under a lock of this node's:
//! changes made on one node are announced in order; two made on different nodes at the same
//! moment may reach a page in either order (the page treats the people as a set, so it ends
//! right unless a user leaves on one node and comes back on another within milliseconds).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::Value;
use wshub::ConnectionId;

use super::line::Line;
use super::room::Room;
use super::{Refusal, MAX_ROOMS};

/// What a socket let into a room learns, and what the room learns of it.
#[derive(Debug)]
pub(crate) struct Entered {
    /// Its user was not in the room before.
    pub(crate) newcomer: bool,
    /// Who is in the room now, sorted, its user included.
    pub(crate) people: Vec<String>,
    /// The room's recent messages, oldest first.
    pub(crate) history: Vec<Value>,
}

/// A room and how many are in it now, for the status page (`status.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Occupancy {
    /// The room's name, as its visitors typed it: text to escape wherever it is shown.
    pub(crate) room: String,
    /// Distinct users in it (one person's tabs count once).
    pub(crate) people: usize,
    /// Sockets in it.
    pub(crate) sockets: usize,
}

/// The rooms.
#[derive(Debug)]
pub(crate) enum Store {
    /// In this process.
    Memory(Mutex<HashMap<String, Room>>),
    /// In Redis, shared by every node of a cluster.
    #[cfg(feature = "cluster")]
    Redis(Box<shared::Shared>),
}

impl Default for Store {
    fn default() -> Self {
        Self::Memory(Mutex::default())
    }
}

impl Store {
    /// Lets connection `id` of `name` into `room` (creating it if there is space), or says why
    /// not; `announce` tells the room.
    pub(crate) async fn enter(
        &self,
        room: &str,
        name: &str,
        id: ConnectionId,
        announce: impl FnOnce(&Entered),
    ) -> Result<(), Refusal> {
        match self {
            Self::Memory(rooms) => {
                let mut rooms = lock(rooms);
                if rooms.len() >= MAX_ROOMS && !rooms.contains_key(room) {
                    return Err(full());
                }
                let state = rooms.entry(room.to_owned()).or_default();
                let newcomer = state.enter(name, id);
                let entered = Entered {
                    newcomer,
                    people: state.people().into_iter().map(str::to_owned).collect(),
                    history: state
                        .history()
                        .into_iter()
                        .filter_map(|line| serde_json::to_value(line).ok())
                        .collect(),
                };
                announce(&entered);
                Ok(())
            }
            #[cfg(feature = "cluster")]
            Self::Redis(shared) => shared.enter(room, name, id, announce).await,
        }
    }

    /// Takes connection `id` of `name` out of `room`; `announce` learns whether it was the user's
    /// last there. A room nobody is in any more goes, history and all.
    pub(crate) async fn leave(
        &self,
        room: &str,
        name: &str,
        id: ConnectionId,
        announce: impl FnOnce(bool),
    ) {
        match self {
            Self::Memory(rooms) => {
                let mut rooms = lock(rooms);
                let Some(state) = rooms.get_mut(room) else {
                    return;
                };
                let left = state.leave(name, id);
                announce(left);
                if state.is_empty() {
                    rooms.remove(room);
                }
            }
            #[cfg(feature = "cluster")]
            Self::Redis(shared) => shared.leave(room, id, announce).await,
        }
    }

    /// Keeps `line` in the history of `room`, if connection `id` of `name` is in it.
    pub(crate) async fn remember(
        &self,
        room: &str,
        name: &str,
        id: ConnectionId,
        line: &Line,
    ) -> Result<(), Refusal> {
        match self {
            Self::Memory(rooms) => {
                let mut rooms = lock(rooms);
                let state = rooms
                    .get_mut(room)
                    .filter(|state| state.has(name, id))
                    .ok_or_else(not_in_room)?;
                state.remember(line.clone());
                Ok(())
            }
            #[cfg(feature = "cluster")]
            Self::Redis(shared) => shared.remember(room, name, id, line).await,
        }
    }

    /// The connections in `room` of `to` and of the sender (`name`, `id`): where a private line
    /// goes. The sender must be in the room, and so must `to`.
    pub(crate) async fn private(
        &self,
        room: &str,
        name: &str,
        id: ConnectionId,
        to: &str,
    ) -> Result<Vec<ConnectionId>, Refusal> {
        match self {
            Self::Memory(rooms) => {
                let mut rooms = lock(rooms);
                let state = rooms
                    .get_mut(room)
                    .filter(|state| state.has(name, id))
                    .ok_or_else(not_in_room)?;
                if state.connections_of(to).next().is_none() {
                    return Err(format!("{to} is not in this room"));
                }
                Ok(state
                    .connections_of(to)
                    .chain(state.connections_of(name))
                    .collect())
            }
            #[cfg(feature = "cluster")]
            Self::Redis(shared) => shared.private(room, name, id, to).await,
        }
    }

    /// Every room with how many people and sockets are in it: at most [`MAX_ROOMS`] of them,
    /// busiest first, then by name.
    pub(crate) async fn occupancy(&self) -> Result<Vec<Occupancy>, Refusal> {
        let mut rooms: Vec<Occupancy> = match self {
            Self::Memory(rooms) => lock(rooms)
                .iter()
                .map(|(name, room)| Occupancy {
                    room: name.clone(),
                    people: room.people().len(),
                    sockets: room.connection_count(),
                })
                .collect(),
            #[cfg(feature = "cluster")]
            Self::Redis(shared) => shared.occupancy().await?,
        };
        rooms.sort_unstable_by(|a, b| b.sockets.cmp(&a.sockets).then_with(|| a.room.cmp(&b.room)));
        rooms.truncate(MAX_ROOMS);
        Ok(rooms)
    }
}

/// The rooms, locked. A panic elsewhere cannot leave a room half-written: keep serving them.
fn lock(rooms: &Mutex<HashMap<String, Room>>) -> MutexGuard<'_, HashMap<String, Room>> {
    rooms.lock().unwrap_or_else(PoisonError::into_inner)
}

fn full() -> Refusal {
    format!("the chat has {MAX_ROOMS} rooms, its limit: join one of them, or try again later")
}

fn not_in_room() -> Refusal {
    "you are not in a room".to_owned()
}

/// The rooms in Redis (feature `cluster`).
#[cfg(feature = "cluster")]
pub(crate) mod shared {
    use std::time::Duration;

    use redis::aio::MultiplexedConnection;
    use serde_json::Value;
    use tokio::sync::Mutex;
    use wshub::ConnectionId;

    use super::super::line::Line;
    use super::super::room::{HISTORY, HISTORY_BYTES};
    use super::super::{Refusal, MAX_ROOMS};
    use super::{full, not_in_room, Entered, Occupancy};

    /// How long a Redis call may take.
    const TIMEOUT: Duration = Duration::from_secs(1);
    const PREFIX: &str = "chat";

    /// Lets a connection into a room. ARGV: prefix, room, connection, name, most rooms.
    /// Returns `{0}` when the chat is full, else `{1, newcomer, names..., "", history...}`.
    const ENTER: &str = r"
local prefix, room, conn, name, most = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local rooms = prefix .. ':rooms'
if redis.call('SISMEMBER', rooms, room) == 0 and redis.call('SCARD', rooms) >= most then
  return {0}
end
redis.call('SADD', rooms, room)
local people = prefix .. ':r:' .. room .. ':people'
local names = redis.call('HVALS', people)
local newcomer = 1
for _, n in ipairs(names) do
  if n == name then newcomer = 0 end
end
redis.call('HSET', people, conn, name)
table.insert(names, name)
local result = {1, newcomer}
for _, n in ipairs(names) do table.insert(result, n) end
table.insert(result, '')
for _, line in ipairs(redis.call('LRANGE', prefix .. ':r:' .. room .. ':history', 0, -1)) do
  table.insert(result, line)
end
return result
";

    /// Takes a connection out of its room. ARGV: prefix, room, connection. Returns 1 when it was
    /// its user's last there, else 0; removes a room nobody is in.
    const LEAVE: &str = r"
local prefix, room, conn = ARGV[1], ARGV[2], ARGV[3]
local base = prefix .. ':r:' .. room
local people = base .. ':people'
local name = redis.call('HGET', people, conn)
if not name then return 0 end
redis.call('HDEL', people, conn)
local last = 1
for _, n in ipairs(redis.call('HVALS', people)) do
  if n == name then last = 0 end
end
if redis.call('HLEN', people) == 0 then
  redis.call('DEL', people, base .. ':history', base .. ':bytes')
  redis.call('SREM', prefix .. ':rooms', room)
end
return last
";

    /// Keeps a line, if the sender is in the room. ARGV: prefix, room, connection, name, line,
    /// most lines, most bytes. Returns 0 when the sender is not in the room.
    const REMEMBER: &str = r"
local prefix, room, conn, name, line = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local most, most_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local base = prefix .. ':r:' .. room
if redis.call('HGET', base .. ':people', conn) ~= name then return 0 end
local history, bytes = base .. ':history', base .. ':bytes'
redis.call('RPUSH', history, line)
local total = redis.call('INCRBY', bytes, #line)
while redis.call('LLEN', history) > most or total > most_bytes do
  local oldest = redis.call('LPOP', history)
  if not oldest then break end
  total = redis.call('DECRBY', bytes, #oldest)
end
return 1
";

    /// Where a private line goes. ARGV: prefix, room, connection, name, to. Returns `{0}` when
    /// the sender is not in the room, else `{1, connections of to..., "", connections of name...}`.
    const PRIVATE: &str = r"
local prefix, room, conn, name, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local people = redis.call('HGETALL', prefix .. ':r:' .. room .. ':people')
local mine, theirs, sender_in = {}, {}, false
for i = 1, #people, 2 do
  local c, n = people[i], people[i + 1]
  if c == conn and n == name then sender_in = true end
  if n == to then table.insert(theirs, c) end
  if n == name then table.insert(mine, c) end
end
if not sender_in then return {0} end
local result = {1}
for _, c in ipairs(theirs) do table.insert(result, c) end
table.insert(result, '')
for _, c in ipairs(mine) do table.insert(result, c) end
return result
";

    /// Every room with its sockets and people. ARGV: prefix, most rooms. Returns
    /// `{room, sockets, people, room, sockets, people, ...}` for at most that many rooms.
    const OCCUPANCY: &str = r"
local prefix, most = ARGV[1], tonumber(ARGV[2])
local result = {}
for i, room in ipairs(redis.call('SMEMBERS', prefix .. ':rooms')) do
  if i > most then break end
  local names = redis.call('HVALS', prefix .. ':r:' .. room .. ':people')
  local seen, people = {}, 0
  for _, n in ipairs(names) do
    if not seen[n] then seen[n] = true; people = people + 1 end
  end
  table.insert(result, room)
  table.insert(result, tostring(#names))
  table.insert(result, tostring(people))
end
return result
";

    /// The rooms in Redis, and this node's lock that keeps its announcements in order.
    #[derive(Debug)]
    pub(crate) struct Shared {
        client: redis::Client,
        connection: Mutex<Option<MultiplexedConnection>>,
        scripts: Scripts,
    }

    #[derive(Debug)]
    struct Scripts {
        enter: redis::Script,
        leave: redis::Script,
        remember: redis::Script,
        private: redis::Script,
        occupancy: redis::Script,
    }

    impl Shared {
        pub(crate) fn new(client: redis::Client) -> Self {
            Self {
                client,
                connection: Mutex::new(None),
                scripts: Scripts {
                    enter: redis::Script::new(ENTER),
                    leave: redis::Script::new(LEAVE),
                    remember: redis::Script::new(REMEMBER),
                    private: redis::Script::new(PRIVATE),
                    occupancy: redis::Script::new(OCCUPANCY),
                },
            }
        }

        /// Runs a script with `args`, holding this node's lock until `then` has used the answer.
        async fn run<T>(
            &self,
            script: &redis::Script,
            args: &[String],
            then: impl FnOnce(Vec<String>) -> T,
        ) -> Result<T, Refusal> {
            let mut shared = self.connection.lock().await;
            if shared.is_none() {
                let connecting = self.client.get_multiplexed_async_connection();
                match tokio::time::timeout(TIMEOUT, connecting).await {
                    Ok(Ok(connection)) => *shared = Some(connection),
                    _ => return Err(unavailable()),
                }
            }
            let Some(connection) = shared.as_mut() else {
                return Err(unavailable());
            };
            let mut invocation = script.prepare_invoke();
            for arg in args {
                invocation.arg(arg);
            }
            let call = invocation.invoke_async::<redis::Value>(connection);
            let answer = match tokio::time::timeout(TIMEOUT, call).await {
                Ok(Ok(answer)) => answer,
                _ => {
                    *shared = None;
                    return Err(unavailable());
                }
            };
            let strings = match answer {
                redis::Value::Array(items) => items
                    .iter()
                    .map(|v| redis::from_redis_value_ref::<String>(v).unwrap_or_default())
                    .collect(),
                other => vec![redis::from_redis_value_ref::<String>(&other).unwrap_or_default()],
            };
            Ok(then(strings))
        }

        pub(crate) async fn enter(
            &self,
            room: &str,
            name: &str,
            id: ConnectionId,
            announce: impl FnOnce(&Entered),
        ) -> Result<(), Refusal> {
            let args = [PREFIX, room, &id.to_string(), name, &MAX_ROOMS.to_string()];
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            self.run(&self.scripts.enter, &args, |answer| {
                let Some((admitted, rest)) = answer.split_first() else {
                    return Err(unavailable());
                };
                if admitted != "1" {
                    return Err(full());
                }
                let Some((newcomer, rest)) = rest.split_first() else {
                    return Err(unavailable());
                };
                let split = rest.iter().position(String::is_empty).unwrap_or(rest.len());
                let mut people: Vec<String> = rest[..split].to_vec();
                people.sort_unstable();
                people.dedup();
                let history = rest
                    .get(split + 1..)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .collect();
                announce(&Entered {
                    newcomer: newcomer == "1",
                    people,
                    history,
                });
                Ok(())
            })
            .await?
        }

        pub(crate) async fn leave(
            &self,
            room: &str,
            id: ConnectionId,
            announce: impl FnOnce(bool),
        ) {
            let args = vec![PREFIX.to_owned(), room.to_owned(), id.to_string()];
            let left = self
                .run(&self.scripts.leave, &args, |answer| {
                    announce(answer.first().is_some_and(|last| last == "1"))
                })
                .await;
            if let Err(reason) = left {
                tracing::warn!(%reason, room, "a departure was not recorded");
            }
        }

        pub(crate) async fn remember(
            &self,
            room: &str,
            name: &str,
            id: ConnectionId,
            line: &Line,
        ) -> Result<(), Refusal> {
            let json = serde_json::to_string(line).map_err(|e| e.to_string())?;
            let args = vec![
                PREFIX.to_owned(),
                room.to_owned(),
                id.to_string(),
                name.to_owned(),
                json,
                HISTORY.to_string(),
                HISTORY_BYTES.to_string(),
            ];
            let kept = self
                .run(&self.scripts.remember, &args, |answer| {
                    answer.first().is_some_and(|kept| kept == "1")
                })
                .await?;
            kept.then_some(()).ok_or_else(not_in_room)
        }

        pub(crate) async fn private(
            &self,
            room: &str,
            name: &str,
            id: ConnectionId,
            to: &str,
        ) -> Result<Vec<ConnectionId>, Refusal> {
            let args = vec![
                PREFIX.to_owned(),
                room.to_owned(),
                id.to_string(),
                name.to_owned(),
                to.to_owned(),
            ];
            let answer = self
                .run(&self.scripts.private, &args, |answer| answer)
                .await?;
            let Some((sender_in, rest)) = answer.split_first() else {
                return Err(unavailable());
            };
            if sender_in != "1" {
                return Err(not_in_room());
            }
            let split = rest.iter().position(String::is_empty).unwrap_or(rest.len());
            if split == 0 {
                return Err(format!("{to} is not in this room"));
            }
            Ok(rest
                .iter()
                .filter(|id| !id.is_empty())
                .filter_map(|id| id.parse().ok())
                .collect())
        }

        pub(crate) async fn occupancy(&self) -> Result<Vec<Occupancy>, Refusal> {
            let args = vec![PREFIX.to_owned(), MAX_ROOMS.to_string()];
            let answer = self
                .run(&self.scripts.occupancy, &args, |answer| answer)
                .await?;
            Ok(answer
                .chunks_exact(3)
                .map(|room| Occupancy {
                    room: room[0].clone(),
                    sockets: room[1].parse().unwrap_or(0),
                    people: room[2].parse().unwrap_or(0),
                })
                .collect())
        }
    }

    fn unavailable() -> Refusal {
        "the chat cannot reach its rooms just now; try again in a moment".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ConnectionId {
        format!("{n:032x}").parse().unwrap()
    }

    #[tokio::test]
    async fn occupancy_counts_people_and_sockets_busiest_room_first() {
        let store = Store::default();
        assert_eq!(store.occupancy().await.unwrap(), []);
        for (room, name, n) in [("beta", "cat", 1), ("alpha", "ann", 2), ("alpha", "ann", 3)] {
            store.enter(room, name, id(n), |_| {}).await.unwrap();
        }
        store.enter("alpha", "bob", id(4), |_| {}).await.unwrap();
        store.enter("gamma", "dan", id(5), |_| {}).await.unwrap();
        let occupancy = |room: &str, people, sockets| Occupancy {
            room: room.to_owned(),
            people,
            sockets,
        };
        assert_eq!(
            store.occupancy().await.unwrap(),
            [
                occupancy("alpha", 2, 3),
                occupancy("beta", 1, 1),
                occupancy("gamma", 1, 1)
            ]
        );

        store.leave("alpha", "ann", id(2), |_| {}).await;
        store.leave("beta", "cat", id(1), |_| {}).await;
        assert_eq!(
            store.occupancy().await.unwrap(),
            [occupancy("alpha", 2, 2), occupancy("gamma", 1, 1)],
            "an empty room is gone"
        );
    }
}
