//! The application's answer to a forward, any status and any body (docs/protocol.md §5).
//!
//! Input: the status as three ASCII digits (100 to 999, what `http` allows), then the body:
//! `403not allowed`.

#![no_main]

use bytes::Bytes;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use wshub::fuzzing::{self, ForwardAnswer, FORWARD_DETAIL_MAX};
use wshub_fuzz::{assert_round_trips, assert_within, LIMITS};

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Ok(status) = StatusCode::from_bytes(status) else {
        return;
    };
    for limits in LIMITS {
        let answer = fuzzing::forward_answer(status, Bytes::copy_from_slice(body), limits);
        let blank = body.iter().all(u8::is_ascii_whitespace);
        match answer {
            ForwardAnswer::Nothing => assert!(status.is_success() && blank),
            ForwardAnswer::Route { envelopes, reply } => {
                assert!(status.is_success() && !blank);
                // Routed as if published: exactly what the publish endpoint would accept, but
                // the one reply, which answers the sender alone.
                let mut published = fuzzing::parse_batch(body, limits).expect("a routable answer");
                let replies: Vec<_> = published.iter().filter(|e| e.action == "__reply").collect();
                assert!(replies.len() <= 1);
                assert_eq!(reply, replies.first().map(|e| e.message.get().to_owned()));
                published.retain(|e| e.action != "__reply");
                assert_eq!(envelopes, published);
                for envelope in &envelopes {
                    assert_within(envelope, limits);
                    assert_round_trips(envelope);
                }
            }
            ForwardAnswer::Failed { code, detail } => {
                assert!(!detail.is_empty());
                if status.is_success() {
                    assert!(!blank);
                    assert_eq!(code, "forward_failed");
                    match fuzzing::parse_batch(body, limits) {
                        Err(e) => assert!(detail.ends_with(e.detail()), "{detail}"),
                        Ok(published) => {
                            let replies = published.iter().filter(|e| e.action == "__reply");
                            assert!(replies.count() > 1, "{detail}");
                        }
                    }
                } else {
                    let expected = if status == StatusCode::FORBIDDEN {
                        "forbidden"
                    } else {
                        "forward_failed"
                    };
                    assert_eq!(code, expected);
                    // The application's words when short, else the status: never a whole page.
                    let own_words = detail != format!("the application answered {status}");
                    assert!(!own_words || detail.len() <= FORWARD_DETAIL_MAX, "{detail}");
                }
            }
        }
    }
});
