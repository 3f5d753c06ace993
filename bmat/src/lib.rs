//! bmat: save and restore CI build caches through the job's agent.
//!
//! The pieces, one job each:
//! - [`run`]: the entry point; [`cli`]: the command line; [`context`]: the job,
//!   resolved once at the entry point; [`prepare`]: usage checks, a command made a task;
//! - [`commands`]: save, restore (and its `--lookup-only`), list, delete, the Rust
//!   cache's flow, and their outcome (line, JSON, exit code);
//! - [`job`]: commands deferred to the job's end (`bmat job defer|end`,
//!   `--save-at-end`);
//! - [`archive`]: archive naming, tar writer, checked unpacker, staging, placement and
//!   undo, the pack and verified unpack pipelines;
//! - [`trees`]: the trees a cache spans and the paths in them;
//! - [`transfer`]: the signer API client, retries and their knobs, presigned S3
//!   requests, part upload and ranged download;
//! - [`rust`]: Rust key derivation, which files a Rust cache holds, Cargo home
//!   relocation;
//! - [`output`]: stdout and stderr without panics; [`progress`]: byte counts and the
//!   progress line.

// Output goes through `output`, never through a macro that panics when a stream fails.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod archive;
pub mod cli;
pub mod commands;
pub mod contents;
pub mod context;
pub mod job;
pub mod output;
pub mod prepare;
pub mod progress;
pub mod run;
pub mod rust;
pub mod transfer;
pub mod trees;
