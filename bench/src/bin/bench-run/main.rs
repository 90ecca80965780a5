//! The driver of the benchmark suite of issue 6: for each scenario, starts the server
//! (`bench-server`, pinned with `taskset -c 0`) and the load clients (`bench-load`, pinned with
//! `taskset -c 1`), runs wshub and the baselines in the same run, and writes the generated
//! sections of `docs/benchmarks.md`:
//!
//! - scenarios 1 (idle capacity), 2 (burst broadcast) and 3 (isolated broadcast latency, in the
//!   sessions of scenario 2), here; scenarios 2 and 3 also run a second wshub server,
//!   `wshub+metrics`, with Prometheus's exporter installed as the `metrics` recorder
//!   (`bench-server --metrics`), for issue 13's cost of metrics: on ÷ off in the same run;
//! - scenario 1 after a 1 MB frame to every idle connection (issue 10), [`large_frame`];
//! - the read speed of large client messages per read buffer, [`read_speed`];
//! - scenario 4 (groups and users under an open-loop rate), [`groups`];
//! - scenario 5 (the publish endpoint against a no-op route of the same server), here;
//! - scenario 6 (relay and forward round trips), [`roundtrip`];
//! - scenario 7 (clients that stop reading; connection churn), [`abuse`];
//! - the cluster scenario (issue 11: one node against three nodes on Redis), [`cluster`], which
//!   needs `redis-server` (it starts its own on a free port of 127.0.0.1 and kills it).
//!
//! ```text
//! cargo run --release -p wshub-bench --bin bench-run -- --quick    # about two minutes
//! cargo run --release -p wshub-bench --bin bench-run -- --full     # about eight
//! ```
//!
//! Options: `--reps N` (bursts measured per implementation and publish path; default 9 quick, 15
//! full), `--out PATH` (default docs/benchmarks.md of the workspace), `--port-base P` (default
//! 20000; every server gets the next free port below 32768), `--only 1,large,read,4,5,6,7,cluster`
//! (some scenarios only, for working on one; `1` is scenarios 1-3 with the large frame, `large`
//! the large frame alone; full size unless `--quick` is given), `--profile FILE` (no report: a
//! `perf record` of the wshub server during scenario 2's bursts, see `bench/flamegraph.sh`;
//! `--profile-impl tungstenite` records a baseline instead, `--profile-impl wshub+metrics` wshub
//! with metrics).
//!
//! The report keeps one section per mode: a quick run replaces the quick section and keeps the
//! full one, and the other way round; the hand-written notes after them are kept. A run with
//! `--only` replaces only the tables it measured in its mode's section, each with a note naming
//! its run, and keeps the others. Every child is
//! killed when the driver ends, however it ends (and each child also exits by itself when its
//! stdin closes or after `--max-seconds`).

mod abuse;
mod bursts;
mod cluster;
mod groups;
mod large_frame;
mod procs;
mod publish;
mod read_speed;
mod report;
mod roundtrip;
mod session;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wshub_bench::Args;

use bursts::{bursts, idle, report_bursts, report_idle, report_latency};
use procs::{binaries, profile, stop_profile, Env};
use publish::{publish_endpoint, report_http};
use report::{report_head, write_report};
use session::Session;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const IMPLS: [&str; 3] = ["wshub", "tungstenite", "raw"];
/// wshub with Prometheus's exporter installed as the `metrics` recorder (`bench-server
/// --metrics`); plain `wshub` installs none. Issue 13: the cost of metrics.
const WSHUB_METRICS: &str = "wshub+metrics";
/// The sessions of scenarios 2 and 3, in their turn order: wshub with metrics right after wshub
/// without, so that each pair of their bursts is as close in time as the turns allow.
const BURST_SESSIONS: [&str; 4] = ["wshub", WSHUB_METRICS, "tungstenite", "raw"];
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
        // Working on some scenarios: their full size unless told.
        (false, false) if args.value("--only").is_some() => Mode::Full,
        _ => {
            eprintln!(
                "bench-run --quick | --full | --only S,..  [--reps N] [--out PATH] [--port-base P]"
            );
            std::process::exit(2);
        }
    };
    let reps = args.parsed("--reps", if mode == Mode::Quick { 9 } else { 15 });
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
    if plan.profile.is_none() && plan.wants("cluster") {
        cluster::check()?;
    }
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
    // Scenario 1 after a 1 MB frame: 1 MB to each connection, so far fewer than scenario 1's
    // (19,000 would be 19 GB through loopback and, for the baseline, 19 GB of write buffers).
    let large_c = if full { 2_000 } else { 500 };
    // Scenario 3 runs in the burst session, after the bursts: publishes; seconds per row of
    // scenario 5.
    let (latency_n, http_seconds) = if full { (100, 10) } else { (10, 1) };
    let upload_messages = if full { 2_000 } else { 500 };
    // Scenario 4: connections and seconds per step.
    let (groups_c, step_seconds) = if full { (10_000, 3.0) } else { (2_000, 1.0) };
    // Scenario 6: connections, round trips a second in all, seconds.
    let (trip_c, trip_rate, trip_seconds) = if full {
        (1_000, 1_000.0, 15.0)
    } else {
        (1_000, 1_000.0, 2.0)
    };
    // Scenario 7: bursts with non-readers; churn rate and seconds.
    let (stall_bursts, churn_rate, churn_seconds) = if full {
        (100, 1_000.0, 60.0)
    } else {
        (40, 1_000.0, 4.0)
    };

    // The cluster scenario: quick only checks that it works. Its bursts are three times the
    // other scenarios': burst to burst, either side's rate jumps between two modes (about 1.6 and
    // 2.2 M deliveries/s on the 2-core test machine), and with medians of 15 the ratio moved
    // between 0.84 and 1.00 in three runs of the same code.
    let cluster_sizes = if full {
        cluster::Sizes {
            sockets: 9_000,
            reps: reps * 3,
            blocks: 10,
            block_seconds: 1.0,
        }
    } else {
        cluster::Sizes {
            sockets: 900,
            reps: 3,
            blocks: 2,
            block_seconds: 0.5,
        }
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
            // Quick: the burst sessions' idle RSS was read before any burst (scenario 1 compares
            // the implementations: without the second wshub).
            idle.extend(
                burst
                    .iter()
                    .filter(|(which, _)| IMPLS.contains(&which.as_str()))
                    .cloned(),
            );
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
        section.push_str(&report_idle(&idle));
    }
    if plan.wants("1") || plan.wants("large") {
        let mut rows = Vec::new();
        for which in ["wshub", "tungstenite"] {
            rows.push(large_frame::run(&mut env, which, large_c).await?);
        }
        section.push_str(&large_frame::report(&rows));
    }
    if plan.wants("1") {
        section.push_str(&report_bursts(reps, &idle, &burst));
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
        section.push_str(&abuse::report(&stalled, &churns));
    }
    if plan.wants("cluster") {
        let measured = cluster::run(&mut env, &cluster_sizes).await?;
        section.push_str(&cluster::report(&measured));
    }
    let took = started.elapsed();
    let head = report_head(mode, plan.only.as_deref(), taskset, took);
    let partial = plan
        .only
        .as_deref()
        .map(|only| report::partial_note(mode, only, took));
    write_report(out, mode, &format!("{head}{section}"), partial.as_deref())?;
    Ok(())
}
