//! `--metrics` (wshub only): what the hub reports through the `metrics` facade goes to a real
//! exporter, Prometheus's (`metrics-exporter-prometheus`), installed as the global recorder
//! before the hub is built, and its scrape is rendered once a second on the server's runtime, as
//! an application serving `/metrics` would (examples/chat/metrics.rs). Without the option nothing
//! is installed: each of the hub's metrics calls finds the facade's no-op recorder. Issue 13's
//! cost of metrics is the same burst with and without it.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the scrape is rendered: far more often than Prometheus's usual 15 s or more, so
/// that what a scrape costs, while the hub reports under load, is in the figure at the least.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// Installs the Prometheus recorder as the global one and starts rendering its scrape every
/// [`SCRAPE_EVERY`], with the upkeep a recorder built without `install` needs (draining
/// histograms). Call it before the hub is built, inside the runtime it runs on.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "a metrics recorder is installed already".to_owned())?;
    let scraper = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SCRAPE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            scraper.run_upkeep();
            // What a scrape's response body would carry; dropped here.
            std::hint::black_box(scraper.render());
        }
    });
    Ok(handle)
}

/// The answer to `scrape`: `scrape BYTES SAMPLES` of a scrape rendered now (samples: its lines
/// that are not comments), `scrape 0 0` without `--metrics`.
pub fn summary(handle: Option<&PrometheusHandle>) -> String {
    let text = handle.map(PrometheusHandle::render).unwrap_or_default();
    let samples = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    format!("scrape {} {samples}", text.len())
}
