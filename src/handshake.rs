//! The RFC 6455 opening handshake on the server side, and every answer of docs/protocol.md §3.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::config::OriginPolicy;
use crate::connection::{self, Link};
use crate::forward::Call;
use crate::hub::{Hub, Unavailable};
use crate::identity::{CloseAtOnce, Identity, IdentityResolver};
use crate::meters;
use crate::notice::{notice, Kind};

/// Whether a request asks for a WebSocket. Anything else on the socket path is the application's.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
}

/// Why an upgrade request is refused; each has its status and a short text saying what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    MethodNotGet,
    NotHttp11,
    NoConnectionUpgrade,
    /// A header that must appear once appears more often (its canonical name).
    Repeated(&'static str),
    BadKey,
    UnsupportedVersion,
    ForeignOrigin,
    /// A query-string id longer than the hub's `max_id_len`.
    QueryIdTooLong {
        parameter: &'static str,
        len: usize,
        limit: usize,
    },
    /// The identity resolver answered an id longer than the hub's `max_id_len`: the
    /// application's bug, not the client's.
    ResolvedIdTooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    AtLimit,
    ShuttingDown,
    NotUpgradable,
}

impl Refusal {
    /// What kind of refusal it is, for the metrics' `reason` label: a few names an operator can
    /// alert on, not one per variant.
    fn reason(self) -> &'static str {
        match self {
            Self::MethodNotGet
            | Self::NotHttp11
            | Self::NoConnectionUpgrade
            | Self::Repeated(_)
            | Self::BadKey
            | Self::NotUpgradable => "bad_handshake",
            Self::UnsupportedVersion => "version",
            Self::ForeignOrigin => "origin",
            Self::QueryIdTooLong { .. } => "id_too_long",
            Self::ResolvedIdTooLong { .. } => "identity_error",
            Self::AtLimit => "at_limit",
            Self::ShuttingDown => "shutting_down",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::MethodNotGet
            | Self::NotHttp11
            | Self::NoConnectionUpgrade
            | Self::Repeated(_)
            | Self::BadKey
            | Self::QueryIdTooLong { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::ForeignOrigin => StatusCode::FORBIDDEN,
            Self::AtLimit | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotUpgradable | Self::ResolvedIdTooLong { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub(crate) fn response(self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(format!("{self}\n")));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            Self::UnsupportedVersion => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            Self::AtLimit | Self::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match *self {
            Self::MethodNotGet => "a WebSocket upgrade must use GET",
            Self::NotHttp11 => "a WebSocket upgrade needs HTTP/1.1",
            Self::NoConnectionUpgrade => "a WebSocket upgrade needs `Connection: upgrade`",
            Self::Repeated(name) => {
                return write!(f, "a WebSocket upgrade must have one `{name}` header, not several")
            }
            Self::BadKey => "`Sec-WebSocket-Key` must be the base64 encoding of 16 bytes",
            Self::UnsupportedVersion => "only WebSocket version 13 is supported",
            Self::ForeignOrigin => "this origin may not open a socket here",
            Self::QueryIdTooLong {
                parameter,
                len,
                limit,
            } => {
                return write!(
                    f,
                    "the query parameter `{parameter}` is {len} bytes long; the limit is {limit}"
                )
            }
            Self::ResolvedIdTooLong { field, len, limit } => {
                return write!(
                    f,
                    "the identity resolver answered a {field} of {len} bytes, over the hub's max_id_len of {limit}"
                )
            }
            Self::AtLimit => "the hub is at its connection limit; try again later",
            Self::ShuttingDown => "the hub is shutting down",
            Self::NotUpgradable => "this server cannot upgrade connections (hyper needs `serve_connection_with_upgrades`)",
        };
        f.write_str(text)
    }
}

/// The hub's answer to an upgrade request: at once, or once the identity resolver has spoken.
pub(crate) enum Answer {
    Now(Response<Bytes>),
    Later(Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>),
}

/// Answers an upgrade request: `101` with the socket handed to its own task, or a refusal.
/// `call` makes the connection's forward call, only once the upgrade is accepted.
pub(crate) fn accept<B>(
    hub: &Hub,
    request: Request<B>,
    call: impl FnOnce() -> Option<Call>,
) -> Answer {
    let accept_key = match check(hub, &request) {
        Ok(key) => key,
        Err(refusal) => return refused(hub, refusal),
    };
    let limit = hub.config().fields.max_id_len;
    // Without a resolver the query string names the connection, checked before anything is
    // reserved for it: an id over the limit would fail every forward it makes.
    let who = match &hub.config().identity {
        Some(resolver) => Who::Resolver(resolver.as_ref()),
        None => {
            let identity = Identity::from_query(request.uri().query());
            if let Some((parameter, len)) = identity.id_over(limit) {
                return refused(
                    hub,
                    Refusal::QueryIdTooLong {
                        parameter,
                        len,
                        limit,
                    },
                );
            }
            Who::Query(identity)
        }
    };
    // An upgrade request has no body; the parts are all the resolver and the task need.
    let (mut parts, _) = request.into_parts();
    // The upgrade resolves only after the 101 is sent: take it now, await it in the task.
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return counted(Refusal::NotUpgradable);
    };
    let permit = match hub.reserve() {
        Ok(permit) => permit,
        Err(Unavailable::AtLimit) => return refused(hub, Refusal::AtLimit),
        // Every client of a node going away gets one: counted, not logged.
        Err(Unavailable::ShuttingDown) => return counted(Refusal::ShuttingDown),
    };
    let link = Link {
        call: call(),
        copied: copied_headers(hub, &parts.headers),
    };
    // `Err`: a refusal the page must be able to read, carried out by closing the accepted socket.
    let start = move |hub: Hub, admitted: Result<Identity, CloseAtOnce>| {
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => TokioIo::new(upgraded),
                Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
            };
            match admitted {
                Ok(identity) => connection::serve(hub, upgraded, identity, link, permit).await,
                Err(close) => connection::turn_away(&hub, upgraded, &close).await,
            }
        });
        switching_protocols(&accept_key)
    };
    match who {
        Who::Query(identity) => Answer::Now(start(hub.clone(), Ok(identity))),
        Who::Resolver(resolver) => {
            let resolving = resolver.resolve(&parts);
            let hub = hub.clone();
            Answer::Later(Box::pin(async move {
                match resolving.await {
                    Ok(identity) => match (identity.id_over(limit), identity.data.problem()) {
                        (None, None) => start(hub, Ok(identity)),
                        (Some((field, len)), _) => {
                            let refusal = Refusal::ResolvedIdTooLong { field, len, limit };
                            meters::upgrade_refused(refusal.status().as_u16(), refusal.reason());
                            notice!(hub, Kind::Identity, error, %refusal, "upgrade refused");
                            refusal.response()
                        }
                        (None, Some(problem)) => {
                            let why = "upgrade refused: the identity resolver's data";
                            meters::upgrade_refused(
                                StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                                "identity_error",
                            );
                            notice!(hub, Kind::Identity, error, problem, why);
                            crate::identity::refuse(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the identity resolver's data for this connection cannot be kept",
                            )
                        }
                    },
                    Err(refusal) => match refusal.extensions().get::<CloseAtOnce>() {
                        Some(close) => {
                            let (code, why) = (close.code, "identity resolver refused by closing");
                            meters::upgrade_refused(code, "identity");
                            notice!(hub, Kind::Identity, info, code, why);
                            start(hub, Err(close.clone()))
                        }
                        None => {
                            let status = refusal.status().as_u16();
                            meters::upgrade_refused(status, "identity");
                            notice!(
                                hub,
                                Kind::Identity,
                                info,
                                status,
                                "identity resolver refused"
                            );
                            refusal
                        }
                    },
                }
            }))
        }
    }
}

