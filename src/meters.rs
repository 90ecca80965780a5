//! The hub's metrics, through the [`metrics`] facade: the application installs the exporter it
//! already runs (Prometheus, StatsD, OpenTelemetry) and every hub reports to it; without one,
//! each report is a branch on a handle that does nothing. Names and labels follow Prometheus's
//! conventions. One place names them all, so docs/operations.md and the code cannot disagree.
//!
//! Why the facade rather than `prometheus-client`: a library should not choose the exporter nor
//! own a registry the application must find and merge; the facade is what the Rust ecosystem's
//! exporters plug into.
//!
//! What is counted per message or per write goes through handles registered once, when the hub
//! is built ([`Meters`], [`Buffered`], [`deliveries`], [`written_bytes`]): a report is then one
//! atomic add in the exporter, with no lookup by name. So the recorder must be installed before
//! the hub is built. Rare events with a label (a close's reason, a refusal's code) look their
//! series up when they happen.
//!
//! Gauges move by increments, never by `set`: two hubs in one process (tests do it) add up
//! instead of overwriting each other.

use std::time::Duration;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};

use crate::closing::CloseReason;

const CONNECTIONS: &str = "wshub_connections";
const OPENED: &str = "wshub_connections_opened_total";
const CLOSED: &str = "wshub_connections_closed_total";
const UPGRADES_REFUSED: &str = "wshub_upgrades_refused_total";
const MESSAGES_RECEIVED: &str = "wshub_messages_received_total";
const MESSAGES_REFUSED: &str = "wshub_messages_refused_total";
const ENVELOPES_SENT: &str = "wshub_envelopes_sent_total";
const DELIVERIES: &str = "wshub_deliveries_total";
const WRITTEN_BYTES: &str = "wshub_written_bytes_total";
const BUFFERED_BYTES: &str = "wshub_buffered_bytes";
const BUFFERED_LIMIT: &str = "wshub_buffered_bytes_limit";
const QUEUED_FRAMES: &str = "wshub_queued_frames";
const FORWARD_DURATION: &str = "wshub_forward_duration_seconds";
const FORWARDS_FAILED: &str = "wshub_forwards_failed_total";
const PUBLISH_REQUESTS: &str = "wshub_publish_requests_total";

/// Describes the metrics to the installed recorder (units and help texts); idempotent.
fn describe() {
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
        "WebSocket upgrades refused, by HTTP status (label `status`) and why (label `reason`)."
    );
    describe_counter!(
        MESSAGES_RECEIVED,
        Unit::Count,
        "Messages (text frames) read from clients, before they are checked."
    );
    describe_counter!(
        MESSAGES_REFUSED,
        Unit::Count,
        "Client messages refused, by the code of their __error (label `code`)."
    );
    describe_counter!(
        ENVELOPES_SENT,
        Unit::Count,
        "Envelopes this node routed: relayed by clients, answered by forwards, published, or \
         sent by the application."
    );
    describe_counter!(
        DELIVERIES,
        Unit::Count,
        "Envelopes queued to sockets on this node, one per recipient socket (envelopes from \
         other nodes included)."
    );
    describe_counter!(
        WRITTEN_BYTES,
        Unit::Bytes,
        "Bytes written to sockets, frame headers and control frames included."
    );
    describe_gauge!(
        BUFFERED_BYTES,
        Unit::Bytes,
        "Bytes held for sockets: frames not yet written to every recipient, and client \
         messages still arriving. What max_buffered_bytes bounds."
    );
    describe_gauge!(
        BUFFERED_LIMIT,
        Unit::Bytes,
        "max_buffered_bytes: past it, the sockets furthest behind are closed (overloaded)."
    );
    describe_gauge!(
        QUEUED_FRAMES,
        Unit::Count,
        "Envelopes (frames) waiting to be written to at least one socket."
    );
    describe_histogram!(
        FORWARD_DURATION,
        Unit::Seconds,
        "Time from a client's message being forwarded to the application's answer (or the \
         timeout), waiting for a place among the forwards in flight included."
    );
    describe_counter!(
        FORWARDS_FAILED,
        Unit::Count,
        "Forwards the application did not answer well or in time (label `code`)."
    );
    describe_counter!(
        PUBLISH_REQUESTS,
        Unit::Count,
        "Requests to the publish endpoint, by the status of the answer (label `status`)."
    );
}

