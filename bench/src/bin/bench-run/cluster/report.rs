//! The cluster scenario's section of the report: bursts, targeted latency, Redis's CPU and the
//! nodes a targeted publish wakes, each against the goals of issue 11.

use std::fmt::Write as _;

use wshub::Recipient;
use wshub_bench::burst_envelope_to;

use super::setup::{GROUP_SIZE, SHARES};
use super::{Measured, Side, NODES, RATE};
use crate::report::{grouped, median, min_max, percentile};
use crate::{BURST, BYTES};

/// The goals of issue 11.
const BURST_RATIO: f64 = 0.8;
const ADDED_P50_MS: f64 = 0.3;
const ADDED_P99_MS: f64 = 1.0;

pub(crate) fn report(m: &Measured) -> String {
    let mut s = String::new();
    let [single, cluster] = &m.sides;
    let _ = writeln!(
        s,
        "### Cluster (issue 11): one node against {NODES} nodes on Redis, {} sockets\n",
        grouped(m.sockets as u64)
    );
    let _ = writeln!(
        s,
        "Both sides are up at once and take turns. **1 node**: one `bench-server` (wshub) with \
         every socket. **{NODES} nodes + Redis**: {NODES} `bench-server --redis` nodes (A, B, C) \
         with {} sockets each, on a `redis-server` of their own (no persistence). Every server \
         process (the nodes, redis-server) is pinned to core 0; the load clients, {SHARES} \
         processes of {} sockets on either side (one per node in the cluster), to core 1; the \
         driver publishes. The sockets are in groups of {GROUP_SIZE}, each group on one node. \
         CPU times here are the sum of each process's threads' `schedstat` (ns), as Redis does \
         too little per publish for `/proc/<pid>/stat`'s 10 ms ticks; **net** CPU is a process's \
         CPU over its side's turns less its background, read over the other side's turns (as \
         long in all, interleaved with them): the nodes' heartbeats and Redis's timers. The hub's \
         pings to the sockets are put off on both sides (`--ping-interval 600`; every 25 s by \
         default): sockets connected together are pinged together, and such a wave, falling in \
         one side's turns, moved the CPU figures by more than a publish costs.\n",
        grouped((m.sockets / NODES) as u64),
        grouped((m.sockets / SHARES) as u64),
    );
    s.push_str(&bursts(m, single, cluster));
    s.push_str(&latency(m, single, cluster));
    s.push_str(&redis_cpu(m, cluster));
    s.push_str(&woken(single, cluster));
    s.push_str(&goals(single, cluster));
    s
}

