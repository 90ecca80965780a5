//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md): thin wrappers over the
//! crate-private code that network input reaches. Compiled only with `--cfg fuzzing`, which
//! `cargo fuzz` sets; not part of the API and not covered by semver.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

use crate::envelope::{Envelope, FieldLimits};
use crate::error::EnvelopeError;
use crate::forward::Outcome;
use crate::handshake;
use crate::hub::Hub;
use crate::identity::Identity;
use crate::inbound;

/// The field limits of [`HubBuilder::max_recipients`](crate::HubBuilder::max_recipients) and
/// [`HubBuilder::max_id_len`](crate::HubBuilder::max_id_len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most recipients an envelope may list.
    pub max_recipients: usize,
    /// Longest action, groupId, userId or recipient value, in bytes.
    pub max_id_len: usize,
}

impl Limits {
    /// The hub's defaults.
    pub const DEFAULT: Self = Self {
        max_recipients: 1024,
        max_id_len: 256,
    };
    /// No limit at all: for parsing back what the hub itself produced.
    pub const NONE: Self = Self {
        max_recipients: usize::MAX,
        max_id_len: usize::MAX,
    };
}

impl From<Limits> for FieldLimits {
    fn from(limits: Limits) -> Self {
        Self {
            max_recipients: limits.max_recipients,
            max_id_len: limits.max_id_len,
        }
    }
}

/// One envelope, as a socket frame or a publish body that is not an array is parsed.
pub fn parse(json: &[u8], limits: Limits) -> Result<Envelope, EnvelopeError> {
    Envelope::parse(json, limits.into())
}

/// An envelope or an array of envelopes, as the publish endpoint and forward answers are parsed.
pub fn parse_batch(json: &[u8], limits: Limits) -> Result<Vec<Envelope>, EnvelopeError> {
    Envelope::parse_batch(json, limits.into())
}

/// What a client's text frame becomes: the envelope the connection acts on, or the `code` and
/// `detail` of the `__error` it answers with.
pub fn client_frame(
    frame: &[u8],
    limits: Limits,
    identity: &Identity,
) -> Result<Envelope, (&'static str, String)> {
    inbound::admit(frame, limits.into(), identity).map_err(|r| (r.code, r.detail))
}

/// What the hub makes of the application's answer to a forward.
#[derive(Debug)]
pub enum ForwardAnswer {
    /// Envelopes to route, and the message of the `__reply` taken out of them.
    Route {
        /// What is routed.
        envelopes: Vec<Envelope>,
        /// The reply's message, as JSON text.
        reply: Option<String>,
    },
    /// Nothing to do.
    Nothing,
    /// The sender gets `__error` with this code and detail.
    Failed {
        /// The `__error` code.
        code: &'static str,
        /// The `__error` detail.
        detail: String,
    },
}

/// Longest part of an error answer's body that a forward's `__error` passes on.
pub const FORWARD_DETAIL_MAX: usize = crate::forward::DETAIL_MAX;

/// Interprets an answer to a forward (docs/protocol.md §5).
pub fn forward_answer(status: StatusCode, body: Bytes, limits: Limits) -> ForwardAnswer {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    match Outcome::of(response, limits.into()) {
        Outcome::Route { envelopes, reply } => ForwardAnswer::Route {
            envelopes,
            reply: reply.map(|r| r.get().to_owned()),
        },
        Outcome::Nothing => ForwardAnswer::Nothing,
        Outcome::Failed { code, detail } => ForwardAnswer::Failed { code, detail },
    }
}

/// The hub's verdict on a request that reached its socket path.
#[derive(Debug)]
pub enum Upgrade {
    /// Not a WebSocket upgrade: the wrapped service gets it.
    NotAnUpgrade,
    /// Refused with this answer.
    Refused(Response<Bytes>),
    /// Accepted; the `101` would carry this `Sec-WebSocket-Accept`.
    Accepted(HeaderValue),
}

/// Runs the upgrade checks of docs/protocol.md §3 that depend on the request alone (not on the
/// connection limit, shutdown, or whether the server can upgrade).
pub fn upgrade<B>(hub: &Hub, request: &Request<B>) -> Upgrade {
    if !handshake::is_upgrade_request(request.headers()) {
        return Upgrade::NotAnUpgrade;
    }
    match handshake::check(hub, request) {
        Ok(accept) => Upgrade::Accepted(accept),
        Err(refusal) => Upgrade::Refused(refusal.response()),
    }
}

/// The identity of a connection opened with this query string, when no resolver is installed.
pub fn identity_from_query(query: Option<&str>) -> Identity {
    Identity::from_query(query)
}

mod session;
pub use session::session;
