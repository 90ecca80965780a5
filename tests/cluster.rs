//! A cluster of real node processes on a real `redis-server`, all on 127.0.0.1: every recipient
//! type with the sender and the targets on different nodes, the sender's identity across nodes,
//! order across nodes, and Redis going away and coming back empty.
//!
//! Absence is proven as in routing.rs: after the envelope under test, a `marker` to everyone from
//! the same node; one node's envelopes reach a connection in order, wherever it is.
#![cfg(feature = "cluster")]

mod common;

use common::cluster::{node_of, Node, Redis};
use common::{envelope, within, Client, Remote, TOKEN};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Three nodes and five clients spread over them, as routing.rs's five on one node:
/// 0 ann@g1 on node 0; 1 ann@g2 and 2 bob@g1 on node 1; 3 bob (no group) and 4 anonymous on
/// node 2. Returns once every node's membership is in Redis.
async fn spread() -> (Redis, Vec<Node>, Vec<Client>) {
    let redis = Redis::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&redis).await);
    }
    let mut clients = Vec::new();
    for (node, query) in [
        (0, "?userId=ann&groupId=g1"),
        (1, "?userId=ann&groupId=g2"),
        (1, "?userId=bob&groupId=g1"),
        (2, "?userId=bob"),
        (2, ""),
    ] {
        clients.push(nodes[node].connect(query).await);
    }
    for (client, keys) in clients.iter().zip([
        &["wshub:u:ann", "wshub:g:g1"][..],
        &["wshub:u:ann", "wshub:g:g2"],
        &["wshub:u:bob", "wshub:g:g1"],
        &["wshub:u:bob"],
        &[],
    ]) {
        for key in keys {
            redis.until_member(key, node_of(&client.id)).await;
        }
    }
    (redis, nodes, clients)
}

/// Publishes `recipients` through `from`, then a marker to all, and returns which clients got
/// the envelope (each at most once, or the marker would not come next) and the publish's answer,
/// whose count must match.
async fn who_receives(
    from: &Remote,
    clients: &mut [Client],
    recipients: Value,
) -> (Vec<usize>, Value) {
    let probe = envelope("probe", json!("x"), recipients.clone()).to_string();
    let response = from.post("/api/publish", Some(TOKEN), &probe).await;
    assert_eq!(response.status, 200, "publish {recipients}: {response:?}");
    let answer = response.json();
    let marker = envelope("marker", json!(""), json!([{"type": "all"}])).to_string();
    let response = from.post("/api/publish", Some(TOKEN), &marker).await;
    assert_eq!(response.status, 200, "marker: {response:?}");
    let got = common::got_probe(clients).await;
    assert_eq!(
        answer["delivered"].as_u64(),
        Some(got.len() as u64),
        "{recipients}: the answer counts every node's deliveries: {answer}"
    );
    assert_eq!(answer["partial"], false, "{recipients}: {answer}");
    assert_eq!(
        answer["answered"], answer["nodes"],
        "{recipients}: {answer}"
    );
    (got, answer)
}

#[tokio::test]
async fn every_recipient_type_selects_its_connections_on_every_node_once() {
    let (_redis, nodes, mut c) = spread().await;
    let ids: Vec<String> = c.iter().map(|client| client.id.clone()).collect();
    let id = |i: usize| ids[i].clone();
    let cases: Vec<(Value, Vec<usize>)> = vec![
        (json!([{"type": "all"}]), vec![0, 1, 2, 3, 4]),
        (json!([{"type": "group", "value": "g1"}]), vec![0, 2]),
        (json!([{"type": "user", "value": "ann"}]), vec![0, 1]),
        (json!([{"type": "connection", "value": id(1)}]), vec![1]),
        (json!([{"type": "connection", "value": id(4)}]), vec![4]),
        (
            json!([{"type": "allButUser", "value": "ann"}]),
            vec![2, 3, 4],
        ),
        (
            json!([{"type": "allExceptUser", "value": "bob"}]),
            vec![0, 1, 4],
        ),
        (
            json!([{"type": "allButGroup", "value": "g1"}]),
            vec![1, 3, 4],
        ),
        (
            json!([{"type": "allButConnection", "value": id(2)}]),
            vec![0, 1, 3, 4],
        ),
        // A connection selected twice (its group and its user) gets one copy.
        (
            json!([{"type": "group", "value": "g1"}, {"type": "user", "value": "ann"}]),
            vec![0, 1, 2],
        ),
        (
            json!([{"type": "user", "value": "bob"}, {"type": "allButGroup", "value": "g1"}]),
            vec![3],
        ),
        (
            json!([{"type": "group", "value": "g2"}, {"type": "connection", "value": id(3)},
                   {"type": "allButUser", "value": "ann"}]),
            vec![3],
        ),
        // The default group: the connections in no group, on every node.
        (json!([]), vec![3, 4]),
        (json!([{"type": "group", "value": "nobody"}]), vec![]),
    ];
    for (from, node) in nodes.iter().enumerate() {
        for (recipients, expected) in &cases {
            let (got, _) = who_receives(node, &mut c, recipients.clone()).await;
            assert_eq!(&got, expected, "{recipients} published on node {from}");
        }
    }
}

