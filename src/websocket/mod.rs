//! The server side of RFC 6455 framing, written for the hub: frames built once and shared by
//! every recipient, client frames decoded with memory only for bytes that arrived, and a socket
//! driver that writes without copying and closes so that the close frame reaches the client.
//!
//! The opening handshake is in `handshake.rs`; tungstenite computes its accept key, and the tests
//! talk to the hub with tokio-tungstenite as a client.

pub(crate) mod close;
mod decode;
mod frame;
mod socket;

pub(crate) use decode::Inbound;
pub(crate) use frame::{Frame, HEAD_ROOM};
pub(crate) use socket::{Event, Socket};
