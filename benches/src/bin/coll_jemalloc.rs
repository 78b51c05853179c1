//! The `#[global_allocator]` workloads (collections, churn through `Box`) on jemalloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    poolgrind_bench::global_main("coll_jemalloc");
}
