//! Scenario 1 after a large frame (issue 10, item 1): idle connections each receive one frame of
//! 1 MB and go idle again, and the server's memory per connection is read a second time. A
//! connection that keeps a buffer at the size of the largest frame it once carried shows here;
//! the tungstenite baseline does (its write buffer keeps its capacity), which is the comparison.

use std::fmt::Write as _;

use crate::procs::{number, Env};
use crate::report::grouped;
use crate::session::{Measured, Session, SETTLE};
use crate::Result;

/// Bytes of the envelope's JSON (the frame adds its 10-byte header).
pub(crate) const LARGE: usize = 1_000_000;

/// What one implementation measured.
pub(crate) struct AfterLarge {
    which: String,
    /// Scenario 1's measurement at this step's connection count.
    idle: Measured,
    /// VmRSS and RssAnon once every client has read the frame and the server has settled.
    after: (u64, u64),
    /// Publish to the last client's receipt of the whole frame, in ms.
    deliver_ms: f64,
}

impl AfterLarge {
    fn per_conn(&self, kib: u64, before: u64) -> f64 {
        (kib as f64 - before as f64) / self.idle.connections as f64
    }

    /// VmRSS per connection: idle, after the frame.
    fn rss(&self) -> (f64, f64) {
        let before = self.idle.rss_before_kib;
        (
            self.per_conn(self.idle.rss_idle_kib, before),
            self.per_conn(self.after.0, before),
        )
    }

    /// RssAnon per connection: idle, after the frame.
    fn anon(&self) -> (f64, f64) {
        let before = self.idle.anon_before_kib;
        (
            self.per_conn(self.idle.anon_idle_kib, before),
            self.per_conn(self.after.1, before),
        )
    }
}

/// Opens `connections` idle connections to a server of `which`, measures them as scenario 1
/// does, publishes one envelope of [`LARGE`] bytes to all of them the way the bursts do (the
/// server's `burst` command: `Hub::send`, or the baseline's `try_send` of one shared frame to every
/// queue), waits until every client has read it whole, lets the server settle as after the
/// handshakes, and measures again.
///
/// Before any connection, the server publishes such envelopes to nobody until one leaves its
/// RSS where it found it ([`warm_up`]): the process's own one-off costs of a 1 MB publish are
/// then in the RSS before any connection, not charged to the connections.
pub(crate) async fn run(env: &mut Env, which: &str, connections: usize) -> Result<AfterLarge> {
    eprintln!(
        "bench-run: {which}, {connections} idle connections, then a frame of {LARGE} bytes to each"
    );
    let mut session = Session::server(env, which, None).await?;
    let result = async {
        warm_up(&mut session).await?;
        let idle = session.connect(env, connections, &[]).await?;
        session.arm_n(1).await?;
        let answer = session
            .server
            .ask(&format!("burst 1 {LARGE}"), "burst")
            .await?;
        let published: u128 = number(&answer, 1)?;
        let queued: usize = number(&answer, 3)?;
        if queued != connections {
            return Err(
                format!("{which}: queued the large frame to {queued} of {connections}").into(),
            );
        }
        let last = session.last_done().await?;
        tokio::time::sleep(SETTLE).await;
        let after = session.rss().await?;
        Ok(AfterLarge {
            which: which.to_owned(),
            idle,
            after,
            deliver_ms: last.saturating_sub(published) as f64 / 1e6,
        })
    }
    .await;
    session.stop().await;
    result
}

/// Publishes envelopes of [`LARGE`] bytes to nobody (no connection is open yet) until one leaves
/// the server's RSS within [`STEADY_KIB`] of where it found it: at least two, at most
/// [`WARM_UPS`].
///
/// The first large publish pages in the code of the send path and leaves glibc's allocator a
/// megabyte larger (its first large free raises the mmap threshold, and the next large buffers
/// come from the heap and stay there); the second gives that megabyte back; from then on a
/// publish leaves RSS where it was (wshub by hand: 4,216 → 5,640 → 4,792 → 4,792 → 4,796 KiB).
/// Without this, that process-wide megabyte was charged to the connections: wshub measured
/// +1.95 KiB per connection at 500 connections with no warm-up, and −1.70 KiB after a single one.
async fn warm_up(session: &mut Session) -> Result<()> {
    let mut last = session.rss().await?.0;
    for done in 1..=WARM_UPS {
        session
            .server
            .ask(&format!("burst 1 {LARGE}"), "burst")
            .await?;
        let now = session.rss().await?.0;
        if done >= 2 && now.abs_diff(last) <= STEADY_KIB {
            return Ok(());
        }
        last = now;
    }
    Err(format!(
        "{}: RSS still moving after {WARM_UPS} large publishes to nobody",
        session.server.name
    )
    .into())
}

