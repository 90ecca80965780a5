//! Every connection of the cluster in Redis, for the questions any node may ask about any
//! connection (who is in a group, which groups a connection is in, how many there are) without
//! asking the other nodes: a record per connection in its node's hash, and the connections of
//! each group and user in a set.
//!
//! | key | kind | holds |
//! |---|---|---|
//! | `<prefix>:c:<node>` | hash | connection id → `{"u": user, "g": [groups], "d": data as JSON text or ""}`, one per connection of the node |
//! | `<prefix>:gm:<group>`, `<prefix>:um:<user>` | set | connection ids |
//! | `<prefix>:groups`, `<prefix>:users` | set | the groups and users with a connection |
//!
//! Answers leave out the connections of nodes that stopped beating, before the heartbeat removes
//! their records.

use std::sync::LazyLock;

use redis::aio::MultiplexedConnection;

use super::Link;
use crate::data::Data;
use crate::error::HubError;
use crate::id::ConnectionId;
use crate::info::ConnectionInfo;

/// A Lua function that removes one connection's record and its set entries.
pub(crate) const FORGET_FN: &str = r"
local function forget(prefix, hash, conn)
  local record = redis.call('HGET', hash, conn)
  if not record then return 0 end
  record = cjson.decode(record)
  for _, g in ipairs(record.g) do
    local members = prefix .. ':gm:' .. g
    redis.call('SREM', members, conn)
    if redis.call('SCARD', members) == 0 then redis.call('SREM', prefix .. ':groups', g) end
  end
  if record.u ~= '' then
    local members = prefix .. ':um:' .. record.u
    redis.call('SREM', members, conn)
    if redis.call('SCARD', members) == 0 then redis.call('SREM', prefix .. ':users', record.u) end
  end
  redis.call('HDEL', hash, conn)
  return 1
end
";

/// Writes one connection's record. ARGV: prefix, node, connection, user, data, then its groups.
const PUT: &str = r"
local prefix, node, conn, user, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local hash = prefix .. ':c:' .. node
local groups, now = {}, {}
for i = 6, #ARGV do
  now[ARGV[i]] = true
  table.insert(groups, ARGV[i])
end
local old = redis.call('HGET', hash, conn)
if old then
  for _, g in ipairs(cjson.decode(old).g) do
    if not now[g] then
      local members = prefix .. ':gm:' .. g
      redis.call('SREM', members, conn)
      if redis.call('SCARD', members) == 0 then redis.call('SREM', prefix .. ':groups', g) end
    end
  end
end
for _, g in ipairs(groups) do
  redis.call('SADD', prefix .. ':gm:' .. g, conn)
  redis.call('SADD', prefix .. ':groups', g)
end
if user ~= '' then
  redis.call('SADD', prefix .. ':um:' .. user, conn)
  redis.call('SADD', prefix .. ':users', user)
end
redis.call('HSET', hash, conn, cjson.encode({u = user, g = groups, d = data}))
return 1
";

/// Removes one connection's record. ARGV: prefix, node, connection.
const FORGET: &str = "return forget(ARGV[1], ARGV[1] .. ':c:' .. ARGV[2], ARGV[3])";

/// Answers a question. ARGV: prefix, this node, dead after (ms), question, its subject.
/// `members` (subject `gm:<group>` or `um:<user>`): the connection ids of live nodes but this one.
/// `counts`: {connections on live nodes but this one, users, groups}.
/// `record` (subject a connection id): {'found', user, data, groups…}, or nil when no live node
/// has it.
const ASK: &str = r"
local prefix, own, dead_after, question, subject = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local live = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', prefix .. ':nodes', now - dead_after, '+inf')) do
  if node ~= own then live[node] = true end
end
if question == 'members' then
  local found = {}
  for _, conn in ipairs(redis.call('SMEMBERS', prefix .. ':' .. subject)) do
    if live[string.sub(conn, 1, 8)] then table.insert(found, conn) end
  end
  return found
elseif question == 'counts' then
  local connections = 0
  for node in pairs(live) do
    connections = connections + redis.call('HLEN', prefix .. ':c:' .. node)
  end
  return {connections, redis.call('SCARD', prefix .. ':users'), redis.call('SCARD', prefix .. ':groups')}