#[tokio::test]
async fn a_publish_wakes_only_the_nodes_with_targets_and_counts_what_they_delivered() {
    let (_redis, nodes, mut c) = spread().await;
    // (recipients, published on, other nodes it must go to)
    let cases = [
        // g2 lives on node 1 only.
        (json!([{"type": "group", "value": "g2"}]), 0, 1),
        (json!([{"type": "group", "value": "g2"}]), 1, 0),
        (json!([{"type": "user", "value": "bob"}]), 0, 2),
        (json!([{"type": "connection", "value": c[4].id}]), 0, 1),
        (json!([{"type": "group", "value": "nobody"}]), 0, 0),
        (json!([{"type": "all"}]), 2, 2),
    ];
    for (recipients, from, woken) in cases {
        let (_, answer) = who_receives(&nodes[from], &mut c, recipients.clone()).await;
        assert_eq!(
            answer["nodes"], woken,
            "{recipients} from node {from}: {answer}"
        );
    }
    // An array's counts add up over its envelopes.
    let body = json!([
        envelope("one", json!(1), json!([{"type": "user", "value": "ann"}])),
        envelope("two", json!(2), json!([{"type": "all"}])),
    ]);
    let answer = nodes[2]
        .post("/api/publish", Some(TOKEN), &body.to_string())
        .await
        .json();
    assert_eq!(
        answer,
        json!({"delivered": 7, "nodes": 4, "answered": 4, "partial": false})
    );
}

#[tokio::test]
async fn a_relayed_message_carries_the_senders_identity_to_other_nodes() {
    let (_redis, _nodes, mut c) = spread().await;
    // ann on node 0 claims to be mallory in group g9; bob on node 1 (g1) receives it as ann's.
    let claim = json!({
        "action": "chat", "message": "hi", "userId": "mallory", "groupId": "g9",
        "recipients": [{"type": "group", "value": "g1"}, {"type": "allButConnection", "value": c[0].id}],
    });
    c[0].send_json(&claim).await;
    let got = c[2].recv_action("chat").await;
    assert_eq!(got["userId"], "ann");
    assert_eq!(got["groupId"], "g1");
    assert_eq!(got["message"], "hi");
    assert_eq!(
        got["recipients"],
        json!([]),
        "receivers do not learn the recipient list"
    );
}

#[tokio::test]
async fn a_thousand_publishes_reach_a_connection_on_another_node_in_order() {
    let (_redis, nodes, mut c) = spread().await;
    // Client 2 (bob@g1, node 1) is selected in turn by its connection id (node 1's inbox), by
    // `all` (the broadcast channel), by its group and by its user: two channels, one order.
    let target = c[2].id.clone();
    let recipients = [
        json!([{"type": "connection", "value": target}]),
        json!([{"type": "all"}]),
        json!([{"type": "group", "value": "g1"}]),
        json!([{"type": "user", "value": "bob"}]),
    ];
    for batch in 0..20 {
        let envelopes: Vec<Value> = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                envelope("seq", json!(n), recipients[n % 4].clone())
            })
            .collect();
        let body = Value::Array(envelopes).to_string();
        let response = nodes[0].post("/api/publish", Some(TOKEN), &body).await;
        assert_eq!(response.status, 200, "{response:?}");
    }
    within("1,000 envelopes in order", async {
        for n in 0..1000 {
            let got = c[2].recv_action("seq").await;
            assert_eq!(got["message"], n, "out of order");
        }
    })
    .await;
}

