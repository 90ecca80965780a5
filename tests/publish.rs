//! PROTOCOL.md §7, the publish endpoint: one test per row of its table, over real TCP.
//!
//! "Nothing is delivered" is proven without sleeping: after the request under test, a `marker`
//! envelope is published to everyone; routing is in order, so a client whose next envelope is the
//! marker did not get anything from the request before it.

mod common;

use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::{Duration, Instant};

use common::{
    envelope, envelope_of_len, expect_closed, read_response, within, Client, RawResponse,
    TestServer, TOKEN,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use wshub::Hub;

/// Sends a marker to everyone and checks that it is the next thing every client reads. It goes
/// through `Hub::send`, into the same per-connection queues as published envelopes, after the
/// request under test has been answered.
async fn marker_is_next(server: &TestServer, clients: &mut [Client]) {
    let marker = wshub::Envelope::new("marker").to(wshub::Recipient::all());
    let delivered = server.hub.send(&marker);
    assert_eq!(delivered, clients.len(), "marker reached everyone");
    for (i, client) in clients.iter_mut().enumerate() {
        let next = client.recv().await;
        assert_eq!(
            next["action"], "marker",
            "client {i} got {next} before the marker: something was delivered that must not be"
        );
    }
}

/// The `error` text of a JSON error answer, checking that the answer is JSON.
fn error_text(response: &RawResponse) -> String {
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "error answer's content-type is {content_type:?}: {response:?}"
    );
    let error = response.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `error` in {:?}", response.body))
        .to_owned();
    assert!(!error.is_empty(), "empty error text: {response:?}");
    error
}

/// A POST to `path` whose body is sent with `Transfer-Encoding: chunked` (no Content-Length), in
/// chunks of at most `chunk` bytes.
fn chunked_request(server: &TestServer, path: &str, body: &str, chunk: usize) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    for piece in body.as_bytes().chunks(chunk) {
        request.push_str(&format!("{:x}\r\n", piece.len()));
        request.push_str(std::str::from_utf8(piece).expect("ASCII body"));
        request.push_str("\r\n");
    }
    request.push_str("0\r\n\r\n");
    request
}

/// A request with `method` to `path`, the right token and `body` (may be empty).
fn request_with_method(server: &TestServer, method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    )
}

/// A POST of `body` to `/api/publish` with `authorization` as the whole header value (or none).
async fn post_with_authorization(
    server: &TestServer,
    authorization: Option<&str>,
    body: &str,
) -> RawResponse {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    server
        .raw(&format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        ))
        .await
}

/// Checks a `401` as §7 requires: JSON error and a `Bearer` challenge.
fn assert_unauthorized(response: &RawResponse, what: &str) {
    assert_eq!(response.status, 401, "{what}: {response:?}");
    error_text(response);
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate: {response:?}"));
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: challenge {challenge:?} is not a Bearer challenge"
    );
}

// Row: valid, authorized → 200 {"delivered": N}.

