//! The `#[global_allocator]` workloads (collections, churn through `Box`) on system.
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    poolgrind_bench::global_main("coll_system");
}
