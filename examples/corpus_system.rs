//! The deliberate-bug corpus on the system allocator (the parity reference).
include!("corpus/scenarios.rs");
