//! With the `axum` feature, `axum::serve` takes a [`HubService`] directly, as it takes a `Router`.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::serve::{IncomingStream, Listener};
use tower_service::Service;

use super::HubService;

/// Each accepted connection is served by a clone of the same service, as with axum's `Router`.
impl<'a, L, S> Service<IncomingStream<'a, L>> for HubService<S>
where
    L: Listener,
    S: Clone,
{
    type Response = Self;
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: IncomingStream<'a, L>) -> Self::Future {
        ready(Ok(self.clone()))
    }
}
