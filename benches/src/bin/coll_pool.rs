//! The `#[global_allocator]` workloads (collections, churn through `Box`) on pool.
#[global_allocator]
static GLOBAL: poolgrind::PoolAlloc = poolgrind::PoolAlloc::new();

fn main() {
    poolgrind_bench::global_main("coll_pool");
}