fn bursts(m: &Measured, single: &Side, cluster: &Side) -> String {
    let mut s = String::new();
    let _ =
        writeln!(
        s,
        "**Burst broadcast.** One `POST /api/publish` to node A (the single node) of a JSON array \
         of {BURST} envelopes of {} bytes to `all`; deliveries per second = {BURST} × {} ÷ (time \
         from the POST to the last frame received by the load clients); median of {} bursts per \
         side after one to warm up, the sides taking turns burst by burst. Server CPU: the net \
         CPU of every server process over each burst and the 100 ms after it. Goal: {NODES} \
         nodes ≥ {BURST_RATIO} × 1 node.\n",
        burst_envelope_to(0, BYTES, &Recipient::all()).to_json().len(),
        grouped(m.sockets as u64),
        m.reps,
    );
    let _ = writeln!(
        s,
        "| side | deliveries/s (median) | min – max | burst time (median) | ratio ÷ 1 node | server CPU s per 1,000 deliveries | of which Redis |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let base = median(&single.bursts.rates);
    for side in [single, cluster] {
        let b = &side.bursts;
        let med = median(&b.rates);
        let (lo, hi) = min_max(&b.rates);
        let deliveries = (b.rates.len() * BURST * m.sockets) as f64;
        let per_1k = |cpu: f64| cpu / deliveries * 1000.0;
        let redis = if side.nodes > 1 {
            format!("{:.1} µs", per_1k(b.cpu.net(side.nodes)) * 1e6)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            s,
            "| {} | **{}** | {} – {} | {:.1} ms | {:.2} | {:.5} | {redis} |",
            side.name,
            grouped(med as u64),
            grouped(lo as u64),
            grouped(hi as u64),
            (BURST * m.sockets) as f64 / med * 1000.0,
            med / base,
            per_1k(b.cpu.net_total()),
        );
    }
    s.push('\n');
    s
}

fn latency(m: &Measured, single: &Side, cluster: &Side) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "**Added latency to a group on one remote node.** {RATE:.0} publishes a second, open loop \
         (each due at `k ÷ {RATE:.0}` s, sent on the first free one of 4 keep-alive connections to \
         node A's publish endpoint), each to group `{}`, whose {GROUP_SIZE} members are all on \
         node B; on the single node, the same group, published on the node that holds it. The \
         message carries the driver's clock just before the POST; each load client times every \
         delivery against it (`CLOCK_REALTIME`, one machine). {} blocks of {} s per side, taking \
         turns, after a warm-up block each. Goals: added p50 ≤ {ADDED_P50_MS} ms, added p99 ≤ \
         {ADDED_P99_MS} ms.\n",
        cluster.targeted.group, m.blocks, m.block_seconds,
    );
    let _ = writeln!(
        s,
        "| side | publishes | delivered (received) | p50 | p99 | max | POST answered in, p50 / p99 | latest send after due | added p50 | added p99 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for side in [single, cluster] {
        let t = &side.targeted;
        let added = |of: fn(&Side) -> f64| {
            if side.nodes > 1 {
                format!("**{:.3} ms**", (of(side) - of(single)) / 1e3)
            } else {
                "–".to_owned()
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {:.3} ms | {:.3} ms | {:.1} ms | {:.2} / {:.2} ms | {:.1} ms | {} | {} |",
            side.name,
            grouped(t.publishes as u64),
            grouped(t.delivered as u64),
            grouped(t.received as u64),
            t.p50_us / 1e3,
            t.p99_us / 1e3,
            t.max_us / 1e3,
            percentile(&t.answer_ms, 50.0),
            percentile(&t.answer_ms, 99.0),
            t.late_ms,
            added(|side| side.targeted.p50_us),
            added(|side| side.targeted.p99_us),
        );
    }
    s.push('\n');
    s
}

