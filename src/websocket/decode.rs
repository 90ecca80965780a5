//! Frames a client sends (RFC 6455 §5), decoded from whatever pieces the socket gives.
//!
//! Memory for a message grows only as its bytes arrive: a header that claims 64 KiB reserves
//! nothing, so a client holds on the server what it has uploaded and no more. Binary frames are
//! refused at their header (the hub speaks JSON text), before any payload is kept.

use super::frame::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

/// What the client sent: a whole message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A text message, checked to be UTF-8.
    Text(String),
    Ping(Vec<u8>),
    Pong,
    /// The client's close frame, with its code when it has one.
    Close(Option<u16>),
}

/// Bytes that end the connection, with the close code to answer (RFC 6455 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation(pub(crate) u16);

pub(crate) const PROTOCOL_ERROR: Violation = Violation(1002);
pub(crate) const UNSUPPORTED_DATA: Violation = Violation(1003);
pub(crate) const INVALID_PAYLOAD: Violation = Violation(1007);
pub(crate) const TOO_BIG: Violation = Violation(1009);

/// The longest client frame header: 2 bytes, a 64-bit length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A decoder for one connection's incoming bytes.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// A header split across reads.
    head: [u8; MAX_HEADER],
    head_len: u8,
    frame: Option<FrameState>,
    /// The text message being received (its frames so far), while one is.
    message: Option<Vec<u8>>,
    /// A control frame's payload, while it is being received.
    control: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct FrameState {
    opcode: u8,
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes unmasked so far, for the mask's phase.
    done: usize,
}

impl Decoder {
    /// Decodes from `input` until one message or control frame is whole, returning the bytes used
    /// and that, or until `input` is used up. `max_message` bounds a message's total payload.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        max_message: usize,
    ) -> (usize, Option<Result<Inbound, Violation>>) {
        let mut at = 0;
        loop {
            let frame = match self.frame {
                Some(ref mut frame) => frame,
                None => {
                    let (used, header) = self.header(&input[at..], max_message);
                    at += used;
                    match header {
                        None => return (at, None),
                        Some(Err(violation)) => return (at, Some(Err(violation))),
                        Some(Ok(frame)) => self.frame.insert(frame),
                    }
                }
            };
            let available = input.len() - at;
            let take = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
            let chunk = &input[at..at + take];
            let target = if frame.opcode >= OP_CLOSE {
                &mut self.control
            } else {
                self.message.get_or_insert_with(Vec::new)
            };
            let start = target.len();
            // Exact for a frame that arrived whole, the usual case; amortised doubling otherwise.
            target.reserve(take);
            target.extend_from_slice(chunk);
            unmask(&mut target[start..], frame.mask, frame.done);
            frame.done += take;
            frame.remaining -= take as u64;
            at += take;
            if frame.remaining > 0 {
                return (at, None);
            }
            let frame = *frame;
            self.frame = None;
            if let Some(event) = self.complete(frame) {
                return (at, Some(event));
            }
            if at == input.len() {
                return (at, None);
            }
        }
    }

    /// Bytes held for a message or frame not yet whole.
    pub(crate) fn buffered(&self) -> usize {
        self.message.as_ref().map_or(0, Vec::capacity) + self.control.capacity()
    }

    /// Whether a message has begun and is not whole yet.
    pub(crate) fn in_message(&self) -> bool {
        self.message.is_some() || self.frame.is_some() || self.head_len > 0
    }

    /// Reads a header from `input`, keeping what is there of a split one.
    fn header(
        &mut self,
        input: &[u8],
        max_message: usize,
    ) -> (usize, Option<Result<FrameState, Violation>>) {
        let mut used = 0;
        loop {
            let have = usize::from(self.head_len);
            let need = match have {
                0 | 1 => 2,
                _ => match check_start(self.head[0], self.head[1]) {
                    Ok(extended) => 2 + extended + 4,
                    Err(violation) => return (used, Some(Err(violation))),
                },
            };
            if have == need {
                break;
            }
            let take = (need - have).min(input.len() - used);
            if take == 0 {
                return (used, None);
            }
            self.head[have..have + take].copy_from_slice(&input[used..used + take]);
            self.head_len += take as u8;
            used += take;
        }
        let head = &self.head[..usize::from(self.head_len)];
        self.head_len = 0;
        (used, Some(self.frame_state(head, max_message)))
    }

    fn frame_state(&self, head: &[u8], max_message: usize) -> Result<FrameState, Violation> {
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        let (remaining, mask_at) = match head[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => {
                let mut len = [0; 8];
                len.copy_from_slice(&head[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            short => (u64::from(short), 2),
        };
        if remaining >> 63 != 0 {
            return Err(PROTOCOL_ERROR);
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {}
            OP_TEXT if self.message.is_some() => return Err(PROTOCOL_ERROR),
            OP_CONTINUATION if self.message.is_none() => return Err(PROTOCOL_ERROR),
            OP_TEXT | OP_CONTINUATION => {
                let so_far = self.message.as_ref().map_or(0, Vec::len) as u64;
                if so_far.saturating_add(remaining) > max_message as u64 {
                    return Err(TOO_BIG);
                }
            }
            // Checked by `check_start`.
            _ => return Err(PROTOCOL_ERROR),
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&head[mask_at..mask_at + 4]);
        Ok(FrameState {
            opcode,
            fin,
            remaining,
            mask,
            done: 0,
        })
    }

    /// A frame is whole: a control frame is an event at once, a data frame ends its message when
    /// it is the final one.
    fn complete(&mut self, frame: FrameState) -> Option<Result<Inbound, Violation>> {
        match frame.opcode {
            OP_PING => Some(Ok(Inbound::Ping(std::mem::take(&mut self.control)))),
            OP_PONG => {
                self.control = Vec::new();
                Some(Ok(Inbound::Pong))
            }
            OP_CLOSE => Some(close(&std::mem::take(&mut self.control))),
            _ if !frame.fin => {
                // The first frame of a fragmented message still needs its message started.
                self.message.get_or_insert_with(Vec::new);
                None
            }
            _ => {
                let bytes = self.message.take().unwrap_or_default();
                Some(
                    String::from_utf8(bytes)
                        .map(Inbound::Text)
                        .map_err(|_| INVALID_PAYLOAD),
                )
            }
        }
    }
}

/// Checks a header's first two bytes; returns the length of its extended payload length.
fn check_start(b0: u8, b1: u8) -> Result<usize, Violation> {
    // No extension was negotiated, so no reserved bit may be set.
    if b0 & 0x70 != 0 {
        return Err(PROTOCOL_ERROR);
    }
    // A client must mask every frame (RFC 6455 §5.1).
    if b1 & 0x80 == 0 {
        return Err(PROTOCOL_ERROR);
    }
    let opcode = b0 & 0x0F;
    let short = b1 & 0x7F;
    match opcode {
        OP_BINARY => Err(UNSUPPORTED_DATA),
        OP_CONTINUATION | OP_TEXT => Ok(match short {
            126 => 2,
            127 => 8,
            _ => 0,
        }),
        // Control frames are final and short (RFC 6455 §5.5).
        OP_CLOSE | OP_PING | OP_PONG if b0 & 0x80 != 0 && short <= 125 => Ok(0),
        _ => Err(PROTOCOL_ERROR),
    }
}

/// A close frame's payload: empty, or a valid code and a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
fn close(payload: &[u8]) -> Result<Inbound, Violation> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload.len() {
            0 => Ok(Inbound::Close(None)),
            _ => Err(PROTOCOL_ERROR),
        };
    };
    let code = u16::from_be_bytes(*code);
    let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !valid {
        return Err(PROTOCOL_ERROR);
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(INVALID_PAYLOAD);
    }
    Ok(Inbound::Close(Some(code)))
}

