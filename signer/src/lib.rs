//! signer: holds the S3 credentials and the cache registry; presigns, completes, reaps
//! and evicts.
//!
//! - [`config`] — `signer.toml`.
//! - [`registry`] — the SQLite index of caches and uploads.
//! - [`api`] — the HTTP API under `/v1`.
//! - [`worker`] — durable completion of finished uploads.
//! - [`reaper`] — aborts what was abandoned, evicts what is old or over quota.
//! - [`server`] — startup, the ready file, shutdown.
//! - [`s3`] — the S3 client.

pub mod api;
pub mod config;
pub mod reaper;
pub mod registry;
pub mod s3;
pub mod server;
pub mod state;
pub mod worker;
