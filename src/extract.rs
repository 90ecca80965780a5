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
/// which the forward carries too. Answer with an envelope or an array of envelopes (`axum::Json`) to have
/// the hub route them, with `204` for nothing, or with `403` and a reason to refuse the message.
///
/// ```
/// use axum::{http::StatusCode, routing::post, Json, Router};
/// use wshub::{Envelope, Forwarded, Recipient};
///
/// async fn chat(Forwarded { envelope, sender }: Forwarded) -> Result<Json<Envelope>, (StatusCode, &'static str)> {
///     let text: String = envelope.message_as().map_err(|_| (StatusCode::FORBIDDEN, "text only"))?;
///     let reply = Envelope::new("chat")
///         .with_message(&text)
///         .to(Recipient::group(sender.group_id()))
///         .from_user(sender.user_id);
///     Ok(Json(reply))
/// }
///
/// let app: Router = Router::new().route("/hub/messages", post(chat));
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
