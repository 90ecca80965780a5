//! Every socket's work runs inside a `socket` span with its connection id and user, and a
//! forward, with the application's handler of it, inside a `forward` span within it: one
//! `RUST_LOG` filter follows a socket's life. Checked with a subscriber that records each event
//! with the spans around it, over a real server and a real client.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;
use common::{until, TestServer};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use wshub::{Forwarded, Forwarding, Hub, Reply};

/// A span's or an event's fields, as text.
#[derive(Debug, Clone, Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// An event, and the spans it happened in, outermost first.
#[derive(Debug, Clone)]
struct Seen {
    message: String,
    spans: Vec<(String, Fields)>,
}

impl Seen {
    fn span(&self, name: &str) -> Option<&Fields> {
        self.spans.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn find(&self, message: &str) -> Option<Seen> {
        let seen = self.0.lock().expect("lock");
        seen.iter().find(|s| s.message == message).cloned()
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = context
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let fields = span.extensions().get::<Fields>().cloned();
                        (span.name().to_owned(), fields.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = fields.0.remove("message").unwrap_or_default();
        self.0.lock().expect("lock").push(Seen { message, spans });
    }
}

#[tokio::test]
async fn a_sockets_life_and_its_handlers_run_in_its_span() {
    let recorder = Recorder::default();
    // This thread's subscriber: the test's runtime runs the server on this thread.
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));

    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/messages").actions(["ask"]))
        .build();
    let app = Router::new().route(
        "/hub/messages",
        post(|Forwarded { envelope, .. }: Forwarded| async move {
            tracing::info!(action = %envelope.action, "the handler ran");
            Reply::done()
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let mut ann = server.connect("?userId=ann&groupId=room").await;

    ann.send_json(&json!({"action": "ask", "message": "hi", "requestId": "r-1"}))
        .await;
    ann.recv_action("__reply").await;
    let handled = recorder
        .find("the handler ran")
        .expect("the handler's event");
    let names: Vec<&str> = handled.spans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["socket", "forward"], "{handled:?}");
    let socket = handled.span("socket").expect("the socket span");
    assert_eq!(socket.0.get("connection"), Some(&ann.id), "{handled:?}");
    assert_eq!(socket.0.get("user").map(String::as_str), Some("ann"));
    let forward = handled.span("forward").expect("the forward span");
    assert_eq!(forward.0.get("action").map(String::as_str), Some("ask"));
    assert_eq!(forward.0.get("request").map(String::as_str), Some("r-1"));

    let opened = recorder.find("socket open").expect("the open event");
    assert_eq!(
        opened.span("socket").and_then(|s| s.0.get("connection")),
        Some(&ann.id)
    );

    ann.ws.close(None).await.expect("close");
    until("the close event", || {
        recorder.find("socket closed").is_some()
    })
    .await;
    let closed = recorder.find("socket closed").expect("the close event");
    assert_eq!(
        closed.span("socket").and_then(|s| s.0.get("connection")),
        Some(&ann.id)
    );
}
