//! One server with its load clients, and what a session measured.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use wshub_bench::{burst_envelope, unix_ns};

use crate::procs::{number, Env, Proc};
use crate::{Result, BURST, BYTES, PER_LOAD, WSHUB_METRICS};

/// How long a server is left after its connections are open (or a large frame is delivered)
/// before its idle memory is read: what the handshakes and writes left behind settles.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// What one implementation measured at one connection count.
#[derive(Default, Clone)]
pub(crate) struct Measured {
    pub(crate) connections: usize,
    pub(crate) connect_ms: u64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_idle_kib: u64,
    /// RssAnon (heap and stacks, without the executable's pages) at the same two moments.
    pub(crate) anon_before_kib: u64,
    pub(crate) anon_idle_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// Deliveries per second of each measured burst, by publish path.
    pub(crate) rust: Vec<f64>,
    pub(crate) http: Vec<f64>,
    /// One POST of an array of the BURST envelopes per burst.
    pub(crate) http_array: Vec<f64>,
    pub(crate) rust_cpu_per_1k: f64,
    pub(crate) http_cpu_per_1k: f64,
    pub(crate) http_array_cpu_per_1k: f64,
    /// Scenario 3: publish-to-last-receive latency of each isolated publish, in ms.
    pub(crate) latency_ms: Vec<f64>,
    /// [`WSHUB_METRICS`]: the size in bytes and the samples of its scrape after the bursts.
    pub(crate) scrape: Option<(u64, u64)>,
}

impl Measured {
    pub(crate) fn idle_per_conn_kib(&self) -> f64 {
        (self.rss_idle_kib as f64 - self.rss_before_kib as f64) / self.connections as f64
    }
}