#[tokio::test]
async fn redis_away_answers_503_then_a_restarted_empty_redis_gets_every_node_back() {
    let mut redis = Redis::start().await;
    let a = Node::start(&redis).await;
    let b = Node::start(&redis).await;
    let mut on_a = a.connect("?userId=ann&groupId=g1").await;
    let mut on_b = b.connect("?userId=bob&groupId=g1").await;
    redis.until_member("wshub:g:g1", node_of(&on_b.id)).await;

    redis.kill().await;
    let probe = envelope(
        "probe",
        json!("x"),
        json!([{"type": "group", "value": "g1"}]),
    )
    .to_string();
    let refused = within("a 503 while Redis is away", async {
        loop {
            let response = a.post("/api/publish", Some(TOKEN), &probe).await;
            if response.status == 503 {
                break response;
            }
            assert_eq!(response.status, 200, "{response:?}");
            // Published before the node noticed: only ann, here on node a, can have it.
            on_a.recv_action("probe").await;
        }
    })
    .await;
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert!(
        refused.body.contains("nothing was delivered"),
        "{}",
        refused.body
    );

    // The sockets stay open and this node's own relays still work.
    on_a.send_json(&json!({"action": "local", "recipients": [{"type": "user", "value": "ann"}]}))
        .await;
    on_a.recv_action("local").await;

    let redis = Redis::start_on(redis.port).await;
    a.until_publishing().await;
    b.until_publishing().await;
    // Redis came back empty: each node wrote its membership again.
    redis.until_member("wshub:g:g1", node_of(&on_b.id)).await;
    redis.until_member("wshub:u:ann", node_of(&on_a.id)).await;
    let back = envelope(
        "back",
        json!("y"),
        json!([{"type": "group", "value": "g1"}]),
    )
    .to_string();
    let response = a.post("/api/publish", Some(TOKEN), &back).await;
    assert_eq!(response.status, 200, "{response:?}");
    on_b.recv_action("back").await;
    on_a.recv_action("back").await;
    // A relay right after: the publishing connection was renewed, nothing is lost on it.
    on_a.send_json(&json!({"action": "relay", "recipients": [{"type": "user", "value": "bob"}]}))
        .await;
    on_b.recv_action("relay").await;
}

#[tokio::test]
async fn a_killed_node_leaves_every_set_within_the_bound_and_publishes_stop_waiting_on_it() {
    let redis = Redis::start().await;
    let a = Node::start(&redis).await;
    let mut b = Node::start(&redis).await;
    let mut on_a = a.connect("?userId=ann&groupId=team").await;
    let on_b = b.connect("?userId=bob&groupId=team").await;
    let dead = node_of(&on_b.id).to_owned();
    redis.until_member("wshub:g:team", &dead).await;
    redis.until_member("wshub:u:bob", &dead).await;

    b.kill().await;
    let killed = tokio::time::Instant::now();
    // Within 10 s, whatever happens (`within`); typically one `dead_after` (2 s) and a beat.
    redis.until_not_member("wshub:g:team", &dead).await;
    redis.until_not_member("wshub:u:bob", &dead).await;
    let ghost = killed.elapsed();
    assert!(
        redis
            .try_command(&["ZSCORE", "wshub:nodes", &dead])
            .await
            .as_deref()
            == Some("$-1"),
        "the dead node left the set of nodes"
    );
    assert!(
        redis
            .try_command(&["EXISTS", &format!("wshub:ns:{dead}")])
            .await
            .as_deref()
            == Some(":0"),
        "and its index of keys"
    );
    // The live node's entries stay.
    redis.until_member("wshub:g:team", node_of(&on_a.id)).await;
    eprintln!("ghost membership lasted {ghost:?}");

    // A publish to the group now goes to no other node, and counts exactly.
    let probe = envelope(
        "probe",
        json!("x"),
        json!([{"type": "group", "value": "team"}]),
    );
    let answer = a
        .post("/api/publish", Some(TOKEN), &probe.to_string())
        .await
        .json();
    assert_eq!(
        answer,
        json!({"delivered": 1, "nodes": 0, "answered": 0, "partial": false})
    );
    on_a.recv_action("probe").await;
}