elseif question == 'record' then
  local node = string.sub(subject, 1, 8)
  if not live[node] then return false end
  local record = redis.call('HGET', prefix .. ':c:' .. node, subject)
  if not record then return false end
  record = cjson.decode(record)
  local answer = {'found', record.u, record.d or ''}
  for _, g in ipairs(record.g) do table.insert(answer, g) end
  return answer
end
return redis.error_reply('unknown question')
";

/// The scripts a node runs on its own records.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) put: redis::Script,
    pub(crate) forget: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            put: redis::Script::new(PUT),
            forget: redis::Script::new(&format!("{FORGET_FN}\n{FORGET}")),
        }
    }

    /// Loads them, so that a pipeline can call them by their hash.
    pub(crate) async fn load(
        &self,
        connection: &mut MultiplexedConnection,
        link: &Link,
    ) -> Result<(), String> {
        for script in [&self.put, &self.forget] {
            let invocation = script.prepare_invoke();
            let loading = invocation.load_async(connection);
            match tokio::time::timeout(link.timings.command_timeout, loading).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("loading a script timed out".to_owned()),
            }
        }
        Ok(())
    }
}

/// A question about the cluster's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Question<'a> {
    /// The connections of other live nodes in a group.
    Group(&'a str),
    /// The connections of other live nodes of a user.
    User(&'a str),
    /// Connections of other live nodes, users and groups everywhere.
    Counts,
    /// A connection's user, groups and data.
    Connection(ConnectionId),
}

/// What Redis answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Connections(Vec<ConnectionId>),
    Counts {
        connections: usize,
        users: usize,
        groups: usize,
    },
    Connection(Option<ConnectionInfo>),
}

/// Asks Redis, within the command timeout.
pub(crate) async fn ask(
    connection: &mut MultiplexedConnection,
    link: &Link,
    dead_after_ms: u64,
    question: Question<'_>,
) -> Result<Answer, HubError> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ASK));
    let mut invocation = SCRIPT.prepare_invoke();
    invocation
        .arg(link.names.prefix())
        .arg(link.id.to_string())
        .arg(dead_after_ms);
    match question {
        Question::Group(group) => invocation.arg("members").arg(format!("gm:{group}")),
        Question::User(user) => invocation.arg("members").arg(format!("um:{user}")),
        Question::Counts => invocation.arg("counts").arg(""),
        Question::Connection(id) => invocation.arg("record").arg(id.to_string()),
    };
    let asking = invocation.invoke_async::<redis::Value>(connection);
    let value = match tokio::time::timeout(link.timings.command_timeout, asking).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => return Err(unavailable(&e.to_string())),
        Err(_) => return Err(unavailable("timed out")),
    };
    let strings = |value: &redis::Value| -> Vec<String> {
        match value {
            redis::Value::Array(items) => items
                .iter()
                .filter_map(|v| redis::from_redis_value_ref::<String>(v).ok())
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(match question {
        Question::Group(_) | Question::User(_) => Answer::Connections(
            strings(&value)
                .iter()
                .filter_map(|id| id.parse().ok())
                .collect(),
        ),
        Question::Counts => {
            let numbers: Vec<usize> = redis::from_redis_value_ref(&value)
                .map_err(|e| unavailable(&format!("an unexpected answer: {e}")))?;
            let [connections, users, groups] = numbers[..] else {
                return Err(unavailable("an unexpected answer"));
            };
            Answer::Counts {
                connections,
                users,
                groups,
            }
        }
        Question::Connection(id) => match &strings(&value)[..] {
            [tag, user, data, groups @ ..] if tag == "found" => {
                let mut groups = groups.to_vec();
                groups.sort_unstable();
                let info = ConnectionInfo::new(id, user.clone(), groups);
                Answer::Connection(Some(info.with_data_of(Data::from_json(data))))
            }
            _ => Answer::Connection(None),
        },
    })
}

fn unavailable(why: &str) -> HubError {
    HubError::unavailable(format!("the cluster's Redis did not answer: {why}"))
}