/// The handles a hub reports through on its busy paths, registered when it is built.
#[derive(Debug)]
pub(crate) struct Meters {
    connections: Gauge,
    opened: Counter,
    messages_received: Counter,
    envelopes_sent: Counter,
    forward_duration: Histogram,
}

impl Meters {
    pub(crate) fn register() -> Self {
        describe();
        Self {
            connections: gauge!(CONNECTIONS),
            opened: counter!(OPENED),
            messages_received: counter!(MESSAGES_RECEIVED),
            envelopes_sent: counter!(ENVELOPES_SENT),
            forward_duration: histogram!(FORWARD_DURATION),
        }
    }

    /// A socket opened.
    pub(crate) fn opened(&self) {
        self.opened.increment(1);
        self.connections.increment(1.0);
    }

    /// A socket that [opened](Self::opened) closed, for `reason`.
    pub(crate) fn closed(&self, reason: CloseReason) {
        counter!(CLOSED, "reason" => reason.as_str()).increment(1);
        self.connections.decrement(1.0);
    }

    /// A client's message was read.
    pub(crate) fn message_received(&self) {
        self.messages_received.increment(1);
    }

    /// `count` envelopes were routed.
    pub(crate) fn envelopes_sent(&self, count: usize) {
        self.envelopes_sent.increment(count as u64);
    }

    /// Where a forward's duration goes.
    pub(crate) fn forward_duration(&self) -> ForwardClock {
        ForwardClock(self.forward_duration.clone())
    }
}

/// Records how long forwards took.
pub(crate) struct ForwardClock(Histogram);

impl ForwardClock {
    pub(crate) fn took(&self, duration: Duration) {
        self.0.record(duration.as_secs_f64());
    }
}

/// The node's deliveries: envelopes queued to its sockets.
pub(crate) fn deliveries() -> Counter {
    counter!(DELIVERIES)
}

/// What the memory budget holds, bytes and frames, against the budget's limit while it lives;
/// and what leaves it, bytes written to sockets (reported through the budget, which every
/// socket already reaches, rather than through a handle of its own on each socket).
#[derive(Debug)]
pub(crate) struct Buffered {
    bytes: Gauge,
    frames: Gauge,
    limit: Gauge,
    limit_bytes: f64,
    written: Counter,
}

impl Buffered {
    pub(crate) fn register(limit: usize) -> Self {
        // A limit of `usize::MAX` (a budget outside any hub) is not an operator's setting.
        let limit_bytes = if limit == usize::MAX {
            0.0
        } else {
            limit as f64
        };
        let limit = gauge!(BUFFERED_LIMIT);
        limit.increment(limit_bytes);
        Self {
            bytes: gauge!(BUFFERED_BYTES),
            frames: gauge!(QUEUED_FRAMES),
            limit,
            limit_bytes,
            written: counter!(WRITTEN_BYTES),
        }
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.written.increment(bytes as u64);
    }

    pub(crate) fn held(&self, bytes: usize) {
        self.bytes.increment(bytes as f64);
    }

    pub(crate) fn released(&self, bytes: usize) {
        self.bytes.decrement(bytes as f64);
    }

    pub(crate) fn frame_queued(&self) {
        self.frames.increment(1.0);
    }

    pub(crate) fn frame_done(&self) {
        self.frames.decrement(1.0);
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.limit.decrement(self.limit_bytes);
    }
}

/// An upgrade was refused with `status`, for `reason`.
pub(crate) fn upgrade_refused(status: u16, reason: &'static str) {
    counter!(UPGRADES_REFUSED, "status" => status.to_string(), "reason" => reason).increment(1);
}

/// A client's message was refused with `code` (`invalid_envelope`, `forbidden`, `rate_limited`).
pub(crate) fn message_refused(code: &'static str) {
    counter!(MESSAGES_REFUSED, "code" => code).increment(1);
}

/// A forward failed with `code` (`forward_failed`, `forward_timeout`).
pub(crate) fn forward_failed(code: &'static str) {
    counter!(FORWARDS_FAILED, "code" => code).increment(1);
}

/// The publish endpoint answered with `status`.
pub(crate) fn publish_answered(status: u16) {
    counter!(PUBLISH_REQUESTS, "status" => status.to_string()).increment(1);
}

/// A cluster node's traffic through Redis and its health there (feature `cluster`).
#[cfg(feature = "cluster")]
pub(crate) mod backplane {
    use std::time::Duration;