#[tokio::test]
async fn valid_authorized_envelope_is_200_with_delivered_count() {
    let server = TestServer::start().await;
    let mut c = vec![
        server.connect("?userId=ann&groupId=g1").await,
        server.connect("?userId=bob&groupId=g1").await,
        server.connect("?userId=carol").await,
    ];
    let body = json!({
        "action": "news",
        "message": {"headline": "hello", "n": 1.50},
        "userId": "backend",
        "recipients": [{"type": "group", "value": "g1"}],
    });
    let response = server
        .post("/api/publish", Some(TOKEN), &body.to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{response:?}"
    );
    assert_eq!(response.json(), json!({"delivered": 2}));
    for client in &mut c[..2] {
        let got = client.recv_action("news").await;
        assert_eq!(got["message"], json!({"headline": "hello", "n": 1.50}));
        assert_eq!(got["userId"], "backend");
        assert_eq!(
            got["recipients"],
            json!([]),
            "receivers never see the list (§1)"
        );
    }
    // carol is not in g1: the marker is the first thing she reads.
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn valid_authorized_array_is_200_with_summed_count_delivered_in_order() {
    let server = TestServer::start().await;
    let mut c = vec![
        server.connect("?groupId=g1").await,
        server.connect("?groupId=g1").await,
        server.connect("?groupId=g2").await,
    ];
    let third = c[2].id.clone();
    let batch = json!([
        envelope("first", json!(1), json!([{"type": "group", "value": "g1"}])),
        envelope("second", json!(2), json!([{"type": "all"}])),
        envelope(
            "third",
            json!(3),
            json!([{"type": "connection", "value": third}])
        ),
        envelope(
            "fourth",
            json!(4),
            json!([{"type": "group", "value": "nobody"}])
        ),
    ]);
    let response = server
        .post("/api/publish", Some(TOKEN), &batch.to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"delivered": 2 + 3 + 1}),
        "delivered is summed over the array"
    );
    for client in &mut c[..2] {
        assert_eq!(client.recv_action("first").await["message"], 1);
        assert_eq!(client.recv_action("second").await["message"], 2);
    }
    assert_eq!(c[2].recv_action("second").await["message"], 2);
    assert_eq!(c[2].recv_action("third").await["message"], 3);
    marker_is_next(&server, &mut c).await;

    // Many envelopes in one array arrive in the array's order.
    let many: Vec<Value> = (0..50)
        .map(|i| {
            envelope(
                "seq",
                json!(i),
                json!([{"type": "connection", "value": third}]),
            )
        })
        .collect();
    assert_eq!(server.publish(&Value::from(many).to_string()).await, 50);
    for i in 0..50 {
        assert_eq!(c[2].recv_action("seq").await["message"], i);
    }
}

// Row: body not JSON / not an envelope / unknown recipient type → 400 {"error"}, nothing delivered.