#[tokio::test]
async fn a_logout_on_any_node_closes_the_users_sockets_on_every_node() {
    let (_redis, nodes, mut c) = spread().await;
    // ann has a tab on node 0 (client 0) and one on node 1 (client 1); asked on node 2.
    let logout = json!({"user": "ann", "code": 4001}).to_string();
    let answer = nodes[2].post("/api/disconnect", Some(TOKEN), &logout).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), json!({"closed": 2}));
    for i in [0, 1] {
        assert_eq!(
            c[i].expect_close().await,
            Some(CloseCode::from(4001)),
            "ann's tab {i}"
        );
    }
    // Nobody else was touched, and ann gets nothing more.
    let (got, _) = who_receives(&nodes[2], &mut c[2..], json!([{"type": "all"}])).await;
    assert_eq!(got, [0, 1, 2], "bob's two sockets and the anonymous one");
    let answer = nodes[0]
        .post("/api/disconnect", Some(TOKEN), &logout)
        .await
        .json();
    assert_eq!(answer, json!({"closed": 0}), "ann is gone everywhere");

    // One connection, on another node than the one asked.
    let one = json!({"connection": c[3].id, "code": 1000}).to_string();
    let answer = nodes[0]
        .post("/api/disconnect", Some(TOKEN), &one)
        .await
        .json();
    assert_eq!(answer, json!({"closed": 1}));
    assert_eq!(c[3].expect_close().await, Some(CloseCode::Normal));
}

#[tokio::test]
async fn join_and_leave_move_a_connection_on_another_node() {
    let (redis, nodes, mut c) = spread().await;
    // Client 4 (anonymous, node 2) joins g1, asked on node 0.
    let join = json!({"connection": c[4].id, "group": "g1"}).to_string();
    let answer = nodes[0].post("/api/join", Some(TOKEN), &join).await.json();
    assert_eq!(answer, json!({"done": true}));
    let answer = nodes[1].post("/api/join", Some(TOKEN), &join).await.json();
    assert_eq!(answer, json!({"done": false}), "already in it");
    redis.until_member("wshub:g:g1", node_of(&c[4].id)).await;
    let (got, _) = who_receives(&nodes[0], &mut c, json!([{"type": "group", "value": "g1"}])).await;
    assert_eq!(got, [0, 2, 4]);
    // It left the default group by joining one.
    let (got, _) = who_receives(&nodes[1], &mut c, json!([])).await;
    assert_eq!(got, [3]);

    let leave = join.clone();
    let answer = nodes[1]
        .post("/api/leave", Some(TOKEN), &leave)
        .await
        .json();
    assert_eq!(answer, json!({"done": true}));
    let (got, _) = who_receives(&nodes[0], &mut c, json!([{"type": "group", "value": "g1"}])).await;
    assert_eq!(got, [0, 2]);
    // Client 0 (node 0, g1) joins g2 from node 2: selected by both groups, it gets one copy.
    let join = json!({"connection": c[0].id, "group": "g2"}).to_string();
    let answer = nodes[2].post("/api/join", Some(TOKEN), &join).await.json();
    assert_eq!(answer, json!({"done": true}));
    // Node 0 answered once every node knew: a publish to g2 right away reaches it.
    let (got, _) = who_receives(&nodes[1], &mut c, json!([{"type": "group", "value": "g2"}])).await;
    assert_eq!(got, [0, 1]);
    let both = json!([{"type": "group", "value": "g1"}, {"type": "group", "value": "g2"}]);
    let (got, _) = who_receives(&nodes[1], &mut c, both).await;
    assert_eq!(got, [0, 1, 2]);
    // A connection id that no node has.
    let stranger = json!({"connection": "0000000100000000000000000000000a", "group": "g1"});
    let answer = nodes[0]
        .post("/api/join", Some(TOKEN), &stranger.to_string())
        .await
        .json();
    assert_eq!(answer, json!({"done": false}));
}

