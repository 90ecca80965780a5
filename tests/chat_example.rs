//! The chat example's rooms (examples/chat/rooms/) behind a real hub on 127.0.0.1: chat messages
//! go through the handler to the room, newcomers get a bounded history, the room learns who comes
//! and goes one person at a time, private messages reach only their user's tabs and the sender's,
//! bad messages, names and rooms past the limit are refused, empty rooms are removed, and pages
//! cannot bypass the handler.

mod common;

#[path = "../examples/chat/metrics.rs"]
mod chat_metrics;
#[path = "../examples/chat/rooms/mod.rs"]
#[allow(dead_code)] // the cluster's parts: tests/cluster.rs and e2e/cluster.test.mjs run them
mod rooms;

use std::time::Duration;

use common::{within, Client, TestServer};
use serde_json::{json, Value};

/// The most a join's `initialmessages` frame may be: the history's documented 32 KiB (as JSON,
/// rooms/room.rs) and the envelope around it.
const JOIN_BOUND: usize = 33 * 1024;
/// What a socket with a bad room name is told.
const ROOM_RULE: &str = "a room name is 1 to 32 letters (a-z, A-Z), digits, '-' or '_'";
/// What a socket with a bad nickname is told.
const NICKNAME_RULE: &str = "a nickname is 1 to 32 letters, digits, '-', '_' or '.'";

