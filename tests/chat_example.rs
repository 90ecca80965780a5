//! The chat example's rooms (examples/chat/rooms/) behind a real hub on 127.0.0.1: chat messages
//! go through the handler to the room, newcomers get the history, the room learns who comes and
//! goes, private messages reach only their user's tabs and the sender's, bad messages are
//! refused, and pages cannot bypass the handler.

mod common;

#[path = "../examples/chat/rooms/mod.rs"]
mod rooms;

use common::{Client, TestServer};
use serde_json::{json, Value};

/// The example's hub and routes: the handler, and a publish endpoint with [`common::TOKEN`].
async fn server() -> TestServer {
    let hub = rooms::hub();
    let router = rooms::router(&hub).route_service(
        "/api/publish",
        hub.publish_service().bearer_token(common::TOKEN),
    );
    TestServer::serve(hub, router).await
}

/// Someone in a room: the socket, the history it got and the people it was told about.
struct Joined {
    client: Client,
    history: Vec<Value>,
    people: Value,
}

/// Connects to `room` as `user`, reads `__connected`, the `initialmessages` history and the
/// `userlist`, both addressed to this connection or its room.
async fn enter(server: &TestServer, room: &str, user: &str) -> Joined {
    let mut client = server
        .connect(&format!("?groupId={room}&userId={user}"))
        .await;
    let initial = client.recv_action("initialmessages").await;
    assert_eq!(
        initial["recipients"],
        json!([]),
        "receivers never see the list"
    );
    let history = initial["message"]
        .as_array()
        .unwrap_or_else(|| panic!("initialmessages holds an array: {initial}"))
        .clone();
    let list = client.recv_action("userlist").await;
    assert_eq!(list["groupId"], room, "{list}");
    Joined {
        client,
        history,
        people: list["message"].clone(),
    }
}

/// [`enter`], for tests that do not look at the people.
async fn join(server: &TestServer, room: &str, user: &str) -> (Client, Vec<Value>) {
    let joined = enter(server, room, user).await;
    (joined.client, joined.history)
}

