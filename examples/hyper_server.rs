//! The hub without axum: the application is a `tower::service_fn` on hyper's request and body
//! types, the hub's layer wraps it, and `wshub::serve` (hyper 1's HTTP/1 server with upgrades,
//! header-read and keep-alive limits and a shutdown deadline) serves it.
//!
//! ```text
//! cargo run --example hyper_server             # then open http://127.0.0.1:3001
//! WSHUB_ADDR=127.0.0.1:0 cargo run --example hyper_server   # any free port; the address is printed
//! ```
//!
//! | variable | default |
//! |---|---|
//! | `WSHUB_ADDR` | `127.0.0.1:3001` |
//! | `WSHUB_PUBLISH_TOKEN` | a random token, printed with a `curl` command that uses it |
//! | `WSHUB_REDIS_URL` | unset: a single node. Set (`redis://127.0.0.1:6379`): one node of a cluster on that Redis (needs `--features cluster`; docs/cluster.md) |
//! | `RUST_LOG` | `info` |
//!
//! | path | what |
//! |---|---|
//! | `/` | a short text page saying what is where |
//! | `/ws` | the WebSocket (`?groupId=G&userId=U`); `/ws/wshub.js` is the browser client |
//! | `/api/publish` | `POST` an envelope with `Authorization: Bearer <token>` (see `backend_publish.sh`) |
//! | `/api/disconnect` | `POST {"user": U, "code": C}` or `{"connection": ID, "code": C}`, same token: closes the user's (or the connection's) sockets on every node, as a logout would; answers `{"closed": N}` |
//! | `/api/who` | `GET`, same token: `?group=G` or `?user=U` → `{"connections": [...]}`, `?connection=ID` → `{"groups": [...], "userId": U, "data": D}` (each `null` when no node has it), nothing → `{"connections": N, "users": N, "groups": N}`; every node's |
//! | `/api/join`, `/api/leave` | `POST {"connection": ID, "group": G}`, same token: moves a connection, on whichever node it is; answers `{"done": true}` or `false` |
//! | `/hub/echo` | where the hub forwards the socket action `echo`: a request (`hub.request("echo", m)`) is answered `{"echo": m}`, or refused when `m` is `"refuse"` |
//!
//! On Ctrl-C or SIGTERM it closes every socket with 1001, stops accepting, lets the HTTP
//! connections finish what they are doing (10 s at most), and exits 0.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IsTerminal};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tracing_subscriber::EnvFilter;
use wshub::{ConnectionInfo, Envelope, Forwarding, Hub, PublishService, Reply, RequestBody};

const PAGE: &str = r#"wshub without axum

  GET  /ws?groupId=G&userId=U   the WebSocket (its first envelope is __connected)
  GET  /ws/wshub.js             the browser client (an ES module); /ws/wshub.d.ts, its types
  POST /api/publish             publish an envelope, with Authorization: Bearer <token>

In a page:

  <script type="module">
    import { WsHub, to } from "/ws/wshub.js";
    const hub = new WsHub({ groupId: "room-1", userId: "ann" }).connect();
    hub.on("news", (message, envelope) => console.log(envelope.userId, message));
    hub.send("news", { text: "hello" }, [to.group("room-1")]);
  </script>
"#;