/// Redis's CPU per publish and per delivery, net of its background.
fn redis_cpu(m: &Measured, cluster: &Side) -> String {
    let mut s = String::new();
    let redis = NODES;
    let _ = writeln!(
        s,
        "**Redis's CPU.** redis-server's CPU time over the cluster's turns of each phase, and its \
         background over as long (read over the single node's turns); per publish and per \
         delivery, net of it. A burst publishes {BURST} envelopes; a delivery is one frame to one \
         socket. PUBLISH and script calls include the counts the other nodes send back to node A \
         (one per node reached and envelope); time in scripts is what `INFO commandstats` says \
         Redis spent running them, by its clock (on a core shared with the nodes, time it was \
         preempted counts too); the rest of its CPU is its event loop and its socket reads and \
         writes.\n"
    );
    let _ = writeln!(
        s,
        "| phase | publishes | deliveries | Redis CPU | background | per publish | per 1,000 deliveries | PUBLISH calls per publish | script calls per publish | time in scripts per publish |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let b = &cluster.bursts;
    let t = &cluster.targeted;
    let rows = [
        (
            "bursts to `all`",
            b.rates.len() * BURST,
            b.rates.len() * BURST * m.sockets,
            &b.cpu,
            b.calls,
        ),
        (
            "targeted, one remote group",
            t.publishes,
            t.received,
            &t.cpu,
            t.calls,
        ),
    ];
    for (phase, publishes, deliveries, cpu, calls) in rows {
        let net = cpu.net(redis);
        let per = |n: u64| n as f64 / publishes as f64;
        let _ = writeln!(
            s,
            "| {phase} | {} | {} | {:.1} ms | {:.1} ms | **{:.1} µs** | **{:.1} µs** | {:.2} | {:.2} | {:.1} µs |",
            grouped(publishes as u64),
            grouped(deliveries as u64),
            cpu.busy.get(redis).copied().unwrap_or(f64::NAN) * 1e3,
            cpu.background(redis) * 1e3,
            net / publishes as f64 * 1e6,
            net / deliveries as f64 * 1e9,
            per(calls.publish),
            per(calls.scripts),
            per(calls.script_us),
        );
    }
    s.push('\n');
    s
}

/// How many nodes a targeted publish wakes: Redis's count in the answers, and the nodes' CPU.
fn woken(single: &Side, cluster: &Side) -> String {
    let mut s = String::new();
    let t = &cluster.targeted;
    let reached: Vec<f64> = t.nodes_reached.iter().map(|&n| n as f64).collect();
    let mean = reached.iter().sum::<f64>() / reached.len() as f64;
    let (lo, hi) = min_max(&reached);
    let per_publish = |cpu: f64, publishes: usize| cpu / publishes as f64 * 1e6;
    let node = |i: usize| per_publish(t.cpu.net(i), t.publishes);
    let traffic = match &t.from_redis {
        Some(bytes) => {
            let per = |i: usize| {
                bytes
                    .get(i)
                    .map_or(f64::NAN, |&b| b as f64 / t.publishes as f64)
            };
            format!(
                "Bytes each node received from Redis (its TCP connections' `bytes_received`, \
                 `ss -ti`) per targeted publish: node A **{:.1}** (Redis's answers to its \
                 script calls, and node B's counts), node B **{:.1}** (the envelopes), node C \
                 **{:.1}** (answers to its heartbeats and pings only).",
                per(0),
                per(1),
                per(2)
            )
        }
        None => "The nodes' traffic from Redis was not measured (see the run's output).".to_owned(),
    };
    let _ = writeln!(
        s,
        "**Nodes woken per targeted publish** (goal: 1): node A's answers say how many other \
         nodes Redis passed each envelope to (`nodes`): mean **{mean:.3}** (min {lo:.0}, max \
         {hi:.0}) over {} publishes, {} answers `partial`. {traffic} Net CPU per targeted \
         publish: node A (takes the POST) {:.1} µs, node B (the members) {:.1} µs, node C (none) \
         {:.1} µs, Redis {:.1} µs, {:.1} µs in all; the single node, {:.1} µs.\n",
        grouped(t.publishes as u64),
        t.partial,
        node(0),
        node(1),
        node(2),
        node(NODES),
        per_publish(t.cpu.net_total(), t.publishes),
        per_publish(single.targeted.cpu.net_total(), single.targeted.publishes),
    );
    s
}

fn goals(single: &Side, cluster: &Side) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let ratio = median(&cluster.bursts.rates) / median(&single.bursts.rates);
    let added_p50 = (cluster.targeted.p50_us - single.targeted.p50_us) / 1e3;
    let added_p99 = (cluster.targeted.p99_us - single.targeted.p99_us) / 1e3;
    let reached = &cluster.targeted.nodes_reached;
    let woken = reached.iter().sum::<u64>() as f64 / reached.len() as f64;
    format!(
        "Goals of issue 11 in this run: bursts ≥ {BURST_RATIO} × 1 node: {ratio:.2}, {}; added \
         p50 ≤ {ADDED_P50_MS} ms: {added_p50:.3} ms, {}; added p99 ≤ {ADDED_P99_MS} ms: \
         {added_p99:.3} ms, {}; nodes woken per targeted publish = 1: {woken:.3}, {}.\n\n",
        verdict(ratio >= BURST_RATIO),
        verdict(added_p50 <= ADDED_P50_MS),
        verdict(added_p99 <= ADDED_P99_MS),
        verdict(woken == 1.0),
    )
}
