//! PROTOCOL.md §2, one test per row of the recipient table, over real sockets.
//!
//! Absence is proven without sleeping: after the envelope under test, a `marker` envelope goes to
//! everyone; routing is in order, so a connection that gets the marker first did not get the other.

mod common;

use common::{envelope, Client, TestServer};
use serde_json::json;

/// Publishes `recipients` then a marker to all, and returns which clients got the envelope.
async fn who_receives(
    server: &TestServer,
    clients: &mut [Client],
    recipients: serde_json::Value,
) -> Vec<usize> {
    let delivered = server
        .publish(&envelope("probe", json!("x"), recipients).to_string())
        .await;
    server
        .publish(&envelope("marker", json!(""), json!([{"type": "all"}])).to_string())
        .await;
    let got = common::got_probe(clients).await;
    assert_eq!(
        delivered as usize,
        got.len(),
        "delivered count matches what arrived"
    );
    got
}

/// Five clients: 0 ann@g1, 1 ann@g2, 2 bob@g1, 3 bob (no group), 4 anonymous (no group).
async fn five() -> (TestServer, Vec<Client>) {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for query in [
        "?userId=ann&groupId=g1",
        "?userId=ann&groupId=g2",
        "?userId=bob&groupId=g1",
        "?userId=bob",
        "",
    ] {
        clients.push(server.connect(query).await);
    }
    (server, clients)
}

#[tokio::test]
async fn all_selects_every_connection() {
    let (server, mut c) = five().await;
    assert_eq!(
        who_receives(&server, &mut c, json!([{"type": "all"}])).await,
        [0, 1, 2, 3, 4]
    );
}

#[tokio::test]
async fn group_selects_connections_in_group() {
    let (server, mut c) = five().await;
    assert_eq!(
        who_receives(&server, &mut c, json!([{"type": "group", "value": "g1"}])).await,
        [0, 2]
    );
}

#[tokio::test]
async fn user_selects_all_connections_of_that_user() {
    let (server, mut c) = five().await;
    assert_eq!(
        who_receives(&server, &mut c, json!([{"type": "user", "value": "bob"}])).await,
        [2, 3]
    );
}

#[tokio::test]
async fn connection_selects_the_one_connection() {
    let (server, mut c) = five().await;
    let id = c[3].id.clone();
    assert_eq!(
        who_receives(
            &server,
            &mut c,
            json!([{"type": "connection", "value": id}])
        )
        .await,
        [3]
    );
}

#[tokio::test]
async fn all_but_user_removes_that_users_connections() {
    let (server, mut c) = five().await;
    assert_eq!(
        who_receives(
            &server,
            &mut c,
            json!([{"type": "allButUser", "value": "ann"}])
        )
        .await,
        [2, 3, 4]
    );
    assert_eq!(
        who_receives(
            &server,
            &mut c,
            json!([{"type": "allExceptUser", "value": "bob"}])
        )
        .await,
        [0, 1, 4]
    );
}

#[tokio::test]
async fn all_but_group_removes_connections_in_group() {
    let (server, mut c) = five().await;
    assert_eq!(
        who_receives(
            &server,
            &mut c,
            json!([{"type": "allButGroup", "value": "g1"}])
        )
        .await,
        [1, 3, 4]
    );
}

#[tokio::test]
async fn all_but_connection_removes_the_connection() {
    let (server, mut c) = five().await;
    let id = c[0].id.clone();
    assert_eq!(
        who_receives(
            &server,
            &mut c,
            json!([{"type": "allButConnection", "value": id}])
        )
        .await,
        [1, 2, 3, 4]
    );
}

#[tokio::test]
async fn includes_unite_then_excludes_subtract_and_each_gets_it_once() {
    let (server, mut c) = five().await;
    let recipients = json!([
        {"type": "group", "value": "g1"},
        {"type": "user", "value": "ann"},
        {"type": "USER", "value": "bob"},
        {"type": "allButConnection", "value": c[2].id},
    ]);
    // 0 is in g1 and is ann: selected twice, delivered once (the marker comes right after).
    assert_eq!(who_receives(&server, &mut c, recipients).await, [0, 1, 3]);
}

#[tokio::test]
async fn empty_recipients_reach_the_default_group() {
    let (server, mut c) = five().await;
    assert_eq!(who_receives(&server, &mut c, json!([])).await, [3, 4]);
}

#[tokio::test]
async fn empty_recipients_reach_everyone_when_configured() {
    let server =
        TestServer::with(wshub::Hub::builder().empty_recipients(wshub::EmptyRecipients::Everyone))
            .await;
    let mut c = vec![
        server.connect("?groupId=g1").await,
        server.connect("").await,
    ];
    assert_eq!(who_receives(&server, &mut c, json!([])).await, [0, 1]);
}

#[tokio::test]
async fn unknown_recipient_type_is_invalid() {
    let server = TestServer::start().await;
    let mut client = server.connect("").await;
    let response = server
        .post(
            "/api/publish",
            Some(common::TOKEN),
            &envelope("x", json!(""), json!([{"type": "everyone", "value": ""}])).to_string(),
        )
        .await;
    assert_eq!(response.status, 400);
    assert!(response.json()["error"]
        .as_str()
        .unwrap()
        .contains("\"everyone\" is not a recipient type"));
    client
        .send(&envelope("x", json!(""), json!([{"type": "everyone"}])).to_string())
        .await;
    let error = client.recv_action("__error").await;
    assert_eq!(error["message"]["code"], "invalid_envelope");
}
