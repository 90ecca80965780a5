//! Scenario 4: groups and users under an open-loop publish rate, raised until p99 passes 50 ms.

use std::fmt::Write as _;
use std::time::Duration;

use wshub_bench::cpu_seconds;

use crate::procs::{number, Env};
use crate::report::grouped;
use crate::session::Session;
use crate::Result;

/// Connections per group, and connections per user.
const GROUP_SIZE: usize = 100;
const PER_USER: usize = 10;
/// The latency a rate must hold to: p99 at most this, in ms.
const HELD_P99_MS: f64 = 50.0;
/// Each step's rate is this times the previous one's.
const STEP: f64 = 1.5;
const FIRST_RATE: f64 = 1_000.0;
const LAST_RATE: f64 = 2_000_000.0;

/// One rate tried.
pub struct Step {
    rate: f64,
    sent: usize,
    delivered: usize,
    received: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The latest the server started a send after it was due.
    late_ms: f64,
    cpu_per_1k: f64,
    /// Why the step ended early (a load client closed by the server, say).
    failure: Option<String>,
}

impl Step {
    fn held(&self) -> bool {
        self.failure.is_none() && self.p99_ms <= HELD_P99_MS && self.received >= self.delivered
    }

    fn failed(rate: f64, why: String) -> Self {
        Self {
            rate,
            sent: 0,
            delivered: 0,
            received: 0,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            late_ms: f64::NAN,
            cpu_per_1k: f64::NAN,
            failure: Some(why),
        }
    }
}

pub struct Ladder {
    which: String,
    connections: usize,
    steps: Vec<Step>,
}

impl Ladder {
    /// The highest rate held below the lowest that was not (steps are in rate order).
    fn held(&self) -> Option<f64> {
        self.steps
            .iter()
            .take_while(|s| s.held())
            .last()
            .map(|s| s.rate)
    }
}

pub async fn run(env: &mut Env, which: &str, connections: usize, seconds: f64) -> Result<Ladder> {
    eprintln!("bench-run: scenario 4, {which}, {connections} connections");
    let users = connections / PER_USER;
    let groups = connections / GROUP_SIZE;
    let load_args = [
        "--path",
        "/ws?groupId=g{g}&userId=u{u}",
        "--group-size",
        &GROUP_SIZE.to_string(),
        "--users",
        &users.to_string(),
        "--stamps",
    ]
    .map(str::to_owned);
    let load_args: Vec<&str> = load_args.iter().map(String::as_str).collect();
    let (mut session, _) = Session::start(env, which, None, connections, &load_args).await?;
    let result = async {
        let mut steps = Vec::new();
        let mut rate = FIRST_RATE;
        while rate <= LAST_RATE {
            // A load client the server closed (its queue full: 1008) ends the ladder, as a
            // rate not held.
            let step = step(&mut session, rate, seconds, groups, users)
                .await
                .unwrap_or_else(|e| Step::failed(rate, e.to_string()));
            eprintln!(
                "bench-run:   {which} {:.0}/s: p99 {:.1} ms, {} of {} received",
                rate, step.p99_ms, step.received, step.delivered
            );
            let held = step.held();
            steps.push(step);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !held {
                break;
            }
            rate = (rate * STEP).round();
        }
        // One more step halfway (geometrically) between the last rate held and the first not.
        if let [.., held, failed] = steps.as_slice() {
            if held.held() && failed.failure.is_none() {
                let middle = (held.rate * failed.rate).sqrt().round();
                let step = step(&mut session, middle, seconds, groups, users)
                    .await
                    .unwrap_or_else(|e| Step::failed(middle, e.to_string()));
                steps.push(step);
            }
        }
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        Ok::<_, crate::Error>(steps)
    }
    .await;
    session.stop().await;
    Ok(Ladder {
        which: which.to_owned(),
        connections,
        steps: result?,
    })
}

