//! Fan-out costs one serialisation per routed envelope and a reference count per recipient:
//! once connections are warm, routing an envelope to 200 of them allocates exactly what routing
//! it to one does, and routing it to nobody does not serialise it at all.
//!
//! A counting allocator counts the allocations of the thread that calls `Hub::send`. The call is
//! made from a plain thread outside the runtime, so waking the connection tasks goes through the
//! runtime's intrusive inject queue and nothing else allocates on that thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{within, TestServer};
use wshub::{Envelope, Recipient};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts on the way.
#[allow(unsafe_code)] // a global allocator cannot be written without it
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(bytes: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes as u64));
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (count, bytes) made by `hub.send(envelope)` on a fresh plain thread.
fn allocations_of_send(hub: &wshub::Hub, envelope: &Envelope) -> (usize, u64, u64) {
    let (hub, envelope) = (hub.clone(), envelope.clone());
    std::thread::spawn(move || {
        let before = (ALLOCATIONS.get(), BYTES.get());
        let delivered = hub.send(&envelope);
        (
            delivered,
            ALLOCATIONS.get() - before.0,
            BYTES.get() - before.1,
        )
    })
    .join()
    .expect("send thread")
}

#[tokio::test]
async fn routing_allocates_nothing_per_recipient() {
    const MANY: usize = 200;
    let server = TestServer::start().await;
    let mut one = server.connect("?groupId=solo").await;
    let mut many = server.connect_many(MANY, "?groupId=many").await;

    let to = |group: &str| {
        Envelope::new("news")
            .with_message(&"the same payload for every test")
            .to(Recipient::group(group))
    };
    // A connection's queue sizes itself on its first frames (its two halves, the one routing
    // fills and the one its task writes from, each allocate once); measure the steady state.
    for _ in 0..2 {
        let warm = Envelope::new("warm").to(Recipient::all());
        assert_eq!(server.hub.send(&warm), MANY + 1);
        within("the warm-up at every connection", async {
            one.recv_action("warm").await;
            for client in &mut many {
                client.recv_action("warm").await;
            }
        })
        .await;
    }
    // Group names of one length, so the three serialised frames are the same size.
    let (delivered_one, count_one, bytes_one) = allocations_of_send(&server.hub, &to("solo"));
    let (delivered_none, _, bytes_none) = allocations_of_send(&server.hub, &to("none"));
    assert_eq!(delivered_one, 1);
    assert_eq!(delivered_none, 0, "nobody is in group `none`");
    let (delivered_all, count_all, bytes_all) = allocations_of_send(&server.hub, &to("many"));
    assert_eq!(delivered_all, MANY);

    assert!(
        count_one > 0,
        "serialising the envelope allocates: the counter works"
    );
    assert_eq!(
        (count_all, bytes_all),
        (count_one, bytes_one),
        "routing to one and to {MANY} connections must allocate the same (allocations, bytes)"
    );
    assert!(
        bytes_none < bytes_one,
        "an envelope that reaches nobody is not serialised: {bytes_none} bytes against {bytes_one}"
    );

    // And they really got it, all the same frame.
    within("the envelope at every connection", async {
        assert_eq!(
            one.recv().await["message"],
            "the same payload for every test"
        );
        for client in &mut many {
            assert_eq!(
                client.recv().await["message"],
                "the same payload for every test"
            );
        }
    })
    .await;
}