    use ::metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
        Gauge, Histogram, Unit,
    };

    const PUBLISHED: &str = "wshub_cluster_published_total";
    const RECEIVED: &str = "wshub_cluster_received_total";
    const DROPPED: &str = "wshub_cluster_dropped_total";
    const GAPS: &str = "wshub_cluster_gaps_total";
    const LAG: &str = "wshub_cluster_receive_lag_seconds";
    const NODES: &str = "wshub_cluster_nodes";
    const UP: &str = "wshub_cluster_up";
    const REDIS_ERRORS: &str = "wshub_cluster_redis_errors_total";

    /// Which of the node's dealings with Redis failed.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Task {
        /// Sending envelopes, counts and operations to other nodes.
        Publisher,
        /// Receiving them.
        Subscriber,
        /// Writing this node's groups, users and connection records.
        Interest,
        /// Beating, and removing dead nodes.
        Heartbeat,
    }

    impl Task {
        const ALL: [Task; 4] = [
            Task::Publisher,
            Task::Subscriber,
            Task::Interest,
            Task::Heartbeat,
        ];

        fn as_str(self) -> &'static str {
            match self {
                Task::Publisher => "publisher",
                Task::Subscriber => "subscriber",
                Task::Interest => "interest",
                Task::Heartbeat => "heartbeat",
            }
        }
    }

    fn describe() {
        describe_counter!(
            PUBLISHED,
            Unit::Count,
            "Messages this node published to Redis for other nodes (envelopes, counts, operations)."
        );
        describe_counter!(
            RECEIVED,
            Unit::Count,
            "Envelopes from other nodes this node received and routed."
        );
        describe_counter!(
            DROPPED,
            Unit::Count,
            "Messages for other nodes that were not sent: Redis was unreachable, failed, or the \
             queue to it was full."
        );
        describe_counter!(
            GAPS,
            Unit::Count,
            "Times the subscription to Redis was lost and came back: what other nodes sent \
             meanwhile was missed."
        );
        describe_histogram!(
            LAG,
            Unit::Seconds,
            "How long a probe this node publishes at each heartbeat takes to come back through \
             its subscription: Redis's delay plus the backlog of this node's subscriber."
        );
        describe_gauge!(
            NODES,
            Unit::Count,
            "Nodes alive in the cluster (beating within the dead-after time), as of the last \
             heartbeat."
        );
        describe_gauge!(
            UP,
            Unit::Count,
            "1 while this node is subscribed to Redis and can publish to it, else 0."
        );
        describe_counter!(
            REDIS_ERRORS,
            Unit::Count,
            "Redis commands and connections that failed or timed out, by the task (label `task`)."
        );
    }

    /// The handles of a cluster node's series.
    #[derive(Debug)]
    pub(crate) struct Backplane {
        published: Counter,
        received: Counter,
        dropped: Counter,
        gaps: Counter,
        lag: Histogram,
        nodes: Gauge,
        up: Gauge,
        errors: [Counter; 4],
    }

    impl Backplane {
        pub(crate) fn register() -> Self {
            describe();
            Self {
                published: counter!(PUBLISHED),
                received: counter!(RECEIVED),
                dropped: counter!(DROPPED),
                gaps: counter!(GAPS),
                lag: histogram!(LAG),
                nodes: gauge!(NODES),
                up: gauge!(UP),
                errors: Task::ALL.map(|task| counter!(REDIS_ERRORS, "task" => task.as_str())),
            }
        }

        pub(crate) fn published(&self, count: usize) {
            self.published.increment(count as u64);
        }

        pub(crate) fn received(&self) {
            self.received.increment(1);
        }

        pub(crate) fn dropped(&self, count: usize) {
            self.dropped.increment(count as u64);
        }

        pub(crate) fn gap(&self) {
            self.gaps.increment(1);
        }

        pub(crate) fn lag(&self, lag: Duration) {
            self.lag.record(lag.as_secs_f64());
        }

        pub(crate) fn nodes(&self, alive: usize) {
            self.nodes.set(alive as f64);
        }

        pub(crate) fn up(&self, up: bool) {
            self.up.set(if up { 1.0 } else { 0.0 });
        }

        pub(crate) fn redis_error(&self, task: Task) {
            self.errors[task as usize].increment(1);
        }
    }
}
