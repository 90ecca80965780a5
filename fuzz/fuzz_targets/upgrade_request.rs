//! A raw HTTP/1 request head, read as hyper reads it, through the upgrade checks of
//! PROTOCOL.md §3 under each origin policy, and its query string through the identity a
//! connection gets when no resolver is installed.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use libfuzzer_sys::fuzz_target;
use wshub::fuzzing::{self, Upgrade};
use wshub::Hub;

const LISTED: &str = "https://chat.example.com";

/// The hub under each origin policy: its own host (the default), a list, any origin.
fn hubs() -> &'static [Hub; 3] {
    static HUBS: OnceLock<[Hub; 3]> = OnceLock::new();
    HUBS.get_or_init(|| {
        [
            Hub::builder().build(),
            Hub::builder().allow_origin(LISTED).build(),
            Hub::builder().allow_any_origin().build(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = read_head(data) else {
        return;
    };
    let [same_host, listed, any] = hubs();
    let verdicts = [same_host, listed, any].map(|hub| fuzzing::upgrade(hub, &request));
    for verdict in &verdicts {
        check(&request, verdict);
    }
    let [same_host, listed, any] = verdicts;
    // The origin is checked last, and only the origin policy differs between the hubs.
    for (verdict, policy) in [(same_host, "same host"), (listed, "list")] {
        match (&verdict, &any) {
            (Upgrade::NotAnUpgrade, Upgrade::NotAnUpgrade) => {}
            (Upgrade::Accepted(key), Upgrade::Accepted(any_key)) => assert_eq!(key, any_key),
            (Upgrade::Refused(r), Upgrade::Accepted(_)) => {
                assert_eq!(r.status(), StatusCode::FORBIDDEN, "{policy}")
            }
            (Upgrade::Refused(r), Upgrade::Refused(any_r)) => {
                assert_eq!(r.status(), any_r.status(), "{policy}");
                assert_eq!(r.body(), any_r.body(), "{policy}");
            }
            (verdict, any) => panic!("{policy}: {verdict:?}, while any origin: {any:?}"),
        }
        check_origin(&request, &verdict, policy);
    }
    check_identity(request.uri().query());
});

/// Parses a request head the way hyper's server does before any service sees it; `None` for
/// what hyper itself would refuse.
fn read_head(data: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut head = httparse::Request::new(&mut headers);
    head.parse(data).ok()?.is_complete().then_some(())?;
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(head.method?.as_bytes()).ok()?;
    *request.uri_mut() = head.path?.parse::<Uri>().ok()?;
    *request.version_mut() = match head.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        request.headers_mut().append(name, value);
    }
    Some(request)
}

fn check(request: &Request<()>, verdict: &Upgrade) {
    match verdict {
        Upgrade::NotAnUpgrade => {}
        Upgrade::Refused(response) => {
            // The client's fault, never the server's: every refusal is a 4xx with a reason.
            assert!(response.status().is_client_error(), "{response:?}");
            let body = std::str::from_utf8(response.body()).expect("a text reason");
            assert!(body.len() > 1 && body.ends_with('\n'), "{body:?}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            if response.status() == StatusCode::UPGRADE_REQUIRED {
                assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
            }
        }
        Upgrade::Accepted(accept) => {
            assert_eq!(request.method(), Method::GET);
            assert_eq!(request.version(), Version::HTTP_11);
            let headers = request.headers();
            assert_eq!(headers[header::SEC_WEBSOCKET_VERSION], "13");
            let key = STANDARD.decode(headers[header::SEC_WEBSOCKET_KEY].as_bytes());
            assert_eq!(key.map(|k| k.len()), Ok(16), "RFC 6455: 16 bytes in base64");
            let accept = STANDARD.decode(accept.as_bytes());
            assert_eq!(accept.map(|a| a.len()), Ok(20), "a SHA-1 in base64");
        }
    }
}

/// An accepted request's `Origin` is one the policy allows.
fn check_origin(request: &Request<()>, verdict: &Upgrade, policy: &str) {
    let Upgrade::Accepted(_) = verdict else {
        return;
    };
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN) else {
        return;
    };
    let origin = origin.to_str().expect("an accepted origin is text");
    let origin = origin.trim_end_matches('/');
    if policy == "list" {
        assert!(origin.eq_ignore_ascii_case(LISTED), "{origin:?}");
    } else {
        let host = headers[header::HOST].to_str().expect("a host");
        let (_scheme, origin_host) = origin.split_once("://").expect("scheme://host");
        assert!(
            origin_host.eq_ignore_ascii_case(host),
            "{origin:?} from {host:?}"
        );
    }
}

/// The identity a query string gives is the one that encoding it again would give.
fn check_identity(query: Option<&str>) {
    let identity = fuzzing::identity_from_query(query);
    assert!(identity.groups.len() <= 1 && identity.groups.iter().all(|g| !g.is_empty()));
    let again = format!(
        "userId={}&groupId={}",
        encode(&identity.user_id),
        encode(identity.group_id())
    );
    assert_eq!(
        fuzzing::identity_from_query(Some(&again)),
        identity,
        "{again}"
    );
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
