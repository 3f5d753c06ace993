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
//! - [`metrics`] — what `GET /metrics` shows.
//! - [`reload`] — SIGHUP: tokens and limits re-read from the config file.
//! - [`client`] — the operator's client of the API (`signer token …`, `signer stats`).
//! - [`token_cmd`] — `signer token create|revoke`.
//! - [`stats_cmd`] — `signer stats`: usage per owner and scope.
//! - [`check_config`] — `signer check-config`: the file and the bucket, checked.

pub mod api;
pub mod auth;
pub mod check_config;
pub mod claim;
pub mod client;
pub mod config;
pub mod http;
pub mod metrics;
pub mod reaper;
pub mod registry;
pub mod reload;
pub mod s3;
pub mod server;
pub mod state;
pub mod stats_cmd;
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
