//! The deliberate-bug corpus on poolgrind's allocator (see corpus/scenarios.rs).
#[global_allocator]
static GLOBAL: poolgrind::PoolAlloc = poolgrind::PoolAlloc::new();

include!("corpus/scenarios.rs");
