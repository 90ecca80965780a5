use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;

/// The body of a [`HubService`](super::HubService) response: the hub's own short answer (a `101`
/// or a refusal) or the wrapped service's body, untouched.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Hub(#[pin] Full<Bytes>),
    Inner(#[pin] B),
}

impl<B> ResponseBody<B> {
    pub(crate) fn hub(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Hub(body),
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner(body),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Hub(body) => body.poll_frame(cx).map_err(|never| match never {}),
            KindProj::Inner(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hub(body) => body.is_end_stream(),
            Kind::Inner(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hub(body) => body.size_hint(),
            Kind::Inner(body) => body.size_hint(),
        }
    }
}