/// Asks `node` a question about the cluster's connections (examples/hyper_server's `/api/who`).
async fn who(node: &Remote, query: &str) -> Value {
    let response = node.get(&format!("/api/who{query}"), Some(TOKEN)).await;
    assert_eq!(response.status, 200, "{query}: {response:?}");
    let mut answer = response.json();
    // Connection lists in a stable order.
    if let Some(list) = answer.get_mut("connections").and_then(Value::as_array_mut) {
        list.sort_by_key(|v| v.as_str().map(str::to_owned));
    }
    answer
}

/// Polls `who` until it answers `expected` (records reach Redis a round trip after a change).
async fn until_who(node: &Remote, query: &str, expected: Value) {
    let what = format!("{query} to answer {expected}");
    common::until_async(&what, || async { who(node, query).await == expected }).await;
}

fn sorted(ids: &[&str]) -> Value {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    json!(ids)
}

#[tokio::test]
async fn any_node_answers_for_every_nodes_connections() {
    let (_redis, mut nodes, c) = spread().await;
    let counts = json!({"connections": 5, "users": 2, "groups": 2});
    for node in &nodes {
        until_who(node, "", counts.clone()).await;
        let ann = sorted(&[&c[0].id, &c[1].id]);
        until_who(node, "?user=ann", json!({ "connections": ann })).await;
        let g1 = sorted(&[&c[0].id, &c[2].id]);
        until_who(node, "?group=g1", json!({ "connections": g1 })).await;
        for (i, groups, user) in [
            (0, json!(["g1"]), "ann"),
            (1, json!(["g2"]), "ann"),
            (4, json!([]), ""),
        ] {
            let query = format!("?connection={}", c[i].id);
            let expected = json!({ "groups": groups, "userId": user, "data": null });
            until_who(node, &query, expected).await;
        }
        let nobody = "?connection=0000000100000000000000000000000a";
        let unknown = json!({ "groups": null, "userId": null, "data": null });
        assert_eq!(who(node, nobody).await, unknown);
    }

    // Node 1 dies with clients 1 (ann@g2) and 2 (bob@g1): once it is taken for dead (2 s), no
    // node counts them, and the heartbeat removes their records.
    nodes[1].kill().await;
    let counts = json!({"connections": 3, "users": 2, "groups": 1});
    until_who(&nodes[0], "", counts.clone()).await;
    until_who(&nodes[2], "", counts).await;
    let ann = sorted(&[&c[0].id]);
    until_who(&nodes[2], "?user=ann", json!({ "connections": ann })).await;
    let g1 = sorted(&[&c[0].id]);
    until_who(&nodes[0], "?group=g1", json!({ "connections": g1 })).await;
    let query = format!("?connection={}", c[2].id);
    let gone = json!({ "groups": null, "userId": null, "data": null });
    until_who(&nodes[0], &query, gone).await;
}

/// The data an identity resolver attaches to a connection on one node is what another node's
/// `Hub::connection` answers, with its user and groups; and this node answers for the other's.
/// One node is this test's own hub (to have a resolver), the other a hyper_server process.
#[tokio::test]
async fn a_connections_data_is_answered_by_every_node() {
    let redis = Redis::start().await;
    let remote = Node::start(&redis).await;
    let cluster = wshub::RedisCluster::new(&redis.url()).expect("a Redis URL");
    let hub = wshub::Hub::builder()
        .cluster(cluster)
        .identity(|request: &http::request::Parts| {
            let team = request.headers.get("x-team").cloned();
            async move {
                let team = team.map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned());
                let staff = json!({ "team": team, "since": 2019 });
                Ok(wshub::Identity::user("ann")
                    .in_group("staff")
                    .with_data(&staff))
            }
        })
        .build();
    let local = common::TestServer::serve(hub.clone(), axum::Router::new()).await;

    let (ann, _) = local
        .try_connect("", &[("x-team", "support")])
        .await
        .expect("ann connects");
    let query = format!("?connection={}", ann.id);
    let expected = json!({
        "groups": ["staff"],
        "userId": "ann",
        "data": { "team": "support", "since": 2019 },
    });
    until_who(&remote, &query, expected).await;

    let bob = remote.connect("?userId=bob&groupId=g1").await;
    let bob_id = bob.id.parse().expect("a connection id");
    common::until_async("bob's record to reach Redis", || async {
        hub.connection(bob_id).await.ok().flatten().is_some()
    })
    .await;
    let info = hub
        .connection(bob_id)
        .await
        .expect("an answer")
        .expect("bob");
    assert_eq!(
        (info.user_id.as_str(), &info.groups[..]),
        ("bob", &["g1".to_owned()][..])
    );
    assert_eq!(info.data_json(), None);
    drop(ann);
}

