//! After any frame, in either direction, an idle connection holds what it held before: no buffer
//! keeps the size of the largest frame it once carried.
//!
//! A counting allocator tracks the bytes live in the whole process (server and clients). The
//! clients are raw sockets that keep nothing between frames, so what stays live after a large
//! frame is what the server kept.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::raw_ws::RawWs;
use common::{until, TestServer};
use serde_json::json;
use wshub::{Envelope, Hub, Recipient};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts on the way.
#[allow(unsafe_code)] // a global allocator cannot be written without it
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CLIENTS: usize = 20;
/// What the process may hold beyond its idle footprint once the frames are handled: far less
/// than one large frame, let alone one per connection.
const SLACK: isize = 32 * 1024;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Waits until the process holds no more than `idle` plus [`SLACK`], failing with how much more
/// it holds.
async fn back_to(idle: isize, after: &str) {
    let what = format!("live memory to return to its idle footprint after {after}");
    let result = tokio::time::timeout(common::WAIT, async {
        while live() > idle + SLACK {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "{what}: {} bytes more than idle for {CLIENTS} connections ({} per connection)",
        live() - idle,
        (live() - idle) / CLIENTS as isize
    );
}

#[tokio::test]
async fn an_idle_connection_returns_to_its_footprint_after_a_large_frame_either_way() {
    const LARGE: usize = 1_000_000;
    let server = TestServer::with(Hub::builder().max_message_size(256 * 1024)).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = RawWs::connect(server.addr, "", None).await;
        let connected = client.text().await;
        assert!(connected.contains("__connected"), "{connected}");
        clients.push(client);
    }
    until("every client registered", || {
        server.hub.local_connection_count() == CLIENTS
    })
    .await;
    // One small frame each way first, so that what a connection allocates once (its queue's
    // first slots) is in the idle footprint.
    server.send_marker();
    for client in &mut clients {
        assert!(client.text().await.contains("marker"));
    }
    let idle = live();

    // Out: one large frame to every connection, each read whole.
    let sent = {
        let large = Envelope::new("large")
            .with_message(&"x".repeat(LARGE))
            .to(Recipient::all());
        server.hub.send(&large)
    };
    assert_eq!(sent, CLIENTS);
    for client in &mut clients {
        let frame = client.frame().await;
        assert!(frame.payload.len() > LARGE, "the large frame, whole");
    }
    back_to(idle, "a 1 MB frame was written to each connection").await;

    // In: a large message from every connection, handled (relayed to nobody); the error about
    // the next, invalid, one shows that the large one was handled before it.
    let message = json!({
        "action": "large",
        "message": "y".repeat(200_000),
        "recipients": [{"type": "group", "value": "nobody"}],
    })
    .to_string();
    for client in &mut clients {
        client.send_text(&message).await;
        client.send_text("not an envelope").await;
    }
    drop(message);
    for client in &mut clients {
        let error = client.text().await;
        assert!(error.contains("invalid_envelope"), "{error}");
    }
    back_to(idle, "a 200 KB message was read from each connection").await;
}
