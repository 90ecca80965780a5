//! What a forwarded message's handler answers (docs/protocol.md §4.1, §5): a reply to the sender,
//! envelopes to route to others, or a refusal.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::envelope::Envelope;
use crate::forward::REPLY;

/// The answer to a socket message the hub forwarded: what the sender's `hub.request(..)` resolves
/// with, and envelopes to route as if published; or a refusal, which the sender sees as an
/// `__error` with code `forbidden` and the reason as detail.
///
/// With axum, return it from a handler (it is `IntoResponse`); with hyper or anything else,
/// answer with [`into_http_response`](Self::into_http_response).
///
/// ```
/// use wshub::{Envelope, Forwarded, Recipient, Reply};
///
/// async fn chat(Forwarded { envelope, sender }: Forwarded) -> Reply {
///     let Ok(text) = envelope.message_as::<String>() else {
///         return Reply::refuse("send text");
///     };
///     if text.trim().is_empty() {
///         return Reply::refuse("say something");
///     }
///     let line = Envelope::new("chat")
///         .with_message(&text)
///         .from_user(sender.user_id.clone())
///         .to(Recipient::group(sender.group_id()));
///     // The sender's promise resolves with {"accepted": true} once the line is routed.
///     Reply::with(&serde_json::json!({ "accepted": true })).and(line)
/// }
/// # let _: axum::Router = axum::Router::new().route("/hub/messages", axum::routing::post(chat));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Reply {
    answer: Answer,
}

#[derive(Debug, Clone)]
enum Answer {
    Done {
        reply: Option<Envelope>,
        route: Vec<Envelope>,
    },
    Refused(String),
}

impl Reply {
    /// Answers the sender's request with `message`, serialised to JSON (`null` if it cannot be).
    pub fn with<T: Serialize + ?Sized>(message: &T) -> Self {
        Self {
            answer: Answer::Done {
                reply: Some(Envelope::new(REPLY).with_message(message)),
                route: Vec::new(),
            },
        }
    }

    /// Answers that the message was handled, with nothing more to say: the sender's request
    /// resolves with `null`. Alone, this is an empty `204`.
    pub fn done() -> Self {
        Self {
            answer: Answer::Done {
                reply: None,
                route: Vec::new(),
            },
        }
    }

    /// Refuses the message: the sender gets `__error` with code `forbidden` and `reason` as its
    /// detail (keep it short: a longer one is replaced by the status), and nothing is routed.
    pub fn refuse(reason: impl Into<String>) -> Self {
        Self {
            answer: Answer::Refused(reason.into()),
        }
    }

    /// Also routes `envelope`, as if published, before the sender gets the reply. Ignored on a
    /// refusal.
    pub fn and(mut self, envelope: Envelope) -> Self {
        if let Answer::Done { route, .. } = &mut self.answer {
            route.push(envelope);
        }
        self
    }

    /// The HTTP answer the hub reads: `200` with the envelopes as JSON, `204` with nothing to
    /// say, or `403` with the reason.
    pub fn into_http_response(self) -> Response<Bytes> {
        let (status, content_type, body) = match self.answer {
            Answer::Refused(reason) => (StatusCode::FORBIDDEN, "text/plain; charset=utf-8", reason),
            Answer::Done { reply: None, route } if route.is_empty() => {
                (StatusCode::NO_CONTENT, "", String::new())
            }
            Answer::Done { reply, mut route } => {
                route.extend(reply);
                (StatusCode::OK, "application/json", batch_json(&route))
            }
        };
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        if !content_type.is_empty() {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        response
    }
}

/// One envelope as an object, more as an array: both are what a forward's answer may be.
fn batch_json(envelopes: &[Envelope]) -> String {
    match envelopes {
        [one] => one.to_json(),
        // Serialising envelopes cannot fail.
        many => serde_json::to_string(many).unwrap_or_default(),
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Reply {
    fn into_response(self) -> axum::response::Response {
        self.into_http_response().map(axum::body::Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::FieldLimits;
    use crate::forward::Outcome;
    use crate::Recipient;

    /// What the hub makes of each answer: the reading side is the other half of the contract.
    fn read(reply: Reply) -> Outcome {
        Outcome::of(reply.into_http_response(), FieldLimits::default())
    }

    #[test]
    fn the_hub_reads_each_answer_as_meant() {
        let Outcome::Route { envelopes, reply } = read(
            Reply::with(&serde_json::json!({"ok": true}))
                .and(Envelope::new("a").to(Recipient::all()))
                .and(Envelope::new("b")),
        ) else {
            panic!("not routed");
        };
        let actions: Vec<_> = envelopes.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["a", "b"]);
        assert_eq!(
            reply.map(|r| r.get().to_owned()).as_deref(),
            Some(r#"{"ok":true}"#)
        );

        assert!(matches!(read(Reply::done()), Outcome::Nothing));
        assert!(matches!(
            read(Reply::done().and(Envelope::new("a"))),
            Outcome::Route { envelopes, reply: None } if envelopes.len() == 1
        ));
        assert!(matches!(
            read(Reply::refuse("not in this room").and(Envelope::new("a"))),
            Outcome::Failed { code: "forbidden", detail } if detail == "not in this room"
        ));
    }
}
