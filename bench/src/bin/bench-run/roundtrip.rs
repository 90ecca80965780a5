//! Scenario 6: round trips from a client back to itself, through the hub's relay and through an
//! in-process forward, against a tungstenite server that echoes.

use std::fmt::Write as _;
use std::time::Duration;

use wshub_bench::cpu_seconds;

use crate::procs::{number, Env, Proc};
use crate::report::grouped;
use crate::session::Session;
use crate::Result;

pub struct Trip {
    which: &'static str,
    kind: &'static str,
    samples: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    lost: u64,
    cpu_per_1k: f64,
}

pub async fn run(env: &mut Env, connections: usize, rate: f64, seconds: f64) -> Result<Vec<Trip>> {
    let mut trips = Vec::new();
    for (which, kind) in [
        ("wshub", "relay"),
        ("wshub", "forward"),
        ("tungstenite", "echo"),
    ] {
        eprintln!("bench-run: scenario 6, {which} {kind}, {connections} connections");
        let (session, _) = Session::start(env, which, None, 0, &[]).await?;
        let result = trip(env, &session, which, kind, connections, rate, seconds).await;
        session.stop().await;
        trips.push(result?);
    }
    Ok(trips)
}

async fn trip(
    env: &Env,
    session: &Session,
    which: &'static str,
    kind: &'static str,
    connections: usize,
    rate: f64,
    seconds: f64,
) -> Result<Trip> {
    let mut command = env.command(1, "bench-load");
    command.args([
        "--addr",
        &format!("127.0.0.1:{}", session.port),
        "--connections",
        &connections.to_string(),
        "--roundtrip",
        kind,
        "--rate",
        &rate.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--path",
        "/ws?userId=rt{i}",
    ]);
    if which == "wshub" {
        command.arg("--hello");
    }
    let mut load = Proc::spawn(command, format!("roundtrip {which} {kind}"))?;
    load.expect("ready", Duration::from_secs(60)).await?;
    let pid = session.server.pid()?;
    let cpu_before = cpu_seconds(pid).ok_or("no /proc stat")?;
    let answer = load
        .expect("rtt", Duration::from_secs_f64(seconds + 30.0))
        .await;
    let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - cpu_before;
    load.stop().await;
    let answer = answer?;
    let samples: u64 = number(&answer, 1)?;
    Ok(Trip {
        which,
        kind,
        samples,
        p50_us: number(&answer, 2)?,
        p99_us: number(&answer, 3)?,
        max_us: number(&answer, 4)?,
        lost: number(&answer, 5)?,
        cpu_per_1k: cpu / samples.max(1) as f64 * 1000.0,
    })
}

pub fn report(trips: &[Trip], connections: usize, rate: f64, seconds: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Scenario 6: relay and forward round trip, {} connections\n",
        grouped(connections as u64)
    );
    let _ = writeln!(
        s,
        "Every connection sends an envelope of about 100 bytes on a fixed schedule ({} a second \
         in all, spread evenly over the connections, open loop) for {seconds:.0} s, and times it \
         from its send to the arrival of the answer on the same connection. **relay**: addressed \
         to the sender's own user, routed back by the hub; **forward**: action `forwarded`, \
         forwarded in process (`Forwarding::in_process`) to a handler of the wrapped service that \
         answers an envelope addressed to the sender's connection, which the hub routes back; \
         **echo**: the baseline sends every small text message straight back. Server pinned to \
         core 0, the client (one process, one thread) to core 1.\n",
        grouped(rate as u64)
    );
    let _ = writeln!(
        s,
        "| implementation | round trip | round trips | p50 | p99 | max | lost | p50 ratio ÷ echo | p99 ratio ÷ echo | server CPU s per 1,000 round trips |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let echo = trips.iter().find(|t| t.kind == "echo");
    for t in trips {
        let (r50, r99) = echo.map_or((f64::NAN, f64::NAN), |e| {
            (t.p50_us / e.p50_us, t.p99_us / e.p99_us)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{:.0} µs** | **{:.0} µs** | {:.0} µs | {} | {r50:.2} | {r99:.2} | {:.4} |",
            t.which,
            t.kind,
            grouped(t.samples),
            t.p50_us,
            t.p99_us,
            t.max_us,
            t.lost,
            t.cpu_per_1k,
        );
    }
    s.push('\n');
    s
}
