//! bmat: save and restore CI build caches through the job's agent.
//!
//! The pieces, one job each, are meant to be reused by other cache commands:
//! - [`paths`]: relative paths inside a tree (stdin lists, archive entry names);
//! - [`archive`]: tar writer from a root + paths, checked unpacker, staging + placing;
//! - [`stream`]: pack (tar → zstd) and verified unpack (hash → zstd → tar) pipelines;
//! - [`api`]: the signer API client; [`transfer`]: retries, presigned S3 requests,
//!   part upload and ranged download;
//! - [`save`], [`restore`] (and its `--lookup-only`), [`list`], [`delete`]: the
//!   commands; [`outcome`]: their result, line, JSON and exit code; [`cli`]: the command line; [`output`]: stdout and stderr without
//!   panics; [`manifest`]: tree manifests for checks.

// Output goes through `output`, never through a macro that panics when a stream fails.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod archive;
pub mod cli;
pub mod context;
pub mod delete;
pub mod disk;
pub mod handoff;
pub mod input;
pub mod list;
pub mod manifest;
pub mod outcome;
pub mod output;
pub mod paths;
pub mod progress;
pub mod restore;
pub mod roots;
pub mod rust;
pub mod save;
pub mod stream;
pub mod transfer;
pub mod tuning;