#[tokio::test]
async fn a_stopped_redis_gets_a_503_that_delivered_nothing_even_after_redis_wakes_up() {
    let redis = Redis::start().await;
    let a = Node::start(&redis).await;
    let b = Node::start(&redis).await;
    let mut on_a = a.connect("?userId=ann&groupId=g1").await;
    let mut on_b = b.connect("?userId=bob&groupId=g1").await;
    redis.until_member("wshub:g:g1", node_of(&on_b.id)).await;

    redis.signal("STOP");
    let probe = envelope(
        "refused",
        json!("x"),
        json!([{"type": "group", "value": "g1"}]),
    );
    let started = tokio::time::Instant::now();
    let response = a
        .post("/api/publish", Some(TOKEN), &probe.to_string())
        .await;
    let answered = started.elapsed();
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.header("retry-after").as_deref(), Some("1"));
    assert!(
        response.body.contains("nothing was delivered"),
        "{}",
        response.body
    );
    eprintln!("a publish with Redis stopped was answered in {answered:?}");

    // The sockets stay open, and a relay between this node's own connections still works.
    on_a.send_json(&json!({"action": "local", "recipients": [{"type": "user", "value": "ann"}]}))
        .await;
    on_a.recv_action("local").await;

    // Redis wakes up and runs what was waiting: the refused bundle is past its deadline.
    redis.signal("CONT");
    a.until_publishing().await;
    b.until_publishing().await;
    let after = envelope(
        "after",
        json!("y"),
        json!([{"type": "group", "value": "g1"}]),
    );
    let response = a
        .post("/api/publish", Some(TOKEN), &after.to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        on_b.recv().await["action"],
        "after",
        "b never got the refused envelope"
    );
    assert_eq!(on_a.recv().await["action"], "after", "nor did a");
}

#[tokio::test]
async fn subscribers_killed_by_redis_subscribe_again_and_deliver() {
    let redis = Redis::start().await;
    let a = Node::start(&redis).await;
    let b = Node::start(&redis).await;
    let on_a = a.connect("?userId=ann&groupId=g1").await;
    let mut on_b = b.connect("?userId=bob&groupId=g1").await;
    redis.until_member("wshub:g:g1", node_of(&on_b.id)).await;
    let inbox = format!("wshub:n:{}", node_of(&on_b.id));

    let killed = redis
        .try_command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .await;
    assert_eq!(killed.as_deref(), Some(":2"), "both nodes' subscribers");
    until_subscribed(&redis, &inbox).await;
    a.until_publishing().await;
    let back = envelope("back", json!(1), json!([{"type": "user", "value": "bob"}]));
    let response = a.post("/api/publish", Some(TOKEN), &back.to_string()).await;
    assert_eq!(response.json()["delivered"], 1, "{response:?}");
    on_b.recv_action("back").await;
    drop(on_a);
}

#[tokio::test]
async fn a_subscriber_dropped_for_a_full_output_buffer_subscribes_again() {
    let redis = Redis::start().await;
    let a = Node::start(&redis).await;
    let b = Node::start(&redis).await;
    let mut on_b = b.connect("?userId=bob&groupId=g1").await;
    redis.until_member("wshub:g:g1", node_of(&on_b.id)).await;
    let inbox = format!("wshub:n:{}", node_of(&on_b.id));
    let limit = [
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 64kb 64kb 1",
    ];
    assert_eq!(redis.try_command(&limit).await.as_deref(), Some("+OK"));

    // Node b stops reading; once the kernel's buffers are full, what Redis holds for its
    // subscriber passes the limit. (Addressed by connection id: b's inbox, even after the
    // others take b for dead.)
    b.signal("STOP");
    let to_b = json!([{"type": "connection", "value": on_b.id}]);
    let big = envelope("big", json!("x".repeat(512 * 1024)), to_b).to_string();
    within("Redis to drop b's subscriber", async {
        while redis.subscribers(&inbox).await != Some(0) {
            let response = a.post("/api/publish", Some(TOKEN), &big).await;
            assert_eq!(response.status, 200, "{response:?}");
        }
    })
    .await;
    b.signal("CONT");
    until_subscribed(&redis, &inbox).await;
    b.until_publishing().await;
    // What b missed is a gap (logged and counted by b); what is sent now arrives.
    let back = envelope("back", json!(1), json!([{"type": "user", "value": "bob"}]));
    let response = a.post("/api/publish", Some(TOKEN), &back.to_string()).await;
    assert_eq!(response.status, 200, "{response:?}");
    within("b to get the envelope sent after its gap", async {
        loop {
            if on_b.recv().await["action"] == "back" {
                break;
            }
        }
    })
    .await;
}

