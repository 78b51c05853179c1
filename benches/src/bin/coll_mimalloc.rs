//! The `#[global_allocator]` workloads (collections, churn through `Box`) on mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    poolgrind_bench::global_main("coll_mimalloc");
}
