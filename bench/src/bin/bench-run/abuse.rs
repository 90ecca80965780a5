//! Scenario 7: under abuse. 1% of the clients stop reading during burst broadcasts; and
//! connections opened and closed at a fixed rate.

use std::fmt::Write as _;
use std::time::Duration;

use wshub_bench::cpu_seconds;

use crate::procs::{number, Env, Proc};
use crate::report::{grouped, median, min_max};
use crate::session::{rate, Session};
use crate::{Result, BURST, BYTES};

/// One connection in this many stops reading.
const STALL_EVERY: usize = 100;

pub struct Stalled {
    which: String,
    connections: usize,
    readers: usize,
    /// Deliveries per second to the readers, and in the clean session's turns beside it.
    rates: Vec<f64>,
    clean_rates: Vec<f64>,
    rss_idle_kib: u64,
    rss_max_kib: u64,
    rss_end_kib: u64,
    /// The clean session's RSS after the same bursts.
    clean_rss_end_kib: u64,
    /// Connections the server still holds after the bursts.
    held_after: usize,
}

/// Two servers of one implementation up at once, one whose clients all read and one where 1 in
/// [`STALL_EVERY`] stops reading; they take turns burst by burst, so that the comparison is not
/// the machine's drift between two runs.
pub async fn stalled(
    env: &mut Env,
    which: &str,
    connections: usize,
    bursts: usize,
) -> Result<Stalled> {
    eprintln!(
        "bench-run: scenario 7, {which}, {connections} connections, 1 in {STALL_EVERY} not reading, beside a clean server"
    );
    let (mut clean, _) = Session::start(env, which, None, connections, &[]).await?;
    let every = STALL_EVERY.to_string();
    let started = Session::start(env, which, None, connections, &["--stall-every", &every]).await;
    let (mut session, measured) = match started {
        Ok(started) => started,
        Err(e) => {
            clean.stop().await;
            return Err(e);
        }
    };
    let readers = connections - connections / STALL_EVERY;
    let result = async {
        burst(&mut clean, connections).await?;
        burst(&mut session, readers).await?;
        let mut rates = Vec::with_capacity(bursts);
        let mut clean_rates = Vec::with_capacity(bursts);
        let mut rss_max = measured.rss_idle_kib;
        for i in 0..bursts {
            clean_rates.push(burst(&mut clean, connections).await?);
            rates.push(burst(&mut session, readers).await?);
            if i % 10 == 9 {
                rss_max = rss_max.max(number(&session.server.ask("rss", "rss").await?, 1)?);
            }
        }
        let rss_end: u64 = number(&session.server.ask("rss", "rss").await?, 1)?;
        let clean_rss_end: u64 = number(&clean.server.ask("rss", "rss").await?, 1)?;
        let held_after: usize = number(&session.server.ask("count", "count").await?, 1)?;
        Ok::<_, crate::Error>(Stalled {
            which: which.to_owned(),
            connections,
            readers,
            rates,
            clean_rates,
            rss_idle_kib: measured.rss_idle_kib,
            rss_max_kib: rss_max.max(rss_end),
            rss_end_kib: rss_end,
            clean_rss_end_kib: clean_rss_end,
            held_after,
        })
    }
    .await;
    session.stop().await;
    clean.stop().await;
    result
}

/// One burst from Rust; deliveries per second to the connections that read. Sends to the
/// stalled ones may be refused once their queues are full.
async fn burst(session: &mut Session, readers: usize) -> Result<f64> {
    session.arm().await?;
    let answer = session
        .server
        .ask(&format!("burst {BURST} {BYTES}"), "burst")
        .await?;
    let started: u128 = number(&answer, 1)?;
    let last = session.last_done().await?;
    Ok(rate(readers, started, last))
}

pub struct Churn {
    which: String,
    rate: f64,
    seconds: f64,
    ok: u64,
    failed: u64,
    /// VmRSS and RssAnon (heap and stacks, without the executable's pages) at the start, after
    /// 2 s of churn and at the end; the VmRSS peak.
    rss_start: (u64, u64),
    rss_warm: (u64, u64),
    rss_end: (u64, u64),
    rss_max_kib: u64,
    held_after: usize,
    cpu_per_1k: f64,
}

pub async fn churn(env: &mut Env, which: &str, per_second: f64, seconds: f64) -> Result<Churn> {
    eprintln!("bench-run: scenario 7, {which}, churn of {per_second}/s for {seconds} s");
    let (mut session, _) = Session::start(env, which, None, 0, &[]).await?;
    let result = run_churn(env, &mut session, which, per_second, seconds).await;
    session.stop().await;
    result
}

