//! The deliberate-bug corpus on poolgrind's allocator (see corpus/scenarios.rs).
#[cfg(not(feature = "dogfood"))] // with `dogfood` the library already installs PoolAlloc
#[global_allocator]
static GLOBAL: poolgrind::PoolAlloc = poolgrind::PoolAlloc::new();

include!("corpus/scenarios.rs");
