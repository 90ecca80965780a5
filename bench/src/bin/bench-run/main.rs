//! The driver of the benchmark suite of issue 6: for each scenario, starts the server
//! (`bench-server`, pinned with `taskset -c 0`) and the load clients (`bench-load`, pinned with
//! `taskset -c 1`), runs wshub and the baselines in the same run, and writes the generated
//! sections of `docs/benchmarks.md`:
//!
//! - scenarios 1 (idle capacity), 2 (burst broadcast) and 3 (isolated broadcast latency, in the
//!   sessions of scenario 2), here;
//! - the read speed of large client messages per read buffer, [`read_speed`];
//! - scenario 4 (groups and users under an open-loop rate), [`groups`];
//! - scenario 5 (the publish endpoint against a no-op route of the same server), here;
//! - scenario 6 (relay and forward round trips), [`roundtrip`];
//! - scenario 7 (clients that stop reading; connection churn), [`abuse`].
//!
//! ```text
//! cargo run --release -p wshub-bench --bin bench-run -- --quick    # about two minutes
//! cargo run --release -p wshub-bench --bin bench-run -- --full     # about eight
//! ```
//!
//! Options: `--reps N` (bursts measured per implementation and publish path; default 9 quick, 7
//! full), `--out PATH` (default docs/benchmarks.md of the workspace), `--port-base P` (default
//! 20000; every server gets the next free port below 32768), `--only 1,read,4,5,6,7` (some
//! scenarios only, for working on one; `1` is scenarios 1-3), `--profile FILE` (no report: a
//! `perf record` of the wshub server during scenario 2's bursts, see `bench/flamegraph.sh`;
//! `--profile-impl tungstenite` records a baseline instead).
//!
//! The report keeps one section per mode: a quick run replaces the quick section and keeps the
//! full one, and the other way round; the hand-written notes after them are kept. Every child is
//! killed when the driver ends, however it ends (and each child also exits by itself when its
//! stdin closes or after `--max-seconds`).

mod abuse;
mod groups;
mod read_speed;
mod roundtrip;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use wshub_bench::{burst_envelope, cpu_seconds, unix_ns, Args};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const IMPLS: [&str; 3] = ["wshub", "tungstenite", "raw"];
/// Extra rows of scenario 1: the tungstenite baseline with smaller read buffers (bytes), to show
/// what that buffer costs per idle socket.
const READ_BUFFERS: [usize; 2] = [1024, 256];
/// Envelopes per burst and their size (issue 6, scenario 2).
const BURST: usize = 20;
const BYTES: usize = 100;
/// Sockets per load process, well under the ~19,900 one process can hold.
const PER_LOAD: usize = 10_000;
/// Scenario 3: one publish every this many ms.
const LATENCY_EVERY_MS: u64 = 250;
/// Scenario 5: keep-alive connections of the HTTP load client, and subscriber counts.
const HTTP_CONCURRENCY: usize = 16;
const SUBSCRIBERS: [usize; 3] = [0, 1, 1_000];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Quick,
    Full,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
        }
    }
}

fn main() {
    let args = Args::from_env();
    let mode = match (args.flag("--quick"), args.flag("--full")) {
        (true, false) => Mode::Quick,
        (false, true) => Mode::Full,
        _ => {
            eprintln!("bench-run --quick | --full  [--reps N] [--out PATH] [--port-base P]");
            std::process::exit(2);
        }
    };
    let reps = args.parsed("--reps", if mode == Mode::Quick { 9 } else { 7 });
    let out = args.value("--out").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md"),
        PathBuf::from,
    );
    let port_base: u16 = args.parsed("--port-base", 20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let plan = Plan {
        only: args.value("--only").map(str::to_owned),
        profile: args.value("--profile").map(PathBuf::from),
        profile_impl: args.value("--profile-impl").map(str::to_owned),
    };
    let profile = plan.profile.clone();
    match runtime.block_on(run(mode, reps, &out, port_base, plan)) {
        Ok(()) => eprintln!(
            "bench-run: {} mode done in {:.0} s; wrote {}",
            mode.name(),
            started.elapsed().as_secs_f64(),
            profile.as_deref().unwrap_or(&out).display()
        ),
        Err(e) => {
            eprintln!("bench-run: {e}");
            std::process::exit(1);
        }
    }
}

/// The sibling binaries, built first when the driver runs under cargo.
fn binaries() -> Result<PathBuf> {
    if let Ok(cargo) = std::env::var("CARGO") {
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "wshub-bench", "--bins"])
            .status()?;
        if !status.success() {
            return Err("building bench-server and bench-load failed".into());
        }
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("no directory for the driver")?
        .to_owned();
    for bin in ["bench-server", "bench-load"] {
        if !dir.join(bin).exists() {
            return Err(format!("{} missing: cargo build --release -p wshub-bench", bin).into());
        }
    }
    Ok(dir)
}