#[tokio::test]
async fn body_not_json_is_400_with_error_and_delivers_nothing() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("").await];
    for body in [
        "",
        "{",
        "not json",
        r#"{"action":"leak","recipients":[{"type":"all"}]"#,
        r#"{"action":"leak","recipients":[{"type":"all"}]} trailing"#,
    ] {
        let response = server.post("/api/publish", Some(TOKEN), body).await;
        assert_eq!(response.status, 400, "{body:?}: {response:?}");
        error_text(&response);
    }
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn body_not_an_envelope_is_400_saying_what_is_wrong() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("").await];
    for (body, says) in [
        ("3", "an envelope object"),
        (r#""x""#, "an envelope object"),
        ("null", "an envelope object"),
        ("[1]", "envelope"),
        (r#"{"action":1}"#, "`action` must be a string"),
        (
            r#"{"action":"leak","userId":false,"recipients":[{"type":"all"}]}"#,
            "`userId` must be a string or null",
        ),
        (r#"{"action":"leak","recipients":{}}"#, "recipients"),
        (
            r#"{"action":"leak","recipients":[{"type":"user"}]}"#,
            "recipients[0].value is missing",
        ),
    ] {
        let response = server.post("/api/publish", Some(TOKEN), body).await;
        assert_eq!(response.status, 400, "{body}: {response:?}");
        let error = error_text(&response);
        assert!(
            error.contains(says),
            "{body}: error {error:?} lacks {says:?}"
        );
    }
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn unknown_recipient_type_is_400_naming_the_type() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("?groupId=g1").await];
    let body = envelope(
        "leak",
        json!(""),
        json!([{"type": "group", "value": "g1"}, {"type": "everyone", "value": ""}]),
    );
    let response = server
        .post("/api/publish", Some(TOKEN), &body.to_string())
        .await;
    assert_eq!(response.status, 400, "{response:?}");
    let error = error_text(&response);
    assert!(
        error.contains("everyone") && error.contains("recipients[1]"),
        "error {error:?} does not name the bad recipient"
    );
    // The valid `group` recipient in the same envelope did not deliver it either.
    marker_is_next(&server, &mut c).await;
}

/// PROTOCOL.md §8: a recipient that repeats `type` or `value` is invalid. Taking the last of
/// them would let a body pass a proxy that checks the first (`user` `nobody`) and reach
/// everyone.
#[tokio::test]
async fn recipient_with_a_duplicate_key_is_400_and_delivers_nothing() {
    let server = TestServer::start().await;
    let mut c = vec![
        server.connect("?userId=ann&groupId=g1").await,
        server.connect("").await,
    ];
    for (body, says) in [
        (
            r#"{"action":"leak","recipients":[{"type":"user","value":"nobody","type":"all"}]}"#,
            "recipients[0] has a duplicate field `type`",
        ),
        (
            r#"{"action":"leak","recipients":[{"type":"all"},{"type":"user","value":"nobody","value":"ann"}]}"#,
            "recipients[1] has a duplicate field `value`",
        ),
        (
            r#"{"action":"leak","recipients":[{"type":"group","type":"group","value":"g1"}]}"#,
            "recipients[0] has a duplicate field `type`",
        ),
    ] {
        let response = server.post("/api/publish", Some(TOKEN), body).await;
        assert_eq!(response.status, 400, "{body}: {response:?}");
        let error = error_text(&response);
        assert!(
            error.contains(says),
            "{body}: error {error:?} lacks {says:?}"
        );
    }
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn array_with_one_bad_envelope_is_400_and_delivers_nothing() {
    let server = TestServer::start().await;
    let mut c = vec![
        server.connect("?groupId=g1").await,
        server.connect("").await,
    ];
    let good = envelope("leak", json!("x"), json!([{"type": "all"}]));
    for (batch, says) in [
        // The bad envelope comes last: the good ones before it must not have gone out.
        (
            json!([
                good,
                good,
                envelope("leak", json!(""), json!([{"type": "nobody"}]))
            ]),
            "\"nobody\" is not a recipient type",
        ),
        (json!([good, {"action": 1}]), "`action` must be a string"),
        (json!([good, 3]), "envelope"),
        (
            json!([good, {"action": "leak", "recipients": [{"type": "user"}]}]),
            "value is missing",
        ),
        // Well-formed JSON throughout, refused by the field limits checked after parsing.
        (
            json!([good, {"action": "a".repeat(300)}]),
            "[1]: action is 300 bytes long",
        ),
    ] {
        let response = server
            .post("/api/publish", Some(TOKEN), &batch.to_string())
            .await;
        assert_eq!(response.status, 400, "{batch}: {response:?}");
        let error = error_text(&response);
        assert!(
            error.contains(says),
            "{batch}: error {error:?} lacks {says:?}"
        );
    }
    marker_is_next(&server, &mut c).await;
}

// Row: missing or wrong credentials → 401 {"error"} with WWW-Authenticate.

#[tokio::test]
async fn missing_credentials_are_401_with_bearer_challenge() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("").await];
    let body = envelope("leak", json!(""), json!([{"type": "all"}])).to_string();
    let response = server.post("/api/publish", None, &body).await;
    assert_unauthorized(&response, "no Authorization header");
    let response = post_with_authorization(&server, Some(""), &body).await;
    assert_unauthorized(&response, "empty Authorization header");
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn wrong_credentials_are_401_with_bearer_challenge() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("").await];
    let body = envelope("leak", json!(""), json!([{"type": "all"}])).to_string();
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}x");
    let last_changed = format!("{prefix}X");
    let upper = TOKEN.to_ascii_uppercase();
    for (token, what) in [
        ("wrong-token", "a wrong token"),
        (prefix, "a prefix of the token"),
        (longer.as_str(), "the token plus a character"),
        (
            last_changed.as_str(),
            "the token with its last character changed",
        ),
        (upper.as_str(), "the token in upper case"),
        ("", "an empty token"),
        (&TOKEN[..1], "the token's first character"),
    ] {
        let response = server.post("/api/publish", Some(token), &body).await;
        assert_unauthorized(&response, what);
    }
    let basic_user_token = format!("Basic {}", base64(&format!("user:{TOKEN}")));
    let basic_token_empty = format!("Basic {}", base64(&format!("{TOKEN}:")));
    let basic_raw = format!("Basic {TOKEN}");
    let no_scheme = TOKEN.to_owned();
    for (authorization, what) in [
        (
            basic_user_token.as_str(),
            "Basic auth with the token as password",
        ),
        (
            basic_token_empty.as_str(),
            "Basic auth with the token as user",
        ),
        (basic_raw.as_str(), "Basic scheme with the raw token"),
        (no_scheme.as_str(), "the token without a scheme"),
        ("Bearer", "the Bearer scheme with no token"),
    ] {
        let response = post_with_authorization(&server, Some(authorization), &body).await;
        assert_unauthorized(&response, what);
    }
    marker_is_next(&server, &mut c).await;
    // The right token is accepted by the same server, so the refusals above are about the token.
    assert_eq!(server.publish(&body).await, 1);
    c[0].recv_action("leak").await;
}

