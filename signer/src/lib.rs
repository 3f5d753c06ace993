//! signer: holds the S3 credentials and the cache registry; presigns, completes, reaps
//! and evicts.
//!
//! - [`config`] — `signer.toml`: its types, loading and validation.
//! - [`state`] — what handlers and tasks share: live config, registry, S3, metrics.
//! - [`http`] — the HTTP edge: accept loop, the `/v1` API, errors mapped to statuses.
//! - [`caches`] — the life of a cache: lookup, report and healing, delete, eviction.
//! - [`uploads`] — the life of an upload and its durable completion.
//! - [`auth`] — tokens: who is asking and what it may do.
//! - [`registry`] — the SQLite index of caches, uploads, tokens and usage.
//! - [`ops`] — operations: reaper, prefix claim, reload, operator commands.
//! - [`cache_index`] — each cache's self-description in S3, for a rebuild.
//! - [`lookup_id`] — the signer's proof of a lookup, which reports echo.
//! - [`metrics`] — what `GET /metrics` shows; every module counts into it.
//! - [`server`] — startup, the ready file, shutdown.
//! - [`s3`] — the S3 client.
//! - [`retry`] — the one policy of every retry loop.
//! - [`lease`] — this process's lease on its S3 prefix (who holds it, whether we do).
//! - [`tasks`] — background tasks restarted when they panic, and their health.
//! - [`window`] — budgets and verdicts remembered for a window, in memory.
//! - [`names`] — client-given names checked against the wire's rules.
//! - [`text`] — client strings quoted and error chains, for people.

pub mod auth;
pub mod cache_index;
pub mod caches;
pub mod config;
pub mod http;
pub mod lease;
pub mod lookup_id;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod registry;
pub mod retry;
pub mod s3;
pub mod server;
pub mod state;
pub mod tasks;
pub mod text;
pub mod uploads;
pub mod window;