#[tokio::main]
async fn main() -> io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();

    let addr = std::env::var("WSHUB_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let (token, generated) = match std::env::var("WSHUB_PUBLISH_TOKEN") {
        Ok(token) if !token.is_empty() => (token, false),
        _ => (random_token()?, true),
    };

    let hub = builder_from_env()
        .forwarding(Forwarding::in_process("/hub/echo").actions(["echo"]))
        .build();
    let api = Api {
        publish: hub.publish_service().bearer_token(token.as_str()),
        hub: hub.clone(),
        token: token.as_str().into(),
    };
    // The application: any tower service. Behind the layer it receives `RequestBody<Incoming>`:
    // the server's own bodies, and the bodies of forwarded socket messages.
    let app = tower::service_fn(move |request: Request<RequestBody<Incoming>>| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(route(request, api).await) }
    });
    // The hub answers upgrades on /ws and serves /ws/wshub.js; everything else reaches `app`.
    let service = hub.layer("/ws").layer(app);

    // Installed before the address is printed, so a signal sent right after it is not lost.
    let signal = shutdown_signal()?;
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    if generated {
        println!("publish token (set WSHUB_PUBLISH_TOKEN to choose it): {token}");
        println!(
            "try: WSHUB_ADDR={addr} WSHUB_PUBLISH_TOKEN={token} examples/backend_publish.sh news hello"
        );
    }

    // On Ctrl-C or SIGTERM: every socket gets close 1001 (going away), then the server stops
    // accepting, lets the requests in flight finish, and returns within its shutdown deadline.
    wshub::serve(listener, service)
        .with_graceful_shutdown(hub.shutdown_on(signal))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// A single node, or with `WSHUB_REDIS_URL` one node of a cluster on that Redis.
fn builder_from_env() -> wshub::HubBuilder {
    match std::env::var("WSHUB_REDIS_URL") {
        Ok(url) if !url.is_empty() => clustered(Hub::builder(), &url),
        _ => Hub::builder(),
    }
}

#[cfg(feature = "cluster")]
fn clustered(builder: wshub::HubBuilder, url: &str) -> wshub::HubBuilder {
    match wshub::RedisCluster::new(url) {
        Ok(cluster) => builder.cluster(cluster),
        Err(e) => {
            eprintln!("WSHUB_REDIS_URL: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(not(feature = "cluster"))]
fn clustered(_: wshub::HubBuilder, _: &str) -> wshub::HubBuilder {
    eprintln!(
        "WSHUB_REDIS_URL is set, but this build has no cluster mode: \
         run with `--features cluster` (or `--all-features`), or unset WSHUB_REDIS_URL"
    );
    std::process::exit(2);
}

/// What the routes need.
#[derive(Clone)]
struct Api {
    publish: PublishService,
    hub: Hub,
    token: std::sync::Arc<str>,
}

/// The application's own routes.
async fn route(request: Request<RequestBody<Incoming>>, api: Api) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            .unwrap_or_default(),
        (_, "/api/publish") => match api.publish.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        (&Method::GET, "/api/who") => who(request, &api).await,
        (&Method::POST, "/hub/echo") => echo(request).await,
        (&Method::POST, path @ ("/api/disconnect" | "/api/join" | "/api/leave")) => {
            let path = path.to_owned();
            manage(request, &path, &api).await
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"not found\n")))
            .unwrap_or_default(),
    }
}

/// `/hub/echo`: the socket action `echo`, which the hub forwards here in process. Only its
/// forwards carry a `ConnectionInfo` extension, which no client can forge.
async fn echo(request: Request<RequestBody<Incoming>>) -> Response<Full<Bytes>> {
    if request.extensions().get::<ConnectionInfo>().is_none() {
        return json(
            StatusCode::FORBIDDEN,
            r#"{"error":"only the hub forwards here"}"#.to_owned(),
        );
    }
    let envelope = match request.into_body().collect().await {
        Ok(body) => Envelope::from_json(&body.to_bytes()),
        Err(_) => return json(StatusCode::BAD_REQUEST, r#"{"error":"no body"}"#.to_owned()),
    };
    let reply = match envelope {
        Ok(envelope) if envelope.message.get() == r#""refuse""# => {
            Reply::refuse("refused, as asked")
        }
        Ok(envelope) => Reply::with(&serde_json::json!({ "echo": envelope.message })),
        Err(e) => Reply::refuse(e.to_string()),
    };
    reply.into_http_response().map(Full::new)
}

