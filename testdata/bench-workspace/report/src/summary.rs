//! What a manifest holds, in a few numbers: totals, kinds of files, largest files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bench_core::Manifest;
use serde::Serialize;

use crate::{Align, Render, Table, human};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub key: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    /// Bytes once each distinct content is counted once.
    pub unique_bytes: u64,
    pub executables: u64,
    /// By file extension, largest first.
    pub by_extension: Vec<Group>,
    /// By top-level directory, largest first.
    pub by_directory: Vec<Group>,
    pub largest: Vec<(String, u64)>,
}

impl Summary {
    /// The summary of `manifest`, listing its `top` largest files and groups.
    pub fn of(manifest: &Manifest, top: usize) -> Summary {
        let mut largest: Vec<(String, u64)> = manifest
            .entries
            .iter()
            .map(|(p, e)| (p.clone(), e.size))
            .collect();
        largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        largest.truncate(top);
        Summary {
            files: manifest.len() as u64,
            bytes: manifest.total_size(),
            unique_bytes: manifest.unique_size(),
            executables: manifest.entries.values().filter(|e| e.executable).count() as u64,
            by_extension: groups(manifest, top, extension),
            by_directory: groups(manifest, top, top_directory),
            largest,
        }
    }
}

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!(".{ext}"),
        _ => "(none)".to_owned(),
    }
}

fn top_directory(path: &str) -> String {
    match path.split_once('/') {
        Some((dir, _)) => format!("{dir}/"),
        None => "./".to_owned(),
    }
}

fn groups(manifest: &Manifest, top: usize, key: fn(&str) -> String) -> Vec<Group> {
    let mut by_key: BTreeMap<String, Group> = BTreeMap::new();
    for (path, entry) in &manifest.entries {
        let k = key(path);
        let group = by_key.entry(k.clone()).or_insert(Group {
            key: k,
            files: 0,
            bytes: 0,
        });
        group.files += 1;
        group.bytes += entry.size;
    }
    let mut out: Vec<Group> = by_key.into_values().collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
    out.truncate(top);
    out
}

fn group_table(title: &str, groups: &[Group]) -> Table {
    let mut table = Table::new([
        (title, Align::Left),
        ("files", Align::Right),
        ("size", Align::Right),
    ]);
    for g in groups {
        table.row([g.key.clone(), g.files.to_string(), human(g.bytes)]);
    }
    table
}

impl Render for Summary {
    fn text(&self) -> String {
        let mut out = String::new();
        let shared = self.bytes - self.unique_bytes;
        let _ = writeln!(
            out,
            "{} files, {} ({} in duplicates), {} executable\n",
            self.files,
            human(self.bytes),
            human(shared),
            self.executables
        );
        let _ = writeln!(out, "{}", group_table("extension", &self.by_extension));
        let _ = writeln!(out, "{}", group_table("directory", &self.by_directory));
        let mut largest = Table::new([("largest", Align::Left), ("size", Align::Right)]);
        for (path, size) in &self.largest {
            largest.row([path.clone(), human(*size)]);
        }
        out.push_str(&largest.to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_largest() {
        let mut m = Manifest::default();
        m.add("src/main.rs", &[1; 3000]);
        m.add("src/lib.rs", &[2; 100]);
        m.add("README", &[1; 3000]);
        m.add(".gitignore", b"target\n");
        let s = Summary::of(&m, 2);
        assert_eq!(s.files, 4);
        assert_eq!(s.bytes - s.unique_bytes, 3000);
        assert_eq!(s.by_extension[0].key, ".rs");
        assert_eq!(s.by_extension[1].key, "(none)");
        assert_eq!(s.by_directory[0].key, "src/");
        assert_eq!(
            s.largest,
            [("README".into(), 3000), ("src/main.rs".into(), 3000)]
        );
        assert!(
            s.text()
                .contains("4 files, 6.0 KiB (2.9 KiB in duplicates)")
        );
        assert!(s.json().expect("json").contains("\"unique_bytes\": 3107"));
    }
}
