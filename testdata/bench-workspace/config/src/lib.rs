//! The store's configuration: a model with defaults, layers (file, environment,
//! command line) merged in order with the origin of every setting, and validation.

mod layer;
mod model;
mod validate;

use std::path::PathBuf;

pub use layer::{Layer, Origin, Resolved, resolve};
pub use model::{Config, Format, Limits, ReportConfig, ScanConfig, StoreConfig, SyncConfig};
pub use validate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Json {
        origin: Origin,
        source: serde_json::Error,
    },
    #[error("{origin}: {key}: {reason}")]
    Key {
        origin: Origin,
        key: String,
        reason: &'static str,
    },
    #[error("invalid configuration:{}", problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Invalid { problems: Vec<Problem> },
}
