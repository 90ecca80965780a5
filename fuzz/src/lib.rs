//! Checks the fuzz targets share.

use wshub::fuzzing::{self, Limits};
use wshub::Envelope;

/// Each input runs under the hub's defaults and under limits small enough for the fuzzer to
/// reach their edges.
pub const LIMITS: [Limits; 2] = [
    Limits::DEFAULT,
    Limits {
        max_recipients: 2,
        max_id_len: 8,
    },
];

/// What the hub sends on parses back to the same envelope.
pub fn assert_round_trips(envelope: &Envelope) {
    let json = envelope.to_json();
    match fuzzing::parse(json.as_bytes(), Limits::NONE) {
        Ok(back) => assert_eq!(&back, envelope, "{json}"),
        Err(e) => panic!("the hub's own {json} does not parse: {e}"),
    }
}

/// An envelope the parser let through respects the limits it was parsed with.
pub fn assert_within(envelope: &Envelope, limits: Limits) {
    assert!(envelope.recipients.len() <= limits.max_recipients);
    for field in [&envelope.action, &envelope.group_id, &envelope.user_id] {
        assert!(field.len() <= limits.max_id_len, "{field:?}");
    }
    for recipient in &envelope.recipients {
        assert!(recipient.value.len() <= limits.max_id_len, "{recipient:?}");
    }
}
