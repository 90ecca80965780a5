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
//! | `traffic.rs` | what each node received from Redis |
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
mod traffic;

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
}

/// CPU seconds of each process of a side (nodes, then Redis) over its own turns, and over the
/// other side's turns, when it did only its background work (heartbeats, pings to the sockets,
/// Redis's timers) at the same moments of the run.
#[derive(Default)]
pub(crate) struct Cpu {
    pub(crate) busy: Vec<f64>,
    pub(crate) busy_seconds: f64,
    pub(crate) idle: Vec<f64>,
    pub(crate) idle_seconds: f64,
}

impl Cpu {
    /// Process `i`'s background over as long as its turns lasted.
    pub(crate) fn background(&self, i: usize) -> f64 {
        let idle = self.idle.get(i).copied().unwrap_or(f64::NAN);
        idle * self.busy_seconds / self.idle_seconds
    }

    /// Process `i`'s CPU over its turns, less its background.
    pub(crate) fn net(&self, i: usize) -> f64 {
        self.busy.get(i).copied().unwrap_or(f64::NAN) - self.background(i)
    }

    /// Every process's, less their background.
    pub(crate) fn net_total(&self) -> f64 {
        (0..self.busy.len()).map(|i| self.net(i)).sum()
    }
}

/// Both sides' CPU times now, to book a turn with [`book`].
pub(crate) fn cpu_now(setups: &[Setup; 2]) -> Result<[Vec<f64>; 2]> {
    Ok([setups[0].cpu()?, setups[1].cpu()?])
}

/// Books side `turn`'s turn, which lasted `seconds`: busy time for it, background for the other.
pub(crate) fn book(
    cpu: [&mut Cpu; 2],
    turn: usize,
    before: &[Vec<f64>; 2],
    after: &[Vec<f64>; 2],
    seconds: f64,
) {
    for (side, cpu) in cpu.into_iter().enumerate() {
        let (sums, time) = if side == turn {
            (&mut cpu.busy, &mut cpu.busy_seconds)
        } else {
            (&mut cpu.idle, &mut cpu.idle_seconds)
        };
        sums.resize(sums.len().max(after[side].len()), 0.0);
        for (sum, (a, b)) in sums.iter_mut().zip(after[side].iter().zip(&before[side])) {
            *sum += a - b;
        }
        *time += seconds;
    }
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
    })
}
