//! One whole socket session over an in-memory stream: whatever bytes a client sends after the
//! handshake (frames whole, in pieces, or garbage), while another connection of its group
//! listens. The hub must write only well-formed frames to both, and both sessions must end once
//! the client has stopped (docs/fuzzing.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the rest arrives: in pieces of 1 to 256 bytes.
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        // Paused: the session's timeouts (idle, stall, forward, closing) pass at once.
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(wshub::fuzzing::session(input, usize::from(piece) + 1));
});
