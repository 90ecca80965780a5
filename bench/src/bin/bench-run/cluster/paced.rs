//! Publishes at a fixed rate through a node's publish endpoint, open loop: publish `k` is due at
//! `k ÷ rate` and goes out when it is due (on the first free keep-alive connection), however
//! long the answers before it took. Each envelope carries the driver's clock just before its POST,
//! which the load clients time their deliveries against.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;
use wshub::{Envelope, Recipient};
use wshub_bench::{stamp, unix_ns};

use super::setup::{post, Publisher};
use crate::Result;

/// Characters of a stamped message: the envelope is about 100 bytes of JSON, as elsewhere.
const MESSAGE: usize = 40;

/// What the endpoint answered to the publishes of one run.
#[derive(Default)]
pub(crate) struct Paced {
    /// The JSON answer of each publish.
    pub(crate) answers: Vec<serde_json::Value>,
    /// From each POST to its answer, in ms.
    pub(crate) answer_ms: Vec<f64>,
    /// The latest a publish went out after it was due, in ms (all connections busy).
    pub(crate) late_ms: f64,
}

type Flight = (
    Publisher,
    Result<(http::StatusCode, serde_json::Value)>,
    Duration,
);

/// `rate × seconds` publishes to `group` through the endpoint on `port`, on `publishers` (given
/// back when every answer is in).
pub(crate) async fn run(
    publishers: &mut Vec<Publisher>,
    port: u16,
    group: &str,
    rate: f64,
    seconds: f64,
) -> Result<Paced> {
    let total = (rate * seconds).round() as usize;
    let mut paced = Paced::default();
    let mut idle = std::mem::take(publishers);
    let mut flying: JoinSet<Flight> = JoinSet::new();
    let start = Instant::now();
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        // Answers are taken in while the next publish is not due.
        loop {
            tokio::select! {
                biased;
                Some(joined) = flying.join_next(), if !flying.is_empty() => {
                    land(joined?, &mut idle, &mut paced)?;
                }
                () = tokio::time::sleep_until(due) => break,
            }
        }
        if idle.is_empty() {
            // Every connection is waiting for an answer: this publish goes out late.
            let joined = flying.join_next().await.ok_or("no publish connection")?;
            land(joined?, &mut idle, &mut paced)?;
        }
        let mut publisher = idle.pop().ok_or("no publish connection")?;
        let now = Instant::now();
        paced.late_ms = paced.late_ms.max((now - due).as_secs_f64() * 1e3);
        let envelope = Envelope::new("news")
            .with_message(&stamp(unix_ns(), MESSAGE))
            .to(Recipient::group(group));
        let body = Bytes::from(envelope.to_json());
        flying.spawn(async move {
            let sent = Instant::now();
            let answer = post(&mut publisher, port, body).await;
            (publisher, answer, sent.elapsed())
        });
    }
    while let Some(joined) = flying.join_next().await {
        land(joined?, &mut idle, &mut paced)?;
    }
    *publishers = idle;
    Ok(paced)
}

/// Takes in one answer; its connection is free again.
fn land(flight: Flight, idle: &mut Vec<Publisher>, paced: &mut Paced) -> Result<()> {
    let (publisher, answer, took) = flight;
    idle.push(publisher);
    let (status, json) = answer?;
    if !status.is_success() {
        return Err(format!("publish: {status} {json}").into());
    }
    paced.answers.push(json);
    paced.answer_ms.push(took.as_secs_f64() * 1e3);
    Ok(())
}
