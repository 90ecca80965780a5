//! The cluster scenario's redis-server: started pinned beside the nodes, asked what the scenario
//! measures (its CPU time, its command counts, the nodes' membership), killed at the end.

use std::process::Stdio;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use wshub_bench::cpu_seconds_fine;

use crate::procs::Env;
use crate::Result;

/// How long redis-server may take to say that it is ready, and any question to it.
const START_WITHIN: Duration = Duration::from_secs(10);
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The prefix of the cluster's keys (the default of `RedisCluster`).
const PREFIX: &str = "wshub";

/// Fails, saying what to install, when there is no redis-server to start: before any scenario
/// runs, rather than after the others have taken minutes.
pub(crate) fn check() -> Result<()> {
    match std::process::Command::new("redis-server")
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`redis-server --version` failed ({}): the cluster scenario needs a working redis-server",
            out.status
        )
        .into()),
        Err(e) => Err(format!(
            "the cluster scenario needs redis-server ({e}): install it (Debian: apt-get install \
             redis-server), or leave the scenario out with --only"
        )
        .into()),
    }
}

/// Commands Redis has run (those that scripts call included).
#[derive(Default, Clone, Copy)]
pub(crate) struct Calls {
    pub(crate) publish: u64,
    /// Script calls (`EVALSHA`: routing, counts, records, heartbeats), and the µs Redis spent
    /// running them, the commands they call included.
    pub(crate) scripts: u64,
    pub(crate) script_us: u64,
}

impl std::ops::Sub for Calls {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self {
            publish: self.publish - before.publish,
            scripts: self.scripts - before.scripts,
            script_us: self.script_us - before.script_us,
        }
    }
}

/// A running redis-server with no persistence, killed when stopped or dropped.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    pub(crate) url: String,
    connection: MultiplexedConnection,
}

impl Redis {
    /// Starts redis-server on a free port of 127.0.0.1, pinned to `core`, and waits until it
    /// says that it accepts connections.
    pub(crate) async fn start(env: &mut Env, core: u32) -> Result<Self> {
        let port = env.port()?;
        let mut command = env.pinned(core, "redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from redis-server")?;
        let mut lines = BufReader::new(stdout).lines();
        // Its log says when it listens: nothing to poll.
        let mut log = Vec::new();
        let ready = tokio::time::timeout(START_WITHIN, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("Ready to accept connections") {
                    return Ok(true);
                }
                log.push(line);
            }
            Ok::<_, std::io::Error>(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(format!(
                    "redis-server exited before it was ready: {}",
                    log.join(" | ")
                )
                .into())
            }
            Ok(Err(e)) => return Err(format!("reading redis-server's log: {e}").into()),
            Err(_) => {
                return Err(format!(
                    "redis-server not ready within {START_WITHIN:?}: {}",
                    log.join(" | ")
                )
                .into())
            }
        }
        // The rest of its log is read so that the pipe never fills and stops it; its warnings
        // (lines marked `#`) are shown.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(" # ") {
                    eprintln!("redis-server: {line}");
                }
            }
        });
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str())?;
        let connection =
            tokio::time::timeout(ANSWER_WITHIN, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| "no connection to redis-server")??;
        Ok(Self {
            child,
            port,
            url,
            connection,
        })
    }

    pub(crate) fn pid(&self) -> Result<u32> {
        self.child.id().ok_or_else(|| "redis-server is gone".into())
    }

    /// Its CPU time so far, in seconds (ns resolution: it does little per publish).
    pub(crate) fn cpu(&self) -> Result<f64> {
        cpu_seconds_fine(self.pid()?).ok_or_else(|| "no schedstat for redis-server".into())
    }

    async fn query<T: redis::FromRedisValue>(&mut self, command: &redis::Cmd) -> Result<T> {
        let asked = command.query_async(&mut self.connection);
        let answer = tokio::time::timeout(ANSWER_WITHIN, asked)
            .await
            .map_err(|_| format!("redis-server did not answer within {ANSWER_WITHIN:?}"))??;
        Ok(answer)
    }

    /// What Redis has run so far, from `INFO commandstats`.
    pub(crate) async fn calls(&mut self) -> Result<Calls> {
        let stats: String = self.query(redis::cmd("INFO").arg("commandstats")).await?;
        let field = |command: &str, name: &str| {
            let line = format!("cmdstat_{command}:");
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|fields| {
                    fields
                        .split(',')
                        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                })
                .and_then(|value| value.parse().ok())
                // Never run yet: no line.
                .unwrap_or(0)
        };
        Ok(Calls {
            publish: field("publish", "calls"),
            scripts: field("evalsha", "calls"),
            script_us: field("evalsha", "usec"),
        })
    }

    /// The ids of the nodes that beat.
    pub(crate) async fn nodes(&mut self) -> Result<Vec<String>> {
        let key = format!("{PREFIX}:nodes");
        self.query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
            .await
    }

    /// How many connection records `node` has in Redis.
    pub(crate) async fn records(&mut self, node: &str) -> Result<usize> {
        let key = format!("{PREFIX}:c:{node}");
        self.query(redis::cmd("HLEN").arg(key)).await
    }

    /// The nodes with a member of `group`, as routing reads them.
    pub(crate) async fn group_nodes(&mut self, group: &str) -> Result<Vec<String>> {
        let key = format!("{PREFIX}:g:{group}");
        self.query(redis::cmd("SMEMBERS").arg(key)).await
    }

    /// Kills it and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Makes the child get SIGKILL if the driver dies without stopping it (killed itself, say):
/// unlike the suite's own binaries, redis-server does not end when its stdin closes.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe, with constant arguments; it allocates nothing. The signal is tied to the
    // thread that spawns, the driver's one runtime thread, which lives as long as the driver.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
