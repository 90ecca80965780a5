use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project::pin_project;

use super::ResponseBody;

/// The response future of [`HubService`](super::HubService): the hub's own answer, ready at once,
/// or the wrapped service's.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
#[derive(Debug)]
enum State<F> {
    Ready(Option<Response<Full<Bytes>>>),
    Inner(#[pin] F),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
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
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready(response) => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::hub)))
            }
            StateProj::Inner(future) => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
        }
    }
}
