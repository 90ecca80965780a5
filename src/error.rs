//! The crate's error types.

use std::fmt;

/// Why bytes are not a valid envelope (docs/protocol.md §1, §2). Its text is the `detail` a client sees
/// in an `invalid_envelope` error and the `error` of a publish endpoint's `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    detail: String,
}

impl EnvelopeError {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
        }
    }

    pub(crate) fn from_json(err: serde_json::Error) -> Self {
        Self::new(err.to_string())
    }

    /// Prefixes the detail with where in a batch the bad envelope stands.
    pub(crate) fn at(self, place: fmt::Arguments<'_>) -> Self {
        Self::new(format!("{place}: {}", self.detail))
    }

    /// What is wrong, in one sentence.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid envelope: {}", self.detail)
    }
}

impl std::error::Error for EnvelopeError {}

/// Why a hub operation failed: a cluster setting that cannot work (a Redis URL that does not
/// parse), a cluster operation that could not complete (Redis unreachable, a node that did not
/// answer in time: it may or may not have taken place there), or an argument the protocol does
/// not allow (a close code an application may not send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    detail: String,
    unavailable: bool,
}

impl HubError {
    /// A setting or an argument that will never work.
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            unavailable: false,
        }
    }

    /// The cluster could not complete an operation now.
    #[cfg(feature = "cluster")]
    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            unavailable: true,
        }
    }

    /// Whether the cluster could not complete it now (Redis unreachable, a node that did not
    /// answer): worth trying again later, unlike a bad setting or argument.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    /// What went wrong, in one sentence.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for HubError {}