/// Waits until `channel` has a subscriber again.
async fn until_subscribed(redis: &Redis, channel: &str) {
    let what = format!("a subscriber on {channel}");
    common::until_async(&what, || async {
        redis.subscribers(channel).await == Some(1)
    })
    .await;
}

/// A connection of the reference model: where it is, its id, user and groups.
struct Model {
    id: String,
    user: String,
    groups: Vec<String>,
}

/// PROTOCOL.md §2, written out plainly: the union of the includes (everyone when there are only
/// excludes), minus the excludes; an empty list is the connections in no group.
fn reference(model: &[Model], recipients: &[(String, String)]) -> Vec<usize> {
    let selects = |m: &Model, (kind, value): &(String, String)| match kind.as_str() {
        "all" => true,
        "group" | "allButGroup" => m.groups.contains(value),
        "user" | "allButUser" => !m.user.is_empty() && &m.user == value,
        _ => &m.id == value,
    };
    let excludes = |kind: &str| kind.starts_with("allBut");
    (0..model.len())
        .filter(|&i| {
            let m = &model[i];
            if recipients.is_empty() {
                return m.groups.is_empty();
            }
            let includes: Vec<_> = recipients.iter().filter(|r| !excludes(&r.0)).collect();
            let included = includes.is_empty() || includes.iter().any(|r| selects(m, r));
            let excluded = recipients
                .iter()
                .filter(|r| excludes(&r.0))
                .any(|r| selects(m, r));
            included && !excluded
        })
        .collect()
}

/// A small deterministic generator, so that a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

#[tokio::test]
async fn random_recipients_on_three_nodes_select_what_the_reference_model_selects() {
    let seed = std::env::var("WSHUB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    let mut rng = Rng(seed);
    let redis = Redis::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&redis).await);
    }
    let users = ["", "u0", "u1", "u2"];
    let groups = ["g0", "g1", "g2", "g3"];
    let mut model = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..12 {
        let user = users[rng.below(users.len())];
        let mut mine: Vec<String> = Vec::new();
        let mut query = format!("?userId={user}");
        if rng.below(3) > 0 {
            let group = groups[rng.below(groups.len())];
            query.push_str(&format!("&groupId={group}"));
            mine.push(group.to_owned());
        }
        let node = rng.below(3);
        let client = nodes[node].connect(&query).await;
        // A second group, joined from any node.
        if rng.below(3) == 0 {
            let group = groups[rng.below(groups.len())];
            if !mine.iter().any(|g| g == group) {
                let join = json!({"connection": client.id, "group": group}).to_string();
                let from = &nodes[rng.below(3)];
                let answer = from.post("/api/join", Some(TOKEN), &join).await.json();
                assert_eq!(answer, json!({"done": true}), "seed {seed}");
                mine.push(group.to_owned());
            }
        }
        for group in &mine {
            redis
                .until_member(&format!("wshub:g:{group}"), node_of(&client.id))
                .await;
        }
        if !user.is_empty() {
            redis
                .until_member(&format!("wshub:u:{user}"), node_of(&client.id))
                .await;
        }
        model.push(Model {
            id: client.id.clone(),
            user: user.to_owned(),
            groups: mine,
        });
        clients.push(client);
    }
    let kinds = [
        "all",
        "group",
        "user",
        "connection",
        "allButUser",
        "allButGroup",
        "allButConnection",
    ];
    for case in 0..60 {
        let recipients: Vec<(String, String)> = (0..rng.below(4))
            .map(|_| {
                let kind = kinds[rng.below(kinds.len())];
                let value = match kind {
                    "group" | "allButGroup" => groups[rng.below(groups.len())].to_owned(),
                    "user" | "allButUser" => users[1 + rng.below(users.len() - 1)].to_owned(),
                    "connection" | "allButConnection" => model[rng.below(model.len())].id.clone(),
                    _ => String::new(),
                };
                (kind.to_owned(), value)
            })
            .collect();
        let wire: Vec<Value> = recipients
            .iter()
            .map(|(kind, value)| json!({"type": kind, "value": value}))
            .collect();
        let from = &nodes[rng.below(3)];
        let (got, _) = who_receives(from, &mut clients, json!(wire)).await;
        let expected = reference(&model, &recipients);
        assert_eq!(got, expected, "seed {seed}, case {case}: {wire:?}");
    }
}

