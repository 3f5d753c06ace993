//! One function per kind of finding.

use std::collections::BTreeMap;

use bench_config::Limits;
use bench_core::{Filter, Manifest};
use bench_report::human;

use crate::{Finding, Rule, Severity};

fn push(out: &mut Vec<Finding>, severity: Severity, rule: Rule, path: &str, message: String) {
    out.push(Finding {
        severity,
        rule,
        path: path.to_owned(),
        message,
    });
}

pub fn forbidden(
    manifest: &Manifest,
    globs: &[String],
    out: &mut Vec<Finding>,
) -> Result<(), bench_core::Error> {
    // The forbidden globs as excludes: the glob that excludes a path names why.
    let filter = Filter::new([""; 0], globs)?;
    for path in manifest.entries.keys() {
        if let Some(glob) = filter.excluded_by(path) {
            let message = format!("matches {:?}: keys and credentials stay out", glob.as_str());
            push(out, Severity::Error, Rule::Forbidden, path, message);
        }
    }
    Ok(())
}

pub fn sizes(manifest: &Manifest, limits: &Limits, out: &mut Vec<Finding>) {
    for (path, entry) in &manifest.entries {
        if entry.size > limits.max_file_bytes {
            let message = format!(
                "{} is over the limit of {}",
                human(entry.size),
                human(limits.max_file_bytes)
            );
            push(out, Severity::Error, Rule::TooLarge, path, message);
        }
        if entry.size == 0 {
            push(out, Severity::Info, Rule::Empty, path, "empty file".into());
        }
        let len = path.chars().count();
        if len > limits.max_path_len {
            let message = format!("{len} characters, over {}", limits.max_path_len);
            push(out, Severity::Warning, Rule::PathTooLong, path, message);
        }
    }
}

/// Names Windows reserves, in any directory and with any extension.
const RESERVED: [&str; 6] = ["con", "prn", "aux", "nul", "com1", "lpt1"];

/// Paths a checkout on Windows or macOS could not hold as they are.
pub fn portability(manifest: &Manifest, out: &mut Vec<Finding>) {
    let mut folded: BTreeMap<String, &str> = BTreeMap::new();
    for path in manifest.entries.keys() {
        if let Some(other) = folded.insert(path.to_lowercase(), path) {
            let message = format!("differs from {other} only in case");
            push(out, Severity::Error, Rule::CaseCollision, path, message);
        }
        for name in path.split('/') {
            let stem = name.split('.').next().unwrap_or(name).to_lowercase();
            let why = if RESERVED.contains(&stem.as_str()) {
                Some(format!("{name:?} is a reserved name on Windows"))
            } else if let Some(c) = name.chars().find(|c| r#"<>:"\|?*"#.contains(*c)) {
                Some(format!("{c:?} is not allowed in Windows file names"))
            } else if name.ends_with('.') || name.ends_with(' ') {
                Some(format!("{name:?} ends with a dot or space"))
            } else {
                None
            };
            if let Some(message) = why {
                push(out, Severity::Warning, Rule::NotPortable, path, message);
                break;
            }
        }
    }
}

/// Content stored at several paths: each copy after the first is a finding.
pub fn duplicates(manifest: &Manifest, out: &mut Vec<Finding>) {
    for paths in manifest.by_hash().values() {
        let Some((first, copies)) = paths.split_first() else {
            continue;
        };
        let size = manifest.entries[*first].size;
        if size == 0 {
            continue;
        }
        for copy in copies {
            let message = format!("same content as {first} ({})", human(size));
            push(out, Severity::Warning, Rule::Duplicate, copy, message);
        }
    }
}

/// Extensions of data, not programs: an executable bit on them is likely a mistake.
const DATA_EXTENSIONS: [&str; 8] = ["md", "txt", "json", "toml", "png", "jpg", "csv", "rs"];

pub fn odd_executables(manifest: &Manifest, out: &mut Vec<Finding>) {
    for (path, entry) in &manifest.entries {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_lowercase());
        if entry.executable && ext.is_some_and(|e| DATA_EXTENSIONS.contains(&e.as_str())) {
            let message = "executable, but its extension says data".to_owned();
            push(out, Severity::Info, Rule::OddExecutable, path, message);
        }
    }
}
