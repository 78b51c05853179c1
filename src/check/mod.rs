//! Running programs under memcheck and reading what it says.
pub mod model;
