//! The `Hub` handle from Rust code: `send` routes as PROTOCOL.md §2 says, `join`/`leave` change
//! group membership at run time, and the counts and look-ups follow the sockets, over real TCP.
//!
//! Absence is proven without sleeping: after the envelope under test, a `marker` envelope goes to
//! everyone; routing is in order, so a connection that reads the marker first did not get the other.

mod common;

use std::collections::BTreeSet;

use common::{until, within, Client, TestServer};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wshub::{ConnectionId, Envelope, Hub, Recipient};

/// The id the hub announced to `client`, parsed.
fn id_of(client: &Client) -> ConnectionId {
    let id = client
        .id
        .parse::<ConnectionId>()
        .unwrap_or_else(|e| panic!("{:?} is not a connection id: {e}", client.id));
    assert_eq!(id.to_string(), client.id, "a connection id round-trips");
    id
}

fn set<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    items.into_iter().collect()
}

/// Sends `envelope` with `Hub::send`, then a marker to all, and returns which clients got the
/// envelope; checks that `send`'s count matches what arrived and that what arrived is `envelope`
/// without its recipients (PROTOCOL.md §1).
async fn who_receives(hub: &Hub, clients: &mut [Client], envelope: &Envelope) -> Vec<usize> {
    let delivered = hub.send(envelope);
    assert_eq!(
        hub.send(&Envelope::new("marker").to(Recipient::all())),
        clients.len(),
        "the marker reaches everyone"
    );
    let mut got = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let first = client.recv().await;
        if first["action"] == envelope.action.as_str() {
            let mut sent: serde_json::Value =
                serde_json::from_str(&envelope.to_json()).expect("to_json is JSON");
            sent["recipients"] = json!([]);
            assert_eq!(
                first, sent,
                "client {i} got the envelope as sent, without recipients"
            );
            got.push(i);
            client.recv_action("marker").await;
        } else {
            assert_eq!(first["action"], "marker", "client {i} got {first}");
        }
    }
    assert_eq!(delivered, got.len(), "send's count matches what arrived");
    got
}

/// Five clients: 0 ann@g1, 1 ann@g2, 2 bob@g1, 3 bob (no group), 4 anonymous (no group).
async fn five() -> (TestServer, Vec<Client>) {
    let server = TestServer::start().await;
    let clients = five_on(&server).await;
    (server, clients)
}

#[tokio::test]
async fn send_returns_delivered_count_and_reaches_the_sockets() {
    let (server, mut c) = five().await;
    let hub = &server.hub;
    let news = Envelope::new("news")
        .with_message(&json!({"headline": "hello", "n": [1, 2]}))
        .from_user("backend")
        .from_group("ops")
        .to(Recipient::group("g1"));
    assert_eq!(who_receives(hub, &mut c, &news).await, [0, 2]);

    let a = Envelope::new("a").with_message("x");
    for (envelope, expected) in [
        (a.clone().to(Recipient::all()), vec![0, 1, 2, 3, 4]),
        (a.clone().to(Recipient::user("ann")), vec![0, 1]),
        (a.clone().to(Recipient::connection(id_of(&c[3]))), vec![3]),
        (a.clone().to(Recipient::all_but_user("bob")), vec![0, 1, 4]),
        (a.clone().to(Recipient::all_but_group("g1")), vec![1, 3, 4]),
        (
            a.clone().to(Recipient::all_but_connection(&c[4].id)),
            vec![0, 1, 2, 3],
        ),
        (
            a.clone()
                .to(Recipient::group("g1"))
                .to(Recipient::user("ann"))
                .to(Recipient::all_but_connection(id_of(&c[2]))),
            vec![0, 1],
        ),
        (a.clone(), vec![3, 4]),
        (a.clone().to(Recipient::group("nobody")), vec![]),
        (a.clone().to(Recipient::user("nobody")), vec![]),
    ] {
        assert_eq!(
            who_receives(hub, &mut c, &envelope).await,
            expected,
            "{envelope:?}"
        );
    }
}

#[tokio::test]
async fn send_delivers_in_order() {
    let server = TestServer::start().await;
    let mut client = server.connect("?groupId=g1").await;
    for i in 0..100 {
        let envelope = Envelope::new("seq")
            .with_message(&i)
            .to(Recipient::group("g1"));
        assert_eq!(server.hub.send(&envelope), 1);
    }
    for i in 0..100 {
        assert_eq!(client.recv_action("seq").await["message"], i);
    }
}

