//! The axum extractor for a forwarded socket message (feature `axum`).

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::envelope::{Envelope, FieldLimits};
use crate::info::ConnectionInfo;

/// A socket message the hub forwarded into the application, and who sent it.
///
/// `sender` comes from the hub alone (a request extension that only an in-process forward
/// carries), never from headers a client could forge. A request that did not come from the hub
/// is refused with `403`. The envelope is parsed with the hub's field limits
/// ([`max_id_len`](crate::HubBuilder::max_id_len), [`max_recipients`](crate::HubBuilder::max_recipients)),
/// which the forward carries too. Answer with a [`Reply`](crate::Reply): a reply for the
/// sender's `hub.request(..)`, envelopes to route to others, or a refusal.
///
/// ```
/// use axum::{routing::post, Router};
/// use wshub::{Envelope, Forwarded, Recipient, Reply};
///
/// async fn chat(Forwarded { envelope, sender }: Forwarded) -> Reply {
///     let Ok(text) = envelope.message_as::<String>() else {
///         return Reply::refuse("text only");
///     };
///     let line = Envelope::new("chat")
///         .with_message(&text)
///         .to(Recipient::group(sender.group_id()))
///         .from_user(sender.user_id);
///     Reply::done().and(line)
/// }
///
/// let app: Router = Router::new().route("/hub/messages", post(chat));
/// ```
///
/// A handler is a plain async function of a `Forwarded`, so a unit test calls it with one built
/// by hand, no server needed (docs/testing.md):
///
/// ```
/// # use wshub::{ConnectionId, ConnectionInfo, Envelope, Forwarded, Reply};
/// # async fn chat(Forwarded { envelope, .. }: Forwarded) -> Reply {
/// #     if envelope.message_as::<String>().is_ok() { Reply::done() } else { Reply::refuse("text only") }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let id: ConnectionId = "0123456789abcdef0123456789abcdef".parse().unwrap();
/// let sender = ConnectionInfo::new(id, "ann".into(), vec!["room-1".into()]);
/// let refused = chat(Forwarded {
///     envelope: Envelope::new("chat").with_message(&42),
///     sender,
/// })
/// .await;
/// assert_eq!(refused.into_http_response().status(), 403);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The envelope as the client sent it, with its identity stamped.
    pub envelope: Envelope,
    /// The connection that sent it.
    pub sender: ConnectionInfo,
}

impl<S: Send + Sync> FromRequest<S> for Forwarded {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(sender) = request.extensions().get::<ConnectionInfo>().cloned() else {
            return Err((
                StatusCode::FORBIDDEN,
                "only the hub sends forwarded socket messages",
            )
                .into_response());
        };
        // A request built by hand (a handler under test) gets the default limits.
        let limits = request
            .extensions()
            .get::<FieldLimits>()
            .copied()
            .unwrap_or_default();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let envelope = Envelope::parse(&body, limits)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
        Ok(Self { envelope, sender })
    }
}
