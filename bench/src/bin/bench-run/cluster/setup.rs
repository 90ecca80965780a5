//! One side of the comparison: a single wshub node, or nodes of a cluster on their own Redis,
//! with the same load clients either way (one process per share of the sockets).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wshub_bench::cpu_seconds_fine;

use super::redis::Redis;
use crate::procs::{number, Env, Proc};
use crate::Result;

/// Load processes, each holding one share of the sockets: one per node of the cluster, and as
/// many on the single node, so that the client side is the same on both sides.
pub(crate) const SHARES: usize = 3;
/// Sockets per group: share `i`'s sockets are in groups of their own, on share `i`'s node.
pub(crate) const GROUP_SIZE: usize = 100;
/// How often the nodes ping each socket: not within a run. Sockets connected together are
/// pinged together, every 25 s by default; such a wave falls in one side's turns and moves the
/// CPU figures by more than a publish costs.
const PING_INTERVAL_S: u32 = 600;
/// How long the nodes and Redis may take to be ready, each step.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A keep-alive HTTP/1.1 connection to a node's publish endpoint.
pub(crate) type Publisher = http1::SendRequest<Full<Bytes>>;

/// A node: a `bench-server --impl wshub` process.
pub(crate) struct Node {
    pub(crate) server: Proc,
    pub(crate) port: u16,
}

/// Nodes, their Redis (a cluster) or none (a single node), and the load clients.
pub(crate) struct Setup {
    pub(crate) name: &'static str,
    pub(crate) nodes: Vec<Node>,
    /// `loads[i]` holds share `i`, on node `i % nodes.len()`.
    pub(crate) loads: Vec<Proc>,
    pub(crate) redis: Option<Redis>,
    pub(crate) sockets: usize,
}

impl Setup {
    /// Starts `nodes` nodes (on a Redis of their own when more than one), every process of the
    /// server side pinned to core 0 and the load clients to core 1, opens `sockets` sockets, and
    /// waits until the nodes take publishes and Redis knows where every group is. What was
    /// started is killed if it fails (the processes are killed when dropped).
    pub(crate) async fn start(
        env: &mut Env,
        name: &'static str,
        nodes: usize,
        sockets: usize,
    ) -> Result<Self> {
        eprintln!("bench-run: cluster scenario, {name}, {sockets} sockets");
        let redis = if nodes > 1 {
            Some(Redis::start(env, 0).await?)
        } else {
            None
        };
        let mut setup = Self {
            name,
            nodes: Vec::new(),
            loads: Vec::new(),
            redis,
            sockets,
        };
        for i in 0..nodes {
            let port = env.port()?;
            let mut command = env.command(0, "bench-server");
            command.args(["--impl", "wshub", "--port", &port.to_string()]);
            command.args(["--ping-interval", &PING_INTERVAL_S.to_string()]);
            if let Some(redis) = &setup.redis {
                command.args(["--redis", &redis.url]);
            }
            let mut server = Proc::spawn(command, format!("{name}: node {i}"))?;
            server.expect("listening", Duration::from_secs(10)).await?;
            setup.nodes.push(Node { server, port });
        }
        if setup.redis.is_some() {
            for node in &setup.nodes {
                until_publishing(node.port).await?;
            }
        }
        setup.connect(env).await?;
        setup.until_routed().await?;
        Ok(setup)
    }

    fn share(&self) -> usize {
        self.sockets / SHARES
    }

    /// The node that share `i` is on.
    pub(crate) fn node_of_share(&self, i: usize) -> usize {
        i % self.nodes.len()
    }

    /// The first group of share `i`: all its members are on that share's node.
    pub(crate) fn group_of_share(&self, i: usize) -> String {
        format!("g{}", i * self.share() / GROUP_SIZE)
    }

