//! Scenarios 1 (idle capacity), 2 (burst broadcast) and 3 (isolated broadcast latency).

use std::fmt::Write as _;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wshub_bench::{burst_envelope, cpu_seconds};

use crate::procs::{number, Env};
use crate::report::{grouped, median, min_max, percentile};
use crate::session::{Measured, Session};
use crate::{Result, BURST, BYTES, IMPLS, LATENCY_EVERY_MS};

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
/// load clients to core 1): the implementations take turns burst by burst, so the machine's
/// drift, which moves absolute rates by tens of percent within a minute, falls on all of them
/// alike. `reps` bursts each from Rust after one to warm up, then wshub's bursts through HTTP,
/// then `latency` isolated publishes each, in turns every 250 ms.
pub(crate) async fn bursts(
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
