use std::fmt;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

/// Which client envelopes are forwarded to the application, and where (docs/protocol.md §5).
///
/// ```
/// use std::time::Duration;
/// use wshub::Forwarding;
///
/// // Into the wrapped service itself, at a route of the application's own:
/// let hub = wshub::Hub::builder()
///     .forwarding(
///         Forwarding::in_process("/hub/messages")
///             .actions(["broadcastchatmessage"])
///             .timeout(Duration::from_secs(5))
///             .connection_events(true),
///     )
///     .build();
///
/// // Or to a backend written in anything:
/// let backend = Forwarding::to_url("http://127.0.0.1:8080/websocket").unwrap();
/// # drop((hub, backend));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Forwarding {
    pub(crate) target: Target,
    pub(crate) actions: Actions,
    pub(crate) timeout: Duration,
    pub(crate) copy_headers: Vec<HeaderName>,
    pub(crate) extra_headers: HeaderMap,
    pub(crate) max_concurrent: usize,
    pub(crate) max_pending: usize,
    pub(crate) connection_events: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A request into the wrapped service, at this path and query.
    InProcess(Uri),
    /// A request over HTTP to this absolute URL.
    External(Uri),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Actions {
    All,
    Only(Vec<String>),
    AllExcept(Vec<String>),
}

impl Forwarding {
    fn new(target: Target) -> Self {
        Self {
            target,
            actions: Actions::All,
            timeout: Duration::from_secs(10),
            copy_headers: vec![header::COOKIE, header::AUTHORIZATION],
            extra_headers: HeaderMap::new(),
            max_concurrent: 256,
            max_pending: 16,
            connection_events: false,
        }
    }

    /// Forwards into the service the hub layer wraps, as a `POST` to `path`: a function call,
    /// no socket. The application handles it in its own router, behind its own middleware.
    ///
    /// # Panics
    ///
    /// When `path` is not an absolute path (`/…`).
    pub fn in_process(path: &str) -> Self {
        let uri = Uri::try_from(path)
            .ok()
            .filter(|uri| uri.scheme().is_none() && path.starts_with('/'));
        let Some(uri) = uri else {
            panic!("wshub: the in-process forward path {path:?} must be an absolute path like /hub/messages");
        };
        Self::new(Target::InProcess(uri))
    }

    /// Forwards over HTTP to an external URL (`http://host:port/path`), for a backend written in
    /// anything. Requests go over a pooled HTTP/1.1 client.
    pub fn to_url(url: &str) -> Result<Self, ForwardUrlError> {
        let uri = Uri::try_from(url).map_err(|_| ForwardUrlError::new(url, "is not a URL"))?;
        match uri.scheme_str() {
            Some("http") if uri.host().is_some() => Ok(Self::new(Target::External(uri))),
            Some("https") => Err(ForwardUrlError::new(
                url,
                "is https, which wshub does not speak yet: forward to a local http address",
            )),
            _ => Err(ForwardUrlError::new(url, "is not an absolute http:// URL")),
        }
    }

    /// Forwards only these actions; the others are relayed (the default is every action).
    /// Called again, it adds to the list.
    ///
    /// # Panics
    ///
    /// After [`all_actions_except`](Self::all_actions_except): the two contradict each other.
    pub fn actions<I, A>(mut self, actions: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        let added = actions.into_iter().map(Into::into);
        match &mut self.actions {
            Actions::All => self.actions = Actions::Only(added.collect()),
            Actions::Only(list) => list.extend(added),
            Actions::AllExcept(_) => panic!(
                "wshub: `Forwarding::actions` after `all_actions_except`: forward a list, or \
                 everything but a list, not both"
            ),
        }
        self
    }

    /// Forwards every action but these, which are relayed. Called again, it adds to the list.
    ///
    /// # Panics
    ///
    /// After [`actions`](Self::actions): the two contradict each other.
    pub fn all_actions_except<I, A>(mut self, actions: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        let added = actions.into_iter().map(Into::into);
        match &mut self.actions {
            Actions::All => self.actions = Actions::AllExcept(added.collect()),
            Actions::AllExcept(list) => list.extend(added),
            Actions::Only(_) => panic!(
                "wshub: `Forwarding::all_actions_except` after `actions`: forward a list, or \
                 everything but a list, not both"
            ),
        }
        self
    }