async fn step(
    session: &mut Session,
    rate: f64,
    seconds: f64,
    groups: usize,
    users: usize,
) -> Result<Step> {
    let pid = session.server.pid()?;
    let cpu_before = cpu_seconds(pid).ok_or("no /proc stat")?;
    session
        .server
        .send(&format!("openloop {rate} {seconds} {groups} {users}"))
        .await?;
    let answer = session
        .server
        .expect("openloop", Duration::from_secs_f64(seconds * 10.0 + 30.0))
        .await?;
    let sent: usize = number(&answer, 1)?;
    let delivered: usize = number(&answer, 2)?;
    let late_ms: f64 = number(&answer, 3)?;
    // What is still on its way is waited for (and counted late), up to 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let received = loop {
        let mut received = 0;
        for load in &mut session.loads {
            received += number::<usize>(&load.ask("received", "received").await?, 1)?;
        }
        if received >= delivered || tokio::time::Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - cpu_before;
    // With several load processes, the worst one's percentiles.
    let (mut p50, mut p99, mut max) = (0.0f64, 0.0f64, 0.0f64);
    for load in &mut session.loads {
        let stats = load.ask("stats", "stats").await?;
        p50 = p50.max(number::<f64>(&stats, 2)? / 1e3);
        p99 = p99.max(number::<f64>(&stats, 3)? / 1e3);
        max = max.max(number::<f64>(&stats, 4)? / 1e3);
    }
    Ok(Step {
        rate,
        sent,
        delivered,
        received,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        late_ms,
        cpu_per_1k: cpu / delivered.max(1) as f64 * 1000.0,
        failure: None,
    })
}

pub fn report(ladders: &[Ladder], seconds: f64) -> String {
    let mut s = String::new();
    let Some(first) = ladders.first() else {
        return s;
    };
    let c = first.connections;
    let _ = writeln!(
        s,
        "### Scenario 4: groups and users, {} connections in {} groups of {GROUP_SIZE}, {} users of {PER_USER} connections\n",
        grouped(c as u64),
        c / GROUP_SIZE,
        grouped((c / PER_USER) as u64),
    );
    let _ = writeln!(
        s,
        "The server publishes envelopes of about 100 bytes at a fixed rate for {seconds:.0} s per \
         step, alternately to a group (100 deliveries) and to a user (10 deliveries, one user's \
         connections spread over 10 groups), round robin; open loop: each envelope is due at \
         `k ÷ rate` and is sent as soon as it is due, however late the ones before it were, and \
         carries its due time. Latency = arrival at the load client − due time, over every \
         delivery. The rate starts at {FIRST_RATE:.0}/s and grows by {STEP}× until p99 passes \
         {HELD_P99_MS:.0} ms or a delivery is missing, then tries once halfway between the last \
         rate held and the first not. The baseline routes by group and user \
         with a map of queues per group and per user.\n"
    );
    let _ = writeln!(
        s,
        "| implementation | publishes/s | deliveries/s | sent | delivered (received) | p50 | p99 | max | latest send after due | server CPU s per 1,000 deliveries |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for ladder in ladders {
        for step in &ladder.steps {
            if let Some(why) = &step.failure {
                let _ = writeln!(
                    s,
                    "| {} | {} (failed) | {why} ||||||||",
                    ladder.which,
                    grouped(step.rate as u64)
                );
                continue;
            }
            let mark = if step.held() { "" } else { " (not held)" };
            let _ = writeln!(
                s,
                "| {} | {}{mark} | {} | {} | {} ({}) | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | {:.5} |",
                ladder.which,
                grouped(step.rate as u64),
                grouped((step.delivered as f64 / seconds) as u64),
                grouped(step.sent as u64),
                grouped(step.delivered as u64),
                grouped(step.received as u64),
                step.p50_ms,
                step.p99_ms,
                step.max_ms,
                step.late_ms,
                step.cpu_per_1k,
            );
        }
    }
    s.push('\n');
    let held = |which: &str| {
        ladders
            .iter()
            .find(|l| l.which == which)
            .and_then(Ladder::held)
    };
    let fmt =
        |rate: Option<f64>| rate.map_or("none".to_owned(), |r| format!("{}/s", grouped(r as u64)));
    let (w, t) = (held("wshub"), held("tungstenite"));
    let ratio = match (w, t) {
        (Some(w), Some(t)) => format!("{:.2}", w / t),
        _ => "–".to_owned(),
    };
    let _ = writeln!(
        s,
        "Highest rate held (p99 ≤ {HELD_P99_MS:.0} ms, nothing missing): wshub {}, tungstenite {}; ratio {ratio}.\n",
        fmt(w),
        fmt(t),
    );
    s
}
