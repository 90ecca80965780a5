//! Scenario 5: the publish endpoint against a no-op route of the same server.

use std::fmt::Write as _;
use std::time::Duration;

use wshub_bench::{burst_envelope, cpu_seconds};

use crate::procs::{number, Env, Proc};
use crate::report::grouped;
use crate::session::Session;
use crate::{Error, Result, BYTES, HTTP_CONCURRENCY, SUBSCRIBERS};

/// One row of scenario 5.
pub(crate) struct HttpRow {
    pub(crate) route: &'static str,
    pub(crate) subscribers: usize,
    pub(crate) rps: f64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Server CPU seconds per 1,000 answered requests.
    pub(crate) cpu_per_1k: f64,
}

/// Scenario 5: `HTTP_CONCURRENCY` keep-alive connections (a `bench-load --http` process on
/// core 1) POST for `seconds` to the no-op route and the publish endpoint in turn (twice each)
/// with 0 subscribers, then to the publish endpoint with 1 and 1,000 subscribers and the no-op
/// route again, all on one wshub server.
pub(crate) async fn publish_endpoint(env: &mut Env, seconds: u64) -> Result<Vec<HttpRow>> {
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

pub(crate) fn report_http(rows: &[HttpRow], seconds: u64) -> String {
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
