//! Who a connection is (docs/protocol.md §3): from the query string (`?groupId=G&userId=U`) by default,
//! or from an [`IdentityResolver`] the application installs, whose answer the client cannot
//! override.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::data::Data;

/// A connection's identity: its user, the groups it starts in, and what else the application
/// wants to remember about it ([`with_data`](Self::with_data)).
///
/// ```
/// let ann = wshub::Identity::user("ann").in_group("room-1");
/// assert_eq!(ann.user_id, "ann");
/// assert_eq!(ann.groups, ["room-1"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id (`""` for an anonymous connection).
    pub user_id: String,
    /// The groups it joins on connecting; the first is its `groupId`. Empty: the default group.
    pub groups: Vec<String>,
    pub(crate) data: Data,
}

impl Identity {
    /// An identity for `user_id`, in no group.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            groups: Vec::new(),
            data: Data::default(),
        }
    }

    /// An anonymous identity, in no group.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Adds a group.
    #[must_use]
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Attaches the application's own data to the connection (its team, its role): forwarded
    /// handlers ([`ConnectionInfo::data`](crate::ConnectionInfo::data)), the hooks and
    /// [`Hub::connection`](crate::Hub::connection) read it back, on any node of a cluster, without
    /// another trip to the session store. It is kept as JSON, at most 4 KiB; more, or a value that
    /// cannot be serialised, refuses the upgrade with `500` (a bug of the application's, logged).
    /// An external backend receives it in the `wshub-connection-data` header.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Staff { team: String, admin: bool }
    ///
    /// let hub = wshub::Hub::builder()
    ///     .identity(|_: &http::request::Parts| async {
    ///         // Looked up once, when the socket opens.
    ///         let staff = Staff { team: "support".into(), admin: false };
    ///         Ok(wshub::Identity::user("ann").in_group("support").with_data(&staff))
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    #[must_use]
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = Data::of(data);
        self
    }

    /// The connection's `groupId`: its first group, or `""`.
    pub fn group_id(&self) -> &str {
        self.groups.first().map_or("", String::as_str)
    }

    /// Its first id longer than `max` bytes, named as the protocol names it, with its length.
    pub(crate) fn id_over(&self, max: usize) -> Option<(&'static str, usize)> {
        if self.user_id.len() > max {
            return Some(("userId", self.user_id.len()));
        }
        let (at, group) = self
            .groups
            .iter()
            .enumerate()
            .find(|(_, g)| g.len() > max)?;
        Some((if at == 0 { "groupId" } else { "group" }, group.len()))
    }

    /// Reads `groupId` and `userId` from a query string, percent-decoded (`+` is a space, as
    /// browsers encode forms). Missing parameters are empty; the last of a repeated one wins.
    pub(crate) fn from_query(query: Option<&str>) -> Self {
        let (mut user_id, mut group_id) = (String::new(), String::new());
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(key).as_str() {
                "groupId" => group_id = decode(value),
                "userId" => user_id = decode(value),
                _ => {}
            }
        }
        let identity = Self::user(user_id);
        if group_id.is_empty() {
            identity
        } else {
            identity.in_group(group_id)
        }
    }
}

/// The answer that refuses an upgrade: any response, such as a `401` with `WWW-Authenticate`.
pub type Refusal = Response<Bytes>;

