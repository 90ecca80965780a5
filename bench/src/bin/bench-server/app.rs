//! The wshub side: the hub's layer around a small service with the publish endpoint, the
//! no-op baseline route of scenario 5 and the forward handler of scenario 6.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::{Layer, Service};
use wshub::{Envelope, Forwarding, Hub, Recipient, RequestBody};

/// Where the hub forwards envelopes with action `forwarded`.
const FORWARD_PATH: &str = "/hub/echo";

pub type WshubService = wshub::HubService<
    tower::util::BoxCloneSyncService<
        Request<RequestBody<Incoming>>,
        Response<Full<Bytes>>,
        Infallible,
    >,
>;

/// A hub with the defaults, forwarding action `forwarded` in process to [`FORWARD_PATH`]; with
/// `redis` (a URL), one node of a cluster on that Redis; with `ping_interval`, pinging each socket
/// that often (and closing a silent one after 2.4 times as long, the defaults' ratio). Call it
/// inside the runtime the hub runs on.
pub fn hub(redis: Option<&str>, ping_interval: Option<Duration>) -> Result<Hub, wshub::HubError> {
    let mut builder =
        Hub::builder().forwarding(Forwarding::in_process(FORWARD_PATH).actions(["forwarded"]));
    if let Some(every) = ping_interval {
        builder = builder.ping_interval(every).idle_timeout(every * 12 / 5);
    }
    if let Some(url) = redis {
        builder = builder.cluster(wshub::RedisCluster::new(url)?);
    }
    Ok(builder.build())
}

/// The hub on `/ws`, the publish endpoint on `/api/publish`, a no-op route on `/noop` (200 `{}`),
/// the forward handler on [`FORWARD_PATH`], 404 elsewhere.
pub fn service(hub: &Hub) -> WshubService {
    let publish = hub.publish_service().allow_anonymous();
    let app = tower::service_fn(move |request: Request<RequestBody<Incoming>>| {
        let mut publish = publish.clone();
        async move {
            match request.uri().path() {
                "/api/publish" => publish.call(request).await,
                // The baseline of scenario 5: the same hyper server, a route that reads the body
                // and does nothing with it.
                "/noop" => {
                    let _ = request.into_body().collect().await;
                    Ok(json(StatusCode::OK, Bytes::from_static(b"{}")))
                }
                // Scenario 6: what an application's handler does at the least, answering the
                // sender's connection.
                FORWARD_PATH => {
                    let sender = request
                        .headers()
                        .get("wshub-connection-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = request.into_body().collect().await;
                    let answer = Envelope::new("forwarded")
                        .with_message("ok")
                        .to(Recipient::connection(sender));
                    Ok(json(StatusCode::OK, Bytes::from(answer.to_json())))
                }
                _ => Ok(json(StatusCode::NOT_FOUND, Bytes::new())),
            }
        }
    });
    hub.layer("/ws")
        .layer(tower::util::BoxCloneSyncService::new(app))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