/// The next envelope other than a `userlist` (people coming and going), which must have `action`.
async fn recv_skipping_userlists(client: &mut Client, action: &str) -> Value {
    loop {
        let envelope = client.recv().await;
        if envelope["action"] != "userlist" || action == "userlist" {
            assert_eq!(envelope["action"], action, "unexpected envelope {envelope}");
            return envelope;
        }
    }
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

/// What the page sends for a private message.
async fn whisper(client: &mut Client, user: &str, text: &str) {
    client
        .send_json(&json!({
            "action": "broadcastchatmessage",
            "message": text,
            "recipients": [{"type": "user", "value": user}],
        }))
        .await;
}

/// The next envelope but `userlist`s is a chat line; returns its message `{user, text, time}`.
async fn chat_line(client: &mut Client) -> Value {
    let envelope = recv_skipping_userlists(client, "broadcastchatmessage").await;
    envelope["message"].clone()
}

/// The next envelope but `userlist`s is `__error` `forbidden`; returns its detail.
async fn refused(client: &mut Client) -> String {
    let error = recv_skipping_userlists(client, "__error").await;
    assert_eq!(error["message"]["code"], "forbidden", "{error}");
    error["message"]["detail"]
        .as_str()
        .expect("the detail is a string")
        .to_owned()
}

/// Proves that nothing but `userlist`s was routed to `clients` so far: a marker is the next
/// envelope each of them gets after those.
async fn heard_nothing(server: &TestServer, clients: &mut [&mut Client]) {
    server.send_marker();
    for client in clients {
        recv_skipping_userlists(client, "marker").await;
    }
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
    assert!(
        line.get("to").is_none(),
        "a line to the room names nobody: {line}"
    );

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
        "action": "userlist",
        "message": ["mallory"],
        "recipients": [{"type": "group", "value": "r1"}],
    }))
    .await;
    assert_eq!(refused(&mut ann).await, "clients may not relay this action");
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
    // Put in the lobby, it is listed there and hears it.
    let list = nobody.recv_action("userlist").await;
    assert_eq!(list["message"], json!(["ann", "anonymous"]));
    assert_eq!(
        ann.recv_action("userlist").await["message"],
        list["message"]
    );

    say(&mut nobody, "lobby", "hello").await;
    let line = chat_line(&mut ann).await;
    assert_eq!(
        (&line["user"], &line["text"]),
        (&json!("anonymous"), &json!("hello"))
    );
    assert_eq!(chat_line(&mut nobody).await, line);

    // Private messages need a nickname.
    whisper(&mut nobody, "ann", "psst").await;
    assert_eq!(
        refused(&mut nobody).await,
        "choose a nickname to send private messages"
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

#[tokio::test]
async fn the_room_learns_who_comes_and_goes_and_tabs_count_once() {
    let server = server().await;
    let Joined {
        client: mut ann,
        history,
        people,
    } = enter(&server, "p", "ann").await;
    assert_eq!(people, json!(["ann"]));
    assert!(history.is_empty());

    // A newcomer: the whole room hears of it, sorted.
    let mut bob = enter(&server, "p", "bob").await;
    assert_eq!(bob.people, json!(["ann", "bob"]));
    let list = ann.recv_action("userlist").await;
    assert_eq!(list["message"], json!(["ann", "bob"]));
    assert_eq!(list["groupId"], "p");
    assert_eq!(
        list["recipients"],
        json!([]),
        "receivers never see the list"
    );

    // Another tab of bob's is no newcomer: only that tab is told who is there. Another room,
    // even with a user of the same name, is a room of its own.
    let mut bob2 = enter(&server, "p", "bob").await;
    assert_eq!(bob2.people, json!(["ann", "bob"]));
    let mut elsewhere = enter(&server, "q", "ann").await;
    assert_eq!(elsewhere.people, json!(["ann"]));
    server.send_marker();
    for client in [
        &mut ann,
        &mut bob.client,
        &mut bob2.client,
        &mut elsewhere.client,
    ] {
        client.recv_action("marker").await;
    }

    // Bob closes one tab, then the other: the room hears once, when his last tab has gone,
    // whichever of the two departures the handler sees first.
    drop(bob.client);
    drop(bob2.client);
    let list = ann.recv_action("userlist").await;
    assert_eq!(list["message"], json!(["ann"]));
    server.send_marker();
    ann.recv_action("marker").await;
    elsewhere.client.recv_action("marker").await;

    // Back with one tab: the room hears of it again.
    let bob = enter(&server, "p", "bob").await;
    assert_eq!(bob.people, json!(["ann", "bob"]));
    assert_eq!(
        ann.recv_action("userlist").await["message"],
        json!(["ann", "bob"])
    );
}

#[tokio::test]
async fn a_private_message_reaches_only_its_user_and_the_senders_tabs() {
    let server = server().await;
    let (mut ann, _) = join(&server, "r", "ann").await;
    let (mut ann2, _) = join(&server, "r", "ann").await;
    let (mut bob, _) = join(&server, "r", "bob").await;
    let (mut bob2, _) = join(&server, "r", "bob").await;
    let (mut cat, _) = join(&server, "r", "cat").await;
    // A bob in another room is not in this conversation.
    let (mut bob_elsewhere, _) = join(&server, "s", "bob").await;

    whisper(&mut ann, "bob", "<i>just</i> between us").await;
    let envelope = recv_skipping_userlists(&mut bob, "broadcastchatmessage").await;
    let line = &envelope["message"];
    assert_eq!(line["user"], "ann");
    assert_eq!(line["to"], "bob", "marked private: {line}");
    assert_eq!(line["text"], "&lt;i&gt;just&lt;/i&gt; between us");
    assert!(is_rfc3339_utc(line["time"].as_str().unwrap()), "{line}");
    assert_eq!(
        (&envelope["userId"], &envelope["groupId"]),
        (&json!("ann"), &json!("r"))
    );
    // Addressed to four connections, but bob does not learn the connection ids of ann's tabs.
    assert_eq!(envelope["recipients"], json!([]), "{envelope}");

    for tab in [&mut bob2, &mut ann, &mut ann2] {
        assert_eq!(&chat_line(tab).await, line);
    }
    heard_nothing(
        &server,
        &mut [
            &mut ann,
            &mut ann2,
            &mut bob,
            &mut bob2,
            &mut cat,
            &mut bob_elsewhere,
        ],
    )
    .await;

    // It is not kept: a newcomer's history has only what the room heard.
    say(&mut cat, "r", "hello room").await;
    let public = chat_line(&mut bob).await;
    let (_dan, history) = join(&server, "r", "dan").await;
    assert_eq!(history, vec![public]);
}

#[tokio::test]
async fn private_messages_go_to_one_user_in_the_room() {
    let server = server().await;
    let (mut ann, _) = join(&server, "r", "ann").await;
    let (mut bob, _) = join(&server, "r", "bob").await;
    let (_zed, _) = join(&server, "elsewhere", "zed").await;

    whisper(&mut ann, "zed", "hi").await;
    assert_eq!(refused(&mut ann).await, "zed is not in this room");
    whisper(&mut ann, "", "hi").await;
    assert_eq!(refused(&mut ann).await, "a private message needs a user");
    ann.send_json(&json!({
        "action": "broadcastchatmessage",
        "message": "hi both",
        "recipients": [{"type": "user", "value": "bob"}, {"type": "user", "value": "ann"}],
    }))
    .await;
    assert_eq!(
        refused(&mut ann).await,
        "a private message goes to one user"
    );
    // The text rules hold for private messages too.
    whisper(&mut ann, "bob", "  ").await;
    assert_eq!(refused(&mut ann).await, "the message is empty");
    heard_nothing(&server, &mut [&mut bob]).await;

    // To oneself: only one's own tabs.
    whisper(&mut bob, "bob", "note to self").await;
    let line = chat_line(&mut bob).await;
    assert_eq!((&line["user"], &line["to"]), (&json!("bob"), &json!("bob")));
    heard_nothing(&server, &mut [&mut ann]).await;
}
