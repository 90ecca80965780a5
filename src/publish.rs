//! The HTTP publish endpoint (docs/protocol.md §7): any backend POSTs an envelope, or an array of them,
//! and the hub routes it. It is never open by accident: to get the service at all, the application
//! picks a bearer token, or says that something else (a tower auth layer) guards it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::time::Instant;
use tower_service::Service;

use crate::envelope::Envelope;
use crate::hub::Hub;
use crate::meters;
use crate::pace::Pace;

/// The publish endpoint before it has been told how to authenticate; not yet a service.
///
/// Made by [`Hub::publish_service`].
#[derive(Debug, Clone)]
#[must_use = "a publish endpoint does nothing until it is given authentication and routed"]
pub struct PublishEndpoint {
    hub: Hub,
}

impl Hub {
    /// The HTTP publish endpoint (docs/protocol.md §7). Choose how it authenticates to get the
    /// service: [`PublishEndpoint::bearer_token`] or [`PublishEndpoint::allow_anonymous`].
    pub fn publish_service(&self) -> PublishEndpoint {
        PublishEndpoint::new(self.clone())
    }
}

impl PublishEndpoint {
    fn new(hub: Hub) -> Self {
        Self { hub }
    }

    /// Requires `Authorization: Bearer <token>`, compared in constant time.
    ///
    /// ```
    /// use axum::Router;
    ///
    /// let hub = wshub::Hub::builder().build();
    /// let app: Router = Router::new()
    ///     .route_service("/api/publish", hub.publish_service().bearer_token("s3cret-token"));
    /// ```
    ///
    /// # Panics
    ///
    /// When `token` is empty: an unset secret must not open the endpoint.
    pub fn bearer_token(self, token: impl Into<String>) -> PublishService {
        let token = token.into();
        assert!(
            !token.is_empty(),
            "wshub: the publish endpoint's bearer token is empty"
        );
        PublishService {
            hub: self.hub,
            auth: Auth::Bearer(Arc::from(token.into_bytes())),
        }
    }

    /// Accepts every request that reaches it: for an endpoint that another layer authenticates
    /// (any tower auth middleware), or that only trusted hosts can reach.
    pub fn allow_anonymous(self) -> PublishService {
        PublishService {
            hub: self.hub,
            auth: Auth::Anonymous,
        }
    }
}

/// The publish endpoint as a tower service: `POST` an envelope or an array of envelopes, get
/// `{"delivered": N}`.
#[derive(Clone)]
pub struct PublishService {
    hub: Hub,
    auth: Auth,
}

#[derive(Clone)]
enum Auth {
    Bearer(Arc<[u8]>),
    Anonymous,
}

impl fmt::Debug for PublishService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth {
            Auth::Bearer(_) => "bearer token",
            Auth::Anonymous => "anonymous",
        };
        f.debug_struct("PublishService")
            .field("hub", &self.hub)
            .field("auth", &auth)
            .finish()
    }
}

impl<B> Service<Request<B>> for PublishService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let response = this.publish(request).await;
            meters::publish_answered(response.status().as_u16());
            Ok(response)
        })
    }
}