/// The example's hub and routes: the handler, and a publish endpoint with [`common::TOKEN`].
async fn server() -> TestServer {
    let hub = rooms::hub();
    let router = rooms::router_on(&hub, rooms::Store::default()).route_service(
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
/// `userlist`: who is in the room, the newcomer included.
async fn enter(server: &TestServer, room: &str, user: &str) -> Joined {
    let mut client = server
        .connect(&format!(
            "?groupId={}&userId={}",
            percent_encoded(room),
            percent_encoded(user)
        ))
        .await;
    let initial = client.recv().await;
    assert_eq!(
        initial["recipients"],
        json!([]),
        "receivers never see the list"
    );
    let joined = admitted(client, initial, room).await;
    assert!(
        joined
            .people
            .as_array()
            .is_some_and(|p| p.contains(&json!(user))),
        "{user} is listed in {room}: {}",
        joined.people
    );
    joined
}

/// `text` for a query string: every byte but ASCII letters and digits percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads what a socket let into `room` gets: the history (`initial`, read already), then the
/// list of who is there.
async fn admitted(mut client: Client, initial: Value, room: &str) -> Joined {
    assert_eq!(initial["action"], "initialmessages", "{initial}");
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

/// The next envelope other than a `userjoined` or `userleft` (people coming and going), which
/// must have `action`.
async fn recv_skipping_presence(client: &mut Client, action: &str) -> Value {
    loop {
        let envelope = client.recv().await;
        let presence = envelope["action"] == "userjoined" || envelope["action"] == "userleft";
        if !presence || envelope["action"] == action {
            assert_eq!(envelope["action"], action, "unexpected envelope {envelope}");
            return envelope;
        }
    }
}

/// Connects with `query` and expects to be turned away: returns the socket and the reason.
async fn turned_away(server: &TestServer, query: &str) -> (Client, String) {
    let mut client = server.connect(query).await;
    let answer = client.recv_action("refused").await;
    let reason = answer["message"]
        .as_str()
        .unwrap_or_else(|| panic!("the reason is a string: {answer}"))
        .to_owned();
    (client, reason)
}

/// Connects with `query` until the socket is let in (a room of the chat's may be on its way out:
/// its last socket has closed, and the handler hears of it in its own time).
async fn admitted_once_a_room_is_free(server: &TestServer, room: &str, user: &str) -> Joined {
    let query = format!("?groupId={room}&userId={user}");
    within(&format!("a socket with {query} let in"), async {
        loop {
            let mut client = server.connect(&query).await;
            let answer = client.recv().await;
            if answer["action"] != "refused" {
                return admitted(client, answer, room).await;
            }
            drop(client);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// One socket in each of the chat's [`rooms::MAX_ROOMS`] rooms, `room-0`, `room-1`, …
async fn fill_the_chat(server: &TestServer) -> Vec<Client> {
    let mut clients = Vec::with_capacity(rooms::MAX_ROOMS);
    for i in 0..rooms::MAX_ROOMS {
        clients.push(join(server, &format!("room-{i}"), "filler").await.0);
    }
    clients
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

/// The next envelope but presence changes is a chat line; returns its message `{user, text, time}`.
async fn chat_line(client: &mut Client) -> Value {
    let envelope = recv_skipping_presence(client, "broadcastchatmessage").await;
    envelope["message"].clone()
}

/// The next envelope but presence changes is `__error` `forbidden`; returns its detail.
async fn refused(client: &mut Client) -> String {
    let error = recv_skipping_presence(client, "__error").await;
    assert_eq!(error["message"]["code"], "forbidden", "{error}");
    error["message"]["detail"]
        .as_str()
        .expect("the detail is a string")
        .to_owned()
}

/// Proves that nothing but presence changes was routed to `clients` so far: a marker is the next
/// envelope each of them gets after those.
async fn heard_nothing(server: &TestServer, clients: &mut [&mut Client]) {
    server.send_marker();
    for client in clients {
        recv_skipping_presence(client, "marker").await;
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
    assert_eq!(ann.recv_action("userjoined").await["message"], "anonymous");

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

/// Proves that nothing at all was routed to `clients` so far: a marker is the next envelope.
async fn heard_nothing_at_all(server: &TestServer, clients: &mut [&mut Client]) {
    server.send_marker();
    for client in clients {
        client.recv_action("marker").await;
    }
}

// Fails on the chat before presence changes: the room got the whole `userlist` on every arrival
// and departure.
#[tokio::test]
async fn the_room_hears_one_arrival_or_departure_and_only_the_newcomer_gets_the_list() {
    let server = server().await;
    let Joined {
        client: mut ann,
        history,
        people,
    } = enter(&server, "p", "ann").await;
    assert_eq!(people, json!(["ann"]));
    assert!(history.is_empty());
    // A user of the same name in another room is someone else, and hears nothing of room p.
    let mut elsewhere = enter(&server, "q", "bob").await;

    // A newcomer gets the whole list, sorted; the room hears of one person, and only once.
    let mut bob = enter(&server, "p", "bob").await;
    assert_eq!(bob.people, json!(["ann", "bob"]));
    let joined = ann.recv_action("userjoined").await;
    assert_eq!(
        joined["recipients"],
        json!([]),
        "receivers never see the list"
    );
    assert_eq!(
        (&joined["message"], &joined["groupId"]),
        (&json!("bob"), &json!("p")),
        "{joined}"
    );
    heard_nothing_at_all(
        &server,
        &mut [&mut ann, &mut bob.client, &mut elsewhere.client],
    )
    .await;

    // Another tab of bob's is no newcomer: it gets the list, and nobody else hears a thing.
    let mut bob2 = enter(&server, "p", "bob").await;
    assert_eq!(bob2.people, json!(["ann", "bob"]));
    heard_nothing_at_all(
        &server,
        &mut [
            &mut ann,
            &mut bob.client,
            &mut bob2.client,
            &mut elsewhere.client,
        ],
    )
    .await;

    // Bob closes one tab, then the other: the room hears once, when his last tab has gone,
    // whichever of the two departures the handler sees first.
    drop(bob.client);
    drop(bob2.client);
    let left = ann.recv_action("userleft").await;
    assert_eq!(
        (&left["message"], &left["groupId"]),
        (&json!("bob"), &json!("p")),
        "{left}"
    );
    heard_nothing_at_all(&server, &mut [&mut ann, &mut elsewhere.client]).await;

    // Back with one tab: the room hears of it again.
    let bob = enter(&server, "p", "bob").await;
    assert_eq!(bob.people, json!(["ann", "bob"]));
    assert_eq!(ann.recv_action("userjoined").await["message"], "bob");
}

// Fails on the chat before the byte bound: 50 lines of 2,000 "é" made a 200 KB frame.
#[tokio::test]
async fn what_a_newcomer_is_sent_is_bounded_in_bytes() {
    let server = server().await;
    let (mut ann, _) = join(&server, "big", "ann").await;
    // The longest messages (2,000 characters, 4,000 bytes), numbered.
    let text = |i: usize| format!("{i:02}{}", "é".repeat(1998));
    for i in 0..50 {
        say(&mut ann, "big", &text(i)).await;
    }
    for i in 0..50 {
        assert_eq!(chat_line(&mut ann).await["text"], text(i));
    }

    let mut bob = server.connect("?groupId=big&userId=bob").await;
    let frame = bob.recv_text().await;
    assert!(
        frame.len() <= JOIN_BOUND,
        "a newcomer was sent {} bytes of history, over {JOIN_BOUND}",
        frame.len()
    );
    let initial: Value = serde_json::from_str(&frame).expect("JSON");
    assert_eq!(initial["action"], "initialmessages");
    // The newest lines, oldest first, as many as fit.
    let texts: Vec<&str> = initial["message"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| l["text"].as_str().expect("a text"))
        .collect();
    assert!(texts.len() >= 5, "only {} lines were kept", texts.len());
    let expected: Vec<String> = (50 - texts.len()..50).map(text).collect();
    assert_eq!(texts, expected);
}

// Fails on the chat before the room limit: every room name made a room.
#[tokio::test]
async fn past_the_room_limit_a_new_room_is_refused_and_an_existing_one_is_not() {
    let server = server().await;
    let mut fillers = fill_the_chat(&server).await;

    let (mut late, reason) = turned_away(&server, "?groupId=one-too-many&userId=ann").await;
    assert_eq!(
        reason,
        format!(
            "the chat has {} rooms, its limit: join one of them, or try again later",
            rooms::MAX_ROOMS
        )
    );
    // The socket is in no room: what it says is refused, and nobody hears of it.
    say(&mut late, "one-too-many", "hello?").await;
    assert_eq!(refused(&mut late).await, "you are not in a room");
    heard_nothing_at_all(&server, &mut [&mut late, &mut fillers[0]]).await;

    // Still the limit: a refused room was not made.
    turned_away(&server, "?groupId=another-one&userId=ann").await;
    // An existing room takes newcomers.
    let mut ann = enter(&server, "room-0", "ann").await;
    assert_eq!(ann.people, json!(["ann", "filler"]));
    say(&mut ann.client, "room-0", "made it").await;
    assert_eq!(chat_line(&mut fillers[0]).await["text"], "made it");
}

// Fails on the chat before rooms were removed: an abandoned room kept its history for good.
#[tokio::test]
async fn a_room_is_removed_with_its_history_when_its_last_person_leaves() {
    let server = server().await;
    let mut fillers = fill_the_chat(&server).await;
    say(&mut fillers[0], "room-0", "remember me?").await;
    chat_line(&mut fillers[0]).await;

    // Room 0 empties: its place is free for a new room.
    drop(fillers.remove(0));
    let fresh = admitted_once_a_room_is_free(&server, "fresh", "ann").await;
    assert_eq!(fresh.people, json!(["ann"]));
    assert!(fresh.history.is_empty());

    // Room 1 empties too: room 0, made anew in its place, has no history.
    drop(fillers.remove(0));
    let again = admitted_once_a_room_is_free(&server, "room-0", "bob").await;
    assert_eq!(again.people, json!(["bob"]));
    assert_eq!(
        again.history,
        Vec::<Value>::new(),
        "room 0's history went with it"
    );
}

// Fails on the chat before names were checked: any room name and nickname was let in.
#[tokio::test]
async fn bad_room_names_and_nicknames_are_refused_with_the_rule() {
    let server = server().await;
    let mut ann = enter(&server, "lobby", "ann").await;
    let long = "x".repeat(33);
    let bad = [
        (format!("?groupId={long}&userId=bob"), ROOM_RULE),
        ("?groupId=two%20words&userId=bob".to_owned(), ROOM_RULE),
        ("?groupId=caf%C3%A9&userId=bob".to_owned(), ROOM_RULE),
        ("?groupId=lobby&userId=".to_owned() + &long, NICKNAME_RULE),
        ("?groupId=lobby&userId=%3Cb%3Ebob".to_owned(), NICKNAME_RULE),
        (
            "?groupId=lobby&userId=bob%20smith".to_owned(),
            NICKNAME_RULE,
        ),
        ("?userId=bob%E2%80%8B".to_owned(), NICKNAME_RULE),
    ];
    for (query, rule) in bad {
        let (mut socket, reason) = turned_away(&server, &query).await;
        assert_eq!(reason, rule, "{query}");
        say(&mut socket, "lobby", "let me in").await;
        assert_eq!(refused(&mut socket).await, "you are not in a room");
        heard_nothing_at_all(&server, &mut [&mut socket, &mut ann.client]).await;
    }

    // At the limits: 32 characters, any script for a nickname, '-', '_' and '.'.
    let room = format!("{}-_9", "R".repeat(29));
    let nickname = format!("Jürgen.K_-{}", "é".repeat(22));
    let mut jurgen = enter(&server, &room, &nickname).await;
    assert_eq!(jurgen.people, json!([nickname]));
    say(&mut jurgen.client, &room, "hallo").await;
    assert_eq!(
        chat_line(&mut jurgen.client).await["user"],
        nickname.as_str()
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
    let envelope = recv_skipping_presence(&mut bob, "broadcastchatmessage").await;
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

/// The chat's `/metrics` is Prometheus's text format, as a Prometheus parser reads it, with the
/// hub's series: a socket open, and a message the handler refused.
#[tokio::test]
async fn metrics_are_served_as_prometheus_reads_them() {
    let recorder = chat_metrics::recorder();
    let handle = recorder.handle();
    // This thread's recorder: the test's runtime runs the server on this thread.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let hub = rooms::hub();
    let router = rooms::router_on(&hub, rooms::Store::default()).merge(chat_metrics::route(handle));
    let server = TestServer::serve(hub, router).await;
    let mut ann = enter(&server, "metrics", "ann").await.client;
    ann.send_json(&json!({"action": "broadcastchatmessage", "message": "   "}))
        .await;
    assert_eq!(refused(&mut ann).await, "the message is empty");

    let response = server.get("/metrics", None).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    let lines = response.body.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus's text format");
    let value = |metric: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value.clone())
    };
    use prometheus_parse::Value::{Counter, Gauge, Histogram};
    assert_eq!(value("wshub_connections", None), Some(Gauge(1.0)));
    // ann's one message, the empty one.
    assert_eq!(
        value("wshub_messages_received_total", None),
        Some(Counter(1.0))
    );
    let Some(Histogram(buckets)) = value("wshub_forward_duration_seconds", None) else {
        panic!(
            "forward durations as a histogram with buckets: {}",
            response.body
        )
    };
    let all = buckets
        .iter()
        .find(|b| b.less_than == f64::INFINITY)
        .expect("a +Inf bucket");
    // Her arrival (`__connect`) and her message.
    assert_eq!(all.count, 2.0, "two forwards: {buckets:?}");
    assert!(
        matches!(value("wshub_deliveries_total", None), Some(Counter(n)) if n >= 1.0),
        "the room's presence reached ann"
    );
    assert_eq!(
        value("wshub_connections_opened_total", None),
        Some(Counter(1.0))
    );
    assert_eq!(
        value("wshub_messages_refused_total", Some(("code", "forbidden"))),
        Some(Counter(1.0))
    );
}