/// One server with its load clients.
pub(crate) struct Session {
    which: String,
    pub(crate) server: Proc,
    pub(crate) loads: Vec<Proc>,
    pub(crate) port: u16,
    pub(crate) connections: usize,
    /// A keep-alive connection to the publish endpoint (wshub only).
    pub(crate) publisher: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Session {
    /// A server of `which` with `connections` idle connections, measured as scenario 1 does.
    pub(crate) async fn start(
        env: &mut Env,
        which: &str,
        read_buffer: Option<usize>,
        connections: usize,
        load_args: &[&str],
    ) -> Result<(Self, Measured)> {
        let mut session = Self::server(env, which, read_buffer).await?;
        let measured = session.connect(env, connections, load_args).await?;
        Ok((session, measured))
    }

    /// A server of `which`, listening, with no connections yet.
    pub(crate) async fn server(
        env: &mut Env,
        which: &str,
        read_buffer: Option<usize>,
    ) -> Result<Self> {
        let port = env.port()?;
        let mut command = env.command(0, "bench-server");
        command
            .args(server_args(which))
            .args(["--port", &port.to_string()]);
        if let Some(bytes) = read_buffer {
            command.args(["--read-buffer", &bytes.to_string()]);
        }
        let mut server = Proc::spawn(command, format!("server {which}"))?;
        server.expect("listening", Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Self {
            which: which.to_owned(),
            server,
            loads: Vec::new(),
            port,
            connections: 0,
            publisher: None,
        })
    }

    /// Opens `connections` through load clients (once per session) and measures the server's
    /// memory before and with them, once they are idle.
    pub(crate) async fn connect(
        &mut self,
        env: &Env,
        connections: usize,
        load_args: &[&str],
    ) -> Result<Measured> {
        let (which, port) = (self.which.clone(), self.port);
        let server = &mut self.server;
        let (rss_before_kib, anon_before_kib) = rss(server).await?;

        let started = Instant::now();
        let mut loads = Vec::new();
        let processes = connections.div_ceil(PER_LOAD);
        for i in 0..processes {
            let share = connections / processes + usize::from(i < connections % processes);
            let mut command = env.command(1, "bench-load");
            command.args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--connections",
                &share.to_string(),
            ]);
            if is_wshub(&which) {
                // Its first message is `__connected`.
                command.arg("--hello");
            }
            let first = (0..i)
                .map(|j| connections / processes + usize::from(j < connections % processes))
                .sum::<usize>();
            command
                .args(["--first", &first.to_string()])
                .args(load_args);
            loads.push(Proc::spawn(command, format!("load {i} ({which})"))?);
        }
        for load in &mut loads {
            load.expect("ready", Duration::from_secs(120)).await?;
        }
        let connect_ms = started.elapsed().as_millis() as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let count: usize = number(&server.ask("count", "count").await?, 1)?;
            if count == connections {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("server {which} holds {count} of {connections}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let what the handshakes left behind settle.
        tokio::time::sleep(SETTLE).await;
        let (rss_idle_kib, anon_idle_kib) = rss(server).await?;
        self.loads = loads;
        self.connections = connections;
        Ok(Measured {
            connections,
            connect_ms,
            rss_before_kib,
            rss_idle_kib,
            anon_before_kib,
            anon_idle_kib,
            ..Measured::default()
        })
    }

    /// The server's VmRSS and RssAnon, in KiB.
    pub(crate) async fn rss(&mut self) -> Result<(u64, u64)> {
        rss(&mut self.server).await
    }

    pub(crate) async fn arm(&mut self) -> Result<()> {
        self.arm_n(BURST).await
    }

    pub(crate) async fn arm_n(&mut self, messages: usize) -> Result<()> {
        for load in &mut self.loads {
            load.ask(&format!("arm {messages}"), "armed").await?;
        }
        Ok(())
    }

    /// Scenario 3: one envelope to every socket; the time from the publish (the server's clock
    /// before `Hub::send` or the baselines' `try_send`s) to the last socket's receipt (the load
    /// clients' clock), in ms.
    pub(crate) async fn latency_once(&mut self) -> Result<f64> {
        self.arm_n(1).await?;
        let answer = self
            .server
            .ask(&format!("burst 1 {BYTES}"), "burst")
            .await?;
        let published: u128 = number(&answer, 1)?;
        let delivered: usize = number(&answer, 3)?;
        if delivered != self.connections {
            return Err(format!("queued {delivered} of {}", self.connections).into());
        }
        let last = self.last_done().await?;
        Ok(last.saturating_sub(published) as f64 / 1e6)
    }

    /// The last `done` of the load clients, in unix ns.
    pub(crate) async fn last_done(&mut self) -> Result<u128> {
        crate::procs::last_done(&mut self.loads).await
    }

    /// One burst published from Rust (the server's `burst` command); deliveries per second.
    pub(crate) async fn burst_rust(&mut self) -> Result<f64> {
        self.arm().await?;
        let answer = self
            .server
            .ask(&format!("burst {BURST} {BYTES}"), "burst")
            .await?;
        let started: u128 = number(&answer, 1)?;
        let delivered: usize = number(&answer, 3)?;
        if delivered != BURST * self.connections {
            return Err(format!("queued {delivered} of {}", BURST * self.connections).into());
        }
        let last = self.last_done().await?;
        Ok(rate(self.connections, started, last))
    }

    /// One burst through the publish endpoint: BURST POSTs in a row on one keep-alive connection.
    pub(crate) async fn burst_http(&mut self) -> Result<f64> {
        let bodies: Vec<Bytes> = (0..BURST)
            .map(|i| Bytes::from(burst_envelope(i, BYTES).to_json()))
            .collect();
        self.post_burst(bodies).await
    }

    /// One burst through the publish endpoint as one POST of an array of BURST envelopes.
    pub(crate) async fn burst_http_array(&mut self) -> Result<f64> {
        let envelopes: Vec<String> = (0..BURST)
            .map(|i| burst_envelope(i, BYTES).to_json())
            .collect();
        let body = Bytes::from(format!("[{}]", envelopes.join(",")));
        self.post_burst(vec![body]).await
    }

    /// POSTs `bodies` in a row on the keep-alive connection; deliveries per second of the
    /// BURST envelopes they hold.
    pub(crate) async fn post_burst(&mut self, bodies: Vec<Bytes>) -> Result<f64> {
        self.arm().await?;
        let port = self.port;
        let per_post = BURST / bodies.len() * self.connections;
        let sender = self.publisher.as_mut().ok_or("no publish connection")?;
        let started = unix_ns();
        for body in bodies {
            let request = http::Request::post("/api/publish")
                .header(http::header::HOST, format!("127.0.0.1:{port}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let want = format!("{{\"delivered\":{per_post}}}");
            if !status.is_success() || body.as_ref() != want.as_bytes() {
                return Err(format!("publish: {status} {}", String::from_utf8_lossy(&body)).into());
            }
        }
        let last = self.last_done().await?;
        Ok(rate(self.connections, started, last))
    }

    pub(crate) async fn stop(self) {
        for load in self.loads {
            load.stop().await;
        }
        self.server.stop().await;
    }
}

/// Whether `which` is a wshub server, with or without metrics.
pub(crate) fn is_wshub(which: &str) -> bool {
    which == "wshub" || which == WSHUB_METRICS
}

/// The server's arguments that say what it runs: `--impl which`, or for [`WSHUB_METRICS`],
/// wshub with `--metrics` (Prometheus's exporter installed).
fn server_args(which: &str) -> Vec<&str> {
    if which == WSHUB_METRICS {
        vec!["--impl", "wshub", "--metrics"]
    } else {
        vec!["--impl", which]
    }
}

/// A server's VmRSS and RssAnon, in KiB.
async fn rss(server: &mut Proc) -> Result<(u64, u64)> {
    let answer = server.ask("rss", "rss").await?;
    Ok((number(&answer, 1)?, number(&answer, 2)?))
}

pub(crate) fn rate(connections: usize, started: u128, last: u128) -> f64 {
    let seconds = last.saturating_sub(started) as f64 / 1e9;
    (BURST * connections) as f64 / seconds.max(1e-9)
}