    async fn connect(&mut self, env: &Env) -> Result<()> {
        let share = self.share();
        for i in 0..SHARES {
            let port = self.nodes[self.node_of_share(i)].port;
            let mut command = env.command(1, "bench-load");
            command.args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--connections",
                &share.to_string(),
                "--first",
                &(i * share).to_string(),
                "--path",
                "/ws?groupId=g{g}",
                "--group-size",
                &GROUP_SIZE.to_string(),
                // Its first message is `__connected`; the latency phase's are stamped.
                "--hello",
                "--stamps",
            ]);
            self.loads
                .push(Proc::spawn(command, format!("{}: load {i}", self.name))?);
        }
        for load in &mut self.loads {
            load.expect("ready", Duration::from_secs(120)).await?;
        }
        let deadline = Instant::now() + READY_WITHIN;
        for n in 0..self.nodes.len() {
            let want = share * (0..SHARES).filter(|&i| self.node_of_share(i) == n).count();
            let node = &mut self.nodes[n].server;
            loop {
                let count: usize = number(&node.ask("count", "count").await?, 1)?;
                if count == want {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{}: node {n} holds {count} of {want}", self.name).into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// In a cluster, waits until every connection's record is in Redis (so that Redis is idle
    /// again before anything is measured) and each share's group is in the set of its node
    /// alone, as routing will read it. Redis tells nothing when a node has written: polled.
    async fn until_routed(&mut self) -> Result<()> {
        let groups: Vec<String> = (0..SHARES).map(|i| self.group_of_share(i)).collect();
        let (sockets, name) = (self.sockets, self.name);
        let Some(redis) = self.redis.as_mut() else {
            return Ok(());
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let mut records = 0;
            for node in redis.nodes().await? {
                records += redis.records(&node).await?;
            }
            let mut owners = Vec::new();
            for group in &groups {
                owners.push(redis.group_nodes(group).await?);
            }
            let one_each = owners.iter().all(|o| o.len() == 1);
            let apart = owners
                .iter()
                .enumerate()
                .all(|(i, o)| owners[..i].iter().all(|earlier| earlier != o));
            if records == sockets && one_each && apart {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name}: Redis has {records} of {sockets} connection records and the nodes \
                     {owners:?} for groups {groups:?} after {READY_WITHIN:?}"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CPU time so far of each node, then of Redis if any, in seconds.
    pub(crate) fn cpu(&self) -> Result<Vec<f64>> {
        let mut cpu = Vec::new();
        for node in &self.nodes {
            cpu.push(cpu_seconds_fine(node.server.pid()?).ok_or("no schedstat for a node")?);
        }
        if let Some(redis) = &self.redis {
            cpu.push(redis.cpu()?);
        }
        Ok(cpu)
    }

    /// The bytes each node has received from Redis so far (none without a Redis).
    pub(crate) fn received_from_redis(&self) -> Result<Vec<u64>> {
        let Some(redis) = &self.redis else {
            return Ok(Vec::new());
        };
        let received = super::traffic::received_from(redis.port)?;
        let mut bytes = Vec::new();
        for node in &self.nodes {
            bytes.push(received.get(&node.server.pid()?).copied().unwrap_or(0));
        }
        Ok(bytes)
    }

    /// `connections` keep-alive connections to node 0's publish endpoint.
    pub(crate) async fn publishers(&self, connections: usize) -> Result<Vec<Publisher>> {
        let mut publishers = Vec::new();
        for _ in 0..connections {
            publishers.push(publisher(self.nodes[0].port).await?);
        }
        Ok(publishers)
    }

    pub(crate) async fn arm(&mut self, messages: usize) -> Result<()> {
        for load in &mut self.loads {
            load.ask(&format!("arm {messages}"), "armed").await?;
        }
        Ok(())
    }

    /// The last `done` of the load clients, in unix ns.
    pub(crate) async fn last_done(&mut self) -> Result<u128> {
        crate::procs::last_done(&mut self.loads).await
    }

    /// Stops the load clients, then the nodes, then Redis.
    pub(crate) async fn stop(self) {
        for load in self.loads {
            load.stop().await;
        }
        for node in self.nodes {
            node.server.stop().await;
        }
        if let Some(redis) = self.redis {
            redis.stop().await;
        }
    }
}

/// A keep-alive connection to the publish endpoint on `port`.
pub(crate) async fn publisher(port: u16) -> Result<Publisher> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // It ends when the sender is dropped.
    tokio::spawn(connection);
    Ok(sender)
}

/// POSTs `body` to the publish endpoint; the status and the answer's JSON.
pub(crate) async fn post(
    publisher: &mut Publisher,
    port: u16,
    body: Bytes,
) -> Result<(http::StatusCode, serde_json::Value)> {
    let request = http::Request::post("/api/publish")
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let answered = async {
        publisher.ready().await?;
        let response = publisher.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, crate::Error>((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), answered)
        .await
        .map_err(|_| "the publish endpoint did not answer within 5 s")??;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// Waits until the node on `port` publishes: its endpoint answers `503` until the node is
/// subscribed and has a command connection to Redis, which it says nowhere else. The probe selects
/// nobody (a connection id that names no node), so no socket sees it.
async fn until_publishing(port: u16) -> Result<()> {
    let probe = r#"{"action":"probe","recipients":[{"type":"connection","value":"none"}]}"#;
    let mut publisher = publisher(port).await?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let (status, _) = post(&mut publisher, port, Bytes::from_static(probe.as_bytes())).await?;
        if status.is_success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node on port {port} still answers {status} after {READY_WITHIN:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