/// `/api/who`: the hub's questions about connections, answered for every node.
async fn who(request: Request<RequestBody<Incoming>>, api: &Api) -> Response<Full<Bytes>> {
    if !authorized(&request, api) {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"a bearer token is required"}"#.into(),
        );
    }
    let query = request.uri().query().unwrap_or("");
    let (name, value) = query.split_once('=').unwrap_or((query, ""));
    let value = value.to_owned();
    let hub = &api.hub;
    let answer = match name {
        "group" => hub
            .group_connections(&value)
            .await
            .map(|c| serde_json::json!({ "connections": c })),
        "user" => hub
            .user_connections(&value)
            .await
            .map(|c| serde_json::json!({ "connections": c })),
        "connection" => match value.parse() {
            Ok(id) => hub.connection(id).await.map(|info| {
                let data = info
                    .as_ref()
                    .and_then(|i| i.data::<serde_json::Value>().ok());
                serde_json::json!({
                    "groups": info.as_ref().map(|i| &i.groups),
                    "userId": info.as_ref().map(|i| &i.user_id),
                    "data": data,
                })
            }),
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"not a connection id"}"#.into(),
                )
            }
        },
        "" => {
            async {
                Ok(serde_json::json!({
                    "connections": hub.connection_count().await?,
                    "users": hub.user_count().await?,
                    "groups": hub.group_count().await?,
                }))
            }
            .await
        }
        _ => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"ask for group, user or connection"}"#.into(),
            )
        }
    };
    answered(answer)
}

fn authorized(request: &Request<RequestBody<Incoming>>, api: &Api) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "))
        .is_some_and(|presented| presented.as_bytes() == api.token.as_bytes())
}

/// `200` with the answer, or the error: `503` when the cluster could not answer now.
fn answered(answer: Result<serde_json::Value, wshub::HubError>) -> Response<Full<Bytes>> {
    match answer {
        Ok(answer) => json(StatusCode::OK, answer.to_string()),
        Err(e) => {
            let status = if e.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            json(
                status,
                serde_json::json!({ "error": e.detail() }).to_string(),
            )
        }
    }
}

/// `/api/disconnect`, `/api/join` and `/api/leave`: the hub's operations on connections, which
/// work on whichever node the connections are.
async fn manage(
    request: Request<RequestBody<Incoming>>,
    path: &str,
    api: &Api,
) -> Response<Full<Bytes>> {
    if !authorized(&request, api) {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"a bearer token is required"}"#.into(),
        );
    }
    let Ok(body) = http_body_util::Limited::new(request.into_body(), 4096)
        .collect()
        .await
        .map(|b| b.to_bytes())
    else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"unreadable body"}"#.into(),
        );
    };
    let Ok(Manage {
        user,
        connection,
        group,
        code,
    }) = serde_json::from_slice::<Manage>(&body)
    else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"not the expected JSON"}"#.into(),
        );
    };
    let hub = &api.hub;
    let answer = match (path, user, connection, group) {
        ("/api/disconnect", Some(user), None, None) => hub
            .disconnect_user(&user, code.unwrap_or(1000))
            .await
            .map(|closed| serde_json::json!({ "closed": closed })),
        ("/api/disconnect", None, Some(connection), None) => hub
            .disconnect(connection, code.unwrap_or(1000))
            .await
            .map(|closed| serde_json::json!({ "closed": usize::from(closed) })),
        ("/api/join", None, Some(connection), Some(group)) => hub
            .join(connection, &group)
            .await
            .map(|done| serde_json::json!({ "done": done })),
        ("/api/leave", None, Some(connection), Some(group)) => hub
            .leave(connection, &group)
            .await
            .map(|done| serde_json::json!({ "done": done })),
        _ => {
            let error = r#"{"error":"give user or connection (disconnect), connection and group (join, leave)"}"#;
            return json(StatusCode::BAD_REQUEST, error.into());
        }
    };
    answered(answer)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manage {
    user: Option<String>,
    connection: Option<wshub::ConnectionId>,
    group: Option<String>,
    code: Option<u16>,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// 16 random bytes as 32 hex digits.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("no random bytes: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolves on Ctrl-C, or on SIGTERM where there are signals.
fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            tokio::signal::ctrl_c().await.ok();
            tracing::info!("shutting down");
        })
    }
}