/// Most large publishes to nobody before the connections open.
const WARM_UPS: usize = 6;
/// RSS change, in KiB, within which a publish counts as leaving the server as it found it.
const STEADY_KIB: u64 = 64;

pub(crate) fn report(rows: &[AfterLarge]) -> String {
    let mut s = String::new();
    let Some(first) = rows.first() else {
        return s;
    };
    let c = first.idle.connections;
    let _ = writeln!(
        s,
        "### Scenario 1 after a 1 MB frame: {} connections\n",
        grouped(c as u64)
    );
    let _ = writeln!(
        s,
        "After any frame, an idle connection must return to its idle footprint (issue 10, item \
         1). Each server holds {} idle connections, fewer than scenario 1's because 1 MB to each \
         is {} MB through loopback, measured idle as in scenario 1; then one envelope of {} bytes \
         of JSON goes to every connection the way scenario 2's bursts go (`burst 1 {LARGE}`: \
         `Hub::send`; the baseline's `try_send` of one shared `Utf8Bytes` to every queue), every \
         load client reads it whole (counting frames without keeping them), and {} s later RSS \
         is read again. Per connection = (RSS − RSS before any connection) ÷ connections; heap: \
         the same with RssAnon (without the executable's pages). Before any connection, each \
         server publishes such envelopes to nobody until one leaves its RSS within {STEADY_KIB} \
         KiB of where it found it (two or three), so that the process's one-off costs of a 1 MB \
         publish (code paged in, the allocator's larger heap) are in the RSS before and not \
         charged to the connections. The baseline keeps its write buffer at the largest frame it \
         has written (tungstenite drains its `Vec` and keeps its capacity); wshub writes the \
         shared frame without a copy and keeps no buffer of its own. `bench-run --quick` or \
         `--full` produces this table, `--only large` this table alone.\n",
        grouped(c as u64),
        grouped((c * LARGE / 1_000_000) as u64),
        grouped(LARGE as u64),
        SETTLE.as_secs(),
    );
    let _ = writeln!(
        s,
        "| implementation | per idle connection | after the 1 MB frame | difference | heap idle → after | heap difference | after ÷ tungstenite | delivered to all in |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let base = rows
        .iter()
        .find(|r| r.which == "tungstenite")
        .map_or(f64::NAN, |r| r.rss().1);
    for r in rows {
        let (idle, after) = r.rss();
        let (anon_idle, anon_after) = r.anon();
        let _ = writeln!(
            s,
            "| {} | {idle:.2} KiB | **{after:.2} KiB** | **{:+.2} KiB** | {anon_idle:.2} → {anon_after:.2} KiB | {:+.2} KiB | {:.3} | {:.0} ms |",
            r.which,
            after - idle,
            anon_after - anon_idle,
            after / base,
            r.deliver_ms,
        );
    }
    s.push('\n');
    let wshub = rows.iter().find(|r| r.which == "wshub");
    let baseline = rows.iter().find(|r| r.which == "tungstenite");
    if let (Some(w), Some(b)) = (wshub, baseline) {
        let (w_idle, w_after) = w.rss();
        let (b_idle, b_after) = b.rss();
        // The whole server's change, against the tolerance the warm-up called steady.
        let grown = w.after.0.saturating_sub(w.idle.rss_idle_kib);
        let verdict = if grown <= STEADY_KIB {
            "met"
        } else {
            "**not met**"
        };
        let _ = writeln!(
            s,
            "Issue 10 in this run: after a 1 MB frame an idle wshub connection holds {w_after:.2} \
             KiB, {:+.2} KiB against its idle {w_idle:.2} KiB (heap {:+.2} KiB); the baseline's \
             {b_after:.2} KiB, {:+.2} KiB; wshub ÷ baseline {:.3}. Back to the idle footprint \
             (the server's RSS within {STEADY_KIB} KiB of its idle RSS: {:.3} KiB per connection \
             here): {verdict}.\n",
            w_after - w_idle,
            w.anon().1 - w.anon().0,
            b_after - b_idle,
            w_after / b_after,
            STEADY_KIB as f64 / c as f64,
        );
    }
    s
}
