//! The hub's metrics, through the [`metrics`] facade: the application installs the exporter it
//! already runs (Prometheus, StatsD, OpenTelemetry) and every hub reports to it; without one,
//! each call is an atomic load. Names and labels follow Prometheus's conventions. One place
//! names them all, so docs/operations.md and the code cannot disagree.
//!
//! Why the facade rather than `prometheus-client`: a library should not choose the exporter nor
//! own a registry the application must find and merge; the facade is what the Rust ecosystem's
//! exporters plug into.

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::closing::CloseReason;

/// Sockets open on this node.
const CONNECTIONS: &str = "wshub_connections";
const OPENED: &str = "wshub_connections_opened_total";
const CLOSED: &str = "wshub_connections_closed_total";
const UPGRADES_REFUSED: &str = "wshub_upgrades_refused_total";
const MESSAGES_REFUSED: &str = "wshub_messages_refused_total";
const FORWARDS_FAILED: &str = "wshub_forwards_failed_total";

/// Describes the metrics to the installed recorder (units and help texts); idempotent.
pub(crate) fn describe() {
    describe_gauge!(CONNECTIONS, Unit::Count, "Sockets open on this node.");
    describe_counter!(OPENED, Unit::Count, "Sockets opened since the hub started.");
    describe_counter!(
        CLOSED,
        Unit::Count,
        "Sockets closed, by why (label `reason`: a CloseReason's name)."
    );
    describe_counter!(
        UPGRADES_REFUSED,
        Unit::Count,
        "WebSocket upgrades refused, by HTTP status (label `status`)."
    );
    describe_counter!(
        MESSAGES_REFUSED,
        Unit::Count,
        "Client messages refused, by the code of their __error (label `code`)."
    );
    describe_counter!(
        FORWARDS_FAILED,
        Unit::Count,
        "Forwards the application did not answer well or in time (label `code`)."
    );
}

/// A socket opened; `open` is how many are open on this node now.
pub(crate) fn opened(open: usize) {
    counter!(OPENED).increment(1);
    connections(open);
}

/// A socket closed, for `reason`; `open` is how many are still open on this node.
pub(crate) fn closed(reason: CloseReason, open: usize) {
    counter!(CLOSED, "reason" => reason.as_str()).increment(1);
    connections(open);
}

fn connections(open: usize) {
    // Counts of sockets are far below 2^53: exact as an f64.
    gauge!(CONNECTIONS).set(open as f64);
}

/// An upgrade was refused with `status`.
pub(crate) fn upgrade_refused(status: u16) {
    counter!(UPGRADES_REFUSED, "status" => status.to_string()).increment(1);
}

/// A client's message was refused with `code` (`invalid_envelope`, `forbidden`, `rate_limited`).
pub(crate) fn message_refused(code: &'static str) {
    counter!(MESSAGES_REFUSED, "code" => code).increment(1);
}

/// A forward failed with `code` (`forward_failed`, `forward_timeout`).
pub(crate) fn forward_failed(code: &'static str) {
    counter!(FORWARDS_FAILED, "code" => code).increment(1);
}
