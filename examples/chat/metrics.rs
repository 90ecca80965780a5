//! `/metrics`: the hub's metrics (and any other `metrics` the process reports) in Prometheus's
//! text format, for a Prometheus server to scrape. Open, as scrape targets usually are: keep the
//! port private, or put the route behind the operator's auth like `/api/logout`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// A recorder that keeps what is reported, to install once (`metrics::set_global_recorder`).
pub(crate) fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
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
