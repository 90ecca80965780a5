use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project::pin_project;

/// The response future of [`HubService`](super::HubService): the hub's own answer, ready at once,
/// or the wrapped service's, untouched.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
enum State<F> {
    Ready(Option<Response<Bytes>>),
    /// The identity resolver is deciding.
    Handshake(Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>),
    Inner(#[pin] F),
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Ready(_) => "Ready",
            State::Handshake(_) => "Handshake",
            State::Inner(_) => "Inner",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn ready(response: Response<Bytes>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }

    pub(crate) fn handshake(future: Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>) -> Self {
        Self {
            state: State::Handshake(future),
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
            StateProj::Handshake(future) => future.as_mut().poll(cx).map(|r| Ok(r.map(B::from))),
            StateProj::Inner(future) => future.poll(cx),
        }
    }
}