/// A refusal with a status and a short text body.
///
/// ```
/// let refusal = wshub::refuse(http::StatusCode::UNAUTHORIZED, "log in first");
/// assert_eq!(refusal.status(), 401);
/// ```
pub fn refuse(status: StatusCode, text: &str) -> Refusal {
    let mut response = Response::new(Bytes::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The close code of a socket refused because it has no valid session (docs/protocol.md §6):
/// the client stops reconnecting and tells the page it is logged out.
pub const LOGGED_OUT: u16 = 4401;

/// A refusal a browser page can read: the hub accepts the upgrade, then closes the socket at once
/// with `code` and `reason`. A page cannot read the status of a refused upgrade (the browser
/// reports only "closed 1006"), so a `401` looks to it like a network error and it retries for
/// ever; a close code in `4400`–`4499` tells the wshub client to stop and tell the page
/// (docs/protocol.md §6). The socket never joins the hub: no `__connected`, no hooks, no forward.
///
/// A `code` outside `4000`–`4999` is sent as `4400`; the reason is cut to the 123 bytes a close
/// frame holds.
///
/// ```
/// use wshub::{refuse_by_closing, Identity, LOGGED_OUT};
///
/// let hub = wshub::Hub::builder()
///     .identity(|request: &http::request::Parts| {
///         let signed_in = request.headers.contains_key(http::header::COOKIE);
///         async move {
///             if signed_in {
///                 Ok(Identity::user("ann"))
///             } else {
///                 Err(refuse_by_closing(LOGGED_OUT, "log in first"))
///             }
///         }
///     })
///     .build();
/// # drop(hub);
/// ```
pub fn refuse_by_closing(code: u16, reason: &str) -> Refusal {
    let code = if (4000..=4999).contains(&code) {
        code
    } else {
        4400
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut refusal = refuse(StatusCode::FORBIDDEN, reason);
    refusal.extensions_mut().insert(CloseAtOnce {
        code,
        reason: reason[..end].to_owned(),
    });
    refusal
}

/// Carried by a [`refuse_by_closing`] refusal: how to close the socket the hub then accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseAtOnce {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The future an [`IdentityResolver`] returns.
pub type IdentityFuture = Pin<Box<dyn Future<Output = Result<Identity, Refusal>> + Send>>;

/// Decides who a connection is, from its upgrade request, before the `101`; or refuses it.
///
/// Any `Fn(&http::request::Parts) -> impl Future<Output = Result<Identity, Refusal>>` is one.
/// Take what the future needs out of the request before it starts (it must be `'static`):
///
/// ```
/// use wshub::{refuse, Identity};
///
/// let hub = wshub::Hub::builder()
///     .identity(|request: &http::request::Parts| {
///         let token = request.headers.get("x-token").cloned();
///         async move {
///             match token.as_ref().map(|t| t.as_bytes()) {
///                 Some(b"ann-secret") => Ok(Identity::user("ann").in_group("staff")),
///                 _ => Err(refuse(http::StatusCode::UNAUTHORIZED, "unknown token")),
///             }
///         }
///     })
///     .build();
/// # drop(hub);
/// ```
pub trait IdentityResolver: Send + Sync + 'static {
    /// Resolves the identity of the connection that `request` opens.
    fn resolve(&self, request: &Parts) -> IdentityFuture;
}

impl<F, Fut> IdentityResolver for F
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, Refusal>> + Send + 'static,
{
    fn resolve(&self, request: &Parts) -> IdentityFuture {
        Box::pin(self(request))
    }
}

/// A resolver that reads the cookie `name` and asks `lookup` (a session store, a signed-token
/// check) who it belongs to. A missing cookie or a `None` answer refuses the upgrade: a browser
/// (a request with an `Origin` header) with [`refuse_by_closing`]`(`[`LOGGED_OUT`]`, ..)`, so
/// that its page learns it is logged out rather than retry, and anything else with `401`.
///
/// ```
/// use wshub::{identity_from_cookie, Identity};
///
/// let hub = wshub::Hub::builder()
///     .identity(identity_from_cookie("session", |session: String| async move {
///         // Look the session up in the application's store.
///         (session == "s-123").then(|| Identity::user("ann"))
///     }))
///     .build();
/// # drop(hub);
/// ```
pub fn identity_from_cookie<F, Fut>(name: &str, lookup: F) -> impl IdentityResolver
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Identity>> + Send + 'static,
{
    let name = name.to_owned();
    move |request: &Parts| {
        let value = cookie(&request.headers, &name).map(str::to_owned);
        let lookup = value.map(&lookup);
        let browser = request.headers.contains_key(header::ORIGIN);
        async move {
            let unauthorized = || {
                if browser {
                    refuse_by_closing(LOGGED_OUT, "no valid session")
                } else {
                    refuse(StatusCode::UNAUTHORIZED, "no valid session")
                }
            };
            match lookup {
                Some(lookup) => lookup.await.ok_or_else(unauthorized),
                None => Err(unauthorized()),
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

impl fmt::Debug for dyn IdentityResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityResolver")
    }
}

/// Percent-decodes; a malformed escape is kept as it stands and invalid UTF-8 is replaced,
/// since an identity must not fail a connection over a typo.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) if hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) => {
                        out.push(byte);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_decodes_both_parameters() {
        let id = Identity::from_query(Some("groupId=room%201&userId=J%C3%BCrgen+K&x=1"));
        assert_eq!(id.group_id(), "room 1");
        assert_eq!(id.user_id, "Jürgen K");
    }

    #[test]
    fn missing_or_malformed_is_lenient() {
        assert_eq!(Identity::from_query(None), Identity::default());
        assert_eq!(
            Identity::from_query(Some("groupId=")).groups,
            Vec::<String>::new()
        );
        assert_eq!(Identity::from_query(Some("userId")).user_id, "");
        assert_eq!(Identity::from_query(Some("userId=100%")).user_id, "100%");
        assert_eq!(
            Identity::from_query(Some("userId=%+1%zz")).user_id,
            "% 1%zz"
        );
        assert_eq!(Identity::from_query(Some("userId=%FF")).user_id, "\u{FFFD}");
    }

    #[test]
    fn ids_over_the_limit_are_named() {
        let ann = Identity::user("ann").in_group("staff").in_group("room-1");
        assert_eq!(ann.id_over(6), None);
        assert_eq!(ann.id_over(5), Some(("group", 6)));
        assert_eq!(ann.id_over(4), Some(("groupId", 5)));
        assert_eq!(ann.id_over(2), Some(("userId", 3)));
        assert_eq!(Identity::anonymous().id_over(0), None);
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = http::HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; session=s-1"));
        headers.append(header::COOKIE, HeaderValue::from_static("other=\"x\""));
        assert_eq!(cookie(&headers, "session"), Some("s-1"));
        assert_eq!(cookie(&headers, "other"), Some("x"));
        assert_eq!(cookie(&headers, "sess"), None);
    }
}
