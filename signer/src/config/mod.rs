//! `signer.toml`: listen address, registry file, S3 settings, limits, timings, static
//! job tokens and operator credentials. Every field but `s3.endpoint`, `s3.bucket` and
//! at least one `[[tokens]]` or `[[operators]]` entry has a default. Secrets (S3
//! credentials, tokens) never appear in `Debug` output or logs.
//!
//! - [`types`] — the config's shape, defaults and derived values.
//! - [`load`] — reading a file or text: TOML, then the rules.
//! - [`rules`] — what serde cannot check, as a table of rules.
//! - [`error`] — [`ConfigError`].

pub mod error;
pub mod load;
pub mod rules;
pub mod types;

pub use error::ConfigError;
pub use types::*;
