//! Burst broadcasts: BURST envelopes to `all` as one JSON array POSTed to node A's publish
//! endpoint (the single node's, on the other side), timed to the last frame at the clients. The
//! sides take turns burst by burst, so that the machine's drift falls on both alike.

use std::time::{Duration, Instant};

use bytes::Bytes;
use wshub::Recipient;
use wshub_bench::{burst_envelope_to, unix_ns};

use super::redis::Calls;
use super::setup::{post, Publisher, Setup};
use super::{book, cpu_now, Cpu, Side};
use crate::session::rate;
use crate::{Result, BURST, BYTES};

/// Left after each burst before the other side's, inside its CPU window: what the burst left
/// to do (the nodes' counts, writes) is done in it.
const PAUSE: Duration = Duration::from_millis(100);

/// What one side's bursts measured.
#[derive(Default)]
pub(crate) struct Bursts {
    /// Deliveries per second of each measured burst.
    pub(crate) rates: Vec<f64>,
    /// CPU of each server process over the measured bursts, each with the pause after it.
    pub(crate) cpu: Cpu,
    /// What Redis ran over the measured bursts (the cluster).
    pub(crate) calls: Calls,
}

pub(crate) async fn run(setups: &mut [Setup; 2], sides: &mut [Side; 2], reps: usize) -> Result<()> {
    eprintln!("bench-run: cluster scenario, {reps} bursts per side");
    let envelopes: Vec<String> = (0..BURST)
        .map(|i| burst_envelope_to(i, BYTES, &Recipient::all()).to_json())
        .collect();
    let body = Bytes::from(format!("[{}]", envelopes.join(",")));
    let mut publishers = Vec::new();
    for setup in setups.iter() {
        publishers.push(super::setup::publisher(setup.nodes[0].port).await?);
    }
    for (setup, publisher) in setups.iter_mut().zip(&mut publishers) {
        burst(setup, publisher, body.clone()).await?;
        tokio::time::sleep(PAUSE).await;
    }
    let calls_before = calls(&mut setups[1]).await?;
    for _ in 0..reps {
        for turn in 0..2 {
            let started = Instant::now();
            let before = cpu_now(setups)?;
            let rate = burst(&mut setups[turn], &mut publishers[turn], body.clone()).await?;
            tokio::time::sleep(PAUSE).await;
            let after = cpu_now(setups)?;
            sides[turn].bursts.rates.push(rate);
            let [single, cluster] = sides;
            let cpu = [&mut single.bursts.cpu, &mut cluster.bursts.cpu];
            book(cpu, turn, &before, &after, started.elapsed().as_secs_f64());
        }
    }
    sides[1].bursts.calls = calls(&mut setups[1]).await? - calls_before;
    Ok(())
}

/// What the cluster's Redis has run so far.
pub(crate) async fn calls(cluster: &mut Setup) -> Result<Calls> {
    let redis = cluster.redis.as_mut().ok_or("a cluster has a Redis")?;
    redis.calls().await
}

/// One burst; deliveries per second. Fails unless the endpoint says that every socket got every
/// envelope (and, in a cluster, that every other node answered for every envelope).
async fn burst(setup: &mut Setup, publisher: &mut Publisher, body: Bytes) -> Result<f64> {
    setup.arm(BURST).await?;
    let port = setup.nodes[0].port;
    let started = unix_ns();
    let (status, answer) = post(publisher, port, body).await?;
    let want = BURST * setup.sockets;
    let others = BURST * (setup.nodes.len() - 1);
    let counted = answer["delivered"].as_u64() == Some(want as u64)
        && (setup.redis.is_none()
            || (answer["nodes"].as_u64() == Some(others as u64)
                && answer["partial"].as_bool() == Some(false)));
    if !status.is_success() || !counted {
        return Err(format!(
            "{}: burst answered {status} {answer}, not {want} delivered",
            setup.name
        )
        .into());
    }
    let last = setup.last_done().await?;
    Ok(rate(setup.sockets, started, last))
}
