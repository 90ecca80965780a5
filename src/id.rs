//! Connection ids: 128 random bits, shown as 32 lowercase hex digits.
//!
//! A client can address a connection by id (`connection`, `allButConnection`), so ids must be
//! unguessable; they come from the operating system's random source.

use std::fmt;
use std::str::FromStr;

/// The unique, opaque id the hub gives every connection.
///
/// ```
/// let id: wshub::ConnectionId = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
/// assert_eq!(id.to_string(), "000102030405060708090a0b0c0d0e0f");
/// assert!("not-an-id".parse::<wshub::ConnectionId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u128);

impl ConnectionId {
    /// A fresh random id, or `None` when the operating system cannot give random bytes.
    pub(crate) fn random() -> Option<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        Some(Self(u128::from_be_bytes(bytes)))
    }

    /// A fresh id whose first 32 bits name the cluster node that made it (so any node can tell
    /// where to send its envelopes); the other 96 bits are random.
    #[cfg(feature = "cluster")]
    pub(crate) fn random_on(node: u32) -> Option<Self> {
        let random = Self::random()?.0;
        Some(Self(u128::from(node) << 96 | random & (u128::MAX >> 32)))
    }

    /// The first 32 bits: in a cluster, the node that made the id.
    #[cfg(feature = "cluster")]
    pub(crate) fn node_bits(self) -> u32 {
        (self.0 >> 96) as u32
    }

    #[cfg(test)]
    pub(crate) fn from_u128(n: u128) -> Self {
        Self(n)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// The text was not 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConnectionIdError;

impl fmt::Display for ParseConnectionIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a connection id is 32 hexadecimal digits")
    }
}

impl std::error::Error for ParseConnectionIdError {}

/// As its 32 hex digits.
impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for ConnectionId {
    type Err = ParseConnectionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `from_str_radix` alone would accept a sign and fewer digits.
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseConnectionIdError);
        }
        u128::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| ParseConnectionIdError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_differ_and_round_trip() {
        let a = ConnectionId::random().unwrap();
        let b = ConnectionId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(a.to_string().parse::<ConnectionId>(), Ok(a));
    }

    #[test]
    fn only_32_hex_digits_parse() {
        for bad in [
            "",
            "+0000000000000000000000000000000",
            "g0000000000000000000000000000000",
            "00",
        ] {
            assert!(bad.parse::<ConnectionId>().is_err(), "{bad}");
        }
        assert!("ABCDEF00000000000000000000000000"
            .parse::<ConnectionId>()
            .is_ok());
    }
}
