//! Forwarding of client envelopes to the application as HTTP requests (docs/protocol.md §5): into the
//! wrapped service itself, in process, or to an external URL; and turning the answer back into
//! envelopes to route, or into an `__error` for the sender.

mod body;
mod call;
mod config;
mod outcome;
mod request;

pub use body::RequestBody;
pub(crate) use call::{external, in_process, Call};
pub(crate) use config::Target;
pub use config::{ForwardUrlError, Forwarding};
#[cfg(fuzzing)]
pub(crate) use outcome::DETAIL_MAX;
pub(crate) use outcome::{Outcome, REPLY};
pub(crate) use request::{build as build_request, IDENTITY_HEADERS};
