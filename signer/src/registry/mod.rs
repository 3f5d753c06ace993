//! The SQLite registry: caches (what can be looked up), uploads (pending and past
//! multipart uploads), job tokens and usage counters. It is an index of S3 objects that
//! may be lost and rebuilt empty: it then costs cache hits, never data.
//!
//! All times are Unix milliseconds. Sizes are stored as i64 (the config keeps every
//! limit below 2^63).
//!
//! - [`schema`] — opening, migrations, schema version, the registry id.
//! - [`caches`] — the caches table: lookups, lists, last use, eviction candidates.
//! - [`uploads`] — the uploads table: states, leases, the completion queue.
//! - [`refs`] — the objects content-addressed caches read besides their own: references,
//!   retained and released objects.
//! - [`rebuilt`] — a registry rebuilt from the bucket: its caches written at once.
//! - [`tokens`] — minted job tokens.
//! - [`usage`] — hits, misses and evictions per owner, scope and hour.
//! - [`db`] — the connections shared by requests and tasks, off the async threads.
//! - [`values`] — places and the numbers stored.
//! - [`error`] — [`RegistryError`].

pub mod caches;
pub mod db;
pub mod error;
pub mod rebuilt;
pub mod refs;
pub mod schema;
pub mod tokens;
pub mod uploads;
pub mod usage;
pub mod values;

pub use caches::CacheRow;
pub use db::Db;
pub use error::RegistryError;
pub use rebuilt::RetainedObject;
pub use refs::{CacheRemoval, ObjectRef, Readable};
pub use schema::{Registry, SCHEMA_V1};
pub use tokens::JobTokenRow;
pub use uploads::{
    BeginOutcome, CompletedOutcome, FinishOutcome, Finished, UploadRow, UploadRules,
};
pub use usage::{PlaceUsage, RegistryTotals, UsageEvent, UsageFilter, hour_of};
pub use values::Place;