#[tokio::test]
async fn join_at_run_time_adds_to_group() {
    let server = TestServer::start().await;
    let hub = &server.hub;
    let mut c = vec![
        server.connect("").await,
        server.connect("?groupId=g1").await,
    ];
    let a = id_of(&c[0]);
    let to_g1 = Envelope::new("g1").to(Recipient::group("g1"));
    let to_default = Envelope::new("default");
    assert_eq!(who_receives(hub, &mut c, &to_g1).await, [1]);
    assert_eq!(who_receives(hub, &mut c, &to_default).await, [0]);

    assert!(
        hub.join(a, "g1").await.expect("a single node answers"),
        "joining a new group"
    );
    assert_eq!(who_receives(hub, &mut c, &to_g1).await, [0, 1]);
    assert_eq!(
        who_receives(hub, &mut c, &to_default).await,
        Vec::<usize>::new(),
        "a connection in a group is no longer in the default group"
    );
    assert!(
        !hub.join(a, "g1").await.expect("a single node answers"),
        "joining twice returns false"
    );
    assert_eq!(hub.local_groups_of(a), Some(vec!["g1".to_owned()]));
    assert_eq!(
        who_receives(hub, &mut c, &to_g1).await,
        [0, 1],
        "joining twice still delivers once"
    );

    assert!(hub.join(a, "g2").await.expect("a single node answers"));
    assert_eq!(
        hub.local_groups_of(a).map(set),
        Some(set(["g1".to_owned(), "g2".to_owned()]))
    );
    let to_g2 = Envelope::new("g2").to(Recipient::group("g2"));
    assert_eq!(who_receives(hub, &mut c, &to_g2).await, [0]);
    assert_eq!(
        set(hub.local_group_connections("g1")),
        set([a, id_of(&c[1])])
    );
}

#[tokio::test]
async fn leave_at_run_time_removes_from_group() {
    let server = TestServer::start().await;
    let hub = &server.hub;
    let mut c = vec![
        server.connect("?groupId=g1").await,
        server.connect("?groupId=g1").await,
    ];
    let a = id_of(&c[0]);
    assert!(hub.join(a, "g2").await.expect("a single node answers"));
    let to_g1 = Envelope::new("g1").to(Recipient::group("g1"));
    assert_eq!(who_receives(hub, &mut c, &to_g1).await, [0, 1]);

    assert!(
        hub.leave(a, "g1").await.expect("a single node answers"),
        "leaving a group it is in"
    );
    assert_eq!(who_receives(hub, &mut c, &to_g1).await, [1]);
    assert!(
        !hub.leave(a, "g1").await.expect("a single node answers"),
        "leaving twice returns false"
    );
    assert!(
        !hub.leave(a, "never-joined")
            .await
            .expect("a single node answers"),
        "leaving a group it was never in"
    );
    assert_eq!(hub.local_groups_of(a), Some(vec!["g2".to_owned()]));
    assert_eq!(hub.local_group_connections("g1"), [id_of(&c[1])]);
    // Still in g2, so not in the default group.
    assert_eq!(
        who_receives(hub, &mut c, &Envelope::new("default")).await,
        Vec::<usize>::new()
    );
    let to_g2 = Envelope::new("g2").to(Recipient::group("g2"));
    assert_eq!(who_receives(hub, &mut c, &to_g2).await, [0]);
}

#[tokio::test]
async fn leaving_every_group_returns_to_the_default_group() {
    let server = TestServer::start().await;
    let hub = &server.hub;
    let mut c = vec![
        server.connect("?groupId=g1").await,
        server.connect("?groupId=g2").await,
    ];
    let a = id_of(&c[0]);
    assert!(hub.join(a, "g3").await.expect("a single node answers"));
    let to_default = Envelope::new("default");
    assert_eq!(
        who_receives(hub, &mut c, &to_default).await,
        Vec::<usize>::new()
    );

    assert!(hub.leave(a, "g1").await.expect("a single node answers"));
    assert_eq!(
        who_receives(hub, &mut c, &to_default).await,
        Vec::<usize>::new(),
        "still in g3"
    );
    assert!(hub.leave(a, "g3").await.expect("a single node answers"));
    assert_eq!(hub.local_groups_of(a), Some(Vec::new()));
    assert_eq!(
        who_receives(hub, &mut c, &to_default).await,
        [0],
        "in no group: back in the default group"
    );
    assert_eq!(
        hub.local_group_count(),
        1,
        "emptied groups are gone; g2 is left"
    );

    // And joining again takes it out of the default group again.
    assert!(hub.join(a, "g1").await.expect("a single node answers"));
    assert_eq!(
        who_receives(hub, &mut c, &to_default).await,
        Vec::<usize>::new()
    );
}

