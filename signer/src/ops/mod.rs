//! Operations: what keeps the signer tidy and what operators run.
//!
//! - [`reaper`] — aborts what was abandoned, evicts what is old or over quota.
//! - [`claim`] — one registry, and one running signer, per S3 prefix: taking it.
//! - [`lease`] — the running signer's lease on its prefix: renewed, released.
//! - [`rebuild`] — `signer registry rebuild`: the registry recovered from the bucket.
//! - [`reload`] — SIGHUP: tokens and limits re-read from the config file.
//! - [`check_config`] — `signer check-config`: the file and the bucket, checked.
//! - [`client`] — the operator's client of the API (`signer token …`, `signer stats`).
//! - [`token_cmd`] — `signer token create|revoke`.
//! - [`stats_cmd`] — `signer stats`: usage per owner and scope.
//! - [`caches_cmd`] — `signer caches delete`: a scope's caches, or a prefix's, dropped.

pub mod caches_cmd;
pub mod check_config;
pub mod claim;
pub mod client;
pub mod lease;
pub mod reaper;
pub mod rebuild;
pub mod reload;
pub mod stats_cmd;
pub mod token_cmd;
