//! What the application's answer to a forward means (docs/protocol.md §5).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::value::RawValue;

use crate::envelope::{Envelope, FieldLimits};

/// The effect of one forward.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// 2xx with envelopes: route each as if published, and answer the sender's request with
    /// the message of the answer's `__reply`, if it had one (docs/protocol.md §4.1).
    Route {
        envelopes: Vec<Envelope>,
        reply: Option<Box<RawValue>>,
    },
    /// 2xx with an empty body.
    Nothing,
    /// Anything else: the sender gets `__error` with this code and detail.
    Failed { code: &'static str, detail: String },
}

/// The action by which an application answers the sender's request.
pub(crate) const REPLY: &str = "__reply";

/// Longest part of an error answer's body passed on to the client.
pub(crate) const DETAIL_MAX: usize = 200;

impl Outcome {
    pub(crate) fn failed(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Failed {
            code,
            detail: detail.into(),
        }
    }

    /// Reads the application's answer. A `403` is the application refusing the envelope
    /// (`forbidden`); its body, when it is short text, tells the client why.
    pub(crate) fn of(response: Response<Bytes>, limits: FieldLimits) -> Self {
        let status = response.status();
        let body = response.into_body();
        if status.is_success() {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Self::Nothing;
            }
            return match Envelope::parse_batch(&body, limits) {
                Ok(envelopes) => Self::route(envelopes),
                Err(e) => Self::failed(
                    "forward_failed",
                    format!(
                        "the application's answer is not an envelope: {}",
                        e.detail()
                    ),
                ),
            };
        }
        let code = if status == StatusCode::FORBIDDEN {
            "forbidden"
        } else {
            "forward_failed"
        };
        Self::failed(code, explanation(status, &body))
    }

    /// Takes the answer's `__reply` out of what is routed: a message has one answer at most.
    fn route(mut envelopes: Vec<Envelope>) -> Self {
        let replies = envelopes.iter().filter(|e| e.action == REPLY).count();
        if replies > 1 {
            return Self::failed(
                "forward_failed",
                format!("the application's answer holds {replies} `{REPLY}` envelopes; a message has one answer at most"),
            );
        }
        let reply = envelopes
            .iter()
            .position(|e| e.action == REPLY)
            .map(|at| envelopes.remove(at).message);
        Self::Route { envelopes, reply }
    }
}

fn explanation(status: StatusCode, body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    // A JSON error body (`{"error": "…"}`) says it best in its own words.
    let text = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| text.to_owned());
    if text.is_empty() || text.len() > DETAIL_MAX {
        format!("the application answered {status}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Outcome {
        let mut response = Response::new(Bytes::from(body.to_owned()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Outcome::of(response, FieldLimits::default())
    }

    #[test]
    fn answers_map_to_the_protocol_table() {
        assert!(
            matches!(answer(200, r#"{"action":"a"}"#), Outcome::Route { envelopes, reply: None } if envelopes.len() == 1)
        );
        assert!(
            matches!(answer(200, r#"[{"action":"a"},{}]"#), Outcome::Route { envelopes, reply: None } if envelopes.len() == 2)
        );
        assert!(matches!(answer(204, ""), Outcome::Nothing));
        assert!(matches!(answer(200, " \n"), Outcome::Nothing));
        assert!(
            matches!(answer(200, "<html>"), Outcome::Failed { code: "forward_failed", detail } if detail.contains("not an envelope"))
        );
        assert!(
            matches!(answer(403, "empty messages are not allowed"), Outcome::Failed { code: "forbidden", detail } if detail == "empty messages are not allowed")
        );
        assert!(
            matches!(answer(422, r#"{"error":"too long"}"#), Outcome::Failed { code: "forward_failed", detail } if detail == "too long")
        );
        assert!(
            matches!(answer(500, ""), Outcome::Failed { code: "forward_failed", detail } if detail.contains("500"))
        );
    }

    #[test]
    fn a_reply_is_taken_out_of_what_is_routed() {
        let Outcome::Route { envelopes, reply } = answer(
            200,
            r#"[{"action":"chat"},{"action":"__reply","message":{"ok":1},"recipients":[{"type":"all"}]}]"#,
        ) else {
            panic!("not routed");
        };
        assert_eq!(envelopes.len(), 1);
        assert_eq!(envelopes[0].action, "chat");
        assert_eq!(
            reply.map(|r| r.get().to_owned()).as_deref(),
            Some(r#"{"ok":1}"#)
        );
        assert!(
            matches!(answer(200, r#"[{"action":"__reply"},{"action":"__reply"}]"#), Outcome::Failed { code: "forward_failed", detail } if detail.contains("2 `__reply`"))
        );
    }
}
