//! signer: holds the S3 credentials and the cache registry; presigns, completes, reaps
//! and evicts.
//!
//! - [`config`] — `signer.toml`.
//! - [`auth`] — tokens: who is asking and what it may do.
//! - [`registry`] — the SQLite index of caches and uploads.
//! - [`api`] — the HTTP API under `/v1`.
//! - [`uploads`] — the life of an upload, every state transition.
//! - [`worker`] — durable completion of finished uploads.
//! - [`reaper`] — aborts what was abandoned, evicts what is old or over quota.
//! - [`server`] — startup, the ready file, shutdown.
//! - [`http`] — the accept loop: timeouts and a connection limit.
//! - [`claim`] — one registry per S3 prefix.
//! - [`s3`] — the S3 client.
//! - [`token_cmd`] — `signer token create|revoke`, the operator's client.

pub mod api;
pub mod auth;
pub mod claim;
pub mod config;
pub mod http;
pub mod reaper;
pub mod registry;
pub mod s3;
pub mod server;
pub mod state;
pub mod token_cmd;
pub mod uploads;
pub mod worker;

/// A key (or any client string) quoted for an error message: escaped, one line, not
/// absurdly long.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 140;
    if s.chars().count() > MAX {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    } else {
        format!("{s:?}")
    }
}