async fn run_churn(
    env: &Env,
    session: &mut Session,
    which: &str,
    per_second: f64,
    seconds: f64,
) -> Result<Churn> {
    let rss_start = session.rss().await?;
    let mut command = env.command(1, "bench-load");
    command.args([
        "--addr",
        &format!("127.0.0.1:{}", session.port),
        "--churn",
        &per_second.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--path",
        "/ws?groupId=churn&userId=u{i}",
    ]);
    if which == "wshub" {
        command.arg("--hello");
    }
    let pid = session.server.pid()?;
    let cpu_before = cpu_seconds(pid).ok_or("no /proc stat")?;
    let mut load = Proc::spawn(command, format!("churn {which}"))?;
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    let (mut rss_warm, mut rss_max) = (None, rss_start.0);
    let deadline = Duration::from_secs_f64(seconds + 40.0);
    let answer = loop {
        tokio::select! {
            answer = load.expect("churn", deadline) => break answer,
            _ = ticks.tick() => {
                let rss = session.rss().await?;
                rss_max = rss_max.max(rss.0);
                if rss_warm.is_none() && started.elapsed() >= Duration::from_secs(2) {
                    rss_warm = Some(rss);
                }
            }
        }
    };
    load.stop().await;
    let answer = answer?;
    let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - cpu_before;
    // Every connection must be gone from the server.
    let gone_by = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held_after;
    loop {
        held_after = number(&session.server.ask("count", "count").await?, 1)?;
        if held_after == 0 || tokio::time::Instant::now() > gone_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_end = session.rss().await?;
    let ok: u64 = number(&answer, 1)?;
    Ok(Churn {
        which: which.to_owned(),
        rate: per_second,
        seconds,
        ok,
        failed: number(&answer, 2)?,
        rss_start,
        rss_warm: rss_warm.unwrap_or(rss_end),
        rss_end,
        rss_max_kib: rss_max.max(rss_end.0),
        held_after,
        cpu_per_1k: cpu / ok.max(1) as f64 * 1000.0,
    })
}

pub fn report(stalled: &[Stalled], churns: &[Churn]) -> String {
    let mut s = String::new();
    let Some(first) = stalled.first() else {
        return s;
    };
    let _ = writeln!(
        s,
        "### Scenario 7: under abuse\n\n**Clients that stop reading.** Scenario 2's bursts ({BURST} \
         envelopes of about {BYTES} bytes, from Rust) to {} sockets, of which 1 in {STALL_EVERY} \
         stops reading once connected (a 4 KiB receive buffer, never read): {} bursts after one to \
         warm up, {} frames to each socket that stopped. A clean server of the same \
         implementation, every client reading, is up beside it and the two take turns burst by \
         burst; deliveries per second count the {} reading connections only. RSS is the \
         server's, sampled every 10 bursts, and compared with the clean server's after the same \
         bursts.\n",
        grouped(first.connections as u64),
        first.rates.len(),
        grouped(((first.rates.len() + 1) * BURST) as u64),
        grouped(first.readers as u64),
    );
    let _ = writeln!(
        s,
        "| implementation | deliveries/s to readers (median) | min – max | clean server beside it (median) | ratio ÷ clean | RSS idle | RSS peak | RSS after | RSS after ÷ clean server's | connections held after |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for st in stalled {
        let med = median(&st.rates);
        let (lo, hi) = min_max(&st.rates);
        let clean_rate = median(&st.clean_rates);
        let clean_rss = st.clean_rss_end_kib as f64;
        let _ = writeln!(
            s,
            "| {} | **{}** | {} – {} | {} | **{:.2}** | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} | {} |",
            st.which,
            grouped(med as u64),
            grouped(lo as u64),
            grouped(hi as u64),
            grouped(clean_rate as u64),
            med / clean_rate,
            st.rss_idle_kib as f64 / 1024.0,
            st.rss_max_kib as f64 / 1024.0,
            st.rss_end_kib as f64 / 1024.0,
            st.rss_end_kib as f64 / clean_rss,
            grouped(st.held_after as u64),
        );
    }
    s.push('\n');
    if let Some(c) = churns.first() {
        let _ = writeln!(
            s,
            "**Connection churn.** {} connections a second opened and closed for {:.0} s (open \
             loop, `bench-load --churn`): each completes the handshake (and, on wshub, receives \
             `__connected`), sends a close frame and waits for the server to close. RSS of the \
             server: at the start (nothing connected yet), after 2 s of churn, the peak, and 1 s \
             after the last connection closed; the heap is the anonymous part of it (RssAnon: \
             without the pages of the executable, which grow as code runs for the first time). \
             Target: the end within 10% of the start.\n",
            grouped(c.rate as u64),
            c.seconds,
        );
        let _ = writeln!(
            s,
            "| implementation | connections churned | failed | RSS start → after 2 s → end (peak) | end ÷ start | end ÷ after 2 s | heap (RssAnon) start → after 2 s → end | heap end ÷ after 2 s | held after | server CPU s per 1,000 connections |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let mib = |kib: u64| kib as f64 / 1024.0;
        for c in churns {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} → {:.1} → {:.1} MiB ({:.1}) | **{:.2}** | **{:.2}** | {} → {} → {} KiB | {:.2} | {} | {:.4} |",
                c.which,
                grouped(c.ok),
                c.failed,
                mib(c.rss_start.0),
                mib(c.rss_warm.0),
                mib(c.rss_end.0),
                mib(c.rss_max_kib),
                c.rss_end.0 as f64 / c.rss_start.0 as f64,
                c.rss_end.0 as f64 / c.rss_warm.0 as f64,
                grouped(c.rss_start.1),
                grouped(c.rss_warm.1),
                grouped(c.rss_end.1),
                c.rss_end.1 as f64 / c.rss_warm.1 as f64,
                c.held_after,
                c.cpu_per_1k,
            );
        }
        s.push('\n');
    }
    s
}
