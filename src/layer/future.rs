use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project::pin_project;

/// The response future of [`HubService`](super::HubService): the hub's own answer, ready at once,
/// or the wrapped service's, untouched.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
#[derive(Debug)]
enum State<F> {
    Ready(Option<Response<Bytes>>),
    Inner(#[pin] F),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn ready(response: Response<Bytes>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner(future),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready(response) => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(B::from)))
            }
            StateProj::Inner(future) => future.poll(cx),
        }
    }
}
