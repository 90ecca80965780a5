//! The events an operator keeps on: refusals (an upgrade, an envelope, a relay, a rate limit, a
//! forward that failed) and sockets closed for cause. A client that causes thousands a second
//! must not flood the log, so each kind passes at most [`PER_SECOND`] a second; the first one
//! of a later second says how many were left out since the last one that passed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Logs an event at `level` when `hub`'s allowance for `kind` lets it, with `left_out` when
/// events of its kind were left out before it: `notice!(hub, Kind::Invalid, info, code, "…")`.
macro_rules! notice {
    ($hub:expr, $kind:expr, $level:ident, $($event:tt)+) => {
        if let Some(left_out) = $hub.notices().admit($kind) {
            if left_out == 0 {
                tracing::$level!($($event)+);
            } else {
                tracing::$level!(left_out, $($event)+);
            }
        }
    };
}
pub(crate) use notice;

/// Events of one kind that pass in one second.
pub(crate) const PER_SECOND: u32 = 10;

/// What an event is about; each kind has its own allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An upgrade the handshake refused (origin, headers, ids, limits).
    Upgrade = 0,
    /// An upgrade the application's identity resolver refused.
    Identity,
    /// A client envelope that was not one (`invalid_envelope`).
    Invalid,
    /// A client envelope refused (`forbidden`: a reserved action, a relay, the application).
    Forbidden,
    /// A client message over the rate limit (`rate_limited`).
    RateLimited,
    /// A forward that failed or timed out: the application's side.
    Forward,
    /// A socket closed for cause (slow, abusive, too big, broke the protocol).
    Closed,
}

const KINDS: usize = Kind::Closed as usize + 1;

/// One kind's allowance: the second it counts, how many passed in it, how many were left out.
#[derive(Debug, Default)]
struct Allowance {
    second: AtomicU64,
    passed: AtomicU32,
    left_out: AtomicU64,
}

/// The allowances of one hub.
#[derive(Debug)]
pub(crate) struct Notices {
    since: Instant,
    kinds: [Allowance; KINDS],
}

impl Default for Notices {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            kinds: Default::default(),
        }
    }
}

impl Notices {
    /// Whether an event of `kind` may be logged now; `Some(n)` with the number left out since
    /// the last one that was. Counting is approximate under contention, never blocking.
    pub(crate) fn admit(&self, kind: Kind) -> Option<u64> {
        self.admit_at(kind, self.since.elapsed().as_secs())
    }

    fn admit_at(&self, kind: Kind, second: u64) -> Option<u64> {
        let allowance = &self.kinds[kind as usize];
        let counted = allowance.second.load(Ordering::Acquire);
        if counted != second
            && allowance
                .second
                .compare_exchange(counted, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            allowance.passed.store(1, Ordering::Release);
            return Some(allowance.left_out.swap(0, Ordering::AcqRel));
        }
        if allowance.passed.fetch_add(1, Ordering::AcqRel) < PER_SECOND {
            return Some(allowance.left_out.swap(0, Ordering::AcqRel));
        }
        allowance.left_out.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_passes_its_allowance_a_second_then_says_what_it_left_out() {
        let notices = Notices::default();
        let passed = (0..25)
            .filter(|_| notices.admit_at(Kind::Invalid, 0).is_some())
            .count();
        assert_eq!(passed, PER_SECOND as usize);
        assert_eq!(
            notices.admit_at(Kind::RateLimited, 0),
            Some(0),
            "another kind has its own"
        );
        assert_eq!(
            notices.admit_at(Kind::Invalid, 1),
            Some(15),
            "the next second"
        );
        assert_eq!(notices.admit_at(Kind::Invalid, 1), Some(0));
    }
}
