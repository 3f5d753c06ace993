use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bench_derive::Describe;
use serde::{Deserialize, Serialize};

/// Everything the store's commands read. Missing keys take their default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[describe(flatten)]
    pub store: StoreConfig,
    #[describe(flatten)]
    pub scan: ScanConfig,
    #[describe(flatten)]
    pub sync: SyncConfig,
    #[describe(flatten)]
    pub report: ReportConfig,
    #[describe(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
#[describe(prefix = "store.")]
pub struct StoreConfig {
    #[describe(with = show_path)]
    pub root: PathBuf,
    /// zstd level, 1 to 22.
    pub level: i32,
    /// Refuse to store more than this many bytes in all.
    pub max_bytes: Option<u64>,
    /// Credentials of a remote store; never printed.
    #[describe(secret)]
    pub token: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            root: PathBuf::from(".store"),
            level: 3,
            max_bytes: None,
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
#[describe(prefix = "scan.")]
pub struct ScanConfig {
    /// Globs of the files to keep; all files when empty.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            include: Vec::new(),
            exclude: vec![".git/**".into(), "target/**".into(), ".store/**".into()],
        }
    }
}

impl ScanConfig {
    pub fn filter(&self) -> Result<bench_core::Filter, bench_core::Error> {
        bench_core::Filter::new(&self.include, &self.exclude)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
#[describe(prefix = "sync.")]
pub struct SyncConfig {
    /// Blobs copied at once.
    pub concurrency: usize,
    /// Decompress and hash every copied blob.
    pub verify: bool,
    pub retries: u32,
    #[describe(rename = "retry_delay_ms")]
    #[serde(rename = "retry_delay_ms")]
    pub retry_delay: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            concurrency: 4,
            verify: true,
            retries: 2,
            retry_delay: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
#[describe(prefix = "report.")]
pub struct ReportConfig {
    #[describe(display)]
    pub format: Format,
    /// How many of the largest files a summary lists.
    pub top: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            format: Format::Text,
            top: 10,
        }
    }
}

/// What an audit flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Describe)]
#[serde(default, deny_unknown_fields)]
#[describe(prefix = "limits.")]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_path_len: usize,
    /// Globs of files that must not be stored (keys, credentials).
    pub forbidden: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 64 << 20,
            max_path_len: 200,
            forbidden: vec![
                ".env".into(),
                "*.pem".into(),
                "id_rsa*".into(),
                "*.key".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
        })
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?} (text or json)")),
        }
    }
}

fn show_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_flattens_prefixes_and_hides_secrets() {
        let mut config = Config::default();
        config.store.token = Some("hunter2".into());
        let pairs = config.describe();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("store.root"), Some(".store"));
        assert_eq!(get("store.token"), Some("(set)"));
        assert_eq!(get("sync.retry_delay_ms"), Some("50"));
        assert_eq!(get("report.format"), Some("text"));
        assert!(pairs.iter().all(|(_, v)| !v.contains("hunter2")));
    }
}
