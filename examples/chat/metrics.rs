//! `/metrics`: the hub's metrics (and any other `metrics` the process reports) in Prometheus's
//! text format, for a Prometheus server to scrape. Open, as scrape targets usually are: keep the
//! port private, or put the route behind the operator's auth like `/api/logout`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Bucket bounds of the hub's durations (forward round trips, the cluster's receive lag), in
/// seconds: from a fast in-process handler to the forward timeout's neighbourhood.
const SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A recorder that keeps what is reported, to install once (`metrics::set_global_recorder`).
/// Durations are histograms with buckets, so that `histogram_quantile` works across nodes
/// (docs/operations.md); without buckets the exporter would render summaries.
pub(crate) fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
        .expect("bucket bounds are given")
        .build_recorder()
}

/// The `/metrics` route over `handle`'s recorder.
pub(crate) fn route(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let body = handle.render();
            async move {
                let content_type = "text/plain; version=0.0.4; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }),
    )
}
