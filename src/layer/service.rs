use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::client_files;
use crate::forward::RequestBody;
use crate::forward::{self, Call, Target};
use crate::handshake::{self, Answer};
use crate::hub::Hub;
use crate::info::ConnectionInfo;

/// Wraps a service in a [`HubService`] that accepts WebSocket upgrades on one path.
///
/// It also serves the browser client next to that path: `<path>/wshub.js` (an ES module) and
/// `<path>/wshub.d.ts`, with an ETag.
///
/// Made by [`Hub::layer`].
///
/// ```
/// use axum::{routing::get, Router};
/// use tower::Layer;
///
/// let hub = wshub::Hub::builder().build();
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// // Wrap the whole router, not each route (`Router::layer` would do that).
/// let app = hub.layer("/ws").layer(app);
/// # let _: wshub::HubService<Router> = app;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HubLayer {
    hub: Hub,
    path: String,
}

impl Hub {
    /// The tower [`Layer`] that accepts WebSocket upgrades on `path` (matched exactly) and
    /// passes every other request to the service it wraps.
    ///
    /// Wrap the **whole** application with it: with axum, `hub.layer("/ws").layer(router)`
    /// rather than `router.layer(..)`, which would wrap each route on its own.
    pub fn layer(&self, path: impl Into<String>) -> HubLayer {
        HubLayer::new(self.clone(), path.into())
    }
}

impl HubLayer {
    fn new(hub: Hub, path: String) -> Self {
        Self { hub, path }
    }
}

impl<S> Layer<S> for HubLayer {
    type Service = HubService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HubService {
            inner,
            hub: self.hub.clone(),
            path: self.path.clone(),
        }
    }
}

/// The application with a hub in front: upgrades on the socket path become hub connections,
/// everything else reaches `S` unchanged.
///
/// Its responses have the wrapped service's body type, which makes the hub's own answers (the
/// `101` and the refusals) from [`Bytes`]: axum's `Body` and `Full<Bytes>` both can.
#[derive(Debug, Clone)]
pub struct HubService<S> {
    inner: S,
    hub: Hub,
    path: String,
}

impl<S> HubService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The wrapped service receives [`RequestBody<ReqBody>`](RequestBody): the server's own bodies,
/// and the bodies of forwarded socket messages, which the hub builds.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HubService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() == self.path && handshake::is_upgrade_request(request.headers()) {
            let make_call = || self.forward_call::<ReqBody, ResBody>();
            return match handshake::accept(&self.hub, request, make_call) {
                Answer::Now(response) => ResponseFuture::ready(response),
                Answer::Later(future) => ResponseFuture::handshake(future),
            };
        }
        if let Some(name) = request
            .uri()
            .path()
            .strip_prefix(self.path.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        {
            if let Some(response) = client_files::serve(name, request.method(), request.headers()) {
                return ResponseFuture::ready(response);
            }
        }
        // Only the hub says who sent a forwarded message.
        let headers = request.headers_mut();
        for name in forward::IDENTITY_HEADERS {
            headers.remove(name);
        }
        request.extensions_mut().remove::<ConnectionInfo>();
        ResponseFuture::inner(self.inner.call(request.map(RequestBody::incoming)))
    }
}

impl<S> HubService<S> {
    /// How a new connection's forwards reach the application: a clone of the wrapped service
    /// for in-process forwarding, the hub's pooled client for an external URL.
    fn forward_call<ReqBody, ResBody>(&self) -> Option<Call>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        ReqBody: Send + 'static,
        ResBody: Body + Send + 'static,
        ResBody::Data: Send,
        ResBody::Error: Into<BoxError>,
    {
        match &self.hub.config().forwarding.as_ref()?.target {
            Target::InProcess(_) => Some(forward::in_process(
                self.inner.clone(),
                self.hub.config().max_publish_body,
            )),
            Target::External(_) => self.hub.external_call(),
        }
    }
}
