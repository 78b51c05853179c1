//! Carrier classes (`types::carrier`), alone in their own test binary: whether a carrier is
//! split is process-wide, and a test running beside it would move it.

use std::alloc::{GlobalAlloc, Layout};

use poolgrind::{debug, raw, PoolAlloc};

mod common;
use common::native;

static A: PoolAlloc = PoolAlloc::new();

/// Pools of the class of `size` bytes.
fn pools(size: usize) -> usize {
    poolgrind::stats()
        .classes
        .into_iter()
        .find(|c| c.size == size)
        .map_or(0, |c| c.pools)
}

/// Whether carriers are on: pools natively, with thread caches (path `Fast`).
fn carriers_on() -> bool {
    native()
        && matches!(
            std::env::var("POOLGRIND_MODE").as_deref(),
            Err(_) | Ok("pool")
        )
        && std::env::var("POOLGRIND_TCACHE").as_deref() != Ok("0")
}

/// Issue 15 (mimalloc-bench's espresso, peak RSS): a thread cache holding a block of a class
/// keeps the block's pool, so a program using 22 classes of 112-512 B a block at a time kept a
/// page for each. A pointer-only request of 300 B now takes a block of its carrier (384 B) until
/// the carrier's pools grow past `SPLIT_POOLS` (4); then 300 B has its own class again. A Rust
/// layout's block always comes from its own class (its `dealloc` names the class by the size).
#[test]
fn light_classes_ride_in_their_carriers_pools_until_the_carrier_grows() {
    let layout = Layout::from_size_align(300, 16).unwrap();
    // SAFETY: a valid non-zero layout.
    let rust = unsafe { A.alloc(layout) };
    assert!(!rust.is_null());
    // SAFETY: a live block of at least 300 bytes.
    assert!(unsafe { raw::usable_size(rust) } >= 300);

    // SAFETY: plain allocations, each checked and later freed once.
    let first = unsafe { raw::malloc(300) };
    assert!(!first.is_null());
    // SAFETY: a live block.
    let usable = unsafe { raw::usable_size(first) };
    let mut held = vec![first];
    if carriers_on() {
        assert_eq!(
            usable, 384,
            "a first request of 300 B rides in the 384-B carrier"
        );
        assert_eq!(pools(304), 1, "the Rust layout's block has its own class");
        // The rest of the C family takes the same bins: calloc (zeroed), memalign at 16,
        // realloc within the carrier stays where it is.
        // SAFETY: plain calls; every block is checked, and freed once below.
        unsafe {
            let z = raw::calloc(3, 100);
            assert!(!z.is_null());
            assert_eq!(raw::usable_size(z), 384, "calloc of 300 B");
            assert!(std::slice::from_raw_parts(z, 300).iter().all(|&b| b == 0));
            held.push(z);
            let a = raw::memalign(16, 200);
            assert!(!a.is_null());
            assert_eq!(raw::usable_size(a), 256, "memalign(16, 200)");
            held.push(a);
            first.write_bytes(0x3C, 300);
            let grown = raw::realloc(first, 370);
            assert_eq!(grown, first, "300 -> 370 B stays in its 384-B block");
        }
        // Fill the carrier: its fifth pool splits it.
        while pools(384) <= 4 {
            // SAFETY: as above.
            let p = unsafe { raw::malloc(300) };
            assert!(!p.is_null());
            held.push(p);
            assert!(held.len() < 1000, "the carrier never grew: {held:?}");
        }
        // SAFETY: as above.
        let own = unsafe { raw::malloc(300) };
        held.push(own);
        // SAFETY: a live block.
        assert_eq!(
            unsafe { raw::usable_size(own) },
            304,
            "after the split 300 B has its own class"
        );
        // A block of the split carrier resized to a size whose carrier (256 B) still serves it
        // moves there, its bytes with it.
        // SAFETY: `first` is live (it stayed in place above); the result replaces it.
        unsafe {
            let moved = raw::realloc(first, 250);
            assert!(!moved.is_null());
            assert_eq!(raw::usable_size(moved), 256, "250 B after the split");
            assert!(std::slice::from_raw_parts(moved, 250)
                .iter()
                .all(|&b| b == 0x3C));
            held[0] = moved;
        }
    } else {
        assert!(usable >= 300);
    }
    for &p in &held {
        // SAFETY: live blocks, each written within its usable bytes.
        unsafe { p.write_bytes(0x5A, raw::usable_size(p)) };
    }
    debug::check_heap().unwrap();
    for p in held {
        // SAFETY: each block allocated above, freed once.
        unsafe { raw::free(p) };
    }
    // SAFETY: allocated above with this layout.
    unsafe { A.dealloc(rust, layout) };
    debug::check_heap().unwrap();
}
