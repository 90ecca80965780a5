//! Why a socket closed, named (docs/protocol.md §6): what the hook `on_disconnect` is told, what
//! the socket's span records, and the one place that maps each ending to its close frame.

use std::fmt;

use crate::websocket::close;

/// Why a socket closed. 1008 is a slow reader and a rate abuser alike on the wire; here they are
/// told apart.
///
/// ```
/// use wshub::CloseReason;
///
/// assert_eq!(CloseReason::SlowConsumer.code(), Some(1008));
/// assert_eq!(CloseReason::RateAbuse.code(), Some(1008));
/// assert_eq!(CloseReason::RateAbuse.as_str(), "rate_abuse");
/// assert_eq!(CloseReason::ConnectionLost.code(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed it, with this code in its close frame (if any).
    ClientClosed(Option<u16>),
    /// The TCP connection ended without a closing handshake.
    ConnectionLost,
    /// Nothing from the client (no frame, no pong) within the idle timeout: 1001.
    Idle,
    /// The hub shut down: 1001.
    Shutdown,
    /// The application closed it ([`Hub::disconnect`](crate::Hub::disconnect),
    /// [`disconnect_user`](crate::Hub::disconnect_user)) with this code.
    Application(u16),
    /// The client did not keep up: its socket took no bytes for the stall timeout, or what waited
    /// for it would have passed its byte bound: 1008.
    SlowConsumer,
    /// The hub was past its memory bound and this connection held the most, or its partial
    /// message would have passed it: 1013.
    Overloaded,
    /// The client kept sending while rate limited: 1008.
    RateAbuse,
    /// A message or frame over the size limit: 1009.
    TooBig,
    /// A message begun and not whole within the idle timeout: 1008.
    SlowMessage,
    /// The client broke RFC 6455 (1002), sent a binary frame (1003) or invalid UTF-8 (1007);
    /// the code is the close frame's.
    ProtocolError(u16),
}

impl CloseReason {
    /// The close code the hub sent, or the client's for [`ClientClosed`](Self::ClientClosed);
    /// `None` when no code went either way.
    pub fn code(&self) -> Option<u16> {
        match *self {
            Self::ClientClosed(code) => code,
            Self::ConnectionLost => None,
            Self::Idle | Self::Shutdown => Some(close::GOING_AWAY),
            Self::Application(code) | Self::ProtocolError(code) => Some(code),
            Self::SlowConsumer | Self::RateAbuse | Self::SlowMessage => Some(close::POLICY),
            Self::Overloaded => Some(close::OVERLOADED),
            Self::TooBig => Some(close::TOO_BIG),
        }
    }

    /// A short name in `snake_case`, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientClosed(_) => "client_closed",
            Self::ConnectionLost => "connection_lost",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
            Self::Application(_) => "application",
            Self::SlowConsumer => "slow_consumer",
            Self::Overloaded => "overloaded",
            Self::RateAbuse => "rate_abuse",
            Self::TooBig => "too_big",
            Self::SlowMessage => "slow_message",
            Self::ProtocolError(_) => "protocol_error",
        }
    }

    /// Whether the client was closed for something it did (or failed to do), which an operator
    /// wants to hear of; not a close that is part of a socket's normal life.
    pub(crate) fn is_for_cause(&self) -> bool {
        matches!(
            self,
            Self::SlowConsumer
                | Self::Overloaded
                | Self::RateAbuse
                | Self::TooBig
                | Self::SlowMessage
                | Self::ProtocolError(_)
        )
    }

    /// The close frame the hub sends for it, with the reason the client reads; `None` when the
    /// hub only answers the client's close or there is no one to send it to.
    pub(crate) fn close_frame(&self) -> Option<(u16, &'static str)> {
        let reason = match self {
            Self::ClientClosed(_) | Self::ConnectionLost => return None,
            Self::Idle | Self::Shutdown => "going away",
            Self::Application(_) => "",
            Self::SlowConsumer => "too slow: this client did not keep up with its messages",
            Self::Overloaded => "the server is overloaded; try again later",
            Self::RateAbuse => "too many messages",
            Self::TooBig => "message too big",
            Self::SlowMessage => "a message took too long to arrive",
            Self::ProtocolError(1003) => "binary frames are not supported",
            Self::ProtocolError(1007) => "invalid UTF-8",
            Self::ProtocolError(_) => "protocol error",
        };
        self.code().map(|code| (code, reason))
    }

    /// The reason for a frame-level violation the socket found, by its close code.
    pub(crate) fn of_violation(code: u16) -> Self {
        match code {
            close::TOO_BIG => Self::TooBig,
            close::OVERLOADED => Self::Overloaded,
            code => Self::ProtocolError(code),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(code) => write!(f, "{} ({code})", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

/// Why the hub asks a connection's task, from outside it, to close the socket: kept in the
/// connection's mailbox as one number, so that routing can ask without a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    SlowConsumer,
    Overloaded,
    Shutdown,
    Application(u16),
}

impl Asked {
    /// Never 0, which the mailbox reads as "not closing".
    pub(crate) fn encode(self) -> u32 {
        match self {
            Self::SlowConsumer => 1 << 16,
            Self::Overloaded => 2 << 16,
            Self::Shutdown => 3 << 16,
            Self::Application(code) => 4 << 16 | u32::from(code),
        }
    }

    pub(crate) fn decode(value: u32) -> Option<Self> {
        // The low 16 bits hold the application's code; the cast keeps exactly them.
        let code = (value & 0xFFFF) as u16;
        match value >> 16 {
            1 => Some(Self::SlowConsumer),
            2 => Some(Self::Overloaded),
            3 => Some(Self::Shutdown),
            4 => Some(Self::Application(code)),
            _ => None,
        }
    }
}

impl From<Asked> for CloseReason {
    fn from(asked: Asked) -> Self {
        match asked {
            Asked::SlowConsumer => Self::SlowConsumer,
            Asked::Overloaded => Self::Overloaded,
            Asked::Shutdown => Self::Shutdown,
            Asked::Application(code) => Self::Application(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_number() {
        for asked in [
            Asked::SlowConsumer,
            Asked::Overloaded,
            Asked::Shutdown,
            Asked::Application(1000),
            Asked::Application(4999),
        ] {
            assert_ne!(asked.encode(), 0);
            assert_eq!(Asked::decode(asked.encode()), Some(asked));
        }
        assert_eq!(Asked::decode(0), None);
    }

    #[test]
    fn every_hub_close_has_its_code_and_a_reason_within_a_close_frame() {
        for reason in [
            CloseReason::Idle,
            CloseReason::Shutdown,
            CloseReason::Application(4401),
            CloseReason::SlowConsumer,
            CloseReason::Overloaded,
            CloseReason::RateAbuse,
            CloseReason::TooBig,
            CloseReason::SlowMessage,
            CloseReason::ProtocolError(1002),
            CloseReason::ProtocolError(1003),
            CloseReason::ProtocolError(1007),
        ] {
            let (code, text) = reason.close_frame().expect("the hub closes");
            assert_eq!(Some(code), reason.code());
            assert!(text.len() <= 123, "{reason}");
        }
        assert_eq!(CloseReason::ClientClosed(Some(1000)).close_frame(), None);
        assert_eq!(CloseReason::of_violation(1009), CloseReason::TooBig);
        assert_eq!(CloseReason::of_violation(1013), CloseReason::Overloaded);
        assert_eq!(
            CloseReason::of_violation(1007),
            CloseReason::ProtocolError(1007)
        );
    }
}
