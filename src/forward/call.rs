//! The two ways a forward reaches the application, behind one type: a call into the wrapped
//! service (in process), or a request over a pooled HTTP client (external).

use std::future::{poll_fn, Future};
use std::pin::Pin;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tower_service::Service;

use super::RequestBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future of one forward: the application's answer with its body read, or why there is none.
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Bytes>, String>> + Send>>;

/// Sends one forward. Each connection owns one, so a wrapped service need not be `Sync`.
pub(crate) type Call = Box<dyn FnMut(Request<Bytes>) -> CallFuture + Send>;

/// Calls `inner` in process. Each call uses its own clone, made ready before the call: a clone is
/// not ready because the original was.
pub(crate) fn in_process<S, B, ResBody>(inner: S, body_limit: usize) -> Call
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    Box::new(move |request: Request<Bytes>| {
        let mut service = inner.clone();
        Box::pin(async move {
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| format!("the application is not ready: {}", e.into()))?;
            let request = request.map(|body| RequestBody::forwarded(Full::new(body)));
            let response = service
                .call(request)
                .await
                .map_err(|e| format!("the application failed: {}", e.into()))?;
            read(response, body_limit).await
        })
    })
}

/// Sends over HTTP with a client shared by all connections (its pool included).
pub(crate) fn external(client: Client<HttpConnector, Full<Bytes>>, body_limit: usize) -> Call {
    Box::new(move |request: Request<Bytes>| {
        let client = client.clone();
        Box::pin(async move {
            let response = client
                .request(request.map(Full::new))
                .await
                .map_err(|e| format!("the application could not be reached: {e}"))?;
            read(response, body_limit).await
        })
    })
}

/// Reads an answer's body, up to `limit` bytes.
async fn read<B>(response: Response<B>, limit: usize) -> Result<Response<Bytes>, String>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(format!("the application's answer is over {limit} bytes"))
        }
        Err(e) => return Err(format!("the application's answer could not be read: {e}")),
    };
    Ok(Response::from_parts(parts, body))
}
