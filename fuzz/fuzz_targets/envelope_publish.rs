//! A publish body, through the publish endpoint itself: an envelope or an array of envelopes,
//! all routed or none (PROTOCOL.md §7).

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use tokio::runtime::Runtime;
use tower_service::Service;
use wshub::fuzzing::{self, Limits};
use wshub::{Envelope, PublishService};
use wshub_fuzz::{assert_round_trips, assert_within, LIMITS};

struct Endpoints {
    runtime: Runtime,
    services: Vec<(Limits, PublishService)>,
}

fn endpoints() -> &'static Endpoints {
    static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        // With time: the endpoint bounds the body read in time, as a server's runtime would.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let services = LIMITS
            .iter()
            .map(|&limits| {
                let hub = wshub::Hub::builder()
                    .max_recipients(limits.max_recipients)
                    .max_id_len(limits.max_id_len)
                    .build();
                (limits, hub.publish_service().allow_anonymous())
            })
            .collect();
        Endpoints { runtime, services }
    })
}

fuzz_target!(|body: &[u8]| {
    let endpoints = endpoints();
    for (limits, service) in &endpoints.services {
        let batch = fuzzing::parse_batch(body, *limits);
        check_all_or_nothing(body, *limits, &batch);
        let (status, answer) = endpoints.runtime.block_on(publish(service.clone(), body));
        match &batch {
            Ok(_) => {
                assert_eq!(status, StatusCode::OK, "{answer}");
                // Nobody is connected.
                assert_eq!(answer, serde_json::json!({ "delivered": 0 }));
            }
            Err(e) => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
                assert_eq!(answer, serde_json::json!({ "error": e.to_string() }));
            }
        }
    }
});

async fn publish(mut service: PublishService, body: &[u8]) -> (StatusCode, serde_json::Value) {
    let mut request = Request::new(Full::new(Bytes::copy_from_slice(body)));
    *request.method_mut() = Method::POST;
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let answer = serde_json::from_slice(&bytes).expect("the endpoint answers JSON");
    (status, answer)
}

/// A batch holds exactly the envelopes its items parse to alone, or fails on its first bad item.
fn check_all_or_nothing(
    body: &[u8],
    limits: Limits,
    batch: &Result<Vec<Envelope>, wshub::EnvelopeError>,
) {
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        let single = fuzzing::parse(body, limits);
        match (batch, single) {
            (Ok(batch), Ok(single)) => assert_eq!(batch, &[single]),
            (Err(batch), Err(single)) => assert_eq!(batch, &single),
            (batch, single) => panic!("a lone envelope: batch {batch:?}, alone {single:?}"),
        }
    } else {
        let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) else {
            assert!(batch.is_err(), "{batch:?} from an invalid array");
            return;
        };
        let alone: Vec<_> = items
            .iter()
            .map(|item| fuzzing::parse(item.get().as_bytes(), limits))
            .collect();
        match (batch, alone.iter().position(Result::is_err)) {
            (Ok(batch), None) => {
                assert_eq!(batch.len(), items.len());
                for (envelope, item) in batch.iter().zip(&alone) {
                    assert_eq!(Some(envelope), item.as_ref().ok());
                }
            }
            (Err(e), Some(first)) => {
                let Err(cause) = &alone[first] else {
                    unreachable!()
                };
                assert_eq!(e.detail(), format!("[{first}]: {}", cause.detail()));
            }
            (batch, first_bad) => panic!("not all or nothing: {batch:?}, first bad {first_bad:?}"),
        }
    }
    for envelope in batch.iter().flatten() {
        assert_within(envelope, limits);
        assert_round_trips(envelope);
    }
}
