//! The hub's metrics, read through a `metrics` recorder of this test's own over a real server
//! and real clients: sockets open and opened, closes by reason, refused upgrades by status,
//! refused messages by code, failed forwards by code.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{until, TestServer};
use futures_util::SinkExt;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wshub::{Forwarding, Hub};

/// Every counter and gauge by name and labels (`name{label=value}`), as the hub registered it.
#[derive(Clone, Default)]
struct Readings(Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>);

impl Readings {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        let mut cells = self.0.lock().expect("lock");
        Arc::clone(cells.entry(name).or_default())
    }

    fn counter(&self, name: &str) -> u64 {
        let cells = self.0.lock().expect("lock");
        cells.get(name).map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn gauge(&self, name: &str) -> f64 {
        let cells = self.0.lock().expect("lock");
        cells
            .get(name)
            .map_or(f64::NAN, |c| f64::from_bits(c.load(Ordering::Acquire)))
    }
}

impl Recorder for Readings {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn sockets_closes_and_refusals_are_counted() {
    let readings = Readings::default();
    // This thread's recorder: the test's runtime runs the server on this thread.
    let _guard = metrics::set_default_local_recorder(&readings);
    let hub = Hub::builder()
        .forwarding(
            Forwarding::in_process("/hub/messages")
                .actions(["ask"])
                .timeout(Duration::from_secs(5)),
        )
        .build();
    let app = Router::new()
        .route(
            "/hub/messages",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route_service(
            "/api/publish",
            hub.publish_service().bearer_token(common::TOKEN),
        );
    let server = TestServer::serve(hub.clone(), app).await;

    let mut ann = server.connect("?userId=ann").await;
    let mut bob = server.connect("?userId=bob").await;
    assert_eq!(readings.counter("wshub_connections_opened_total"), 2);
    assert_eq!(readings.gauge("wshub_connections"), 2.0);

    // Refused messages by code, a failed forward by its code.
    ann.send("not json").await;
    ann.recv_action("__error").await;
    ann.send_json(&json!({"action": "__connected"})).await;
    ann.recv_action("__error").await;
    ann.send_json(&json!({"action": "ask", "message": "x"}))
        .await;
    ann.recv_action("__error").await;
    assert_eq!(
        readings.counter("wshub_messages_refused_total{code=invalid_envelope}"),
        1
    );
    assert_eq!(
        readings.counter("wshub_messages_refused_total{code=forbidden}"),
        1
    );
    assert_eq!(
        readings.counter("wshub_forwards_failed_total{code=forward_failed}"),
        1
    );

    // A refused upgrade by its status.
    let refused = server
        .try_connect("", &[("origin", "https://elsewhere.example")])
        .await;
    assert!(refused.is_err(), "a foreign origin is refused");
    assert_eq!(
        readings.counter("wshub_upgrades_refused_total{status=403}"),
        1
    );

    // Closes by reason: a protocol error, then a logout.
    bob.ws
        .send(Message::binary(vec![0]))
        .await
        .expect("a binary frame");
    bob.expect_end().await;
    until("bob's close to be counted", || {
        readings.counter("wshub_connections_closed_total{reason=protocol_error}") == 1
    })
    .await;
    assert_eq!(hub.disconnect_user("ann", wshub::LOGGED_OUT).await, Ok(1));
    ann.expect_close().await;
    until("ann's close to be counted", || {
        readings.counter("wshub_connections_closed_total{reason=application}") == 1
    })
    .await;
    assert_eq!(readings.gauge("wshub_connections"), 0.0);
    assert_eq!(readings.counter("wshub_connections_opened_total"), 2);
}
