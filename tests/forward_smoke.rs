//! A first round trip through in-process forwarding: forwarded and relayed messages, in order.

mod common;

use axum::routing::post;
use axum::{Json, Router};
use common::TestServer;
use serde_json::json;
use wshub::{Envelope, Forwarded, Forwarding, Hub, Recipient};

#[tokio::test]
async fn in_process_forward_round_trip() {
    let hub = Hub::builder()
        .forwarding(Forwarding::in_process("/hub/messages").actions(["shout"]))
        .build();
    let app = Router::new().route(
        "/hub/messages",
        post(|Forwarded { envelope, sender }: Forwarded| async move {
            let text: String = envelope.message_as().unwrap();
            Json(
                Envelope::new("shouted")
                    .with_message(&text.to_uppercase())
                    .to(Recipient::all())
                    .from_user(sender.user_id),
            )
        }),
    );
    let server = TestServer::serve(hub, app).await;
    let mut a = server.connect("?userId=ann").await;
    let mut b = server.connect("").await;
    a.send_json(&json!({"action": "shout", "message": "hi"}))
        .await;
    a.send_json(&json!({"action": "plain", "message": "relayed", "recipients": [{"type": "all"}]}))
        .await;
    for c in [&mut a, &mut b] {
        let got = c.recv_action("shouted").await;
        assert_eq!(got["message"], "HI");
        assert_eq!(got["userId"], "ann");
        c.recv_action("plain").await;
    }
}