/// Standard base64 with padding, enough for Basic credentials.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_helper_is_standard() {
    assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64("a"), "YQ==");
    assert_eq!(base64("ab"), "YWI=");
    assert_eq!(base64("abc"), "YWJj");
}

// Row: body over the size limit → 413.

const LIMIT: usize = 1024;

#[tokio::test]
async fn body_over_limit_is_413_by_content_length() {
    let server = TestServer::with(Hub::builder().max_publish_body(LIMIT)).await;
    let mut c = vec![server.connect("").await];

    let over = envelope_of_len("leak", LIMIT + 1);
    let response = server.post("/api/publish", Some(TOKEN), &over).await;
    assert_eq!(response.status, 413, "{response:?}");

    let much_over = envelope_of_len("leak", 4 * LIMIT);
    let response = server.post("/api/publish", Some(TOKEN), &much_over).await;
    assert_eq!(response.status, 413, "{response:?}");

    // A declared length over the limit is refused from the head alone: the body is never sent,
    // and the answer comes anyway.
    let response = server
        .raw(&format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n{{",
            server.addr
        ))
        .await;
    assert_eq!(response.status, 413, "{response:?}");
    marker_is_next(&server, &mut c).await;

    // A body of exactly the limit is accepted: the 413s above are about size.
    let at_limit = envelope_of_len("fits", LIMIT);
    assert_eq!(server.publish(&at_limit).await, 1);
    c[0].recv_action("fits").await;
}

#[tokio::test]
async fn body_over_limit_is_413_when_chunked() {
    let server = TestServer::with(Hub::builder().max_publish_body(LIMIT)).await;
    let mut c = vec![server.connect("").await];

    for (len, chunk) in [(LIMIT + 1, 256), (2 * LIMIT, 100), (2 * LIMIT, 2 * LIMIT)] {
        let over = envelope_of_len("leak", len);
        let request = chunked_request(&server, "/api/publish", &over, chunk);
        assert!(!request.to_ascii_lowercase().contains("content-length"));
        let response = server.raw(&request).await;
        assert_eq!(
            response.status, 413,
            "{len} bytes in chunks of {chunk}: {response:?}"
        );
    }
    marker_is_next(&server, &mut c).await;

    // The same chunked framing at the limit is accepted: the 413s above are about size.
    let at_limit = envelope_of_len("fits", LIMIT);
    let response = server
        .raw(&chunked_request(&server, "/api/publish", &at_limit, 256))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({"delivered": 1}));
    c[0].recv_action("fits").await;
}

const BIG_LIMIT: usize = 1024 * 1024;

/// A client connection whose socket buffers little of what it sends, as over a real network:
/// a body over the limit is still on its way when the server answers, so a server that closed
/// without reading it would reset the connection under the client's write.
async fn small_buffered_connection(server: &TestServer) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_send_buffer_size(16 * 1024).expect("SO_SNDBUF");
    socket.connect(server.addr).await.expect("connect")
}