impl PublishService {
    async fn publish<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if let Some(refusal) = self.refusal(request.headers()) {
            return refusal;
        }
        let limit = self.hub.config().max_publish_body;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // Not worth reading: a client waiting for `100 Continue` has not sent it, and one that
        // sends more than twice the limit gets the answer only if it reads while sending.
        if declared.is_some_and(|n| {
            n > limit as u64
                && (expects_continue(request.headers()) || n > (limit as u64).saturating_mul(2))
        }) {
            return closing(too_large(limit));
        }
        let deadline = Instant::now().checked_add(self.hub.config().publish_body_timeout);
        let body = match read_body(request.into_body(), limit, deadline).await {
            Read::Whole(body) => body,
            Read::TooLarge { drained: true } => return too_large(limit),
            Read::TooLarge { drained: false } => return closing(too_large(limit)),
            Read::TimedOut => {
                return closing(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                ))
            }
            Read::Failed => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            }
        };
        let envelopes = match Envelope::parse_batch(&body, self.hub.config().fields) {
            Ok(envelopes) => envelopes,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        if !self.hub.reaches_cluster() {
            // Nothing delivered, not even here, so that the caller's retry cannot duplicate.
            return cluster_unavailable(
                "the cluster's Redis is unreachable; nothing was delivered",
            );
        }
        // The caller waits, rather than readers being closed, while a target is far behind
        // and still reading.
        let mut pace = Pace::patient(self.hub.config().stall_timeout);
        let mut delivered = 0;
        let Some(mut tally) = self.hub.tally() else {
            for envelope in &envelopes {
                let routed = self.hub.route(envelope);
                delivered += routed.delivered;
                pace.catch_up(routed.behind).await;
            }
            let answer = serde_json::json!({ "delivered": delivered });
            return json(StatusCode::OK, &answer);
        };
        // A cluster: the other nodes first, confirmed by Redis, so that a refusal means that
        // nothing was delivered anywhere and a retry cannot deliver twice.
        let frames = match self.hub.send_confirmed(&envelopes, &mut tally).await {
            Ok(frames) => frames,
            Err(e) => return cluster_unavailable(e.detail()),
        };
        for (envelope, frame) in envelopes.iter().zip(frames) {
            let routed = self.hub.deliver_here(envelope, frame);
            delivered += routed.delivered;
            pace.catch_up(routed.behind).await;
        }
        let reported = tally.finish().await;
        let answer = serde_json::json!({
            "delivered": delivered + reported.delivered,
            "nodes": reported.nodes,
            "answered": reported.answered,
            "partial": reported.partial,
        });
        json(StatusCode::OK, &answer)
    }

    /// The `401` for a request without the right credentials; `None` lets it through.
    fn refusal(&self, headers: &http::HeaderMap) -> Option<Response<Full<Bytes>>> {
        let Auth::Bearer(expected) = &self.auth else {
            return None;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        let (message, challenge) = match presented {
            Some(token) if constant_time_eq(token, expected) => return None,
            Some(_) => (
                "the bearer token is not valid",
                r#"Bearer realm="wshub", error="invalid_token""#,
            ),
            None => ("a bearer token is required", r#"Bearer realm="wshub""#),
        };
        let mut response = error(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(response)
    }
}

/// How a request body read ended.
enum Read {
    Whole(Bytes),
    /// Over the limit; `drained` when the rest of it was read and discarded, so the connection
    /// can carry the answer and further requests.
    TooLarge {
        drained: bool,
    },
    TimedOut,
    Failed,
}

/// Reads a body of at most `limit` bytes before `deadline`. Past the limit it reads and discards
/// up to `limit` bytes more (still before the deadline): a client that sends its whole body
/// before reading the answer (most do, without `Expect: 100-continue`) then reads the `413`
/// instead of a connection reset, which a close with unread data in the socket would cause.
async fn read_body<B>(body: B, limit: usize, deadline: Option<Instant>) -> Read
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = pin!(body);
    match before(deadline, Limited::new(body.as_mut(), limit).collect()).await {
        None => Read::TimedOut,
        Some(Ok(collected)) => Read::Whole(collected.to_bytes()),
        Some(Err(e)) if e.is::<LengthLimitError>() => Read::TooLarge {
            drained: before(deadline, discard(body, limit)).await == Some(true),
        },
        Some(Err(_)) => Read::Failed,
    }
}

/// Reads the rest of `body` and forgets it; false when it holds more than `allowance` bytes or
/// fails.
async fn discard<B: Body>(mut body: Pin<&mut B>, allowance: usize) -> bool {
    let mut left = allowance;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Ok(data) = frame.into_data() {
            match left.checked_sub(data.remaining()) {
                Some(rest) => left = rest,
                None => return false,
            }
        }
    }
    true
}

/// Runs `future` until `deadline` (forever without one); `None` when the deadline came first.
async fn before<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The answer, and the connection closed after it: the rest of the request body was not read,
/// so the connection cannot carry another request.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The token of `Bearer <token>`; the scheme is case-insensitive and may be followed by several
/// spaces (RFC 7235 §2.1).
fn bearer(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = authorization.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii_start())
}

/// Compares in time that depends only on the expected token's length, not on where they differ.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is larger than {limit} bytes"),
    )
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The `503` of a cluster node that cannot reach the other nodes now.
fn cluster_unavailable(detail: &str) -> Response<Full<Bytes>> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::{bearer, constant_time_eq};

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret!", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
