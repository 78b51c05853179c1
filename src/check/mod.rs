//! Running programs under memcheck and reading what it says.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`run`] spawns valgrind (one process, or many with [`batch`]; every binary of a cargo
//!   command with [`cargo`]) and collects one [`results::ProcessRecord`] per started program,
//!   holding the parsed [`model::Log`]s; [`select`] applies skip lists and partitions;
//! - [`xml`] is the tolerant reader of valgrind's XML, which says how far each log can be trusted
//!   (complete, truncated, junk, damaged); `logcheck` cross-checks the totals valgrind wrote
//!   against the errors read;
//! - [`frames`] classifies and demangles stack frames (user code, allocator, runtime);
//! - [`policy`] decides which errors fail the run (leak kinds, `--fail-on`, baseline);
//! - [`results`] aggregates processes into a [`results::Results`] value, which is also the JSON
//!   format documented in `docs/json-schema.md`;
//! - [`report`] renders results (human, JSON, JUnit, SARIF);
//! - [`exit`] holds the stable exit codes;
//! - [`shipped`] holds what the binary embeds (preload library, suppression files) and writes
//!   them out where valgrind can read them.
pub mod batch;
pub mod cargo;
pub mod exit;
pub mod frames;
mod logcheck;
pub mod model;
pub mod policy;
pub mod report;
pub mod results;
pub mod run;
pub mod select;
pub mod shipped;
pub mod xml;