struct Env {
    bins: PathBuf,
    taskset: bool,
    next_port: u16,
    /// `--profile FILE`: where `perf record` writes the wshub server's profile during the
    /// bursts from Rust.
    perf: Option<PathBuf>,
}

impl Env {
    fn command(&self, core: u32, bin: &str) -> Command {
        let mut command = if self.taskset {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(self.bins.join(bin));
            c
        } else {
            Command::new(self.bins.join(bin))
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// The next port below 32768 that nothing listens on.
    fn port(&mut self) -> Result<u16> {
        while self.next_port < 32_767 {
            let port = self.next_port;
            self.next_port += 1;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err("no free port below 32768".into())
    }
}

/// A child process spoken to line by line.
struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(mut command: Command, name: String) -> Result<Self> {
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            name,
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    fn pid(&self) -> Result<u32> {
        self.child.id().ok_or_else(|| "child gone".into())
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        let sent = async {
            self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(e) = sent.await {
            // It has exited: what it said last tells why.
            let mut last = Vec::new();
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(200), self.lines.next_line()).await
            {
                last.push(line);
            }
            return Err(format!("{}: {e}; its last words: {}", self.name, last.join(" | ")).into());
        }
        Ok(())
    }

    /// The words of the next line starting with `word`; `error` lines and the end fail.
    async fn expect(&mut self, word: &str, within: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| format!("{}: no `{word}` within {within:?}", self.name))??
                .ok_or_else(|| format!("{}: exited while waiting for `{word}`", self.name))?;
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            match words.first().map(String::as_str) {
                Some(w) if w == word => return Ok(words),
                Some("error") => return Err(format!("{}: {line}", self.name).into()),
                _ => eprintln!("{}: {line}", self.name),
            }
        }
    }

    async fn ask(&mut self, command: &str, word: &str) -> Result<Vec<String>> {
        self.send(command).await?;
        self.expect(word, Duration::from_secs(30)).await
    }

    /// Asks it to quit, then kills it if it has not within a few seconds.
    async fn stop(mut self) {
        let _ = self.send("quit").await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn number<T: std::str::FromStr>(words: &[String], at: usize) -> Result<T> {
    words
        .get(at)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad answer: {}", words.join(" ")).into())
}

/// What one implementation measured at one connection count.
#[derive(Default, Clone)]
struct Measured {
    connections: usize,
    connect_ms: u64,
    rss_before_kib: u64,
    rss_idle_kib: u64,
    rss_after_kib: u64,
    /// Deliveries per second of each measured burst, by publish path.
    rust: Vec<f64>,
    http: Vec<f64>,
    /// One POST of an array of the BURST envelopes per burst.
    http_array: Vec<f64>,
    rust_cpu_per_1k: f64,
    http_cpu_per_1k: f64,
    http_array_cpu_per_1k: f64,
    /// Scenario 3: publish-to-last-receive latency of each isolated publish, in ms.
    latency_ms: Vec<f64>,
}

impl Measured {
    fn idle_per_conn_kib(&self) -> f64 {
        (self.rss_idle_kib as f64 - self.rss_before_kib as f64) / self.connections as f64
    }
}

/// One server with its load clients.
struct Session {
    server: Proc,
    loads: Vec<Proc>,
    port: u16,
    connections: usize,
    /// A keep-alive connection to the publish endpoint (wshub only).
    publisher: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Session {
    async fn start(
        env: &mut Env,
        which: &str,
        read_buffer: Option<usize>,
        connections: usize,
        load_args: &[&str],
    ) -> Result<(Self, Measured)> {
        let port = env.port()?;
        let mut command = env.command(0, "bench-server");
        command.args(["--impl", which, "--port", &port.to_string()]);
        if let Some(bytes) = read_buffer {
            command.args(["--read-buffer", &bytes.to_string()]);
        }
        let mut server = Proc::spawn(command, format!("server {which}"))?;
        server.expect("listening", Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_before_kib = number(&server.ask("rss", "rss").await?, 1)?;

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
            if which == "wshub" {
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
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle_kib = number(&server.ask("rss", "rss").await?, 1)?;
        let session = Self {
            server,
            loads,
            port,
            connections,
            publisher: None,
        };
        let measured = Measured {
            connections,
            connect_ms,
            rss_before_kib,
            rss_idle_kib,
            ..Measured::default()
        };
        Ok((session, measured))
    }

    async fn arm(&mut self) -> Result<()> {
        self.arm_n(BURST).await
    }

    async fn arm_n(&mut self, messages: usize) -> Result<()> {
        for load in &mut self.loads {
            load.ask(&format!("arm {messages}"), "armed").await?;
        }
        Ok(())
    }

    /// Scenario 3: one envelope to every socket; the time from the publish (the server's clock
    /// before `Hub::send` or the baselines' `try_send`s) to the last socket's receipt (the load
    /// clients' clock), in ms.
    async fn latency_once(&mut self) -> Result<f64> {
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
    async fn last_done(&mut self) -> Result<u128> {
        let mut last = 0;
        for load in &mut self.loads {
            let done = load.expect("done", Duration::from_secs(60)).await?;
            last = last.max(number(&done, 1)?);
        }
        Ok(last)
    }

    /// One burst published from Rust (the server's `burst` command); deliveries per second.
    async fn burst_rust(&mut self) -> Result<f64> {
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
    async fn burst_http(&mut self) -> Result<f64> {
        let bodies: Vec<Bytes> = (0..BURST)
            .map(|i| Bytes::from(burst_envelope(i, BYTES).to_json()))
            .collect();
        self.post_burst(bodies).await
    }

    /// One burst through the publish endpoint as one POST of an array of BURST envelopes.
    async fn burst_http_array(&mut self) -> Result<f64> {
        let envelopes: Vec<String> = (0..BURST)
            .map(|i| burst_envelope(i, BYTES).to_json())
            .collect();
        let body = Bytes::from(format!("[{}]", envelopes.join(",")));
        self.post_burst(vec![body]).await
    }

    /// POSTs `bodies` in a row on the keep-alive connection; deliveries per second of the
    /// BURST envelopes they hold.
    async fn post_burst(&mut self, bodies: Vec<Bytes>) -> Result<f64> {
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

    async fn stop(self) {
        for load in self.loads {
            load.stop().await;
        }
        self.server.stop().await;
    }
}

fn rate(connections: usize, started: u128, last: u128) -> f64 {
    let seconds = last.saturating_sub(started) as f64 / 1e9;
    (BURST * connections) as f64 / seconds.max(1e-9)
}

/// Scenario 1's idle measurement alone (a session that only connects).
async fn idle(
    env: &mut Env,
    which: &str,
    read_buffer: Option<usize>,
    connections: usize,
) -> Result<Measured> {
    eprintln!("bench-run: {which} {read_buffer:?}, {connections} idle connections");
    let (session, measured) = Session::start(env, which, read_buffer, connections, &[]).await?;
    session.stop().await;
    Ok(measured)
}

/// Scenarios 2 and 3 with every implementation's server up at once (all pinned to core 0, their
/// load clients to core 1): the implementations take turns burst by burst, so the machine's
/// drift, which moves absolute rates by tens of percent within a minute, falls on all of them
/// alike. `reps` bursts each from Rust after one to warm up, then wshub's bursts through HTTP,
/// then `latency` isolated publishes each, in turns every 250 ms.
async fn bursts(
    env: &mut Env,
    connections: usize,
    reps: usize,
    latency: usize,
) -> Result<Vec<(String, Measured)>> {
    let mut sessions = Vec::new();
    for which in IMPLS {
        eprintln!("bench-run: {which}, {connections} connections for bursts");
        match Session::start(env, which, None, connections, &[]).await {
            Ok((session, measured)) => sessions.push((which.to_owned(), session, measured)),
            Err(e) => {
                for (_, session, _) in sessions {
                    session.stop().await;
                }
                return Err(e);
            }
        }
    }
    let result = take_turns(&mut sessions, reps, latency).await;
    let mut measured = Vec::new();
    for (which, session, m) in sessions {
        session.stop().await;
        measured.push((which, m));
    }
    result.map(|()| measured)
}

async fn take_turns(
    sessions: &mut [(String, Session, Measured)],
    reps: usize,
    latency: usize,
) -> Result<()> {
    let pause = Duration::from_millis(100);
    for (_, session, _) in sessions.iter_mut() {
        session.burst_rust().await?;
        tokio::time::sleep(pause).await;
    }
    let mut cpu_before = Vec::new();
    for (_, session, _) in sessions.iter() {
        cpu_before.push(cpu_seconds(session.server.pid()?).ok_or("no /proc stat")?);
    }
    for _ in 0..reps {
        for (_, session, m) in sessions.iter_mut() {
            m.rust.push(session.burst_rust().await?);
            tokio::time::sleep(pause).await;
        }
    }
    for ((_, session, m), before) in sessions.iter_mut().zip(cpu_before) {
        let cpu = cpu_seconds(session.server.pid()?).ok_or("no /proc stat")? - before;
        m.rust_cpu_per_1k = cpu / (reps * BURST * session.connections) as f64 * 1000.0;
    }
    for (which, session, m) in sessions.iter_mut() {
        if which != "wshub" {
            continue;
        }
        let stream = TcpStream::connect(("127.0.0.1", session.port)).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(connection);
        session.publisher = Some(sender);
        session.burst_http().await?;
        let pid = session.server.pid()?;
        let before = cpu_seconds(pid).ok_or("no /proc stat")?;
        for _ in 0..reps {
            m.http.push(session.burst_http().await?);
            tokio::time::sleep(pause).await;
        }
        let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - before;
        m.http_cpu_per_1k = cpu / (reps * BURST * session.connections) as f64 * 1000.0;
        let before = cpu_seconds(pid).ok_or("no /proc stat")?;
        for _ in 0..reps {
            m.http_array.push(session.burst_http_array().await?);
            tokio::time::sleep(pause).await;
        }
        let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - before;
        m.http_array_cpu_per_1k = cpu / (reps * BURST * session.connections) as f64 * 1000.0;
        session.publisher = None;
        connection.abort();
    }
    for (_, session, m) in sessions.iter_mut() {
        m.rss_after_kib = number(&session.server.ask("rss", "rss").await?, 1)?;
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(LATENCY_EVERY_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..=latency {
        for (_, session, m) in sessions.iter_mut() {
            ticks.tick().await;
            let sample = session.latency_once().await?;
            // The first of each is a warm-up.
            if i > 0 {
                m.latency_ms.push(sample);
            }
        }
    }
    Ok(())
}

/// `perf record` of process `pid` with call graphs, until [`stop_profile`].
fn profile(file: &Path, pid: u32) -> Result<Child> {
    let child = Command::new("perf")
        .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(file)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("perf (Debian's linux-perf) is needed for --profile: {e}"))?;
    Ok(child)
}

/// Stops `perf record` the way it expects (SIGINT), so that it writes its file out.
async fn stop_profile(mut perf: Child) -> Result<()> {
    let pid = perf.id().ok_or("perf exited early")?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    perf.wait().await?;
    Ok(())
}

/// One row of scenario 5.
struct HttpRow {
    route: &'static str,
    subscribers: usize,
    rps: f64,
    ok: u64,
    failed: u64,
    /// Server CPU seconds per 1,000 answered requests.
    cpu_per_1k: f64,
}

/// Scenario 5: `HTTP_CONCURRENCY` keep-alive connections (a `bench-load --http` process on
/// core 1) POST for `seconds` to the no-op route and the publish endpoint in turn (twice each)
/// with 0 subscribers, then to the publish endpoint with 1 and 1,000 subscribers and the no-op
/// route again, all on one wshub server.
async fn publish_endpoint(env: &mut Env, seconds: u64) -> Result<Vec<HttpRow>> {
    eprintln!("bench-run: publish endpoint, {seconds} s per row");
    let (mut session, _) = Session::start(env, "wshub", None, 0, &[]).await?;
    let result = async {
        let mut rows = Vec::new();
        // No-op and publish alternate at 0 subscribers: the machine's speed drifts by tens of
        // percent within a minute, so the ratio is taken between neighbouring runs.
        let mut plan: Vec<(&'static str, usize)> = vec![
            ("/noop", 0),
            ("/api/publish", 0),
            ("/noop", 0),
            ("/api/publish", 0),
        ];
        plan.extend(SUBSCRIBERS[1..].iter().map(|&n| ("/api/publish", n)));
        plan.push(("/noop", SUBSCRIBERS[SUBSCRIBERS.len() - 1]));
        for (route, subscribers) in plan {
            if subscribers > session.connections {
                let more = subscribers - session.connections;
                let mut command = env.command(1, "bench-load");
                command.args([
                    "--addr",
                    &format!("127.0.0.1:{}", session.port),
                    "--connections",
                    &more.to_string(),
                    "--hello",
                ]);
                let name = format!("subscribers +{more}");
                let mut load = Proc::spawn(command, name)?;
                load.expect("ready", Duration::from_secs(60)).await?;
                session.loads.push(load);
                session.connections = subscribers;
                let count: usize = number(&session.server.ask("count", "count").await?, 1)?;
                if count != subscribers {
                    return Err(format!("server holds {count} of {subscribers}").into());
                }
            }
            let pid = session.server.pid()?;
            let cpu_before = cpu_seconds(pid).ok_or("no /proc stat")?;
            let mut command = env.command(1, "bench-load");
            command.args([
                "--addr",
                &format!("127.0.0.1:{}", session.port),
                "--http",
                route,
                "--concurrency",
                &HTTP_CONCURRENCY.to_string(),
                "--seconds",
                &seconds.to_string(),
                "--bytes",
                &BYTES.to_string(),
                "--max-seconds",
                &(seconds + 30).to_string(),
            ]);
            let mut client = Proc::spawn(command, format!("http {route}"))?;
            let answer = client
                .expect("rps", Duration::from_secs(seconds + 30))
                .await;
            client.stop().await;
            let answer = answer?;
            let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - cpu_before;
            let ok: u64 = number(&answer, 2)?;
            rows.push(HttpRow {
                route,
                subscribers,
                rps: number(&answer, 1)?,
                ok,
                failed: number(&answer, 3)?,
                cpu_per_1k: cpu / ok.max(1) as f64 * 1000.0,
            });
            // The subscribers must still all be there: a publish that closed one would show.
            let count: usize = number(&session.server.ask("count", "count").await?, 1)?;
            if count != session.connections {
                return Err(format!("server holds {count} of {}", session.connections).into());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok::<_, Error>(rows)
    }
    .await;
    session.stop().await;
    result
}

/// What to run: every scenario, or those listed with `--only` (for working on one).
struct Plan {
    only: Option<String>,
    profile: Option<PathBuf>,
    /// `--profile-impl`: which server `--profile` records (wshub unless told).
    profile_impl: Option<String>,
}

impl Plan {
    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|s| s.trim() == scenario))
    }
}

async fn run(mode: Mode, reps: usize, out: &Path, port_base: u16, plan: Plan) -> Result<()> {
    let bins = binaries()?;
    let taskset = std::process::Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut env = Env {
        bins,
        taskset,
        next_port: port_base,
        perf: plan.profile.clone(),
    };
    let started = Instant::now();
    let full = mode == Mode::Full;
    // (connections for scenario 1, for scenarios 2 and 7)
    let (idle_c, burst_c) = if full {
        (19_000, 10_000)
    } else {
        (2_000, 2_000)
    };
    // Scenario 3 runs in the burst session, after the bursts: publishes; seconds per row of
    // scenario 5.
    let (latency_n, http_seconds) = if full { (60, 10) } else { (20, 2) };
    let upload_messages = if full { 2_000 } else { 500 };
    // Scenario 4: connections and seconds per step.
    let (groups_c, step_seconds) = if full { (10_000, 3.0) } else { (2_000, 1.0) };
    // Scenario 6: connections, round trips a second in all, seconds.
    let (trip_c, trip_rate, trip_seconds) = if full {
        (1_000, 1_000.0, 15.0)
    } else {
        (1_000, 1_000.0, 3.0)
    };
    // Scenario 7: bursts with non-readers; churn rate and seconds.
    let (stall_bursts, churn_rate, churn_seconds) = if full {
        (100, 1_000.0, 60.0)
    } else {
        (70, 1_000.0, 5.0)
    };

    if let Some(file) = env.perf.clone() {
        // Only the profile: wshub's bursts, no report.
        let which = plan.profile_impl.as_deref().unwrap_or("wshub");
        let (mut session, _) = Session::start(&mut env, which, None, burst_c, &[]).await?;
        let result = async {
            session.burst_rust().await?;
            let perf = profile(&file, session.server.pid()?)?;
            for _ in 0..reps * 2 {
                session.burst_rust().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop_profile(perf).await
        }
        .await;
        session.stop().await;
        return result;
    }
    let mut section = String::new();
    let mut idle = Vec::new();
    let mut burst = Vec::new();
    if plan.wants("1") {
        burst = bursts(&mut env, burst_c, reps, latency_n).await?;
        if idle_c == burst_c {
            // Quick: the burst sessions' idle RSS was read before any burst.
            idle.extend(burst.iter().cloned());
        } else {
            for which in IMPLS {
                idle.push((
                    which.to_owned(),
                    self::idle(&mut env, which, None, idle_c).await?,
                ));
            }
        }
        for bytes in READ_BUFFERS {
            let m = self::idle(&mut env, "tungstenite", Some(bytes), idle_c).await?;
            idle.push((format!("tungstenite, {bytes} B read buffer"), m));
        }
        section.push_str(&report(reps, &idle, &burst));
        section.push_str(&report_latency(&burst, LATENCY_EVERY_MS));
    }
    if plan.wants("read") {
        let uploads = read_speed::run(&mut env, upload_messages, &READ_BUFFERS).await?;
        section.push_str(&read_speed::report(&uploads, &idle, upload_messages));
    }
    if plan.wants("4") {
        let mut ladders = Vec::new();
        for which in ["wshub", "tungstenite"] {
            ladders.push(groups::run(&mut env, which, groups_c, step_seconds).await?);
        }
        section.push_str(&groups::report(&ladders, step_seconds));
    }
    if plan.wants("5") {
        let http = publish_endpoint(&mut env, http_seconds).await?;
        section.push_str(&report_http(&http, http_seconds));
    }
    if plan.wants("6") {
        let trips = roundtrip::run(&mut env, trip_c, trip_rate, trip_seconds).await?;
        section.push_str(&roundtrip::report(&trips, trip_c, trip_rate, trip_seconds));
    }
    if plan.wants("7") {
        let mut stalled = Vec::new();
        let mut churns = Vec::new();
        for which in ["wshub", "tungstenite"] {
            stalled.push(abuse::stalled(&mut env, which, burst_c, stall_bursts).await?);
        }
        for which in ["wshub", "tungstenite"] {
            churns.push(abuse::churn(&mut env, which, churn_rate, churn_seconds).await?);
        }
        section.push_str(&abuse::report(&stalled, &burst, &churns));
    }
    let head = report_head(mode, taskset, started.elapsed());
    write_report(out, mode, &format!("{head}{section}"))?;
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The nearest-rank percentile `p` (0-100) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report_latency(burst: &[(String, Measured)], every_ms: u64) -> String {
    let mut s = String::new();
    let c = burst.first().map_or(0, |(_, m)| m.connections);
    let n = burst.first().map_or(0, |(_, m)| m.latency_ms.len());
    let _ = writeln!(
        s,
        "### Scenario 3: isolated broadcast latency, one envelope to {} sockets every {every_ms} ms\n",
        grouped(c as u64)
    );
    let _ = writeln!(
        s,
        "Publish-to-last-receive latency = the load clients' clock when the last socket has the \
         frame − the server's clock just before the publish (`Hub::send`; the baselines' \
         `try_send` to every queue); both `CLOCK_REALTIME` on the same machine. {n} publishes after \
         one to warm up each, in the sessions of scenario 2, the servers taking turns (one publish \
         every {every_ms} ms in all); p99 is nearest-rank (under 100 samples, \
         the largest). Target: wshub p50 and p99 ≤ 1.2 × tungstenite.\n"
    );
    let _ = writeln!(
        s,
        "| implementation | p50 | p99 | min – max | p50 ratio ÷ tungstenite | p99 ratio ÷ tungstenite |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let base =
        burst
            .iter()
            .find(|(w, _)| *w == "tungstenite")
            .map_or((f64::NAN, f64::NAN), |(_, m)| {
                (
                    percentile(&m.latency_ms, 50.0),
                    percentile(&m.latency_ms, 99.0),
                )
            });
    for (which, m) in burst {
        let (p50, p99) = (
            percentile(&m.latency_ms, 50.0),
            percentile(&m.latency_ms, 99.0),
        );
        let (lo, hi) = min_max(&m.latency_ms);
        let _ = writeln!(
            s,
            "| {which} | **{p50:.2} ms** | **{p99:.2} ms** | {lo:.2} – {hi:.2} ms | {:.2} | {:.2} |",
            p50 / base.0,
            p99 / base.1,
        );
    }
    s.push('\n');
    if let Some((_, m)) = burst.iter().find(|(w, _)| *w == "wshub") {
        let (p50, p99) = (
            percentile(&m.latency_ms, 50.0),
            percentile(&m.latency_ms, 99.0),
        );
        let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
        let _ = writeln!(
            s,
            "Target of issue 6 in this run: latency ≤ 1.2 × baseline: p50 {:.2}, {}; p99 {:.2}, {}.\n",
            p50 / base.0,
            verdict(p50 / base.0 <= 1.2),
            p99 / base.1,
            verdict(p99 / base.1 <= 1.2),
        );
    }
    s
}

fn report_http(rows: &[HttpRow], seconds: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Scenario 5: the publish endpoint, {HTTP_CONCURRENCY} keep-alive connections\n"
    );
    let _ = writeln!(
        s,
        "Requests per second answered 2xx, {seconds} s per row, by `bench-load --http` (one \
         thread, {HTTP_CONCURRENCY} HTTP/1.1 keep-alive connections, each POSTing an envelope of \
         {} bytes as soon as the previous answer is in) pinned to core 1, against one wshub \
         `bench-server` on core 0: `POST /api/publish` (to group `bench`) with 0, 1 and 1,000 \
         subscribers in the group, and the baseline, `POST /noop` on the same hyper server and \
         service stack (reads the body, answers 200 `{{}}`). With 0 subscribers no-op and publish \
         alternate (the machine's speed drifts between runs); the no-op route is measured again \
         with 1,000 subscribers connected. The subscribers' load client shares core 1 with the \
         HTTP client. Ratio ÷ the mean of the no-op rows at 0 subscribers. Target: publish with 0 \
         subscribers ≥ 0.8 × no-op (sum of the publish rows ÷ sum of the no-op rows at 0).\n",
        burst_envelope(0, BYTES).to_json().len()
    );
    let _ = writeln!(
        s,
        "| route | subscribers | requests/s | answered (failed) | ratio ÷ no-op | server CPU s per 1,000 requests |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let at_zero = |route: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.route == route && r.subscribers == 0)
            .map(|r| r.rps)
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let base = mean(&at_zero("/noop"));
    for r in rows {
        let _ = writeln!(
            s,
            "| `{}` | {} | **{}** | {} ({}) | {:.2} | {:.4} |",
            r.route,
            grouped(r.subscribers as u64),
            grouped(r.rps as u64),
            grouped(r.ok),
            r.failed,
            r.rps / base,
            r.cpu_per_1k,
        );
    }
    s.push('\n');
    let publish = mean(&at_zero("/api/publish"));
    if publish.is_finite() && base.is_finite() {
        let _ = writeln!(
            s,
            "Target of issue 6 in this run: publish endpoint with 0 subscribers ≥ 0.8 × no-op: \
             {:.2}, {}.\n",
            publish / base,
            if publish / base >= 0.8 {
                "met"
            } else {
                "**not met**"
            },
        );
    }
    s
}

fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// Thousands separators: 1234567 -> 1,234,567.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "?".to_owned(), |(_, v)| v.trim().to_owned())
    };
    let nproc = std::process::Command::new("nproc")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
        );
    format!(
        "{} ({} MHz), nproc {nproc}, {memory} RAM, Linux {}",
        field("model name"),
        field("cpu MHz"),
        kernel.trim()
    )
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn report_head(mode: Mode, taskset: bool, took: Duration) -> String {
    let mut s = String::new();
    let name = mode.name();
    let _ = writeln!(s, "## {name} mode\n");
    let _ = writeln!(
        s,
        "`cargo run --release -p wshub-bench --bin bench-run -- --{name}`, {}, took {:.0} s. \
         Machine: {}. Server {}, load clients {}.\n",
        today(),
        took.as_secs_f64(),
        machine(),
        if taskset {
            "pinned to core 0 (`taskset -c 0`)"
        } else {
            "not pinned (no taskset)"
        },
        if taskset { "to core 1" } else { "not pinned" },
    );
    s
}

fn report(reps: usize, idle: &[(String, Measured)], burst: &[(String, Measured)]) -> String {
    let mut s = String::new();
    let base_idle = idle
        .iter()
        .find(|(w, _)| *w == "tungstenite")
        .map_or(f64::NAN, |(_, m)| m.idle_per_conn_kib());
    let c = idle.first().map_or(0, |(_, m)| m.connections);
    let _ = writeln!(
        s,
        "### Scenario 1: idle capacity, {} connections\n",
        grouped(c as u64)
    );
    let _ = writeln!(
        s,
        "RSS per idle connection = (server RSS with the connections open − RSS before) ÷ \
         connections; target: wshub ≤ 5 KiB.\n"
    );
    let _ = writeln!(
        s,
        "| implementation | RSS before | RSS with the connections | per idle connection | ratio ÷ tungstenite | time to connect all |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (which, m) in idle {
        let per = m.idle_per_conn_kib();
        let _ = writeln!(
            s,
            "| {which} | {:.1} MiB | {:.1} MiB | **{per:.2} KiB** | {:.2} | {:.1} s |",
            m.rss_before_kib as f64 / 1024.0,
            m.rss_idle_kib as f64 / 1024.0,
            per / base_idle,
            m.connect_ms as f64 / 1000.0,
        );
    }
    s.push('\n');

    let base_rate = burst
        .iter()
        .find(|(w, _)| *w == "tungstenite")
        .map_or(f64::NAN, |(_, m)| median(&m.rust));
    let c = burst.first().map_or(0, |(_, m)| m.connections);
    let _ = writeln!(
        s,
        "### Scenario 2: burst broadcast, {BURST} envelopes of about {BYTES} bytes ({} bytes of \
         JSON) to {} sockets\n",
        burst_envelope(0, BYTES).to_json().len(),
        grouped(c as u64)
    );
    let _ = writeln!(
        s,
        "Deliveries per second = {BURST} × connections ÷ (time from the publish to the last frame \
         received by the load clients); median of {reps} bursts after one to warm up. The three \
         servers are up at once (each with its own load clients) and take turns burst by burst, so \
         that the machine's drift falls on all of them alike. From Rust: \
         the server's control command (`Hub::send` per envelope; the baselines' `try_send` to every \
         queue). HTTP: {BURST} `POST /api/publish` in a row on one keep-alive connection from the \
         driver, each waiting for the answer before the next; HTTP, one array: one POST of a JSON \
         array of the {BURST} envelopes. Target: wshub ≥ 0.9 × tungstenite.\n"
    );
    let _ = writeln!(
        s,
        "| implementation | publish | deliveries/s (median) | min – max | burst time (median) | ratio ÷ tungstenite | server CPU s per 1,000 deliveries | RSS after the bursts, per connection |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (which, m) in burst {
        let paths = [
            ("Rust", &m.rust, m.rust_cpu_per_1k),
            ("HTTP", &m.http, m.http_cpu_per_1k),
            ("HTTP, one array", &m.http_array, m.http_array_cpu_per_1k),
        ];
        for (path, rates, cpu) in paths {
            if rates.is_empty() {
                continue;
            }
            let med = median(rates);
            let (lo, hi) = min_max(rates);
            let _ = writeln!(
                s,
                "| {which} | {path} | **{}** | {} – {} | {:.1} ms | {:.2} | {:.5} | {:.2} KiB |",
                grouped(med as u64),
                grouped(lo as u64),
                grouped(hi as u64),
                (BURST * m.connections) as f64 / med * 1000.0,
                med / base_rate,
                cpu,
                (m.rss_after_kib as f64 - m.rss_before_kib as f64) / m.connections as f64,
            );
        }
    }
    s.push('\n');
    let wshub_idle = idle
        .iter()
        .find(|(w, _)| *w == "wshub")
        .map(|(_, m)| m.idle_per_conn_kib());
    let wshub_rate = burst
        .iter()
        .find(|(w, _)| *w == "wshub")
        .map(|(_, m)| median(&m.rust));
    let wshub_http = burst
        .iter()
        .find(|(w, _)| *w == "wshub")
        .map(|(_, m)| (median(&m.http), median(&m.http_array)));
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    if let (Some(idle), Some(rate), Some((http, array))) = (wshub_idle, wshub_rate, wshub_http) {
        let _ = writeln!(
            s,
            "Targets of issue 6 in this run: idle ≤ 5 KiB per connection: {:.2} KiB, {}; burst ≥ 0.9 × \
             baseline: {:.2} from Rust, {}, and through HTTP {:.2} as {BURST} POSTs, {}, {:.2} as one \
             array, {}.\n",
            idle,
            verdict(idle <= 5.0),
            rate / base_rate,
            verdict(rate / base_rate >= 0.9),
            http / base_rate,
            verdict(http / base_rate >= 0.9),
            array / base_rate,
            verdict(array / base_rate >= 0.9),
        );
    }
    s
}

const HEAD: &str = "# Benchmarks\n\n\
The load suite of issue 6 and what it found. The mode sections below are generated by `bench-run` \
(crate `bench/`, package `wshub-bench`; do not edit them by hand):\n\n\
```text\n\
cargo run --release -p wshub-bench --bin bench-run -- --quick   # about two minutes; .ci/run runs it as a smoke check\n\
cargo run --release -p wshub-bench --bin bench-run -- --full    # the issue's figures\n\
```\n\n\
wshub is measured against two baselines built from the same dependencies, in the same run, with \
the same load client: **tungstenite**, a bare tokio-tungstenite fan-out server (one task and one \
bounded queue of 1,024 per socket, a shared `Utf8Bytes` frame, batched writes of up to 64 frames \
per flush, a 4 KiB read buffer; it echoes small text messages, and routes by group and user with \
a map of queues for scenario 4), and **raw**, the floor (a hand-written handshake, then each \
envelope encoded once as a whole frame and written straight to the TCP sockets). The load client \
(`bench-load`, one thread per process, at most 10,000 sockets per process) does the handshake by \
hand and counts frames without copying them; it answers pings. Ratios are taken within one run: \
the machine is shared and its speed drifts between runs. The hand-written notes after the \
generated sections say what the figures mean, what was changed to reach them, the profiles and \
the micro-benchmarks (`cargo bench`).\n\n";

/// Writes the report, replacing this mode's section and keeping the other mode's.
fn write_report(out: &Path, mode: Mode, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let marked =
        |m: Mode, body: &str| format!("<!-- {0}:start -->\n{body}<!-- {0}:end -->\n\n", m.name());
    let keep = |m: Mode| {
        let start = format!("<!-- {}:start -->\n", m.name());
        let end = format!("<!-- {}:end -->", m.name());
        let from = old.find(&start)? + start.len();
        let to = old[from..].find(&end)? + from;
        Some(old[from..to].to_owned())
    };
    let mut text = HEAD.to_owned();
    let notes_start = "<!-- notes:start -->\n";
    let notes = old.find(notes_start).map(|at| old[at..].to_owned());
    for m in [Mode::Quick, Mode::Full] {
        if m == mode {
            text.push_str(&marked(m, section));
        } else if let Some(body) = keep(m) {
            text.push_str(&marked(m, &body));
        }
    }
    // Hand-written notes after the generated sections are kept as they are.
    if let Some(notes) = notes {
        text.push_str(&notes);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, text)?;
    Ok(())
}
