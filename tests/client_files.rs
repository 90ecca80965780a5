//! The layer serves the browser client next to the socket path, with caching headers; other
//! paths under it still reach the application.

mod common;

use common::TestServer;

fn get(server: &TestServer, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
        server.addr
    )
}

#[tokio::test]
async fn client_module_is_served_with_etag_and_revalidates_to_304() {
    let server = TestServer::start().await;
    let response = server.raw(&get(&server, "/ws/wshub.js", "")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-cache")
    );
    assert_eq!(response.body, include_str!("../client/wshub.js"));
    let etag = response.header("etag").expect("an ETag");

    let again = server
        .raw(&get(
            &server,
            "/ws/wshub.js",
            &format!("If-None-Match: {etag}\r\n"),
        ))
        .await;
    assert_eq!(again.status, 304, "{again:?}");
    assert_eq!(again.header("etag"), Some(etag));

    let types = server.raw(&get(&server, "/ws/wshub.d.ts", "")).await;
    assert_eq!(types.status, 200);
    assert_eq!(types.body, include_str!("../client/wshub.d.ts"));
}

#[tokio::test]
async fn other_paths_under_the_socket_path_reach_the_application() {
    let server = TestServer::start().await;
    let response = server.raw(&get(&server, "/ws/other.js", "")).await;
    assert_eq!(
        response.status, 404,
        "the app has no such route: {response:?}"
    );
    let post = format!(
        "POST /ws/wshub.js HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    assert_ne!(
        server.raw(&post).await.status,
        200,
        "only GET and HEAD are served"
    );
}
