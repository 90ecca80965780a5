//! What each read buffer costs in read speed for large client messages (the question of
//! scenario 1): one client uploads envelopes of 60 KB as fast as the server reads them.

use std::fmt::Write as _;
use std::time::Duration;

use wshub_bench::cpu_seconds;

use crate::procs::{number, Env, Proc};
use crate::report::{median, min_max};
use crate::session::{Measured, Session};
use crate::Result;

/// Bytes of each uploaded envelope (under wshub's default `max_message_size` of 64 KiB).
const MESSAGE: usize = 60_000;
/// Uploads per row; the median is reported.
const RUNS: usize = 3;

pub struct Upload {
    name: String,
    mb_per_s: Vec<f64>,
    cpu_per_100mb: f64,
}

/// Rows: wshub, and the tungstenite baseline with each read buffer of scenario 1.
pub async fn run(env: &mut Env, messages: usize, read_buffers: &[usize]) -> Result<Vec<Upload>> {
    let mut rows = vec![("wshub".to_owned(), "wshub", None)];
    rows.push(("tungstenite".to_owned(), "tungstenite", None));
    for &bytes in read_buffers {
        rows.push((
            format!("tungstenite, {bytes} B read buffer"),
            "tungstenite",
            Some(bytes),
        ));
    }
    let mut uploads = Vec::new();
    for (name, which, read_buffer) in rows {
        eprintln!("bench-run: read speed, {name}");
        let (session, _) = Session::start(env, which, read_buffer, 0, &[]).await?;
        let result = upload(env, &session, which, messages).await;
        session.stop().await;
        let (mb_per_s, cpu_per_100mb) = result?;
        uploads.push(Upload {
            name,
            mb_per_s,
            cpu_per_100mb,
        });
    }
    Ok(uploads)
}

async fn upload(
    env: &Env,
    session: &Session,
    which: &str,
    messages: usize,
) -> Result<(Vec<f64>, f64)> {
    let pid = session.server.pid()?;
    let cpu_before = cpu_seconds(pid).ok_or("no /proc stat")?;
    let mut rates = Vec::new();
    let mut total = 0.0;
    for run in 0..RUNS {
        let mut command = env.command(1, "bench-load");
        command.args([
            "--addr",
            &format!("127.0.0.1:{}", session.port),
            "--upload",
            &MESSAGE.to_string(),
            "--messages",
            &messages.to_string(),
            "--path",
            "/ws?userId=up0",
        ]);
        if which == "wshub" {
            command.arg("--hello");
        }
        let mut load = Proc::spawn(command, format!("upload {which} {run}"))?;
        let answer = load.expect("upload", Duration::from_secs(60)).await;
        load.stop().await;
        let answer = answer?;
        let bytes: f64 = number(&answer, 1)?;
        let seconds: f64 = number(&answer, 2)?;
        rates.push(bytes / seconds.max(1e-9) / 1e6);
        total += bytes;
    }
    let cpu = cpu_seconds(pid).ok_or("no /proc stat")? - cpu_before;
    Ok((rates, cpu / total * 1e8))
}

pub fn report(uploads: &[Upload], idle: &[(String, Measured)], messages: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Read buffers: memory per idle socket and read speed of large messages\n\n\
         One client on core 1 sends {messages} envelopes of {} KB each as fast as the server \
         takes them (addressed to a user nobody is: wshub reads, parses and routes each to no \
         one; the baseline reads it and drops it), then a small marker that comes back; MB/s = \
         bytes ÷ (first byte sent → marker back), median of {RUNS} uploads. The memory column is \
         scenario 1's row for the same server. wshub reads 16 KiB at a time into a buffer on the \
         stack and keeps only the part of a message not yet whole, so an idle socket holds no \
         read buffer.\n",
        MESSAGE / 1000
    );
    let _ = writeln!(
        s,
        "| server | per idle connection | MB/s (median) | min – max | ratio ÷ tungstenite 4 KiB | server CPU s per 100 MB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let base = uploads
        .iter()
        .find(|u| u.name == "tungstenite")
        .map_or(f64::NAN, |u| median(&u.mb_per_s));
    for u in uploads {
        let memory = idle
            .iter()
            .find(|(name, _)| *name == u.name)
            .map_or("–".to_owned(), |(_, m)| {
                format!("{:.2} KiB", m.idle_per_conn_kib())
            });
        let med = median(&u.mb_per_s);
        let (lo, hi) = min_max(&u.mb_per_s);
        let name = if u.name == "tungstenite" {
            "tungstenite, 4096 B read buffer"
        } else {
            &u.name
        };
        let _ = writeln!(
            s,
            "| {name} | {memory} | **{med:.0}** | {lo:.0} – {hi:.0} | {:.2} | {:.3} |",
            med / base,
            u.cpu_per_100mb,
        );
    }
    s.push('\n');
    s
}