/// Who says who a connection is.
enum Who<'a> {
    /// The query string, read and checked.
    Query(Identity),
    /// The application's resolver, whose answer is checked once it comes.
    Resolver(&'a dyn IdentityResolver),
}

/// Refuses an upgrade, and tells the operator within the log's allowance.
fn refused(hub: &Hub, refusal: Refusal) -> Answer {
    let status = refusal.status().as_u16();
    notice!(hub, Kind::Upgrade, info, status, %refusal, "upgrade refused");
    counted(refusal)
}

/// Refuses an upgrade and counts it.
fn counted(refusal: Refusal) -> Answer {
    meters::upgrade_refused(refusal.status().as_u16(), refusal.reason());
    Answer::Now(refusal.response())
}

/// The configured headers of the upgrade request, never the hub's own `wshub-*` ones.
fn copied_headers(hub: &Hub, headers: &HeaderMap) -> HeaderMap {
    let mut copied = HeaderMap::new();
    let Some(forwarding) = &hub.config().forwarding else {
        return copied;
    };
    for name in &forwarding.copy_headers {
        if name.as_str().starts_with("wshub-") {
            continue;
        }
        for value in headers.get_all(name) {
            copied.append(name.clone(), value.clone());
        }
    }
    copied
}

pub(crate) fn check<B>(hub: &Hub, request: &Request<B>) -> Result<HeaderValue, Refusal> {
    if request.method() != Method::GET {
        return Err(Refusal::MethodNotGet);
    }
    if request.version() != Version::HTTP_11 {
        return Err(Refusal::NotHttp11);
    }
    let headers = request.headers();
    // Headers that must appear once: RFC 6455 §11.3.1 and §11.3.5, RFC 9112 §3.2, and RFC 6454
    // §7.3 (a user agent sends one `Origin`). Reading one of several is a guess that a proxy in
    // front may make differently. `Upgrade` and `Connection` are token lists and may repeat.
    let once = [
        (header::SEC_WEBSOCKET_KEY, "Sec-WebSocket-Key"),
        (header::SEC_WEBSOCKET_VERSION, "Sec-WebSocket-Version"),
        (header::HOST, "Host"),
        (header::ORIGIN, "Origin"),
    ];
    if let Some((_, name)) = once
        .iter()
        .find(|(header, _)| headers.get_all(header).iter().nth(1).is_some())
    {
        return Err(Refusal::Repeated(name));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::UnsupportedVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key.as_bytes()))
        .ok_or(Refusal::BadKey)?;
    if !origin_allowed(&hub.config().origins, headers) {
        return Err(Refusal::ForeignOrigin);
    }
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| Refusal::BadKey)
}