    /// How long one forward may take before the sender gets `forward_timeout` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Which headers of the upgrade request are copied onto every forward (default `cookie` and
    /// `authorization`), so the application's usual authentication applies to socket messages.
    /// The hub's own `wshub-*` headers are never copied.
    pub fn copy_headers<I: IntoIterator<Item = HeaderName>>(mut self, names: I) -> Self {
        self.copy_headers = names.into_iter().collect();
        self
    }

    /// Adds a fixed header to every forward: a shared secret by which an external backend knows
    /// the hub, for example.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra_headers.append(name, value);
        self
    }

    /// Most forwards in flight at once, across all connections (default 256); more wait.
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Most envelopes of one connection waiting behind a forward (default 16). A connection with
    /// that many waiting is not read from until they are handled: TCP backpressure, not loss.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// Also forwards `__connect` when a socket opens and `__disconnect` when it has ended (after
    /// its other forwards), with `{connectionId, userId, groupId}` as the message. Off by default.
    pub fn connection_events(mut self, on: bool) -> Self {
        self.connection_events = on;
        self
    }

    /// Whether a client envelope with `action` is forwarded rather than relayed.
    pub(crate) fn forwards(&self, action: &str) -> bool {
        match &self.actions {
            Actions::All => true,
            Actions::Only(list) => list.iter().any(|a| a == action),
            Actions::AllExcept(list) => !list.iter().any(|a| a == action),
        }
    }
}

/// Where and what, as a panic message names a `Forwarding`: `to /hub/chat for ["chat"]`.
impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Target::InProcess(uri) | Target::External(uri)) = &self.target;
        write!(f, "to {uri} for ")?;
        match &self.actions {
            Actions::All => f.write_str("every action"),
            Actions::Only(list) => write!(f, "{list:?}"),
            Actions::AllExcept(list) => write!(f, "every action but {list:?}"),
        }
    }
}

/// A forward URL that wshub cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardUrlError {
    message: String,
}

impl ForwardUrlError {
    fn new(url: &str, problem: &str) -> Self {
        Self {
            message: format!("the forward URL {url:?} {problem}"),
        }
    }
}

impl fmt::Display for ForwardUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ForwardUrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(Forwarding::to_url("http://127.0.0.1:8080/ws").is_ok());
        for bad in [
            "/ws",
            "https://example.com/",
            "ftp://x/",
            "not a url",
            "http:///x",
        ] {
            assert!(Forwarding::to_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn action_filters() {
        let all = Forwarding::in_process("/f");
        assert!(all.forwards("x"));
        let only = Forwarding::in_process("/f").actions(["a", "b"]);
        assert!(only.forwards("a") && !only.forwards("c"));
        let except = Forwarding::in_process("/f").all_actions_except(["a"]);
        assert!(!except.forwards("a") && except.forwards("c"));
    }

    #[test]
    fn repeated_lists_add_up() {
        let both = Forwarding::in_process("/f").actions(["a"]).actions(["b"]);
        assert!(both.forwards("a") && both.forwards("b") && !both.forwards("c"));
        let neither = Forwarding::in_process("/f")
            .all_actions_except(["a"])
            .all_actions_except(["b"]);
        assert!(!neither.forwards("a") && !neither.forwards("b") && neither.forwards("c"));
    }

    #[test]
    #[should_panic(expected = "not both")]
    fn a_list_and_its_opposite_are_refused() {
        let _ = Forwarding::in_process("/f")
            .actions(["a"])
            .all_actions_except(["b"]);
    }

    #[test]
    #[should_panic(expected = "called twice (first to /f for [\"a\"], then to /g for [\"b\"])")]
    fn a_second_forwarding_is_refused_rather_than_replacing_the_first() {
        let _ = crate::Hub::builder()
            .forwarding(Forwarding::in_process("/f").actions(["a"]))
            .forwarding(Forwarding::in_process("/g").actions(["b"]));
    }

    #[test]
    #[should_panic(expected = "absolute path")]
    fn in_process_paths_are_absolute() {
        let _ = Forwarding::in_process("hub/messages");
    }
}