/// A keep-alive POST to `/api/publish` of `body`, with its length declared or sent chunked.
fn keep_alive_publish(server: &TestServer, body: &str, chunked: bool) -> String {
    let mut request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n",
        server.addr
    );
    if chunked {
        request.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for piece in body.as_bytes().chunks(64 * 1024) {
            request.push_str(&format!("{:x}\r\n", piece.len()));
            request.push_str(std::str::from_utf8(piece).expect("ASCII body"));
            request.push_str("\r\n");
        }
        request.push_str("0\r\n\r\n");
    } else {
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    request
}

#[tokio::test]
async fn an_over_limit_body_sent_whole_before_reading_gets_its_413() {
    let server = TestServer::with(Hub::builder().max_publish_body(BIG_LIMIT)).await;
    let mut c = vec![server.connect("").await];
    let over = envelope_of_len("leak", BIG_LIMIT + BIG_LIMIT / 2);

    for chunked in [false, true] {
        let mut stream = small_buffered_connection(&server).await;
        // The whole request, as most clients send it, before reading anything.
        let request = keep_alive_publish(&server, &over, chunked);
        within(
            "writing the whole request",
            stream.write_all(request.as_bytes()),
        )
        .await
        .expect("the server reads the body it refuses (a reset here is the bug)");
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 413, "chunked: {chunked}: {response:?}");
        error_text(&response);

        // The refused body was read to its end, so the connection carries the next request.
        let fits = envelope_of_len("fits", 100);
        let request = keep_alive_publish(&server, &fits, chunked);
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write a second request");
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200, "chunked: {chunked}: {response:?}");
        c[0].recv_action("fits").await;
    }
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn a_body_declared_over_twice_the_limit_is_refused_at_once_and_the_connection_closed() {
    let server = TestServer::with(Hub::builder().max_publish_body(BIG_LIMIT)).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        // Only the head: the answer must not wait for a body that is not worth reading.
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n{expect}Content-Length: {}\r\n\r\n",
            server.addr,
            3 * BIG_LIMIT
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 413, "{expect:?}: {response:?}");
        assert_eq!(response.header("connection").as_deref(), Some("close"));
        expect_closed(&mut stream, "the connection to close after the 413").await;
    }
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_gets_the_413_instead() {
    let server = TestServer::with(Hub::builder().max_publish_body(BIG_LIMIT)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        BIG_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let response = read_response(&mut stream).await;
    assert_eq!(
        response.status, 413,
        "a 100 Continue would make the client send a body that is refused: {response:?}"
    );
}

// Row: body not received in time → 408.

#[tokio::test]
async fn trickling_bodies_are_answered_408_within_the_body_timeout() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::with(Hub::builder().publish_body_timeout(timeout)).await;
    let mut c = vec![server.connect("").await];

    let mut trickles = JoinSet::new();
    for _ in 0..30 {
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n",
            server.addr
        );
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        trickles.spawn(async move {
            let started = Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            writer
                .write_all(head.as_bytes())
                .await
                .expect("write a head");
            // A byte every half second, for as long as the server takes it.
            let trickle = async {
                while writer.write_all(b"1\r\n \r\n").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                response = read_response(&mut reader) => (response, started.elapsed()),
                () = trickle => unreachable!("the trickle never ends"),
            }
        });
    }
    let answers = within("30 answers to trickling bodies", trickles.join_all()).await;
    for (response, took) in answers {
        assert_eq!(response.status, 408, "{response:?}");
        error_text(&response);
        assert_eq!(response.header("connection").as_deref(), Some("close"));
        assert!(
            took >= timeout - Duration::from_millis(50),
            "answered after {took:?}, before the {timeout:?} body timeout"
        );
    }
    marker_is_next(&server, &mut c).await;
}

// Row: method other than POST → 405 with Allow: POST.

