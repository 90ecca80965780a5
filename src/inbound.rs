//! What a client's text frame must be before the hub acts on it (docs/protocol.md §4, §8): a valid
//! envelope within the hub's field limits, with an action that is not reserved for the hub (but
//! `__ping`, §4.1), and speaking for the connection's own identity whatever it claims.

use crate::envelope::{Envelope, FieldLimits};
use crate::identity::Identity;

/// The one reserved action a client may send: answered by the hub itself, at once.
pub(crate) const PING: &str = "__ping";

/// Why a client's frame is not acted on: the `code` and `detail` of the `__error` it gets back,
/// and the `requestId` that error answers, when the frame had one that could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
    pub(crate) request_id: Option<String>,
}

/// The envelope a client's frame holds, stamped with the connection's identity; or why there is
/// none. The socket stays open either way.
pub(crate) fn admit(
    frame: &[u8],
    limits: FieldLimits,
    identity: &Identity,
) -> Result<Envelope, Rejection> {
    let mut envelope = Envelope::parse(frame, limits).map_err(|e| Rejection {
        code: "invalid_envelope",
        detail: e.detail().to_owned(),
        request_id: Envelope::request_id_of(frame, limits.max_id_len),
    })?;
    if envelope.action.starts_with("__") && envelope.action != PING {
        return Err(Rejection {
            code: "forbidden",
            detail: "actions starting with __ are reserved for the hub".to_owned(),
            request_id: envelope.request_id,
        });
    }
    // A client cannot speak as someone else; an anonymous one speaks as nobody.
    envelope.user_id.clone_from(&identity.user_id);
    identity.group_id().clone_into(&mut envelope.group_id);
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_actions_are_forbidden_and_identity_is_stamped() {
        let ann = Identity::user("ann").in_group("staff");
        let limits = FieldLimits::default();
        let refused = admit(
            br#"{"action":"__connected","requestId":"r1"}"#,
            limits,
            &ann,
        )
        .unwrap_err();
        assert_eq!(refused.code, "forbidden");
        assert_eq!(refused.request_id.as_deref(), Some("r1"));
        assert!(admit(br#"{"action":"__ping"}"#, limits, &ann).is_ok());
        let refused = admit(b"{", limits, &ann).unwrap_err();
        assert_eq!(refused.code, "invalid_envelope");
        let refused = admit(br#"{"requestId":"r2","recipients":1}"#, limits, &ann).unwrap_err();
        assert_eq!(
            (refused.code, refused.request_id.as_deref()),
            ("invalid_envelope", Some("r2"))
        );
        let admitted = admit(
            br#"{"action":"chat","userId":"bob","groupId":"x"}"#,
            limits,
            &ann,
        )
        .unwrap();
        assert_eq!(
            (admitted.user_id.as_str(), admitted.group_id.as_str()),
            ("ann", "staff")
        );
        let anonymous = admit(
            br#"{"userId":"bob","groupId":"x"}"#,
            limits,
            &Identity::anonymous(),
        )
        .unwrap();
        assert_eq!(
            (anonymous.user_id.as_str(), anonymous.group_id.as_str()),
            ("", "")
        );
    }
}
