//! The chat example's rooms (examples/chat/rooms.rs) behind a real hub on 127.0.0.1: chat
//! messages go through the handler to the room, newcomers get the history, bad messages are
//! refused, and pages cannot bypass the handler.

mod common;

#[path = "../examples/chat/rooms.rs"]
mod rooms;

use common::{Client, TestServer};
use serde_json::{json, Value};

/// The example's hub and routes: the handler, and a publish endpoint with [`common::TOKEN`].
async fn server() -> TestServer {
    let hub = rooms::hub();
    let router = rooms::router().route_service(
        "/api/publish",
        hub.publish_service().bearer_token(common::TOKEN),
    );
    TestServer::serve(hub, router).await
}

/// Connects to `room` as `user`, reads `__connected` and returns the `initialmessages` history.
async fn join(server: &TestServer, room: &str, user: &str) -> (Client, Vec<Value>) {
    let mut client = server
        .connect(&format!("?groupId={room}&userId={user}"))
        .await;
    let initial = client.recv_action("initialmessages").await;
    assert_eq!(
        initial["recipients"],
        json!([{"type": "connection", "value": client.id}])
    );
    let history = initial["message"]
        .as_array()
        .unwrap_or_else(|| panic!("initialmessages holds an array: {initial}"))
        .clone();
    (client, history)
}

/// What the page sends.
async fn say(client: &mut Client, room: &str, text: &str) {
    client
        .send_json(&json!({
            "action": "broadcastchatmessage",
            "message": text,
            "recipients": [{"type": "group", "value": room}],
        }))
        .await;
}

/// The next envelope is a chat line; returns its message `{user, text, time}`.
async fn chat_line(client: &mut Client) -> Value {
    let envelope = client.recv_action("broadcastchatmessage").await;
    envelope["message"].clone()
}

/// The next envelope is `__error` `forbidden`; returns its detail.
async fn refused(client: &mut Client) -> String {
    let error = client.recv_action("__error").await;
    assert_eq!(error["message"]["code"], "forbidden", "{error}");
    error["message"]["detail"]
        .as_str()
        .expect("the detail is a string")
        .to_owned()
}

fn is_rfc3339_utc(time: &str) -> bool {
    let digits = |range: std::ops::Range<usize>| time[range].bytes().all(|b| b.is_ascii_digit());
    time.len() == 20
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && (&time[4..5], &time[7..8], &time[10..11]) == ("-", "-", "T")
        && (&time[13..14], &time[16..17], &time[19..]) == (":", ":", "Z")
}

#[tokio::test]
async fn a_message_reaches_the_room_escaped_and_newcomers_get_it() {
    let server = server().await;
    let (mut ann, history) = join(&server, "r1", "ann").await;
    assert!(history.is_empty());
    let (mut bob, _) = join(&server, "r1", "bob").await;
    let (mut cat, _) = join(&server, "r2", "cat").await;

    // The page's envelope, with a forged sender and a recipient outside the room: both ignored.
    ann.send_json(&json!({
        "action": "broadcastchatmessage",
        "message": r#"<b onclick="x()">Tom & Jerry's</b>"#,
        "userId": "mallory",
        "recipients": [{"type": "group", "value": "r2"}],
    }))
    .await;
    let line = chat_line(&mut bob).await;
    assert_eq!(line["user"], "ann");
    assert_eq!(
        line["text"],
        "&lt;b onclick=&quot;x()&quot;&gt;Tom &amp; Jerry&#39;s&lt;/b&gt;"
    );
    let time = line["time"].as_str().unwrap();
    assert!(is_rfc3339_utc(time), "{time}");
    assert_eq!(chat_line(&mut ann).await, line, "the sender is in the room");

    // Another room heard nothing: the marker is cat's next envelope.
    server.send_marker();
    cat.recv_action("marker").await;

    let (_dan, history) = join(&server, "r1", "dan").await;
    assert_eq!(history, vec![line]);
    let (_eve, history) = join(&server, "r2", "eve").await;
    assert!(history.is_empty(), "each room has its own history");
}

#[tokio::test]
async fn history_keeps_the_last_50_oldest_first() {
    let server = server().await;
    let (mut ann, _) = join(&server, "busy", "ann").await;
    for i in 0..55 {
        say(&mut ann, "busy", &format!("message {i}")).await;
    }
    for i in 0..55 {
        assert_eq!(chat_line(&mut ann).await["text"], format!("message {i}"));
    }
    let (_bob, history) = join(&server, "busy", "bob").await;
    let texts: Vec<&str> = history
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (5..55).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn empty_long_and_non_text_messages_are_refused() {
    let server = server().await;
    let (mut ann, _) = join(&server, "r1", "ann").await;
    let (mut bob, _) = join(&server, "r1", "bob").await;

    say(&mut ann, "r1", "").await;
    assert_eq!(refused(&mut ann).await, "the message is empty");
    say(&mut ann, "r1", " \n\t").await;
    assert_eq!(refused(&mut ann).await, "the message is empty");
    say(&mut ann, "r1", &"é".repeat(2001)).await;
    assert_eq!(
        refused(&mut ann).await,
        "the message is over 2000 characters"
    );
    ann.send_json(&json!({"action": "broadcastchatmessage", "message": {"text": "hi"}}))
        .await;
    assert_eq!(refused(&mut ann).await, "a chat message is a string");

    // 2,000 characters (4,000 bytes) is the limit, not over it.
    let longest = "é".repeat(2000);
    say(&mut ann, "r1", &longest).await;
    assert_eq!(chat_line(&mut bob).await["text"], longest.as_str());
    let (_cat, history) = join(&server, "r1", "cat").await;
    assert_eq!(history.len(), 1, "refused messages are not kept");
}

#[tokio::test]
async fn pages_cannot_bypass_the_handler() {
    let server = server().await;
    let (mut ann, _) = join(&server, "r1", "ann").await;
    let (mut bob, _) = join(&server, "r1", "bob").await;

    ann.send_json(&json!({
        "action": "chat",
        "message": "<script>",
        "recipients": [{"type": "group", "value": "r1"}],
    }))
    .await;
    assert_eq!(refused(&mut ann).await, "clients may not relay this action");
    server.send_marker();
    bob.recv_action("marker").await;

    // Nor can anyone post to the handler's route from outside.
    let response = server
        .post(
            "/hub/chat",
            None,
            r#"{"action":"broadcastchatmessage","message":"hi"}"#,
        )
        .await;
    assert_eq!(response.status, 403, "{response:?}");
}

#[tokio::test]
async fn without_user_or_room_it_is_anonymous_in_the_lobby() {
    let server = server().await;
    let (mut ann, _) = join(&server, "lobby", "ann").await;
    let mut nobody = server.connect("").await;
    let initial = nobody.recv_action("initialmessages").await;
    assert_eq!(initial["message"], json!([]));

    say(&mut nobody, "lobby", "hello").await;
    let line = chat_line(&mut ann).await;
    assert_eq!(
        (&line["user"], &line["text"]),
        (&json!("anonymous"), &json!("hello"))
    );
}

#[tokio::test]
async fn published_chat_lines_reach_the_room() {
    let server = server().await;
    let (mut ann, _) = join(&server, "lobby", "ann").await;
    let line = json!({"user": "curl", "text": "hello from curl", "time": "2025-01-01T00:00:00Z"});
    let delivered = server
        .publish(
            &json!({
                "action": "broadcastchatmessage",
                "message": line,
                "recipients": [{"type": "group", "value": "lobby"}],
            })
            .to_string(),
        )
        .await;
    assert_eq!(delivered, 1);
    assert_eq!(chat_line(&mut ann).await, line);
}
