//! The application's tower service as hyper's connection calls it, marking each request in
//! flight from its head until its response body is done, so no idle or header-read deadline
//! runs while the application works.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower_service::Service;

use super::activity::{Activity, InFlight};

/// A clone of the application for one connection.
#[derive(Debug)]
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, R, B> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: Service<Request<R>, Response = Response<B>> + Clone,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S, Request<R>>;

    fn call(&self, request: Request<R>) -> Self::Future {
        // hyper's service is called by shared reference, tower's by unique one: each request
        // gets its own clone, made ready before it is called, as `tower::ServiceExt::oneshot`.
        TrackedFuture {
            state: State::Waiting {
                service: self.inner.clone(),
                request: Some(request),
            },
            in_flight: Some(self.activity.begin()),
        }
    }
}

#[pin_project]
pub(super) struct TrackedFuture<S: Service<R>, R> {
    #[pin]
    state: State<S, R>,
    in_flight: Option<InFlight>,
}

#[pin_project(project = StateProj)]
enum State<S: Service<R>, R> {
    Waiting { service: S, request: Option<R> },
    Called(#[pin] S::Future),
}

impl<S, R, B> Future for TrackedFuture<S, R>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<TrackedBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        unreachable!("a waiting call holds its request")
                    };
                    let called = service.call(request);
                    this.state.set(State::Called(called));
                }
                StateProj::Called(future) => {
                    let response = ready!(future.poll(cx))?;
                    let in_flight = this.in_flight.take();
                    return Poll::Ready(Ok(response.map(|body| TrackedBody { body, in_flight })));
                }
            }
        }
    }
}

/// A response body that ends its request's time in flight when it is dropped: hyper drops it as
/// soon as it has been written out, or when the connection ends.
#[pin_project]
#[derive(Debug)]
pub(super) struct TrackedBody<B> {
    #[pin]
    body: B,
    in_flight: Option<InFlight>,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