#[tokio::test]
async fn method_other_than_post_is_405_with_allow_post() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("").await];
    let body = envelope("leak", json!(""), json!([{"type": "all"}])).to_string();
    for (method, body) in [
        ("GET", ""),
        ("PUT", body.as_str()),
        ("DELETE", ""),
        ("DELETE", body.as_str()),
        ("PATCH", body.as_str()),
    ] {
        let response = server
            .raw(&request_with_method(&server, method, "/api/publish", body))
            .await;
        assert_eq!(response.status, 405, "{method}: {response:?}");
        assert_eq!(
            response.header("allow").as_deref(),
            Some("POST"),
            "{method}: {response:?}"
        );
    }
    // Also on the anonymous endpoint, where no credentials stand in the way.
    let response = server
        .raw(&request_with_method(&server, "PUT", "/api/open", &body))
        .await;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("allow").as_deref(), Some("POST"));
    marker_is_next(&server, &mut c).await;
}

// The endpoint is never open by accident: anonymous only when asked, or behind a tower auth layer.

#[tokio::test]
async fn allow_anonymous_accepts_requests_without_credentials() {
    let server = TestServer::start().await;
    let mut c = vec![server.connect("?groupId=g1").await];
    let body = envelope(
        "open",
        json!("hi"),
        json!([{"type": "group", "value": "g1"}]),
    );
    let response = server.post("/api/open", None, &body.to_string()).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({"delivered": 1}));
    assert_eq!(c[0].recv_action("open").await["message"], "hi");
    // Whatever Authorization it carries is not its business either.
    let response = server
        .post("/api/open", Some("anything"), &body.to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    c[0].recv_action("open").await;
    // While the bearer endpoint of the same hub refuses the same anonymous request.
    let response = server.post("/api/publish", None, &body.to_string()).await;
    assert_unauthorized(&response, "the bearer endpoint without credentials");
    marker_is_next(&server, &mut c).await;
}

#[tokio::test]
async fn allow_anonymous_behind_tower_auth_layer_needs_its_credentials() {
    const LAYER_TOKEN: &str = "layer-secret-42";
    let hub = Hub::builder().build();
    let app = Router::new()
        .route_service("/api/guarded", hub.publish_service().allow_anonymous())
        .route_layer(ValidateRequestHeaderLayer::custom(require_bearer(
            LAYER_TOKEN,
        )));
    let server = TestServer::serve(hub, app).await;
    let mut c = vec![server.connect("?userId=ann").await];
    let body = envelope(
        "guarded",
        json!("ok"),
        json!([{"type": "user", "value": "ann"}]),
    );
    let body = body.to_string();

    let response = server.post("/api/guarded", None, &body).await;
    assert_eq!(response.status, 401, "no credentials: {response:?}");
    let response = server.post("/api/guarded", Some(TOKEN), &body).await;
    assert_eq!(response.status, 401, "another token: {response:?}");
    marker_is_next(&server, &mut c).await;

    let response = server.post("/api/guarded", Some(LAYER_TOKEN), &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({"delivered": 1}));
    assert_eq!(c[0].recv_action("guarded").await["message"], "ok");
}

/// A tower-http request validator standing for the application's own authentication: the
/// `Authorization` header must be exactly `Bearer <token>`, or the request is refused with `401`.
/// (`ValidateRequestHeaderLayer::bearer` does the same but is deprecated.)
// tower-http's `ValidateRequest` fixes the error type to a whole `Response`.
#[allow(clippy::result_large_err)]
fn require_bearer(
    token: &str,
) -> impl FnMut(&mut Request<axum::body::Body>) -> Result<(), Response> + Clone {
    let expected = format!("Bearer {token}");
    move |request: &mut Request<axum::body::Body>| {
        let presented = request.headers().get(header::AUTHORIZATION);
        if presented.is_some_and(|value| value.as_bytes() == expected.as_bytes()) {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
            )
                .into_response())
        }
    }
}

#[test]
#[should_panic(expected = "bearer token is empty")]
fn empty_bearer_token_panics() {
    let hub = Hub::builder().build();
    let _ = hub.publish_service().bearer_token("");
}

#[test]
fn empty_bearer_token_panics_for_an_empty_string_too() {
    let result = std::panic::catch_unwind(|| {
        let hub = Hub::builder().build();
        let _ = hub.publish_service().bearer_token(String::new());
    });
    assert!(
        result.is_err(),
        "an empty String token must not open the endpoint"
    );
}
