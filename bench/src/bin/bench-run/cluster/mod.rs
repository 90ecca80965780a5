//! The cluster scenario (issue 11): one wshub node against three nodes on a Redis, with the same
//! sockets and load clients, both sides up at once and taking turns.
//!
//! | part | job |
//! |---|---|
//! | `redis.rs` | the redis-server process, and what is asked of it |
//! | `setup.rs` | one side: its nodes (and Redis), its load clients, readiness |
//! | `bursts.rs` | burst broadcasts (`all`) through node A's publish endpoint |
//! | `targeted.rs` | publishes at a fixed rate to a group that lives on node B |
//! | `paced.rs` | the open-loop publisher of `targeted.rs` |
//! | `report.rs` | the tables and the goals |
//!
//! Every process of the server side (the nodes, redis-server) is pinned to core 0 and the load
//! clients to core 1, as in the other scenarios.

mod bursts;
mod paced;
mod redis;
mod report;
mod setup;
mod targeted;

use std::time::Duration;

use crate::procs::Env;
use crate::Result;

pub(crate) use redis::check;
pub(crate) use report::report;
use setup::Setup;

/// How big a run is.
pub(crate) struct Sizes {
    /// Sockets on either side, spread evenly over the cluster's three nodes.
    pub(crate) sockets: usize,
    /// Bursts measured per side, after one each to warm up.
    pub(crate) reps: usize,
    /// Targeted publishes: blocks per side, and seconds per block, at [`RATE`].
    pub(crate) blocks: usize,
    pub(crate) block_seconds: f64,
    /// How long the cluster is watched with nothing published, for Redis's background work.
    pub(crate) idle_seconds: f64,
}

/// Nodes of the cluster.
pub(crate) const NODES: usize = 3;
/// Targeted publishes a second.
pub(crate) const RATE: f64 = 200.0;

/// What one side measured.
#[derive(Default)]
pub(crate) struct Side {
    pub(crate) name: &'static str,
    pub(crate) nodes: usize,
    pub(crate) bursts: bursts::Bursts,
    pub(crate) targeted: targeted::Targeted,
}

/// What a run measured.
pub(crate) struct Measured {
    pub(crate) sockets: usize,
    pub(crate) reps: usize,
    pub(crate) blocks: usize,
    pub(crate) block_seconds: f64,
    /// The single node, then the cluster.
    pub(crate) sides: [Side; 2],
    /// CPU seconds per second of each cluster process (nodes, then Redis) with nothing
    /// published: heartbeats, pings, Redis's own timers.
    pub(crate) idle_per_s: Vec<f64>,
    pub(crate) idle_seconds: f64,
}

/// Starts both sides, measures, and stops everything it started, whatever happened.
pub(crate) async fn run(env: &mut Env, sizes: &Sizes) -> Result<Measured> {
    let single = Setup::start(env, "1 node", 1, sizes.sockets).await?;
    let cluster = match Setup::start(env, "3 nodes + Redis", NODES, sizes.sockets).await {
        Ok(cluster) => cluster,
        Err(e) => {
            single.stop().await;
            return Err(e);
        }
    };
    let mut setups = [single, cluster];
    let measured = measure(&mut setups, sizes).await;
    for setup in setups {
        setup.stop().await;
    }
    measured
}

async fn measure(setups: &mut [Setup; 2], sizes: &Sizes) -> Result<Measured> {
    let idle_per_s = idle(&setups[1], sizes.idle_seconds).await?;
    let mut sides = [Side::default(), Side::default()];
    for (side, setup) in sides.iter_mut().zip(setups.iter()) {
        side.name = setup.name;
        side.nodes = setup.nodes.len();
    }
    bursts::run(setups, &mut sides, sizes.reps).await?;
    targeted::run(setups, &mut sides, sizes).await?;
    Ok(Measured {
        sockets: sizes.sockets,
        reps: sizes.reps,
        blocks: sizes.blocks,
        block_seconds: sizes.block_seconds,
        sides,
        idle_per_s,
        idle_seconds: sizes.idle_seconds,
    })
}

/// The CPU each process of `setup` uses per second with nothing published (a measurement
/// window, not a wait for anything).
async fn idle(setup: &Setup, seconds: f64) -> Result<Vec<f64>> {
    let before = setup.cpu()?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = setup.cpu()?;
    Ok(after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / seconds)
        .collect())
}

/// Element-wise `after - before`, added to `into` (grown as needed).
pub(crate) fn add_delta(into: &mut Vec<f64>, before: &[f64], after: &[f64]) {
    into.resize(into.len().max(after.len()), 0.0);
    for (sum, (a, b)) in into.iter_mut().zip(after.iter().zip(before)) {
        *sum += a - b;
    }
}
