//! PROTOCOL.md §4: what happens to the envelopes clients send, over real sockets.
//!
//! Absence is proven without sleeping: after the envelope under test, a `marker` envelope goes to
//! everyone; routing is in order, so a connection that gets the marker first did not get the other.

mod common;

use common::{envelope, within, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn client_envelope_is_relayed_to_its_recipients() {
    let server = TestServer::start().await;
    let mut sender = server.connect("?groupId=s").await;
    let mut in_group = server.connect_many(2, "?groupId=g1").await;
    let mut outside = server.connect("?groupId=g2").await;

    sender
        .send_json(&envelope(
            "chat",
            json!("hello g1"),
            json!([{"type": "group", "value": "g1"}]),
        ))
        .await;
    for client in &mut in_group {
        let got = client.recv_action("chat").await;
        assert_eq!(got["message"], "hello g1");
        assert_eq!(got["groupId"], "s", "sent from the sender's group: {got}");
    }
    // Relayed only to its recipients: neither the sender nor g2 got it.
    server.send_marker();
    sender.recv_action("marker").await;
    outside.recv_action("marker").await;

    // A connection recipient reaches exactly that one connection, even across groups.
    let target = outside.id.clone();
    sender
        .send_json(&envelope(
            "direct",
            json!(1),
            json!([{"type": "connection", "value": target}]),
        ))
        .await;
    assert_eq!(outside.recv_action("direct").await["message"], 1);
    server.send_marker();
    for client in in_group.iter_mut().chain([&mut sender]) {
        client.recv_action("marker").await;
    }
}

#[tokio::test]
async fn hub_replaces_user_and_group_with_the_connections_identity() {
    let server = TestServer::start().await;
    let mut ann = server.connect("?userId=ann&groupId=g1").await;
    let mut watcher = server.connect("?groupId=watch").await;

    ann.send_json(&json!({
        "action": "chat",
        "message": "hi",
        "userId": "mallory",
        "groupId": "evil",
        "recipients": [{"type": "group", "value": "watch"}],
    }))
    .await;
    let got = watcher.recv_action("chat").await;
    assert_eq!(
        got["userId"], "ann",
        "the hub must not let ann speak as mallory: {got}"
    );
    assert_eq!(
        got["groupId"], "g1",
        "the hub must not let ann speak for group evil: {got}"
    );

    // Missing or null fields get the connection's identity as well.
    ann.send_json(&json!({
        "action": "chat2",
        "userId": null,
        "recipients": [{"type": "group", "value": "watch"}],
    }))
    .await;
    let got = watcher.recv_action("chat2").await;
    assert_eq!(got["userId"], "ann", "{got}");
    assert_eq!(got["groupId"], "g1", "{got}");
}

/// PROTOCOL.md §4: the ids a receiver sees are always the connection's own. An anonymous
/// connection has none, so it cannot pass its envelopes off as alice's in alice's group.
#[tokio::test]
async fn anonymous_connection_cannot_speak_as_anyone() {
    let server = TestServer::start().await;
    let mut anonymous = server.connect("").await;
    let mut alice = server.connect("?userId=alice&groupId=team").await;
    let mut teammate = server.connect("?userId=bob&groupId=team").await;

    anonymous
        .send_json(&json!({
            "action": "chat",
            "message": "transfer the money",
            "userId": "alice",
            "groupId": "team",
            "recipients": [{"type": "group", "value": "team"}],
        }))
        .await;
    for client in [&mut alice, &mut teammate] {
        let got = client.recv_action("chat").await;
        assert_eq!(
            got["userId"], "",
            "an anonymous sender spoke as alice: {got}"
        );
        assert_eq!(
            got["groupId"], "",
            "an anonymous sender spoke for team: {got}"
        );
        assert_eq!(got["message"], "transfer the money", "{got}");
    }

    // Nothing given: the defaults of §1.
    anonymous
        .send_json(&json!({
            "action": "chat2",
            "recipients": [{"type": "group", "value": "team"}],
        }))
        .await;
    let got = teammate.recv_action("chat2").await;
    assert_eq!(got["userId"], "", "{got}");
    assert_eq!(got["groupId"], "", "{got}");
    assert_eq!(got["message"], "", "{got}");
    alice.recv_action("chat2").await;

    // A connection with a user but no group cannot claim a group either.
    let mut carol = server.connect("?userId=carol").await;
    carol
        .send_json(&json!({
            "action": "chat3",
            "groupId": "team",
            "recipients": [{"type": "group", "value": "team"}],
        }))
        .await;
    for client in [&mut alice, &mut teammate] {
        let got = client.recv_action("chat3").await;
        assert_eq!(got["userId"], "carol", "{got}");
        assert_eq!(got["groupId"], "", "carol spoke for team: {got}");
    }
}

#[tokio::test]
async fn messages_from_one_connection_arrive_in_the_order_sent() {
    const N: u64 = 200;
    let server = TestServer::start().await;
    let mut sender = server.connect("?userId=ann").await;
    let receivers = server.connect_many(3, "?groupId=g1").await;

    // Each receiver reads concurrently with the sending, as a browser would.
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..N {
                    let envelope = client.recv_action("n").await;
                    got.push(envelope["message"].as_u64().expect("a number"));
                }
                got
            })
        })
        .collect();
    for i in 0..N {
        sender
            .send_json(&envelope(
                "n",
                json!(i),
                json!([{"type": "group", "value": "g1"}]),
            ))
            .await;
    }
    let expected: Vec<u64> = (0..N).collect();
    for reader in readers {
        let got = within("a receiver to read every message", reader)
            .await
            .expect("reader task");
        assert_eq!(got, expected, "messages arrive in the order they were sent");
    }
}

