//! A cluster on this machine: a real `redis-server` on a free port of 127.0.0.1, and nodes that
//! are real processes (the `hyper_server` example, built with the `cluster` feature), each
//! started and killed by the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use super::{until_async, within, Remote, TOKEN};

/// A `redis-server` with no persistence, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Self {
        let port = free_port().await;
        Self::start_on(port).await
    }

    /// A Redis on `port`: the same address a killed one had, empty.
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (Debian: apt-get install redis-server)")
            });
        let redis = Self {
            child: Some(child),
            port,
        };
        until_async("redis-server to answer PING", || async {
            redis.try_command(&["PING"]).await.as_deref() == Some("+PONG")
        })
        .await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            within("redis-server to exit", child.wait()).await.ok();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server, as `kill -<signal>` would.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server is running");
        signal_pid(pid, signal);
    }

    /// Sends one command and returns the first line of the reply (`+PONG`, `:1`, `*2`, …).
    pub async fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut line = String::new();
        BufReader::new(&mut stream)
            .read_line(&mut line)
            .await
            .ok()?;
        Some(line.trim_end().to_owned())
    }

    /// How many subscribers `channel` has (`PUBSUB NUMSUB`), or `None` when Redis does not
    /// answer.
    pub async fn subscribers(&self, channel: &str) -> Option<u64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let request = format!(
            "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        // *2, $len, the channel, :count
        let mut lines = BufReader::new(&mut stream).lines();
        let mut last = String::new();
        for _ in 0..4 {
            last = lines.next_line().await.ok()??;
        }
        last.strip_prefix(':')?.parse().ok()
    }

    /// Waits until `node` (8 hex digits) is in the set at `key`: this node's membership has
    /// reached Redis.
    pub async fn until_member(&self, key: &str, node: &str) {
        let what = format!("node {node} in {key}");
        until_async(&what, || async {
            self.try_command(&["SISMEMBER", key, node]).await.as_deref() == Some(":1")
        })
        .await;
    }
}

/// Waits until `node` is no longer in the set at `key`.
impl Redis {
    pub async fn until_not_member(&self, key: &str, node: &str) {
        let what = format!("node {node} to leave {key}");
        until_async(&what, || async {
            self.try_command(&["SISMEMBER", key, node]).await.as_deref() == Some(":0")
        })
        .await;
    }
}

/// One node: the `hyper_server` example in its own process, joined to `redis`.
pub struct Node {
    child: Child,
    pub remote: Remote,
}

impl std::ops::Deref for Node {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl Node {
    /// Starts a node and waits until it publishes: subscribed, with a command connection.
    pub async fn start(redis: &Redis) -> Self {
        Self::start_example("hyper_server", redis).await
    }

    /// Starts the example `name` (which prints `listening on http://<addr>`) as a node.
    pub async fn start_example(name: &str, redis: &Redis) -> Self {
        let mut child = Command::new(example(name))
            .env("WSHUB_ADDR", "127.0.0.1:0")
            .env("WSHUB_PUBLISH_TOKEN", TOKEN)
            .env("WSHUB_REDIS_URL", redis.url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the hyper_server example");
        let stdout = child.stdout.take().expect("piped stdout");
        let addr = within("the node to print its address", async {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let line = lines.next_line().await.expect("read stdout");
                let line = line.expect("the node exited before listening");
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    break addr.parse::<SocketAddr>().expect("an address");
                }
            }
        })
        .await;
        let node = Self {
            child,
            remote: Remote { addr },
        };
        node.until_publishing().await;
        node
    }

    /// Waits until the publish endpoint takes an envelope (it answers `503` while Redis is away).
    pub async fn until_publishing(&self) {
        let probe = r#"{"action":"probe","recipients":[{"type":"connection","value":"none"}]}"#;
        until_async("the node to publish (200, not 503)", || async {
            self.post("/api/publish", Some(TOKEN), probe).await.status == 200
        })
        .await;
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node's process.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.child.id().expect("the node is running"), signal);
    }

    /// Kills it at once (SIGKILL).
    pub async fn kill(&mut self) {
        self.child.start_kill().ok();
        within("the node to exit", self.child.wait()).await.ok();
    }
}

/// The node id a connection id names: its first 8 hex digits.
pub fn node_of(connection_id: &str) -> &str {
    &connection_id[..8]
}

/// An example binary that `cargo test` built beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --features cluster` (or --all-features), which builds the examples",
        path.display()
    );
    path
}

fn signal_pid(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}
