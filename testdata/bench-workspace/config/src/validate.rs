//! Checks of a configuration that its types cannot express.

use std::fmt;

use crate::Config;

/// One setting out of its range, all of them reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

pub fn check(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key, message: String| problems.push(Problem { key, message });
    if !(1..=22).contains(&config.store.level) {
        problem(
            "store.level",
            format!("{} is not a zstd level (1 to 22)", config.store.level),
        );
    }
    if config.store.root.as_os_str().is_empty() {
        problem("store.root", "is empty".into());
    }
    if config.store.max_bytes == Some(0) {
        problem(
            "store.max_bytes",
            "0 would refuse every blob; unset it instead".into(),
        );
    }
    if !(1..=64).contains(&config.sync.concurrency) {
        problem(
            "sync.concurrency",
            format!("{} is not 1 to 64", config.sync.concurrency),
        );
    }
    if config.sync.retries > 10 {
        problem(
            "sync.retries",
            format!("{} is more than 10", config.sync.retries),
        );
    }
    if let Err(e) = config.scan.filter() {
        problem("scan", e.to_string());
    }
    if let Err(e) = bench_core::Filter::new(&config.limits.forbidden, [""; 0]) {
        problem("limits.forbidden", e.to_string());
    }
    if config.limits.max_path_len == 0 {
        problem("limits.max_path_len", "is 0".into());
    }
    if config.report.top == 0 {
        problem("report.top", "is 0; a summary would list no file".into());
    }
    problems
}