#[tokio::test]
async fn join_and_leave_of_an_unknown_connection_return_false() {
    let server = TestServer::start().await;
    let mut client = server.connect("").await;
    let stranger: ConnectionId = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
    assert_ne!(stranger, id_of(&client));
    assert!(!server
        .hub
        .join(stranger, "g1")
        .await
        .expect("a single node answers"));
    assert!(!server
        .hub
        .leave(stranger, "g1")
        .await
        .expect("a single node answers"));
    assert_eq!(server.hub.local_groups_of(stranger), None);
    assert_eq!(
        server.hub.local_group_count(),
        0,
        "joining nobody made no group"
    );
    assert_eq!(
        server
            .hub
            .send(&Envelope::new("x").to(Recipient::group("g1"))),
        0
    );
    assert_eq!(
        server
            .hub
            .send(&Envelope::new("x").to(Recipient::connection(stranger))),
        0
    );
    assert_eq!(server.hub.send(&Envelope::new("marker")), 1);
    client.recv_action("marker").await;
}

#[tokio::test]
async fn counts_and_look_ups_follow_the_connections() {
    let server = TestServer::start().await;
    let hub = &server.hub;
    assert_eq!(
        (
            hub.local_connection_count(),
            hub.local_user_count(),
            hub.local_group_count()
        ),
        (0, 0, 0)
    );
    let c = five_on(&server).await;
    let ids: Vec<ConnectionId> = c.iter().map(id_of).collect();
    assert_eq!(hub.local_connection_count(), 5);
    assert_eq!(
        hub.local_user_count(),
        2,
        "ann and bob; anonymous is no user"
    );
    assert_eq!(
        hub.local_group_count(),
        2,
        "g1 and g2; the default group is none"
    );

    assert_eq!(
        set(hub.local_user_connections("ann")),
        set([ids[0], ids[1]])
    );
    assert_eq!(
        set(hub.local_user_connections("bob")),
        set([ids[2], ids[3]])
    );
    assert!(hub.local_user_connections("nobody").is_empty());
    assert!(
        hub.local_user_connections("").is_empty(),
        "anonymous is no user"
    );

    assert_eq!(
        set(hub.local_group_connections("g1")),
        set([ids[0], ids[2]])
    );
    assert_eq!(hub.local_group_connections("g2"), [ids[1]]);
    assert!(hub.local_group_connections("nobody").is_empty());

    assert_eq!(hub.local_groups_of(ids[0]), Some(vec!["g1".to_owned()]));
    assert_eq!(hub.local_groups_of(ids[1]), Some(vec!["g2".to_owned()]));
    assert_eq!(hub.local_groups_of(ids[3]), Some(Vec::new()));
    assert_eq!(hub.local_groups_of(ids[4]), Some(Vec::new()));

    assert!(hub.join(ids[4], "g3").await.expect("a single node answers"));
    assert_eq!(hub.local_group_count(), 3);
    assert_eq!(hub.local_group_connections("g3"), [ids[4]]);
    assert!(hub
        .leave(ids[4], "g3")
        .await
        .expect("a single node answers"));
    assert_eq!(
        hub.local_group_count(),
        2,
        "an emptied group is not counted"
    );
    assert!(hub.local_group_connections("g3").is_empty());
    assert_eq!(
        hub.local_connection_count(),
        5,
        "membership does not change the count"
    );
}

/// The five clients of [`five`], on an existing server.
async fn five_on(server: &TestServer) -> Vec<Client> {
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
    clients
}

