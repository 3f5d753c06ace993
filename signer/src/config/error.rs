//! Why a config is refused: the file cannot be read, its TOML does not parse into the
//! config's shape, or a field breaks a rule of [`super::rules`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The problem found in a file, with its name in front (in the message itself, so
    /// that it is one line however it is printed).
    #[error("config file {}: {problem}", .path.display())]
    InFile {
        path: PathBuf,
        problem: Box<ConfigError>,
    },
    /// One line: `line N: `the offending line`: message`. (toml's own message spans
    /// several lines with a caret: kept, but not shown as a cause.)
    #[error("{described}")]
    Toml {
        described: String,
        error: toml::de::Error,
    },
    /// A field that breaks a rule, named as in the file (`limits.ttl_days`).
    #[error("{field} {reason}")]
    Invalid { field: String, reason: String },
}
