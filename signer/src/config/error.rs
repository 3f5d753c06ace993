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
    /// One line: `line N (field): message`, never the line's text (it may hold a
    /// token). toml's own error quotes the line, so it is not kept.
    #[error("line {line}{}: {message}", .field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Toml {
        line: usize,
        /// The field the line sets, when its key can be read.
        field: Option<String>,
        message: String,
    },
    /// A TOML error that points nowhere in the file.
    #[error("{message}")]
    TomlWhole { message: String },
    /// A field that breaks a rule, named as in the file (`limits.ttl_days`).
    #[error("{field} {reason}")]
    Invalid { field: String, reason: String },
}
