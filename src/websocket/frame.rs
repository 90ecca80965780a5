//! Frames the hub sends (RFC 6455 §5.2), built whole, header included: a routed envelope becomes
//! one [`Frame`] whose bytes every recipient writes as they are, so fan-out costs a reference count
//! per recipient and no connection copies or encodes anything.

use std::fmt;

use bytes::Bytes;

use crate::budget::FrameCharge;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

const FIN: u8 = 0x80;

/// Room a frame's buffer keeps before its payload for the longest header a server writes
/// (2 bytes and a 64-bit length; server frames are not masked).
pub(crate) const HEAD_ROOM: usize = 10;

/// What a queued frame costs its connection beyond its bytes: its place in the queue.
pub(crate) const QUEUE_SLOT: usize = std::mem::size_of::<Frame>();

/// A whole frame as it goes on the wire. Cloning it is a reference-count bump.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Frame(Bytes);

impl Frame {
    /// A text frame from `buffer`, whose first [`HEAD_ROOM`] bytes are room for the header and
    /// the rest the payload. `charge` holds the buffer against the hub's budget while any
    /// connection still holds the frame.
    pub(crate) fn text(mut buffer: Vec<u8>, charge: FrameCharge) -> Self {
        let payload = buffer.len().saturating_sub(HEAD_ROOM);
        let (header, len) = header(OP_TEXT, payload);
        let start = HEAD_ROOM - len;
        buffer[start..HEAD_ROOM].copy_from_slice(&header[..len]);
        Self(Bytes::from_owner(Charged {
            buffer,
            start,
            _charge: charge,
        }))
    }

    /// A text frame another node built, at `buffer[start..]`, if it is one whole unmasked
    /// text frame: what the hub sends, not trusted to be so because it came over the network.
    #[cfg(feature = "cluster")]
    pub(crate) fn received(buffer: Vec<u8>, start: usize, charge: FrameCharge) -> Option<Self> {
        let frame = buffer.get(start..)?;
        let (&[first, second], rest) = frame.split_first_chunk::<2>()?;
        if first != FIN | OP_TEXT || second & 0x80 != 0 {
            return None;
        }
        let (len, rest) = match second {
            126 => {
                let (len, rest) = rest.split_first_chunk::<2>()?;
                (u64::from(u16::from_be_bytes(*len)), rest)
            }
            127 => {
                let (len, rest) = rest.split_first_chunk::<8>()?;
                (u64::from_be_bytes(*len), rest)
            }
            len => (u64::from(len), rest),
        };
        if u64::try_from(rest.len()).ok()? != len {
            return None;
        }
        Some(Self(Bytes::from_owner(Charged {
            buffer,
            start,
            _charge: charge,
        })))
    }

    /// A control frame; `payload` is at most 125 bytes (RFC 6455 §5.5), longer is cut.
    pub(crate) fn control(opcode: u8, payload: &[u8]) -> Self {
        let payload = &payload[..payload.len().min(125)];
        let mut bytes = Vec::with_capacity(2 + payload.len());
        bytes.extend_from_slice(&[FIN | opcode, payload.len() as u8]);
        bytes.extend_from_slice(payload);
        Self(Bytes::from(bytes))
    }

    /// An empty ping.
    pub(crate) fn ping() -> Self {
        Self(Bytes::from_static(&[FIN | OP_PING, 0]))
    }

    /// A close frame with `code` and a short reason.
    pub(crate) fn close(code: u16, reason: &str) -> Self {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        Self::control(OP_CLOSE, &payload)
    }

    pub(crate) fn is_pong(&self) -> bool {
        self.0.first() == Some(&(FIN | OP_PONG))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// What the connection that queues it is charged for it.
    pub(crate) fn cost(&self) -> usize {
        self.0.len() + QUEUE_SLOT
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

/// A frame's buffer and its hold on the budget, released when the last clone is dropped.
struct Charged {
    buffer: Vec<u8>,
    start: usize,
    _charge: FrameCharge,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[self.start..]
    }
}

/// A server frame's header (final, unmasked) for a payload of `len` bytes, and its length.
fn header(opcode: u8, len: usize) -> ([u8; HEAD_ROOM], usize) {
    let mut header = [0; HEAD_ROOM];
    header[0] = FIN | opcode;
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;

    fn text(payload: &[u8]) -> Vec<u8> {
        let budget = Budget::unlimited();
        let mut buffer = vec![0; HEAD_ROOM];
        buffer.extend_from_slice(payload);
        Frame::text(buffer, FrameCharge::new(&budget, 0))
            .bytes()
            .to_vec()
    }

    #[test]
    fn headers_use_the_shortest_length_encoding() {
        assert_eq!(text(b"hi"), [0x81, 2, b'h', b'i']);
        let mid = text(&[b'a'; 126]);
        assert_eq!(&mid[..4], &[0x81, 126, 0, 126]);
        assert_eq!(mid.len(), 4 + 126);
        let long = text(&[b'a'; 70_000]);
        assert_eq!(&long[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(long.len(), 10 + 70_000);
    }

    #[test]
    fn control_frames() {
        assert_eq!(Frame::ping().bytes().as_ref(), [0x89, 0]);
        assert_eq!(
            Frame::close(1008, "slow").bytes().as_ref(),
            [0x88, 6, 0x03, 0xF0, b's', b'l', b'o', b'w']
        );
        assert_eq!(
            Frame::control(OP_PONG, b"abc").bytes().as_ref(),
            [0x8A, 3, b'a', b'b', b'c']
        );
    }

    #[test]
    fn a_frame_holds_its_charge_until_its_last_clone_is_dropped() {
        let budget = Budget::new(1 << 20);
        let mut buffer = vec![0; HEAD_ROOM];
        buffer.extend_from_slice(b"payload");
        let charge = FrameCharge::new(&budget, buffer.capacity());
        let frame = Frame::text(buffer, charge);
        let clone = frame.clone();
        drop(frame);
        assert!(budget.used() > 0);
        drop(clone);
        assert_eq!(budget.used(), 0);
    }
}