/// Connects to a chat node's room and reads what a socket let in gets first.
async fn chat_enter(node: &Node, room: &str, user: &str) -> (Client, Value, Value) {
    let mut client = node
        .connect(&format!("?groupId={room}&userId={user}"))
        .await;
    let history = client.recv_action("initialmessages").await["message"].clone();
    let people = client.recv_action("userlist").await["message"].clone();
    (client, history, people)
}

#[tokio::test]
async fn the_chat_on_two_nodes_is_one_chat() {
    let redis = Redis::start().await;
    let a = Node::start_example("chat", &redis).await;
    let b = Node::start_example("chat", &redis).await;

    let (mut ann, history, people) = chat_enter(&a, "r1", "ann").await;
    assert_eq!((history, people), (json!([]), json!(["ann"])));
    let (mut bob, _, people) = chat_enter(&b, "r1", "bob").await;
    assert_eq!(
        people,
        json!(["ann", "bob"]),
        "bob, on node b, sees ann of node a"
    );
    assert_eq!(ann.recv_action("userjoined").await["message"], "bob");

    ann.send_json(&json!({"action": "broadcastchatmessage", "message": "hi from a"}))
        .await;
    let line = bob.recv_action("broadcastchatmessage").await;
    assert_eq!(
        (
            line["message"]["text"].clone(),
            line["message"]["user"].clone()
        ),
        (json!("hi from a"), json!("ann"))
    );
    ann.recv_action("broadcastchatmessage").await;

    // A newcomer on node b gets the history written on node a.
    let (mut cat, history, people) = chat_enter(&b, "r1", "cat").await;
    assert_eq!(history[0]["text"], "hi from a");
    assert_eq!(people, json!(["ann", "bob", "cat"]));
    for client in [&mut ann, &mut bob] {
        assert_eq!(client.recv_action("userjoined").await["message"], "cat");
    }

    // A private line from node b reaches ann's tab on node a and bob's own, not cat.
    bob.send_json(&json!({
        "action": "broadcastchatmessage", "message": "psst",
        "recipients": [{"type": "user", "value": "ann"}],
    }))
    .await;
    assert_eq!(
        ann.recv_action("broadcastchatmessage").await["message"]["to"],
        "ann"
    );
    assert_eq!(
        bob.recv_action("broadcastchatmessage").await["message"]["to"],
        "ann"
    );

    // Bob leaves: ann (node a) and cat (node b) hear it; cat's next line is the room's.
    drop(bob);
    assert_eq!(ann.recv_action("userleft").await["message"], "bob");
    assert_eq!(cat.recv_action("userleft").await["message"], "bob");
    ann.send_json(&json!({"action": "broadcastchatmessage", "message": "bye bob"}))
        .await;
    assert_eq!(
        cat.recv_action("broadcastchatmessage").await["message"]["text"],
        "bye bob"
    );

    // The room goes, history and all, when its last person leaves, whichever node.
    drop(ann);
    assert_eq!(cat.recv_action("userleft").await["message"], "ann");
    drop(cat);
    common::until_async("the empty room to go", || async {
        redis
            .try_command(&["EXISTS", "chat:r:r1:history"])
            .await
            .as_deref()
            == Some(":0")
            && redis.try_command(&["SCARD", "chat:rooms"]).await.as_deref() == Some(":0")
    })
    .await;
}