#[tokio::test]
async fn counts_drop_after_clients_disconnect() {
    let (server, c) = five().await;
    let hub = &server.hub;
    let ids: Vec<ConnectionId> = c.iter().map(id_of).collect();
    let mut c: Vec<Option<Client>> = c.into_iter().map(Some).collect();
    assert_eq!(
        (
            hub.local_connection_count(),
            hub.local_user_count(),
            hub.local_group_count()
        ),
        (5, 2, 2)
    );

    // ann's second tab (g2) closes cleanly: ann is still connected, g2 is gone.
    let mut tab = c[1].take().expect("client 1");
    within("closing client 1", tab.ws.close(None))
        .await
        .expect("close");
    tab.expect_end().await;
    until("the connection count to drop to 4", || {
        hub.local_connection_count() == 4
    })
    .await;
    assert_eq!(hub.local_user_count(), 2, "ann still has a tab");
    assert_eq!(hub.local_user_connections("ann"), [ids[0]]);
    assert_eq!(hub.local_group_count(), 1, "g2 had only that tab");
    assert!(hub.local_group_connections("g2").is_empty());
    assert_eq!(
        hub.local_groups_of(ids[1]),
        None,
        "a closed connection has no groups"
    );
    assert!(
        !hub.join(ids[1], "g1").await.expect("a single node answers"),
        "a closed connection cannot join"
    );
    assert_eq!(
        hub.send(&Envelope::new("x").to(Recipient::connection(ids[1]))),
        0,
        "nothing is queued to a closed connection"
    );

    // ann's other tab goes away without a close frame (TCP dropped): ann is no longer a user.
    drop(c[0].take());
    until("the connection count to drop to 3", || {
        hub.local_connection_count() == 3
    })
    .await;
    assert_eq!(hub.local_user_count(), 1, "only bob is left");
    assert!(hub.local_user_connections("ann").is_empty());
    assert_eq!(hub.local_group_connections("g1"), [ids[2]]);
    assert_eq!(hub.send(&Envelope::new("x").to(Recipient::user("ann"))), 0);
    assert_eq!(hub.send(&Envelope::new("x").to(Recipient::all())), 3);

    // Everyone goes.
    c.clear();
    until("every connection to be gone", || {
        hub.local_connection_count() == 0
    })
    .await;
    assert_eq!((hub.local_user_count(), hub.local_group_count()), (0, 0));
    assert!(ids.iter().all(|&id| hub.local_groups_of(id).is_none()));
    assert_eq!(hub.send(&Envelope::new("x").to(Recipient::all())), 0);
}

#[tokio::test]
async fn disconnect_closes_one_connection_with_the_applications_code() {
    let server = TestServer::start().await;
    let mut a = server.connect("?userId=ann").await;
    let mut b = server.connect("?userId=ann").await;
    let hub = &server.hub;
    assert_eq!(hub.disconnect(id_of(&a), 4001).await, Ok(true));
    assert_eq!(a.expect_close().await, Some(CloseCode::from(4001)));
    assert_eq!(hub.disconnect(id_of(&a), 4001).await, Ok(false), "gone");
    // The other tab is untouched.
    assert_eq!(
        hub.send(&Envelope::new("still").to(Recipient::user("ann"))),
        1
    );
    b.recv_action("still").await;
    for code in [999, 1004, 1005, 1006, 1015, 2000, 5000] {
        assert!(hub.disconnect(id_of(&b), code).await.is_err(), "{code}");
    }
    // Refused codes closed nothing.
    assert_eq!(
        hub.send(&Envelope::new("marker").to(Recipient::user("ann"))),
        1
    );
    b.recv_action("marker").await;
}

#[tokio::test]
async fn disconnect_user_closes_every_tab_of_that_user_only() {
    let server = TestServer::start().await;
    let mut tabs = server.connect_many(3, "?userId=ann").await;
    let mut bob = server.connect("?userId=bob").await;
    assert_eq!(server.hub.disconnect_user("ann", 1000).await, Ok(3));
    for tab in &mut tabs {
        assert_eq!(tab.expect_close().await, Some(CloseCode::Normal));
    }
    assert_eq!(server.hub.disconnect_user("ann", 1000).await, Ok(0));
    assert_eq!(
        server.hub.disconnect_user("", 1000).await,
        Ok(0),
        "anonymous is nobody"
    );
    assert_eq!(server.hub.send(&Envelope::new("marker")), 1);
    bob.recv_action("marker").await;
}

#[tokio::test]
async fn on_a_single_node_the_cluster_wide_answers_are_the_local_ones() {
    let server = TestServer::start().await;
    let a = server.connect("?userId=ann&groupId=g1").await;
    let _b = server.connect("?userId=bob").await;
    let hub = &server.hub;
    let a = id_of(&a);
    assert_eq!(hub.connection_count().await, Ok(2));
    assert_eq!(hub.user_count().await, Ok(2));
    assert_eq!(hub.group_count().await, Ok(1));
    assert_eq!(hub.user_connections("ann").await, Ok(vec![a]));
    assert_eq!(hub.group_connections("g1").await, Ok(vec![a]));
    assert_eq!(hub.groups_of(a).await, Ok(Some(vec!["g1".to_owned()])));
    assert_eq!(hub.local_groups_of(a), Some(vec!["g1".to_owned()]));
    let stranger: ConnectionId = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
    assert_eq!(hub.groups_of(stranger).await, Ok(None));
}
