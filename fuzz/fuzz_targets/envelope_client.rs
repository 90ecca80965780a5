//! A socket text frame, as the connection handles it: parsed with the hub's field limits,
//! refused when its action is reserved, stamped with the connection's identity.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub::fuzzing::{self, Limits};
use wshub::Identity;
use wshub_fuzz::{assert_round_trips, assert_within, LIMITS};

fuzz_target!(|data: &[u8]| {
    // Tungstenite hands over only text frames that are valid UTF-8 (others close with 1007).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let identities = [
        Identity::anonymous(),
        Identity::user("ann").in_group("staff"),
    ];
    for limits in LIMITS {
        let parsed = fuzzing::parse(text.as_bytes(), limits);
        for identity in &identities {
            let admitted = fuzzing::client_frame(text.as_bytes(), limits, identity);
            check(&parsed, admitted, limits, identity);
        }
    }
    // The public parser is the hub's with its default limits.
    assert_eq!(
        wshub::Envelope::from_json(data),
        fuzzing::parse(data, Limits::DEFAULT)
    );
});

fn check(
    parsed: &Result<wshub::Envelope, wshub::EnvelopeError>,
    admitted: Result<wshub::Envelope, (&'static str, String)>,
    limits: Limits,
    identity: &Identity,
) {
    match (parsed, admitted) {
        (Ok(parsed), Ok(envelope)) => {
            assert!(!envelope.action.starts_with("__"), "{envelope:?}");
            assert_within(parsed, limits);
            // Only the identity fields change, always to the connection's own (empty for an
            // anonymous one): a client never speaks as anyone else.
            assert_eq!(envelope.user_id, identity.user_id);
            assert_eq!(envelope.group_id, identity.group_id());
            assert_eq!(envelope.action, parsed.action);
            assert_eq!(envelope.message.get(), parsed.message.get());
            assert_eq!(envelope.recipients, parsed.recipients);
            assert_round_trips(&envelope);
        }
        (Ok(parsed), Err((code, detail))) => {
            assert_eq!(code, "forbidden", "{detail}");
            assert!(parsed.action.starts_with("__"), "{parsed:?}");
        }
        (Err(e), Err((code, detail))) => {
            assert_eq!(code, "invalid_envelope");
            assert_eq!(detail, e.detail());
            assert!(!detail.is_empty());
        }
        (Err(e), Ok(envelope)) => panic!("admitted {envelope:?} that does not parse: {e}"),
    }
}