/// Unmasks `data`, which starts `done` bytes into its frame's payload.
fn unmask(data: &mut [u8], mask: [u8; 4], done: usize) {
    let mut mask = mask;
    mask.rotate_left(done % 4);
    let word = u32::from_ne_bytes(mask);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let wide = if cfg!(target_endian = "little") {
        wide
    } else {
        wide.rotate_left(32)
    };
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the mask's phase is where it was.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 16;

    /// A masked client frame.
    pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Everything `input` decodes to, fed `piece` bytes at a time.
    fn decode_all(input: &[u8], piece: usize) -> Vec<Result<Inbound, Violation>> {
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        for chunk in input.chunks(piece) {
            let mut at = 0;
            while at < chunk.len() {
                let (used, event) = decoder.decode(&chunk[at..], MAX);
                at += used;
                match event {
                    Some(Err(v)) => {
                        events.push(Err(v));
                        return events;
                    }
                    Some(Ok(e)) => events.push(Ok(e)),
                    None => assert_eq!(at, chunk.len(), "stops early only with an event"),
                }
            }
        }
        events
    }

    #[test]
    fn messages_decode_alike_whatever_the_pieces() {
        let long: String = (0..70_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut input = frame(true, OP_TEXT, b"hello", [1, 2, 3, 4]);
        input.extend(frame(false, OP_TEXT, "h\u{e9}".as_bytes(), [9, 8, 7, 6]));
        input.extend(frame(true, OP_PING, b"p", [5, 5, 5, 5]));
        input.extend(frame(true, OP_CONTINUATION, b"llo", [0, 0, 0, 1]));
        input.extend(frame(true, OP_TEXT, b"", [1, 1, 1, 1]));
        input.extend(frame(
            true,
            OP_TEXT,
            &long.as_bytes()[..MAX],
            [7, 7, 0, 255],
        ));
        input.extend(frame(true, OP_PONG, b"", [1, 2, 3, 4]));
        input.extend(frame(
            true,
            OP_CLOSE,
            &[0x03, 0xE8, b'o', b'k'],
            [1, 2, 3, 4],
        ));
        let expected = vec![
            Ok(Inbound::Text("hello".into())),
            Ok(Inbound::Ping(b"p".to_vec())),
            Ok(Inbound::Text("h\u{e9}llo".into())),
            Ok(Inbound::Text(String::new())),
            Ok(Inbound::Text(long[..MAX].to_owned())),
            Ok(Inbound::Pong),
            Ok(Inbound::Close(Some(1000))),
        ];
        for piece in [1, 2, 3, 7, 13, 256, 16 * 1024, input.len()] {
            assert_eq!(decode_all(&input, piece), expected, "in pieces of {piece}");
        }
    }

    #[test]
    fn a_claimed_length_reserves_nothing() {
        let mut decoder = Decoder::default();
        let whole = frame(true, OP_TEXT, &[b'x'; 60_000], [1, 2, 3, 4]);
        let (used, event) = decoder.decode(&whole[..14], MAX);
        assert_eq!((used, event), (14, None));
        assert!(
            decoder.buffered() <= 16,
            "{} bytes held",
            decoder.buffered()
        );
        assert!(decoder.in_message());
    }

    #[test]
    fn violations_carry_their_close_codes() {
        let cases: Vec<(Vec<u8>, Violation)> = vec![
            (frame(true, OP_BINARY, b"x", [1; 4]), UNSUPPORTED_DATA),
            (
                vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
                PROTOCOL_ERROR,
            ), // unmasked
            (frame(true, 0x3, b"", [1; 4]), PROTOCOL_ERROR), // reserved opcode
            (
                {
                    let mut f = frame(true, OP_TEXT, b"x", [1; 4]);
                    f[0] |= 0x40; // RSV1
                    f
                },
                PROTOCOL_ERROR,
            ),
            (frame(false, OP_PING, b"", [1; 4]), PROTOCOL_ERROR), // fragmented control
            (frame(true, OP_PING, &[0; 126], [1; 4]), PROTOCOL_ERROR),
            (frame(true, OP_CONTINUATION, b"x", [1; 4]), PROTOCOL_ERROR),
            (
                [
                    frame(false, OP_TEXT, b"a", [1; 4]),
                    frame(true, OP_TEXT, b"b", [1; 4]),
                ]
                .concat(),
                PROTOCOL_ERROR,
            ),
            (frame(true, OP_TEXT, &[0xFF, 0xFE], [1; 4]), INVALID_PAYLOAD),
            (frame(true, OP_TEXT, &vec![b'a'; MAX + 1], [1; 4]), TOO_BIG),
            (
                [
                    frame(false, OP_TEXT, &vec![b'a'; MAX], [1; 4]),
                    frame(true, OP_CONTINUATION, b"a", [1; 4]),
                ]
                .concat(),
                TOO_BIG,
            ),
            (frame(true, OP_CLOSE, &[3], [1; 4]), PROTOCOL_ERROR),
            (frame(true, OP_CLOSE, &[0x03, 0xED], [1; 4]), PROTOCOL_ERROR), // 1005
            (
                frame(true, OP_CLOSE, &[0x03, 0xE8, 0xFF], [1; 4]),
                INVALID_PAYLOAD,
            ),
            (
                vec![0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                PROTOCOL_ERROR,
            ), // 64-bit length with its top bit set
        ];
        for (input, violation) in cases {
            for piece in [1, input.len()] {
                let events = decode_all(&input, piece);
                assert_eq!(
                    events.last(),
                    Some(&Err(violation)),
                    "{input:02x?} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn a_too_big_message_is_refused_at_its_header() {
        let mut decoder = Decoder::default();
        let header = &frame(true, OP_TEXT, &vec![0; MAX + 1], [1; 4])[..14];
        assert_eq!(decoder.decode(header, MAX), (14, Some(Err(TOO_BIG))));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn unmasking_in_any_phase_and_length() {
        let data: Vec<u8> = (0..=255).collect();
        let mask = [0x12, 0x34, 0x56, 0x78];
        for start in 0..8 {
            for len in 0..40 {
                let mut masked: Vec<u8> = data[start..start + len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(start + i) % 4])
                    .collect();
                unmask(&mut masked, mask, start);
                assert_eq!(masked, &data[start..start + len]);
            }
        }
    }
}
