use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;

/// The request body the wrapped service receives: the server's own body, untouched, or the
/// envelope of a forwarded socket message, which the hub builds (a server's body type, such as
/// hyper's `Incoming`, cannot be built outside the server).
#[pin_project]
#[derive(Debug)]
pub struct RequestBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Incoming(#[pin] B),
    Forwarded(#[pin] Full<Bytes>),
}

impl<B> RequestBody<B> {
    pub(crate) fn incoming(body: B) -> Self {
        Self {
            kind: Kind::Incoming(body),
        }
    }

    pub(crate) fn forwarded(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Forwarded(body),
        }
    }
}

impl<B> Body for RequestBody<B>
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
            KindProj::Incoming(body) => body.poll_frame(cx),
            KindProj::Forwarded(body) => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Forwarded(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Incoming(body) => body.size_hint(),
            Kind::Forwarded(body) => body.size_hint(),
        }
    }
}