fn switching_protocols(accept_key: &HeaderValue) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key.clone());
    response
}

/// Whether a comma-separated header holds `token`, case-insensitively, on any of its lines.
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// A key is 16 bytes in base64: 22 characters of the alphabet and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24
        && key[..22].iter().all(is_b64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

fn origin_allowed(policy: &OriginPolicy, headers: &HeaderMap) -> bool {
    // Browsers always send Origin on a WebSocket upgrade; a client without one is not a page
    // acting with a visitor's cookies, which is what the check protects against.
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    match policy {
        OriginPolicy::Any => true,
        OriginPolicy::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        OriginPolicy::SameHost => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_sample() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_that_are_not_16_bytes_are_refused() {
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"dGhlIHNhbXBsZSBub25jZR==",
            b"dGhlIHNhbXBsZSBub25j!Q==",
        ] {
            assert!(!is_valid_key(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn same_host_origin_policy() {
        let headers = |origin: &str, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, origin.parse().unwrap());
            h.insert(header::HOST, host.parse().unwrap());
            h
        };
        let same = OriginPolicy::SameHost;
        assert!(origin_allowed(
            &same,
            &headers("http://a.test:3000", "a.test:3000")
        ));
        assert!(origin_allowed(&same, &headers("https://A.test", "a.test")));
        assert!(!origin_allowed(
            &same,
            &headers("http://evil.test", "a.test")
        ));
        assert!(!origin_allowed(
            &same,
            &headers("http://a.test:3001", "a.test:3000")
        ));
        assert!(!origin_allowed(&same, &headers("null", "a.test")));
        assert!(origin_allowed(&same, &HeaderMap::new()));
        let list = OriginPolicy::List(vec!["https://b.test".into()]);
        assert!(origin_allowed(&list, &headers("https://b.test/", "a.test")));
        assert!(!origin_allowed(&list, &headers("https://a.test", "a.test")));
    }
}
