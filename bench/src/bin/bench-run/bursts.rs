//! Scenarios 1 (idle capacity), 2 (burst broadcast) and 3 (isolated broadcast latency).

use std::fmt::Write as _;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wshub_bench::{burst_envelope, cpu_seconds};

use crate::procs::{number, Env};
use crate::report::{grouped, median, min_max, percentile};
use crate::session::{is_wshub, Measured, Session};
use crate::{Result, BURST, BURST_SESSIONS, BYTES, LATENCY_EVERY_MS, WSHUB_METRICS};

/// Scenario 1's idle measurement alone (a session that only connects).
pub(crate) async fn idle(
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
/// load clients to core 1), wshub twice (without metrics and with, [`WSHUB_METRICS`]): the
/// servers take turns burst by burst, so the machine's drift, which moves absolute rates by tens
/// of percent within a minute, falls on all of them alike. `reps` bursts each from Rust after one
/// to warm up, then the two wshubs' bursts through HTTP, in turns too, then `latency` isolated
/// publishes each, in turns every 250 ms.
pub(crate) async fn bursts(
    env: &mut Env,
    connections: usize,
    reps: usize,
    latency: usize,
) -> Result<Vec<(String, Measured)>> {
    let mut sessions = Vec::new();
    for which in BURST_SESSIONS {
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

pub(crate) async fn take_turns(
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
    // wshub's publish endpoint, each wshub server (with metrics and without) with a keep-alive
    // connection from the driver; they take turns burst by burst as above.
    let publishers: Vec<usize> = (0..sessions.len())
        .filter(|&i| is_wshub(&sessions[i].0))
        .collect();
    let mut connections = Vec::new();
    for &i in &publishers {
        let session = &mut sessions[i].1;
        let stream = TcpStream::connect(("127.0.0.1", session.port)).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        connections.push(tokio::spawn(connection));
        session.publisher = Some(sender);
        session.burst_http().await?;
        tokio::time::sleep(pause).await;
    }
    http_turns(sessions, &publishers, reps, Http::Posts).await?;
    http_turns(sessions, &publishers, reps, Http::Array).await?;
    for &i in &publishers {
        sessions[i].1.publisher = None;
    }
    for connection in connections {
        connection.abort();
    }
    for (which, session, m) in sessions.iter_mut() {
        m.rss_after_kib = number(&session.server.ask("rss", "rss").await?, 1)?;
        if which == WSHUB_METRICS {
            let scrape = session.server.ask("scrape", "scrape").await?;
            let (bytes, samples) = (number(&scrape, 1)?, number(&scrape, 2)?);
            if samples == 0 {
                return Err(
                    format!("{which}: its scrape is empty (no recorder installed?)").into(),
                );
            }
            m.scrape = Some((bytes, samples));
        }
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

/// A publish path of the endpoint.
#[derive(Clone, Copy)]
enum Http {
    /// BURST POSTs in a row.
    Posts,
    /// One POST of an array of BURST envelopes.
    Array,
}

/// `reps` bursts through the publish endpoint of each of `publishers` (indices of `sessions`
/// that have a publish connection), taking turns burst by burst, and their servers' CPU.
async fn http_turns(
    sessions: &mut [(String, Session, Measured)],
    publishers: &[usize],
    reps: usize,
    path: Http,
) -> Result<()> {
    let pause = Duration::from_millis(100);
    let mut cpu_before = Vec::new();
    for &i in publishers {
        cpu_before.push(cpu_seconds(sessions[i].1.server.pid()?).ok_or("no /proc stat")?);
    }
    for _ in 0..reps {
        for &i in publishers {
            let (_, session, m) = &mut sessions[i];
            match path {
                Http::Posts => m.http.push(session.burst_http().await?),
                Http::Array => m.http_array.push(session.burst_http_array().await?),
            }
            tokio::time::sleep(pause).await;
        }
    }
    for (&i, before) in publishers.iter().zip(cpu_before) {
        let (_, session, m) = &mut sessions[i];
        let cpu = cpu_seconds(session.server.pid()?).ok_or("no /proc stat")? - before;
        let per_1k = cpu / (reps * BURST * session.connections) as f64 * 1000.0;
        match path {
            Http::Posts => m.http_cpu_per_1k = per_1k,
            Http::Array => m.http_array_cpu_per_1k = per_1k,
        }
    }
    Ok(())
}

pub(crate) fn report_latency(burst: &[(String, Measured)], every_ms: u64) -> String {
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

/// Scenario 1's table.
pub(crate) fn report_idle(idle: &[(String, Measured)]) -> String {
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
    s
}

/// Scenario 2's table, and the verdicts of scenarios 1 and 2.
pub(crate) fn report_bursts(
    reps: usize,
    idle: &[(String, Measured)],
    burst: &[(String, Measured)],
) -> String {
    let mut s = String::new();
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
         received by the load clients); median of {reps} bursts after one to warm up. The servers \
         are up at once (each with its own load clients) and take turns burst by burst, so that \
         the machine's drift falls on all of them alike; {WSHUB_METRICS} is a second wshub server \
         with a metrics recorder installed, its turn right after wshub's (issue 13, below). From \
         Rust: the server's control command (`Hub::send` per envelope; the baselines' `try_send` \
         to every queue). HTTP: {BURST} `POST /api/publish` in a row on one keep-alive connection \
         from the driver, each waiting for the answer before the next; HTTP, one array: one POST \
         of a JSON array of the {BURST} envelopes; the two wshub servers take turns through HTTP \
         too. Target: wshub ≥ 0.9 × tungstenite.\n"
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
    s.push_str(&report_metrics_cost(burst));
    s
}

/// Issue 13's goal: a burst's deliveries per second with metrics on ÷ off, at least this.
const METRICS_GOAL: f64 = 0.97;

/// The sentence under scenario 2's table: wshub with metrics ÷ without, by publish path.
fn report_metrics_cost(burst: &[(String, Measured)]) -> String {
    let find = |which: &str| burst.iter().find(|(w, _)| w == which).map(|(_, m)| m);
    let (Some(off), Some(on)) = (find("wshub"), find(WSHUB_METRICS)) else {
        return String::new();
    };
    let verdict = |ratio: f64| {
        if ratio >= METRICS_GOAL {
            "met"
        } else {
            "**not met**"
        }
    };
    // The ratio of the medians, as the table's figures; and the median of each burst's ratio to
    // the one without metrics just before it, which the drift between turns moves less.
    let ratios = |on: &[f64], off: &[f64]| {
        let paired: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
        (median(on) / median(off), median(&paired))
    };
    let rust = ratios(&on.rust, &off.rust);
    let http = ratios(&on.http, &off.http);
    let array = ratios(&on.http_array, &off.http_array);
    let cpu = (
        on.rust_cpu_per_1k / off.rust_cpu_per_1k,
        on.http_cpu_per_1k / off.http_cpu_per_1k,
        on.http_array_cpu_per_1k / off.http_array_cpu_per_1k,
    );
    let (bytes, samples) = on.scrape.unwrap_or_default();
    format!(
        "Cost of metrics (issue 13) in this run, metrics on ÷ off: {WSHUB_METRICS} has \
         Prometheus's exporter (`metrics-exporter-prometheus`, no HTTP listener) installed as the \
         `metrics` recorder before its hub is built and renders the scrape once a second on its \
         runtime ({samples} samples, {} after the bursts); wshub has no recorder (the facade's \
         no-op). **{:.2}** from Rust, {}; through HTTP {:.2} as {BURST} POSTs, {}, {:.2} as one \
         array, {} (goal ≥ {METRICS_GOAL}). Burst by burst (the median of each burst's ratio to \
         wshub's just before it): {:.2} from Rust, {:.2} and {:.2} through HTTP. Server CPU per \
         delivery, on ÷ off, which the machine's drift moves far less than the rates: {:.2} from \
         Rust, {:.2} and {:.2} through HTTP.\n\n",
        if bytes >= 1024 {
            format!("{:.1} KiB", bytes as f64 / 1024.0)
        } else {
            format!("{bytes} bytes")
        },
        rust.0,
        verdict(rust.0),
        http.0,
        verdict(http.0),
        array.0,
        verdict(array.0),
        rust.1,
        http.1,
        array.1,
        cpu.0,
        cpu.1,
        cpu.2,
    )
}
