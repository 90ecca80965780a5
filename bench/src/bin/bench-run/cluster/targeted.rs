//! Targeted publishes: at [`RATE`] a second, through node A's publish endpoint, to a group whose
//! members are all on node B (share 1's first group); on the single node, the same group through
//! the node that holds it. The load clients time each delivery from the publish; the sides take
//! turns block by block.

use std::time::{Duration, Instant};

use super::redis::Calls;
use super::setup::{Publisher, Setup};
use super::{book, bursts, cpu_now, paced, Cpu, Side, Sizes, RATE};
use crate::procs::{number, Proc};
use crate::Result;

/// Keep-alive connections to the publish endpoint: enough that a slow answer does not hold back
/// the next publish.
const CONNECTIONS: usize = 4;
/// The share (and load process) whose first group is published to: node B's in the cluster.
const RECEIVER: usize = 1;
/// The warm-up block before the measured ones, per side.
const WARM_UP_SECONDS: f64 = 0.25;

/// What one side's targeted publishes measured.
#[derive(Default)]
pub(crate) struct Targeted {
    pub(crate) group: String,
    pub(crate) publishes: usize,
    /// Deliveries the endpoint reported, and the stamped messages the clients received.
    pub(crate) delivered: usize,
    pub(crate) received: usize,
    /// Publish-to-receive latency over every delivery, in µs (the load client's figures).
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// From each POST to its answer, in ms.
    pub(crate) answer_ms: Vec<f64>,
    pub(crate) late_ms: f64,
    /// The `nodes` of each answer: how many other nodes Redis passed the envelope to.
    pub(crate) nodes_reached: Vec<u64>,
    /// Answers that said `partial`.
    pub(crate) partial: usize,
    /// CPU of each server process over the measured blocks.
    pub(crate) cpu: Cpu,
    /// What Redis ran over the measured blocks (the cluster).
    pub(crate) calls: Calls,
    /// Bytes each node received from Redis over the measured blocks (the cluster; `None` when
    /// they could not be read, which the run says).
    pub(crate) from_redis: Option<Vec<u64>>,
}

pub(crate) async fn run(
    setups: &mut [Setup; 2],
    sides: &mut [Side; 2],
    sizes: &Sizes,
) -> Result<()> {
    eprintln!(
        "bench-run: cluster scenario, {} blocks of {} s at {RATE}/s per side",
        sizes.blocks, sizes.block_seconds
    );
    let mut publishers = Vec::new();
    for (setup, side) in setups.iter().zip(sides.iter_mut()) {
        side.targeted.group = setup.group_of_share(RECEIVER);
        publishers.push(setup.publishers(CONNECTIONS).await?);
    }
    for ((setup, side), publishers) in setups.iter_mut().zip(sides.iter()).zip(&mut publishers) {
        let warm = block(setup, publishers, &side.targeted.group, WARM_UP_SECONDS).await?;
        let expected = warm.answers.len() * super::setup::GROUP_SIZE;
        until_received(&mut setup.loads[RECEIVER], expected).await?;
        // What the warm-up left is not counted.
        for load in &mut setup.loads {
            load.ask("stats", "stats").await?;
        }
    }
    let calls_before = bursts::calls(&mut setups[1]).await?;
    let received_before = setups[1].received_from_redis();
    for _ in 0..sizes.blocks {
        for turn in 0..2 {
            let started = Instant::now();
            let before = cpu_now(setups)?;
            let group = &sides[turn].targeted.group;
            let paced = block(
                &setups[turn],
                &mut publishers[turn],
                group,
                sizes.block_seconds,
            )
            .await?;
            let after = cpu_now(setups)?;
            let [single, cluster] = sides;
            let cpu = [&mut single.targeted.cpu, &mut cluster.targeted.cpu];
            book(cpu, turn, &before, &after, started.elapsed().as_secs_f64());
            let t = &mut sides[turn].targeted;
            t.publishes += paced.answers.len();
            for answer in &paced.answers {
                t.delivered += answer["delivered"].as_u64().unwrap_or(0) as usize;
                if let Some(nodes) = answer["nodes"].as_u64() {
                    t.nodes_reached.push(nodes);
                }
                t.partial += usize::from(answer["partial"].as_bool() == Some(true));
            }
            t.answer_ms.extend(paced.answer_ms);
            t.late_ms = t.late_ms.max(paced.late_ms);
        }
    }
    sides[1].targeted.calls = bursts::calls(&mut setups[1]).await? - calls_before;
    sides[1].targeted.from_redis = match (received_before, setups[1].received_from_redis()) {
        (Ok(before), Ok(after)) => Some(after.iter().zip(&before).map(|(a, b)| a - b).collect()),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench-run: the nodes' traffic from Redis is not measured: {e}");
            None
        }
    };
    for (setup, side) in setups.iter_mut().zip(sides.iter_mut()) {
        latencies(setup, &mut side.targeted).await?;
    }
    Ok(())
}

/// One block of publishes on `setup`'s node A.
async fn block(
    setup: &Setup,
    publishers: &mut Vec<Publisher>,
    group: &str,
    seconds: f64,
) -> Result<paced::Paced> {
    paced::run(publishers, setup.nodes[0].port, group, RATE, seconds).await
}

/// Waits until every delivery has reached the clients, then reads their latencies: all from the
/// receiving share's load client, none from the others.
async fn latencies(setup: &mut Setup, targeted: &mut Targeted) -> Result<()> {
    let expected = targeted.publishes * super::setup::GROUP_SIZE;
    targeted.received = until_received(&mut setup.loads[RECEIVER], expected).await?;
    for (i, load) in setup.loads.iter_mut().enumerate() {
        let stats = load.ask("stats", "stats").await?;
        let n: usize = number(&stats, 1)?;
        if i == RECEIVER {
            targeted.p50_us = number(&stats, 2)?;
            targeted.p99_us = number(&stats, 3)?;
            targeted.max_us = number(&stats, 4)?;
        } else if n > 0 {
            return Err(format!(
                "{}: load {i} got {n} envelopes meant for group {}, whose members are all on load {RECEIVER}",
                setup.name, targeted.group
            )
            .into());
        }
    }
    Ok(())
}

/// Waits until `load` has received `expected` stamped messages, 10 s at most; what it has.
async fn until_received(load: &mut Proc, expected: usize) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let received: usize = number(&load.ask("received", "received").await?, 1)?;
        if received >= expected {
            return Ok(received);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: {received} of {expected} deliveries after 10 s",
                load.name
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
