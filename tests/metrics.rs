//! The hub's metrics, read through a `metrics` recorder of this test's own over a real server
//! and real clients: sockets open and opened, closes by reason, refused upgrades by status,
//! refused messages by code, failed forwards by code; messages in, envelopes sent, deliveries,
//! bytes written, what the memory budget holds, forward durations, publish requests by status.

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
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wshub::{Envelope, Forwarding, Hub, Recipient, Reply};

/// Every counter and gauge by name and labels (`name{label=value}`), as the hub registered it,
/// and every histogram's samples.
#[derive(Clone, Default)]
struct Readings {
    cells: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    samples: Arc<Mutex<BTreeMap<String, Arc<Samples>>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().expect("lock").push(value);
    }
}

fn name_of(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Readings {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let mut cells = self.cells.lock().expect("lock");
        Arc::clone(cells.entry(name_of(key)).or_default())
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        let samples = self.samples.lock().expect("lock");
        samples
            .get(name)
            .map_or_else(Vec::new, |s| s.0.lock().expect("lock").clone())
    }

    fn counter(&self, name: &str) -> u64 {
        let cells = self.cells.lock().expect("lock");
        cells.get(name).map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn gauge(&self, name: &str) -> f64 {
        let cells = self.cells.lock().expect("lock");
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

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut samples = self.samples.lock().expect("lock");
        Histogram::from_arc(Arc::clone(samples.entry(name_of(key)).or_default()))
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

    // Refused upgrades by status and reason: a foreign origin, a second Sec-WebSocket-Version.
    let refused = server
        .try_connect("", &[("origin", "https://elsewhere.example")])
        .await;
    assert!(refused.is_err(), "a foreign origin is refused");
    assert_eq!(
        readings.counter("wshub_upgrades_refused_total{status=403,reason=origin}"),
        1
    );
    let broken = server
        .raw(&server.upgrade_request("Sec-WebSocket-Version: 13\r\n"))
        .await;
    assert_eq!(broken.status, 400, "{broken:?}");
    assert_eq!(
        readings.counter("wshub_upgrades_refused_total{status=400,reason=bad_handshake}"),
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

#[tokio::test]
async fn traffic_and_what_waits_for_sockets_are_measured() {
    let readings = Readings::default();
    let _guard = metrics::set_default_local_recorder(&readings);
    let hub = Hub::builder()
        .max_pending_bytes(64 * 1024)
        .max_buffered_bytes(32 << 20)
        .forwarding(Forwarding::in_process("/hub/messages").actions(["ask"]))
        .build();
    let app = Router::new()
        .route("/hub/messages", post(|| async { Reply::done() }))
        .route_service(
            "/api/publish",
            hub.publish_service().bearer_token(common::TOKEN),
        );
    let server = TestServer::serve(hub.clone(), app).await;
    assert_eq!(
        readings.gauge("wshub_buffered_bytes_limit"),
        (32 << 20) as f64
    );

    let mut ann = server.connect("?userId=ann").await;
    let mut bob = server.connect("?userId=bob").await;
    let mut read = 0;
    // A relay: one message in, one envelope sent, one delivery.
    bob.send_json(&json!({"action": "say", "message": "hi", "recipients": [{"type": "user", "value": "ann"}]}))
        .await;
    read += ann.recv_action("say").await.to_string().len();
    assert_eq!(readings.counter("wshub_messages_received_total"), 1);
    assert_eq!(readings.counter("wshub_envelopes_sent_total"), 1);
    assert_eq!(readings.counter("wshub_deliveries_total"), 1);

    // A forward: its duration is recorded.
    ann.send_json(&json!({"action": "ask", "requestId": "r1"}))
        .await;
    read += ann.recv_action("__reply").await.to_string().len();
    assert_eq!(readings.counter("wshub_messages_received_total"), 2);
    let durations = readings.samples("wshub_forward_duration_seconds");
    assert_eq!(durations.len(), 1, "one forward: {durations:?}");
    assert!((0.0..5.0).contains(&durations[0]), "{durations:?}");

    // The publish endpoint: two envelopes to both, and a refused request.
    let batch = json!([
        {"action": "news", "message": 1, "recipients": [{"type": "user", "value": "ann"}, {"type": "user", "value": "bob"}]},
        {"action": "news", "message": 2, "recipients": [{"type": "user", "value": "ann"}, {"type": "user", "value": "bob"}]},
    ]);
    let published = server
        .post("/api/publish", Some(common::TOKEN), &batch.to_string())
        .await;
    assert_eq!(published.status, 200);
    assert_eq!(server.post("/api/publish", None, "[]").await.status, 401);
    for client in [&mut ann, &mut bob] {
        for _ in 0..2 {
            read += client.recv_action("news").await.to_string().len();
        }
    }
    assert_eq!(
        readings.counter("wshub_publish_requests_total{status=200}"),
        1
    );
    assert_eq!(
        readings.counter("wshub_publish_requests_total{status=401}"),
        1
    );
    assert_eq!(readings.counter("wshub_envelopes_sent_total"), 3);
    assert_eq!(readings.counter("wshub_deliveries_total"), 5);
    let written = readings.counter("wshub_written_bytes_total");
    assert!(
        written as usize >= read,
        "{written} bytes written, {read} bytes of envelopes read"
    );
    // Everything was read: nothing is held any more.
    until("the frames to be written and let go", || {
        readings.gauge("wshub_buffered_bytes") == 0.0
            && readings.gauge("wshub_queued_frames") == 0.0
    })
    .await;

    // A client that reads nothing holds what waits for it, until it is closed as a slow consumer.
    let _sloth = server.connect("?userId=sloth").await;
    let big = Envelope::new("big")
        .with_message(&"x".repeat(16 * 1024))
        .to(Recipient::user("sloth"));
    let mut held = 0.0_f64;
    let mut sent = 0;
    while hub.send(&big) == 1 {
        held = held.max(readings.gauge("wshub_buffered_bytes"));
        sent += 1;
        assert!(sent < 4096, "64 MB queued to a client that reads nothing");
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        held >= 32.0 * 1024.0,
        "at most {held} bytes seen held for the slow reader"
    );
    until("the slow consumer's close to be counted", || {
        readings.counter("wshub_connections_closed_total{reason=slow_consumer}") == 1
    })
    .await;
    until("what the slow consumer held to be let go", || {
        readings.gauge("wshub_buffered_bytes") == 0.0
            && readings.gauge("wshub_queued_frames") == 0.0
    })
    .await;
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_nodes_traffic_and_health_in_redis_are_measured() {
    use common::cluster::{node_of, Node, Redis};
    use common::envelope;

    let mut redis = Redis::start().await;
    // Another node, a process of its own, reporting nowhere.
    let other = Node::start(&redis).await;
    let readings = Readings::default();
    let _guard = metrics::set_default_local_recorder(&readings);
    let cluster = wshub::RedisCluster::new(&redis.url()).expect("a Redis URL");
    let hub = Hub::builder().cluster(cluster).build();
    let server = TestServer::serve(hub.clone(), Router::new()).await;
    until("this node up in a cluster of two", || {
        readings.gauge("wshub_cluster_up") == 1.0 && readings.gauge("wshub_cluster_nodes") == 2.0
    })
    .await;

    let mut ann = server.connect("?userId=ann").await;
    let mut bob = other.connect("?userId=bob").await;
    redis.until_member("wshub:u:ann", node_of(&ann.id)).await;
    redis.until_member("wshub:u:bob", node_of(&bob.id)).await;
    // Out through Redis, and in from the other node.
    hub.send(&Envelope::new("out").to(Recipient::user("bob")));
    bob.recv_action("out").await;
    until("the envelope published to be counted", || {
        readings.counter("wshub_cluster_published_total") >= 1
    })
    .await;
    let back = envelope("in", json!(1), json!([{"type": "user", "value": "ann"}]));
    let response = other
        .post("/api/publish", Some(common::TOKEN), &back.to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    ann.recv_action("in").await;
    assert_eq!(readings.counter("wshub_cluster_received_total"), 1);
    // Each heartbeat's probe comes back through the subscription.
    until("a probe to come back", || {
        !readings
            .samples("wshub_cluster_receive_lag_seconds")
            .is_empty()
    })
    .await;
    let lags = readings.samples("wshub_cluster_receive_lag_seconds");
    assert!(
        lags.iter().all(|&lag| (0.0..5.0).contains(&lag)),
        "{lags:?}"
    );

    // Redis dies: errors, and the node says it is down; back, after a gap.
    assert_eq!(readings.counter("wshub_cluster_gaps_total"), 0);
    redis.kill().await;
    until("the subscriber to fail and the node to be down", || {
        readings.counter("wshub_cluster_redis_errors_total{task=subscriber}") >= 1
            && readings.gauge("wshub_cluster_up") == 0.0
    })
    .await;
    let _redis = Redis::start_on(redis.port).await;
    until("the node to be up again after one gap", || {
        readings.counter("wshub_cluster_gaps_total") == 1
            && readings.gauge("wshub_cluster_up") == 1.0
    })
    .await;
}
