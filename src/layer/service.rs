use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::handshake;
use crate::hub::Hub;

/// Wraps a service in a [`HubService`] that accepts WebSocket upgrades on one path.
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

impl HubLayer {
    pub(crate) fn new(hub: Hub, path: String) -> Self {
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HubService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() == self.path && handshake::is_upgrade_request(request.headers()) {
            ResponseFuture::ready(handshake::accept(&self.hub, request))
        } else {
            ResponseFuture::inner(self.inner.call(request))
        }
    }
}
