//! Property tests of the allocator: random sequences of alloc / free / realloc / calloc through
//! both interfaces, checking no overlap, alignment, preserved contents and zeroed calloc, with
//! the heap invariant walker run after every step.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::ffi::c_void;

use poolgrind::{capi, debug, raw, PoolAlloc};
use proptest::prelude::*;

static A: PoolAlloc = PoolAlloc::new();

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align_log2: u32,
        zeroed: bool,
    },
    RawMalloc {
        size: usize,
    },
    RawCalloc {
        n: usize,
        size: usize,
    },
    Free {
        which: usize,
    },
    Realloc {
        which: usize,
        size: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..=1024, 0u32..=12, any::<bool>()).prop_map(|(size, align_log2, zeroed)| {
            Op::Alloc {
                size,
                align_log2,
                zeroed,
            }
        }),
        (0usize..=1024).prop_map(|size| Op::RawMalloc { size }),
        (0usize..=40, 0usize..=40).prop_map(|(n, size)| Op::RawCalloc { n, size }),
        any::<usize>().prop_map(|which| Op::Free { which }),
        (any::<usize>(), 0usize..=1024).prop_map(|(which, size)| Op::Realloc { which, size }),
    ]
}

/// A live block: where, its layout (None = raw API), the byte it is filled with.
struct Live {
    layout: Option<Layout>,
    size: usize,
    fill: u8,
}

fn check_contents(p: *mut u8, l: &Live) {
    for i in 0..l.size {
        // SAFETY: the block is live with `size` bytes.
        let b = unsafe { *p.add(i) };
        assert_eq!(b, l.fill, "byte {i} of {p:p} changed");
    }
}

fn fill(p: *mut u8, size: usize, v: u8) {
    // SAFETY: the block has `size` bytes.
    unsafe { p.write_bytes(v, size) };
}

fn no_overlap(live: &BTreeMap<usize, Live>) {
    let mut end = 0usize;
    for (&start, l) in live {
        assert!(
            start >= end,
            "block {start:#x} overlaps the previous one (ends {end:#x})"
        );
        end = start + l.size.max(1);
    }
}

fn run(ops: Vec<Op>) {
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut counter = 0u8;
    for op in ops {
        counter = counter.wrapping_add(1).max(1);
        match op {
            Op::Alloc {
                size,
                align_log2,
                zeroed,
            } => {
                let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                // SAFETY: alloc with a valid layout (size 0 is allowed by this allocator).
                let p = unsafe {
                    if zeroed {
                        A.alloc_zeroed(layout)
                    } else {
                        A.alloc(layout)
                    }
                };
                assert!(!p.is_null());
                assert_eq!(p as usize % layout.align(), 0, "alignment");
                if zeroed {
                    // SAFETY: live block of `size` bytes.
                    assert!(
                        (0..size).all(|i| unsafe { *p.add(i) } == 0),
                        "alloc_zeroed not zero"
                    );
                }
                fill(p, size, counter);
                live.insert(
                    p as usize,
                    Live {
                        layout: Some(layout),
                        size,
                        fill: counter,
                    },
                );
            }
            Op::RawMalloc { size } => {
                // SAFETY: raw malloc.
                let p = unsafe { raw::malloc(size) };
                assert!(!p.is_null());
                assert_eq!(p as usize % 16, 0);
                // SAFETY: live block.
                assert!(unsafe { raw::usable_size(p) } >= size);
                fill(p, size, counter);
                live.insert(
                    p as usize,
                    Live {
                        layout: None,
                        size,
                        fill: counter,
                    },
                );
            }
            Op::RawCalloc { n, size } => {
                // SAFETY: raw calloc.
                let p = unsafe { raw::calloc(n, size) };
                assert!(!p.is_null());
                // SAFETY: live block of n * size bytes.
                assert!(
                    (0..n * size).all(|i| unsafe { *p.add(i) } == 0),
                    "calloc not zero"
                );
                fill(p, n * size, counter);
                live.insert(
                    p as usize,
                    Live {
                        layout: None,
                        size: n * size,
                        fill: counter,
                    },
                );
            }
            Op::Free { which } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(which % live.len()).unwrap();
                let l = live.remove(&key).unwrap();
                check_contents(key as *mut u8, &l);
                // SAFETY: freeing a live block through the interface that made it.
                unsafe {
                    match l.layout {
                        Some(layout) => A.dealloc(key as *mut u8, layout),
                        None => raw::free(key as *mut u8),
                    }
                }
            }
            Op::Realloc { which, size } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(which % live.len()).unwrap();
                let l = live.remove(&key).unwrap();
                check_contents(key as *mut u8, &l);
                let (q, layout) = match l.layout {
                    // SAFETY: realloc of a live block with its layout; size > 0 below.
                    Some(layout) => {
                        let size = size.max(1);
                        let q = unsafe { A.realloc(key as *mut u8, layout, size) };
                        (
                            q,
                            Some(Layout::from_size_align(size, layout.align()).unwrap()),
                        )
                    }
                    // SAFETY: raw realloc of a live raw block, through the Rust API or, every
                    // other time, the C entry point (its native fast path: in place, moved
                    // between classes through the thread cache, a system block's realloc).
                    None if which % 2 == 0 => {
                        (unsafe { raw::realloc(key as *mut u8, size.max(1)) }, None)
                    }
                    // SAFETY: as above.
                    None => (
                        unsafe { capi::poolgrind_realloc(key as *mut c_void, size.max(1)) }.cast(),
                        None,
                    ),
                };
                assert!(!q.is_null());
                let size = size.max(1);
                let kept = Live {
                    layout,
                    size: l.size.min(size),
                    fill: l.fill,
                };
                check_contents(q, &kept);
                if let Some(layout) = layout {
                    assert_eq!(q as usize % layout.align(), 0);
                }
                fill(q, size, counter);
                live.insert(
                    q as usize,
                    Live {
                        layout,
                        size,
                        fill: counter,
                    },
                );
            }
        }
        no_overlap(&live);
        debug::check_heap().unwrap();
    }
    for (key, l) in live {
        check_contents(key as *mut u8, &l);
        // SAFETY: freeing every remaining live block.
        unsafe {
            match l.layout {
                Some(layout) => A.dealloc(key as *mut u8, layout),
                None => raw::free(key as *mut u8),
            }
        }
    }
    debug::check_heap().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_op_sequences_keep_every_invariant(ops in proptest::collection::vec(op(), 1..300)) {
        run(ops);
    }
}

#[test]
fn bad_layouts_and_overflow_return_null() {
    // SAFETY: calls with impossible sizes must fail cleanly.
    unsafe {
        assert!(raw::calloc(usize::MAX / 2, 4).is_null(), "calloc overflow");
        assert!(raw::malloc(usize::MAX - 8).is_null(), "huge malloc");
        let big = Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap();
        assert!(A.alloc(big).is_null(), "huge aligned alloc");
        raw::free(std::ptr::null_mut()); // no-op
        assert!(
            raw::realloc(raw::malloc(10), 0).is_null(),
            "realloc to 0 frees (glibc)"
        );
        let z = raw::malloc(0);
        assert!(!z.is_null(), "malloc(0) returns a unique pointer");
        raw::free(z);
        let z = A.alloc(Layout::from_size_align(0, 1).unwrap());
        assert!(!z.is_null());
        A.dealloc(z, Layout::from_size_align(0, 1).unwrap());
    }
    debug::check_heap().unwrap();
}