#[tokio::test]
async fn reserved_action_from_a_client_is_refused_as_forbidden() {
    let server = TestServer::start().await;
    let mut client = server.connect("?userId=ann").await;
    let mut other = server.connect("").await;

    for action in ["__connected", "__error", "__anything"] {
        client
            .send_json(&envelope(action, json!("spoof"), json!([{"type": "all"}])))
            .await;
        let error = client.recv_action("__error").await;
        assert_eq!(error["message"]["code"], "forbidden", "{error}");
        assert!(
            error["message"]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{error}"
        );
    }
    // Not relayed to anyone.
    server.send_marker();
    client.recv_action("marker").await;
    other.recv_action("marker").await;

    // The socket stays open and keeps working; a single underscore is not reserved.
    client
        .send_json(&envelope("_fine", json!("ok"), json!([{"type": "all"}])))
        .await;
    assert_eq!(client.recv_action("_fine").await["message"], "ok");
    assert_eq!(other.recv_action("_fine").await["message"], "ok");
    assert_eq!(server.hub.local_connection_count(), 2);
}

#[tokio::test]
async fn message_passes_through_untouched() {
    let server = TestServer::start().await;
    let mut sender = server.connect("").await;
    let mut receiver = server.connect("?groupId=watch").await;

    // Key order, the digits of numbers (1.50, an integer beyond u64, an exponent), escapes and
    // whitespace are the sender's; a string that holds JSON stays a string.
    let messages = [
        r#"{"z": 1, "a": 1.50, "m": [true, null, "x\u00e9\n"], "big": 123456789012345678901234567890, "e": 1E+2}"#,
        r#""{\"b\":2,\"a\":1.0}""#,
        r#"[3, 2.000, -0, {}]"#,
        r#"-1.50e-3"#,
        r#"null"#,
    ];
    for (i, message) in messages.iter().enumerate() {
        let text = format!(
            r#"{{"action":"raw{i}","message":{message},"recipients":[{{"type":"group","value":"watch"}}]}}"#
        );
        sender.send(&text).await;
        let frame = receiver.recv_text().await;
        let parsed: Value = serde_json::from_str(&frame).expect("the frame is JSON");
        assert_eq!(parsed["action"], format!("raw{i}"), "{frame}");
        assert!(
            frame.contains(&format!(r#""message":{message}"#)),
            "message {message} must arrive byte-identical, got frame {frame}"
        );
    }
    // A string message stays a string (not parsed into an object).
    sender
        .send_json(&envelope(
            "s",
            json!("{\"a\":1}"),
            json!([{"type": "group", "value": "watch"}]),
        ))
        .await;
    assert_eq!(
        receiver.recv_action("s").await["message"],
        json!("{\"a\":1}")
    );
}

/// PROTOCOL.md §1: a receiver gets the envelope with `recipients: []`, whatever it was addressed
/// to. The list is the sender's business: it would tell every receiver the other recipients'
/// connection ids (capabilities) and user ids, and whom the sender left out.
#[tokio::test]
async fn receivers_see_an_empty_recipient_list() {
    let server = TestServer::start().await;
    let mut clients = vec![
        server.connect("?userId=ann&groupId=s").await,
        server.connect("?userId=bob&groupId=g1").await,
        server.connect("?userId=carol&groupId=g2").await,
    ];
    let (bob, carol) = (clients[1].id.clone(), clients[2].id.clone());
    let cases = [
        ("group", json!([{"type": "group", "value": "g1"}]), vec![1]),
        ("user", json!([{"type": "user", "value": "carol"}]), vec![2]),
        (
            "connection",
            json!([{"type": "connection", "value": bob}, {"type": "connection", "value": carol}]),
            vec![1, 2],
        ),
        ("all", json!([{"type": "all"}]), vec![0, 1, 2]),
        (
            "exclusion",
            json!([
                {"type": "allButUser", "value": "ann"},
                {"type": "allButConnection", "value": carol},
            ]),
            vec![1],
        ),
    ];
    for (action, recipients, receivers) in cases {
        clients[0]
            .send_json(&envelope(action, json!("hi"), recipients))
            .await;
        for &at in &receivers {
            let frame = clients[at].recv_text().await;
            let got: Value = serde_json::from_str(&frame).expect("the frame is JSON");
            assert_eq!(got["action"], action, "{frame}");
            assert_eq!(
                got["recipients"],
                json!([]),
                "{action}: receiver {at} saw the sender's recipient list: {frame}"
            );
            assert!(
                frame.ends_with(r#","recipients":[]}"#),
                "the field stays, empty: {frame}"
            );
        }
    }
    // Each went to its recipients only: everyone's next envelope is the marker.
    server.send_marker();
    for client in &mut clients {
        client.recv_action("marker").await;
    }
}
